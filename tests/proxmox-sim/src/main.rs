//! `proxmox-sim`: serves a generated or loaded estate, one loopback listener per endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use proxmox_sim::{Estate, EstateSpec, SimConfig, Simulator, generate};

/// Proxmox VE API simulator (loopback only).
#[derive(Parser, Debug)]
#[command(name = "proxmox-sim", version)]
struct Args {
    /// RNG seed for the generated estate.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of clusters.
    #[arg(long, default_value_t = 2)]
    clusters: usize,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    nodes_per_cluster: usize,
    /// Number of standalone nodes.
    #[arg(long, default_value_t = 1)]
    standalone: usize,
    /// Total guests across all endpoints.
    #[arg(long, default_value_t = 60)]
    guests: usize,
    /// Load the estate from this JSON file instead of generating it.
    #[arg(long)]
    estate: Option<std::path::PathBuf>,
    /// Write the estate to this JSON file before serving.
    #[arg(long)]
    dump_estate: Option<std::path::PathBuf>,
    /// Serve HTTPS (default).
    #[arg(long, overrides_with = "no_tls")]
    tls: bool,
    /// Serve plain HTTP.
    #[arg(long, overrides_with = "tls")]
    no_tls: bool,
    /// First port; endpoint i listens on port-base + i (default: ephemeral ports).
    #[arg(long)]
    port_base: Option<u16>,
    /// Delay of failed authentications in milliseconds.
    #[arg(long, default_value_t = 3000)]
    auth_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let estate = match &args.estate {
        Some(path) => Estate::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => generate(&EstateSpec {
            seed: args.seed,
            clusters: args.clusters,
            nodes_per_cluster: args.nodes_per_cluster,
            standalone_nodes: args.standalone,
            guests: args.guests,
            ..EstateSpec::default()
        }),
    };
    if let Some(path) = &args.dump_estate {
        estate
            .save(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let tls = !args.no_tls;
    let mut sims = Vec::new();
    for (i, endpoint) in estate.endpoints.iter().enumerate() {
        let port = match args.port_base {
            Some(base) => base
                .checked_add(u16::try_from(i)?)
                .context("port out of range")?,
            None => 0,
        };
        let config = SimConfig {
            tls,
            auth_failure_delay: Duration::from_millis(args.auth_delay_ms),
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            ..SimConfig::default()
        };
        let sim = Simulator::start(estate.clone(), i, config).await?;
        println!(
            "endpoint {i} {} {} token={} fingerprint={}",
            endpoint.display_name(),
            sim.base_url(),
            sim.token().header_value(),
            sim.certificate_fingerprint().unwrap_or_else(|| "-".into()),
        );
        sims.push(sim);
    }
    wait_for_signal().await;
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
