//! A whole sync against a real NetBox: a cold full update of a generated estate, then a
//! no-op re-run, reporting wall time, NetBox requests and the process's peak RSS.
//!
//! Needs `NETBOX_URL` and `NETBOX_TOKEN_V1` (`tests/netbox/netbox.sh up`, then source its
//! env file). `PROXBOX_BENCH_GUESTS` lists the estate sizes (default `1000,10000`);
//! `PROXBOX_BENCH_BACKUPS` and `PROXBOX_BENCH_SNAPSHOTS` set the averages per guest
//! (default 2 and 1). The simulator runs in a child process (this binary, re-executed
//! with `--simulator`), so the peak RSS reported is the host's alone; the simulator's is
//! printed beside it.
//! `PROXBOX_BENCH_LOG=proxbox_host=debug` logs every Proxmox and NetBox request with its
//! time, as JSON on stderr. `PROXBOX_BENCH_RUNS` lists the runs per size (default
//! `cold,no-op,no-op`: the first re-sync after a cold one, then a steady-state one); a
//! NetBox that already holds an estate (say, restored from a dump) is re-synced with
//! `PROXBOX_BENCH_TAG` set to the tag its cluster name carries and runs `no-op,no-op`.
//! `PROXBOX_BENCH_STAGES` limits the full update to some stages (its `stages` parameter,
//! e.g. `devices,storage,virtual_machines,virtual_disks,backups,snapshots`).
//! Measures only under `cargo bench` (`--bench`); `cargo test` builds it and exits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxbox_host::mapper::{Limits, MapperEngine, MapperSet};
use proxbox_host::server::{self, AppState};
use proxbox_host::store::{NetBoxEndpointCreate, ProxmoxEndpointCreate, Secret, Store};
use proxmox_sim::{EstateSpec, SimConfig, Simulator, generate};
use serde_json::Value;

/// The allocator of the `proxbox-host` binary, so the RSS measured is the one it runs with.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    status_mib("/proc/self/status", "VmHWM:")
}

