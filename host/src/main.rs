//! The `proxbox-host` binary: the sync service and the mapper authors' CLI.

/// jemalloc returns freed memory to the system and fragments less than glibc's allocator
/// under a sync's many short-lived JSON objects.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    proxbox_host::cli::main()
}
