//! Errors of loading a mapper component and of mapping one object.

use std::fmt;
use std::time::Duration;

use super::Kind;

/// A component that cannot be used as a mapper.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read mapper component `{path}`: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The bytes are a core WebAssembly module, not a component.
    #[error(
        "mapper `{component}` is a core WebAssembly module, not a component: build it for \
         `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Component name.
        component: String,
    },
    /// Compilation failed (not WebAssembly, or invalid).
    #[error("mapper `{component}` is not a valid WebAssembly component: {message}")]
    Invalid {
        /// Component name.
        component: String,
        /// What the compiler said.
        message: String,
    },
    /// The component targets a `proxbox:mapper` version this host cannot run.
    #[error(
        "mapper `{component}` targets proxbox:mapper@{found}, but this host supports \
         proxbox:mapper@{supported}: {hint}"
    )]
    IncompatibleVersion {
        /// Component name.
        component: String,
        /// Version the component exports.
        found: String,
        /// Version this host implements.
        supported: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The component exports no mapper kind at all.
    #[error(
        "mapper `{component}` exports no proxbox:mapper kind interface (found exports: {exports})"
    )]
    NoKinds {
        /// Component name.
        component: String,
        /// What it does export.
        exports: String,
    },
    /// The component imports something mappers may not use.
    #[error(
        "mapper `{component}` imports `{import}`; mappers may only import WASI (which gets an empty \
         sandbox) and proxbox:mapper types"
    )]
    ForbiddenImport {
        /// Component name.
        component: String,
        /// The import.
        import: String,
    },
    /// The component could not be linked against the sandbox.
    #[error("mapper `{component}` cannot be linked: {message}")]
    Link {
        /// Component name.
        component: String,
        /// What the linker said.
        message: String,
    },
    /// The configured component does not export the kind it was configured for.
    #[error("mapper `{component}` was configured for kind `{kind}` but does not export it")]
    MissingKind {
        /// Component name.
        component: String,
        /// The kind.
        kind: Kind,
    },
}

/// Mapping one object failed. Only that object fails; the run goes on.
#[derive(Debug, thiserror::Error)]
#[error("mapper `{component}` failed on {kind} {object}: {reason}")]
pub struct MapError {
    /// Component name.
    pub component: String,
    /// Kind being mapped.
    pub kind: Kind,
    /// The object, as the host describes it (e.g. `qemu/100 "web01" on pve1`).
    pub object: String,
    /// Why.
    pub reason: FailReason,
}

/// Why a mapping call failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum FailReason {
    /// The mapper returned an error for this object.
    Rejected {
        /// Mapper's code.
        code: String,
        /// Mapper's message.
        message: String,
    },
    /// The call used up its fuel budget.
    OutOfFuel {
        /// The budget.
        budget: u64,
    },
    /// The call ran past its wall-clock limit.
    Timeout {
        /// The limit in milliseconds.
        limit_ms: u64,
    },
    /// The component tried to grow its memory past the cap.
    MemoryLimit {
        /// The cap in bytes.
        limit_bytes: usize,
    },
    /// The result was larger than the output cap.
    OutputTooLarge {
        /// Size of the result in bytes (as JSON).
        size_bytes: usize,
        /// The cap in bytes.
        limit_bytes: usize,
    },
    /// The component trapped (a panic, `unreachable`, a denied capability, ...).
    Trap {
        /// The trap, and the component's last stderr output if any (e.g. the panic message).
        message: String,
    },
    /// A fresh instance could not be created.
    Instantiate {
        /// What went wrong.
        message: String,
    },
    /// The component does not export this kind.
    NotExported,
    /// The host could not build the mapper input from the Proxmox data.
    BadInput {
        /// What is wrong with the data.
        message: String,
    },
}

impl FailReason {
    /// Short machine-readable name of the reason.
    pub fn code(&self) -> &str {
        match self {
            FailReason::Rejected { code, .. } => code,
            FailReason::OutOfFuel { .. } => "out-of-fuel",
            FailReason::Timeout { .. } => "timeout",
            FailReason::MemoryLimit { .. } => "memory-limit",
            FailReason::OutputTooLarge { .. } => "output-too-large",
            FailReason::Trap { .. } => "trap",
            FailReason::Instantiate { .. } => "instantiate",
            FailReason::NotExported => "not-exported",
            FailReason::BadInput { .. } => "bad-input",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Rejected { code, message } => write!(f, "rejected ({code}): {message}"),
            FailReason::OutOfFuel { budget } => write!(f, "ran out of fuel (budget {budget})"),
            FailReason::Timeout { limit_ms } => {
                write!(f, "timed out after {:?}", Duration::from_millis(*limit_ms))
            }
            FailReason::MemoryLimit { limit_bytes } => {
                write!(
                    f,
                    "exceeded the memory limit of {} MiB",
                    limit_bytes / (1024 * 1024)
                )
            }
            FailReason::OutputTooLarge {
                size_bytes,
                limit_bytes,
            } => write!(
                f,
                "output of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes"
            ),
            FailReason::Trap { message } => write!(f, "trapped: {message}"),
            FailReason::Instantiate { message } => write!(f, "cannot instantiate: {message}"),
            FailReason::NotExported => f.write_str("the component does not export this kind"),
            FailReason::BadInput { message } => write!(f, "bad Proxmox data: {message}"),
        }
    }
}
