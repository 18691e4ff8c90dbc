//! Command line: `serve`, and the `mapper` commands for mapper authors.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cases::{self, ObjectFile, Outcome};
use crate::mapper::{
    Kind, Limits, MapperComponent, MapperEngine, MapperInstance, MapperSet, default_component,
};
use crate::server;

/// proxbox-host: sync a Proxmox VE estate into NetBox, with mapping in WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "proxbox-host", version, about)]
pub struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    /// Log format.
    #[arg(long, global = true, env = "PROXBOX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service the netbox-proxbox plugin talks to.
    Serve(ServeArgs),
    /// Tools for mapper authors.
    #[command(subcommand)]
    Mapper(MapperCommand),
}

/// Mapper sandbox settings shared by every command.
#[derive(Debug, Args)]
struct EngineArgs {
    /// Directory for compiled mapper components [default: $XDG_CACHE_HOME/proxbox-host/mappers];
    /// an empty value disables the cache.
    #[arg(long, global = true, env = "PROXBOX_MAPPER_CACHE_DIR")]
    mapper_cache_dir: Option<PathBuf>,
    /// Fuel budget of one mapping call.
    #[arg(long, global = true, env = "PROXBOX_MAPPER_FUEL", default_value_t = Limits::default().fuel)]
    mapper_fuel: u64,
    /// Wall-clock limit of one mapping call, in milliseconds.
    #[arg(long, global = true, env = "PROXBOX_MAPPER_TIMEOUT_MS", default_value_t = Limits::default().wall_time.as_millis() as u64)]
    mapper_timeout_ms: u64,
    /// Memory cap of one mapper instance, in MiB.
    #[arg(long, global = true, env = "PROXBOX_MAPPER_MEMORY_MIB", default_value_t = Limits::default().memory_bytes / (1024 * 1024))]
    mapper_memory_mib: usize,
    /// Largest result of one mapping call (as JSON), in KiB.
    #[arg(long, global = true, env = "PROXBOX_MAPPER_OUTPUT_KIB", default_value_t = Limits::default().output_bytes / 1024)]
    mapper_output_kib: usize,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PROXBOX_BIND_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8800)]
    port: u16,
    /// The configuration database (SQLite; created if missing). Its encryption key comes
    /// from `PROXBOX_ENCRYPTION_KEY`, else `PROXBOX_ENCRYPTION_KEY_FILE`, else `<PATH>.key`.
    #[arg(long, env = "PROXBOX_DATABASE_PATH", default_value = "database.db")]
    database: PathBuf,
    /// Peers trusted to set `X-Forwarded-For` (addresses or CIDRs, comma-separated).
    #[arg(long, env = "PROXBOX_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
    /// Configuration file (TOML: `[mappers]`, `[mapper-params]`; see the README).
    #[arg(long, env = "PROXBOX_CONFIG")]
    config: Option<PathBuf>,
    /// A parameter passed to every mapper: `KEY=VALUE` (repeatable; after the file's).
    #[arg(long = "mapper-param", value_name = "KEY=VALUE", value_parser = crate::config::parse_param, env = "PROXBOX_MAPPER_PARAMS", value_delimiter = ',')]
    mapper_params: Vec<(String, String)>,
    /// Replace a built-in mapper: `KIND=PATH.wasm` (repeatable; kinds: device, virtual-machine,
    /// virtual-disk, storage, backup, snapshot).
    #[arg(long = "mapper", value_name = "KIND=PATH", value_parser = parse_override, env = "PROXBOX_MAPPERS", value_delimiter = ',')]
    mappers: Vec<(Kind, PathBuf)>,
    /// Seconds a NetBox list kept between syncs is trusted before it is read in full
    /// again (it is brought up to date from NetBox's change log before every sync);
    /// 0 reads every list in full every time.
    #[arg(long, env = "PROXBOX_NETBOX_VIEW_MAX_AGE", default_value_t = 86_400)]
    netbox_view_max_age: u64,
}

