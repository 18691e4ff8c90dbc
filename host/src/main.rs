//! The `proxbox-host` binary: the sync service and the mapper authors' CLI.

fn main() -> std::process::ExitCode {
    proxbox_host::cli::main()
}
