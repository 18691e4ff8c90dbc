//! On-disk cache of compiled mapper components.
//!
//! An entry is keyed by the SHA-256 of the component's bytes and the engine's
//! compatibility hash (wasmtime version and compilation settings), so a changed
//! component or an upgraded host never loads a stale artefact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::LoadError;

/// A directory of precompiled components.
pub struct ArtifactCache {
    dir: PathBuf,
    engine: Engine,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` for artefacts of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine: engine.clone(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// Path of the entry for a component with these bytes.
    pub fn entry_path(&self, bytes: &[u8]) -> PathBuf {
        let digest = hex::encode(Sha256::digest(bytes));
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of `bytes`, or `compile()` stored for next time.
    ///
    /// A cache that cannot be read or written is skipped with a warning: the
    /// component is compiled in memory instead.
    pub fn get_or_compile(
        &self,
        bytes: &[u8],
        compile: impl FnOnce() -> Result<Component, LoadError>,
    ) -> Result<Component, LoadError> {
        let path = self.entry_path(bytes);
        // Read into memory rather than mapping the file: a cache entry replaced or
        // truncated by another process must not pull code out from under us.
        if let Ok(artefact) = std::fs::read(&path) {
            // SAFETY: entries are only written by `store` below from `Component::serialize`
            // of this engine configuration (the file name carries its compatibility key);
            // wasmtime still validates the header and refuses an incompatible artefact.
            match unsafe { Component::deserialize(&self.engine, &artefact) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached mapper: {e}")
                }
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache compiled mapper: {e}");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