#[derive(Debug, Subcommand)]
enum MapperCommand {
    /// Map one object file and print the result as JSON.
    Run {
        /// Kind to map (default: the file's `kind`).
        #[arg(long)]
        kind: Option<Kind>,
        /// Component to run (default: the built-in mapper of the kind).
        #[arg(long)]
        component: Option<PathBuf>,
        /// Object file: raw Proxmox JSON plus optional context.
        #[arg(long)]
        input: PathBuf,
        /// Also print the normalised input the mapper receives.
        #[arg(long)]
        show_input: bool,
    },
    /// Run golden cases (`NAME.input.json` + `NAME.expected.json`) and report each.
    Test {
        /// Component to test (default: the built-in mapper of each case's kind).
        #[arg(long)]
        component: Option<PathBuf>,
        /// Directory of cases (searched recursively).
        dir: PathBuf,
        /// Write the actual outcomes as the expected files instead of comparing.
        #[arg(long)]
        bless: bool,
    },
    /// Show what a component exports and imports, and whether this host can run it.
    Check {
        /// The component.
        component: PathBuf,
    },
}

fn parse_override(text: &str) -> Result<(Kind, PathBuf), String> {
    let (kind, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KIND=PATH, got `{text}`"))?;
    Ok((kind.trim().parse()?, PathBuf::from(path.trim())))
}

impl EngineArgs {
    fn engine(&self) -> anyhow::Result<MapperEngine> {
        let limits = Limits {
            fuel: self.mapper_fuel,
            wall_time: Duration::from_millis(self.mapper_timeout_ms),
            memory_bytes: self.mapper_memory_mib * 1024 * 1024,
            output_bytes: self.mapper_output_kib * 1024,
            ..Limits::default()
        };
        let cache = match &self.mapper_cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => default_cache_dir(),
        };
        MapperEngine::new(limits, cache)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("proxbox-host").join("mappers"))
}

/// Log output format (`--log-format` / `PROXBOX_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// Install the log subscriber: level from `RUST_LOG` (else `PROXBOX_LOG_LEVEL`, else
/// `info`), on stderr, in `format`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("PROXBOX_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            )
        })
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let engine = cli.engine.engine()?;
    match cli.command {
        Command::Serve(args) => serve(&engine, args),
        Command::Mapper(MapperCommand::Run {
            kind,
            component,
            input,
            show_input,
        }) => mapper_run(&engine, kind, component.as_deref(), &input, show_input),
        Command::Mapper(MapperCommand::Test {
            component,
            dir,
            bless,
        }) => mapper_test(&engine, component.as_deref(), &dir, bless),
        Command::Mapper(MapperCommand::Check { component }) => mapper_check(&engine, &component),
    }
}

fn serve(engine: &MapperEngine, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => crate::config::FileConfig::load(path)?,
        None => crate::config::FileConfig::default(),
    };
    let mut overrides: BTreeMap<Kind, PathBuf> = file.mappers;
    overrides.extend(args.mappers);
    let mut params = file.mapper_params;
    params.extend(args.mapper_params);
    let mappers = MapperSet::load(engine, &overrides)?;
    for kind in Kind::ALL {
        tracing::info!(%kind, component = mappers.component(kind).name(), "mapper loaded");
    }
    let store = crate::store::Store::open(&args.database)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.database.display()))?;
    tracing::info!(path = %args.database.display(), key = ?store.key_source(), "configuration store open");
    let proxies = server::auth::TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("PROXBOX_TRUSTED_PROXIES: {e}"))?;
    let state = server::AppState::builder(store)
        .mappers(mappers)
        .mapper_params(params)
        .trusted_proxies(proxies)
        .netbox_view_max_age(std::time::Duration::from_secs(args.netbox_view_max_age))
        .build();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::serve(SocketAddr::new(args.host, args.port), state))?;
    Ok(ExitCode::SUCCESS)
}

/// The component to use for `kind`: the given file, or the built-in default.
fn component_for(
    engine: &MapperEngine,
    path: Option<&Path>,
    kind: Kind,
) -> anyhow::Result<Arc<MapperComponent>> {
    Ok(match path {
        Some(path) => engine.load_file(path)?,
        None => {
            let (name, bytes) = default_component(kind);
            engine.load(name, bytes)?
        }
    })
}