/// A memory line (`VmHWM:`, `VmRSS:`) of a `/proc/<pid>/status` file, in MiB.
fn status_mib(status: &str, key: &str) -> f64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Reads an SSE body as it arrives: the `complete` payload, and when each stage's
/// `step` frame said `completed` (seconds since `started`) with the peak RSS by then.
async fn read_stream(
    mut response: reqwest::Response,
    started: Instant,
) -> (Value, Vec<(String, f64, f64)>) {
    let mut buffer = String::new();
    let mut event = String::new();
    let mut stages = Vec::new();
    let mut complete = None;
    while let Some(chunk) = response.chunk().await.expect("body") {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                match event.as_str() {
                    "complete" => complete = Some(serde_json::from_str(data).expect("complete")),
                    "step" => {
                        let frame: Value = serde_json::from_str(data).unwrap_or_default();
                        if frame["status"] == "completed"
                            && let Some(step) = frame["step"].as_str()
                            && frame.get("result").is_some()
                        {
                            stages.push((
                                step.to_string(),
                                started.elapsed().as_secs_f64(),
                                peak_rss_mib(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    (complete.expect("no complete frame"), stages)
}

/// The generated estate of `guests` guests, its cluster name and snapshot names carrying
/// `tag` so that runs with different tags do not collide in one NetBox.
fn estate(guests: usize, tag: u64) -> proxmox_sim::Estate {
    let mut estate = generate(&EstateSpec {
        seed: guests as u64,
        clusters: 1,
        nodes_per_cluster: 3,
        standalone_nodes: 0,
        guests,
        backups_per_guest: env_f64("PROXBOX_BENCH_BACKUPS", 2.0),
        snapshots_per_guest: env_f64("PROXBOX_BENCH_SNAPSHOTS", 1.0),
        ..EstateSpec::default()
    });
    estate.endpoints[0].cluster_name = Some(format!("bench-{guests}-{tag}"));
    for guest in estate.endpoints[0].guests.values_mut() {
        for snapshot in &mut guest.snapshots {
            snapshot.name = format!("{}-{tag}", snapshot.name);
            if let Some(parent) = snapshot.parent.as_mut() {
                *parent = format!("{parent}-{tag}");
            }
        }
    }
    estate
}

/// Child mode (`--simulator <guests> <tag>`): serve the estate, print one JSON line with
/// the address and token, and exit when the parent closes stdin.
fn serve_simulator(guests: usize, tag: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let sim = Simulator::start(estate(guests, tag), 0, SimConfig::default())
            .await
            .expect("simulator");
        let t = sim.token();
        println!(
            "{}",
            serde_json::json!({
                "port": sim.addr().port(),
                "user": t.user,
                "token_id": t.token_id,
                "secret": t.secret,
                "rss_mib": status_mib("/proc/self/status", "VmRSS:"),
            })
        );
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await
        .expect("stdin");
    });
}

/// The simulator child: its process and the first line it printed.
struct SimulatorChild {
    process: std::process::Child,
    hello: Value,
}

impl SimulatorChild {
    fn spawn(guests: usize, tag: u64) -> Self {
        let mut process = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--simulator", &guests.to_string(), &tag.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("simulator child");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("simulator hello");
        let hello = serde_json::from_str(&line).expect("simulator hello");
        SimulatorChild { process, hello }
    }

    /// The child's peak RSS so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        status_mib(&format!("/proc/{}/status", self.process.id()), "VmHWM:")
    }
}

impl Drop for SimulatorChild {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.wait();
    }
}

async fn run_size(guests: usize, url: &url::Url, token: &str, mappers: &MapperSet) {
    let tag = std::env::var("PROXBOX_BENCH_TAG")
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    println!("{guests:>6} guests  tag {tag} (PROXBOX_BENCH_TAG re-syncs this estate)");
    let sim = SimulatorChild::spawn(guests, tag);
    println!(
        "{:>14}  simulator (child process) RSS with its estate loaded: {:.0} MiB; host RSS before any sync: {:.0} MiB",
        "",
        sim.hello["rss_mib"].as_f64().unwrap_or_default(),
        status_mib("/proc/self/status", "VmRSS:")
    );
    let store = Store::open_in_memory().expect("store");
    let mut nb = NetBoxEndpointCreate::new("netbox", url.host_str().expect("host"), token);
    nb.port = i64::from(url.port_or_known_default().expect("port"));
    nb.verify_ssl = false;
    store.create_netbox_endpoint(nb).expect("netbox endpoint");
    let hello = &sim.hello;
    let port = u16::try_from(hello["port"].as_u64().expect("port")).expect("port");
    let mut pve = ProxmoxEndpointCreate::new(
        "bench",
        "127.0.0.1",
        port,
        hello["user"].as_str().expect("user"),
    );
    pve.token_name = hello["token_id"].as_str().map(str::to_string);
    pve.token_value = Some(Secret::new(
        hello["secret"].as_str().expect("secret").to_string(),
    ));
    pve.verify_ssl = false;
    pve.timeout = Some(120);
    let endpoint = store
        .create_proxmox_endpoint(pve)
        .expect("proxmox endpoint")
        .id;
    let key = "bench-key-0123456789-abcdefghijklmnopqrstuv";
    store.register_first_key(key, "bench").expect("key");
    let state = AppState::builder(store).mappers(mappers.clone()).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve_on(listener, state, std::future::pending()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(4 * 3600))
        .build()
        .expect("client");
    let runs = std::env::var("PROXBOX_BENCH_RUNS").unwrap_or_else(|_| "cold,no-op,no-op".into());
    let stages = std::env::var("PROXBOX_BENCH_STAGES")
        .map(|s| format!("&stages={s}"))
        .unwrap_or_default();
    for label in runs.split(',').map(str::trim) {
        let started = Instant::now();
        let response = http
            .get(format!(
                "http://{addr}/full-update/stream?proxmox_endpoint_ids={endpoint}{stages}"
            ))
            .header("X-Proxbox-API-Key", key)
            .send()
            .await
            .expect("request");
        let (complete, stages) = read_stream(response, started).await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(complete["ok"], true, "{complete}");
        let r = &complete["result"];
        println!(
            "{guests:>6} guests  {label:<5}  {seconds:>8.1} s  NetBox GETs {:>6}  writes {:>6}  \
             VMs {:>6}  disks {:>6}  backups {:>6}  snapshots {:>6}  peak RSS {:>6.0} MiB \
             (simulator {:.0} MiB)",
            r["netbox_requests"]["gets"],
            r["netbox_requests"]["writes"],
            r["virtual_machines_count"],
            r["virtual_disks_count"],
            r["backups_count"],
            r["snapshots_count"],
            peak_rss_mib(),
            sim.peak_rss_mib(),
        );
        let mut previous = 0.0;
        let breakdown: Vec<String> = stages
            .iter()
            .map(|(stage, at, rss)| {
                let part = format!("{stage} {:.1} s ({rss:.0} MiB)", at - previous);
                previous = *at;
                part
            })
            .collect();
        println!(
            "{:>14}  stages (peak RSS when each ended): {}",
            "",
            breakdown.join(", ")
        );
        println!("{:>14}  NetBox view: {}", "", r["netbox_view"]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, guests, tag] = args.as_slice()
        && flag == "--simulator"
    {
        serve_simulator(guests.parse().expect("guests"), tag.parse().expect("tag"));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let (Ok(url), Ok(token)) = (
        std::env::var("NETBOX_URL"),
        std::env::var("NETBOX_TOKEN_V1"),
    ) else {
        eprintln!("sync bench: NETBOX_URL / NETBOX_TOKEN_V1 not set (tests/netbox/netbox.sh up)");
        return;
    };
    if let Ok(filter) = std::env::var("PROXBOX_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .json()
            .with_writer(std::io::stderr)
            .init();
    }
    let url = url::Url::parse(&url).expect("NETBOX_URL");
    let sizes: Vec<usize> = std::env::var("PROXBOX_BENCH_GUESTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let engine = MapperEngine::new(Limits::default(), None).expect("engine");
    let mappers = MapperSet::load(&engine, &BTreeMap::new()).expect("mappers");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for guests in sizes {
            run_size(guests, &url, &token, &mappers).await;
        }
    });
}
