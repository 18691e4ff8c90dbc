//! The wasmtime engine mappers run on: configuration, sandbox linker, limits, epoch ticker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::cache::ArtifactCache;
use super::component::MapperComponent;
use super::error::LoadError;

/// Resource limits of one mapping call and of one mapper instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly: WebAssembly instructions) one call may use.
    pub fuel: u64,
    /// Wall-clock backstop for one call.
    pub wall_time: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Largest result one call may return, measured as JSON, in bytes.
    pub output_bytes: usize,
    /// How many mapper instances may exist at once (pooling allocator slots).
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 200_000_000,
            wall_time: Duration::from_secs(2),
            memory_bytes: 64 * 1024 * 1024,
            output_bytes: 1024 * 1024,
            max_instances: 64,
        }
    }
}

/// How often the epoch ticker advances; the wall-clock backstop has this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of a mapper's stderr kept to explain a trap (a panic message).
const STDERR_CAPTURE: usize = 8 * 1024;

/// Compiles, caches and sandboxes mapper components.
///
/// Cheap to clone; all clones share one engine, one linker and one epoch ticker.
#[derive(Clone)]
pub struct MapperEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: Limits,
    cache: Option<ArtifactCache>,
}

impl MapperEngine {
    /// An engine with these limits, caching compiled components in `cache_dir` if given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = limits.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memory_size(limits.memory_bytes);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        deny_sleeping(&mut linker)?;

        spawn_epoch_ticker(&engine);
        let cache = cache_dir.map(|dir| ArtifactCache::new(dir, &engine));
        Ok(MapperEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                limits,
                cache,
            }),
        })
    }

    /// The limits every call and instance runs under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<GuestState> {
        &self.inner.linker
    }

    /// Epoch ticks that make up the wall-clock limit.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.inner.limits.wall_time.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// Load a component from a file.
    pub fn load_file(&self, path: &std::path::Path) -> Result<Arc<MapperComponent>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.load(&name, &bytes)
    }

    /// Load a component from its bytes; `name` is how errors and events refer to it.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<MapperComponent>, LoadError> {
        if is_core_module(bytes) {
            return Err(LoadError::CoreModule {
                component: name.to_string(),
            });
        }
        let compile = || {
            Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Invalid {
                component: name.to_string(),
                message: format!("{e:#}"),
            })
        };
        let component = match &self.inner.cache {
            Some(cache) => cache.get_or_compile(bytes, compile)?,
            None => compile()?,
        };
        MapperComponent::new(self, name, bytes, component).map(Arc::new)
    }

    /// A fresh store for one instance: empty WASI context, frozen clocks, memory cap.
    pub(crate) fn new_store(&self) -> wasmtime::Store<GuestState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: self.inner.limits.memory_bytes,
                hit: false,
            },
            stderr,
        };
        let mut store = wasmtime::Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.memory);
        store
    }
}

/// Replace the WASI monotonic clock with a frozen one whose timers trap.
///
/// A WASI sleep blocks inside the host, where the epoch deadline cannot interrupt it;
/// mappers have no use for timers, so asking for one fails the call at once.
fn deny_sleeping(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.6")?;
    clock.func_wrap("now", |_, (): ()| Ok((0u64,)))?;
    clock.func_wrap("resolution", |_, (): ()| Ok((1_000_000_000u64,)))?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_new(name, move |_, _, _, _| {
            Err(wasmtime::format_err!(
                "mappers may not sleep or wait (`{name}` is denied)"
            ))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether `bytes` is a core WebAssembly module (version 1) rather than a component.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("mapper-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn mapper epoch ticker");
}

/// Per-instance host state: the sandbox's WASI context and the memory cap.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) stderr: MemoryOutputPipe,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the cap and remembers that it did.
pub(crate) struct MemoryCap {
    limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A clock that never moves: mappers get `now` from their context, not from a clock.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