fn mapper_run(
    engine: &MapperEngine,
    kind: Option<Kind>,
    component: Option<&Path>,
    input: &Path,
    show_input: bool,
) -> anyhow::Result<ExitCode> {
    let file = ObjectFile::read(input)?;
    let kind = file.resolve_kind(kind)?;
    let component = component_for(engine, component, kind)?;
    if show_input {
        let (ctx, input) = file
            .prepare(kind)
            .map_err(|e| anyhow::anyhow!("bad Proxmox data: {e}"))?;
        let shown = serde_json::json!({ "context": ctx, "input": input });
        eprintln!("{}", serde_json::to_string_pretty(&shown)?);
    }
    let mut instance = MapperInstance::new(component);
    let (outcome, _) = cases::run(&mut instance, &file, kind);
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(match outcome {
        Outcome::Failed { .. } => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

fn mapper_test(
    engine: &MapperEngine,
    component: Option<&Path>,
    dir: &Path,
    bless: bool,
) -> anyhow::Result<ExitCode> {
    let cases = cases::discover(dir)?;
    anyhow::ensure!(
        !cases.is_empty(),
        "no golden cases (*.input.json) under {}",
        dir.display()
    );
    let given = component.map(|p| engine.load_file(p)).transpose()?;
    let mut instances: BTreeMap<Kind, MapperInstance> = BTreeMap::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for case in &cases {
        let file = match ObjectFile::read(&case.input) {
            Ok(file) => file,
            Err(e) => {
                println!("FAIL {}: {e:#}", case.name);
                failed += 1;
                continue;
            }
        };
        let Ok(kind) = file.resolve_kind(None) else {
            println!("FAIL {}: the input file has no \"kind\"", case.name);
            failed += 1;
            continue;
        };
        if let Some(c) = &given
            && !c.exports(kind)
        {
            println!("SKIP {} ({} does not export {kind})", case.name, c.name());
            skipped += 1;
            continue;
        }
        let instance = match instances.entry(kind) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let c = match &given {
                    Some(c) => Arc::clone(c),
                    None => component_for(engine, None, kind)?,
                };
                e.insert(MapperInstance::new(c))
            }
        };
        let (actual, fuel) = cases::run(instance, &file, kind);
        let fuel = fuel.map_or_else(|| "-".to_string(), |f| f.to_string());
        if bless {
            std::fs::write(
                &case.expected,
                serde_json::to_string_pretty(&actual)? + "\n",
            )?;
            println!("BLESS {} fuel={fuel}", case.name);
            passed += 1;
            continue;
        }
        let expected: Option<Outcome> = std::fs::read_to_string(&case.expected)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        match expected {
            Some(expected) if expected == actual => {
                println!("PASS {} fuel={fuel}", case.name);
                passed += 1;
            }
            Some(expected) => {
                println!("FAIL {} fuel={fuel}", case.name);
                println!("  expected: {}", serde_json::to_string(&expected)?);
                println!("  actual:   {}", serde_json::to_string(&actual)?);
                failed += 1;
            }
            None => {
                println!(
                    "FAIL {}: missing or unreadable {}",
                    case.name,
                    case.expected.display()
                );
                println!("  actual:   {}", serde_json::to_string(&actual)?);
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn mapper_check(engine: &MapperEngine, path: &Path) -> anyhow::Result<ExitCode> {
    let component = engine.load_file(path)?;
    let info = component.info();
    println!("component:   {}", info.name);
    println!("sha256:      {}", info.sha256);
    println!("wit version: proxbox:mapper@{}", info.wit_version);
    let kinds: Vec<String> = info.kinds.iter().map(Kind::to_string).collect();
    println!("kinds:       {}", kinds.join(", "));
    println!(
        "imports:     {}",
        if info.imports.is_empty() {
            "none".to_string()
        } else {
            String::new()
        }
    );
    for import in &info.imports {
        println!("  {import}");
    }
    println!("status:      compatible with this host");
    Ok(ExitCode::SUCCESS)
}
