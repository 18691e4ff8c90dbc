//! Mapper runtime: runs the WebAssembly components that decide what each Proxmox
//! object becomes in NetBox.
//!
//! - [`MapperEngine`] compiles (and caches) components and runs them sandboxed:
//!   no capabilities, a fuel budget and a wall-clock backstop per call, a memory cap.
//! - [`MapperComponent`] is one checked component; [`MapperSet`] picks, per kind,
//!   the configured component or the built-in default.
//! - [`MapperInstance`] maps objects one by one; a failure fails only that object.

mod builtin;
mod cache;
mod component;
mod engine;
mod error;
mod instance;
mod kind;
pub mod v1;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use builtin::default_component;
pub use cache::ArtifactCache;
pub use component::{ComponentInfo, MapperComponent};
pub use engine::{GuestState, Limits, MapperEngine};
pub use error::{FailReason, LoadError, MapError};
pub use instance::{MapInput, MapOutput, Mapped, MapperInstance};
pub use kind::Kind;

/// The WIT package name every mapper exports from.
pub const WIT_PACKAGE: &str = "proxbox:mapper";

/// The component used for each kind: a configured one, or the built-in default.
#[derive(Clone)]
pub struct MapperSet {
    by_kind: BTreeMap<Kind, Arc<MapperComponent>>,
}

impl MapperSet {
    /// Load the built-in defaults, replacing the kinds in `overrides` with the given
    /// component files. A component may serve several kinds; it is loaded once.
    pub fn load(
        engine: &MapperEngine,
        overrides: &BTreeMap<Kind, PathBuf>,
    ) -> Result<Self, LoadError> {
        let mut loaded: BTreeMap<PathBuf, Arc<MapperComponent>> = BTreeMap::new();
        let mut by_kind = BTreeMap::new();
        for kind in Kind::ALL {
            let component = match overrides.get(&kind) {
                Some(path) => {
                    let component = match loaded.get(path) {
                        Some(c) => Arc::clone(c),
                        None => {
                            let c = engine.load_file(path)?;
                            loaded.insert(path.clone(), Arc::clone(&c));
                            c
                        }
                    };
                    if !component.exports(kind) {
                        return Err(LoadError::MissingKind {
                            component: component.name().to_string(),
                            kind,
                        });
                    }
                    component
                }
                None => {
                    let (name, bytes) = default_component(kind);
                    engine.load(name, bytes)?
                }
            };
            by_kind.insert(kind, component);
        }
        Ok(MapperSet { by_kind })
    }

    /// The component that maps `kind`.
    pub fn component(&self, kind: Kind) -> &Arc<MapperComponent> {
        &self.by_kind[&kind]
    }

    /// A new instance for mapping objects of `kind`.
    pub fn instance(&self, kind: Kind) -> MapperInstance {
        MapperInstance::new(Arc::clone(self.component(kind)))
    }
}
