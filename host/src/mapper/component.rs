//! A loaded mapper component: what it exports, what it imports, and how to instantiate it.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre};

use super::engine::{GuestState, MapperEngine};
use super::error::LoadError;
use super::v1;
use super::{Kind, WIT_PACKAGE};

/// A compiled, checked and pre-linked mapper component.
pub struct MapperComponent {
    pub(crate) engine: MapperEngine,
    name: String,
    sha256: String,
    version: String,
    kinds: BTreeSet<Kind>,
    imports: Vec<String>,
    pub(crate) pre: InstancePre<GuestState>,
    pub(crate) indices: KindIndices,
}

/// Export indices of each kind interface the component exports, resolved once at load.
#[derive(Default)]
pub(crate) struct KindIndices {
    pub device: Option<v1::exports::proxbox::mapper::device::GuestIndices>,
    pub virtual_machine: Option<v1::exports::proxbox::mapper::virtual_machine::GuestIndices>,
    pub virtual_disk: Option<v1::exports::proxbox::mapper::virtual_disk::GuestIndices>,
    pub storage: Option<v1::exports::proxbox::mapper::storage::GuestIndices>,
    pub backup: Option<v1::exports::proxbox::mapper::backup::GuestIndices>,
    pub snapshot: Option<v1::exports::proxbox::mapper::snapshot::GuestIndices>,
    pub node_interface: Option<v1::exports::proxbox::mapper::node_interface::GuestIndices>,
    pub vm_interface: Option<v1::exports::proxbox::mapper::vm_interface::GuestIndices>,
    pub ip_address: Option<v1::exports::proxbox::mapper::ip_address::GuestIndices>,
}

/// What `mapper check` reports about a component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    /// Name (file name or built-in name).
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
    /// The `proxbox:mapper` version it targets.
    pub wit_version: String,
    /// Kinds it exports.
    pub kinds: Vec<Kind>,
    /// Everything it imports (WASI interfaces get an empty sandbox).
    pub imports: Vec<String>,
}

impl MapperComponent {
    pub(crate) fn new(
        engine: &MapperEngine,
        name: &str,
        bytes: &[u8],
        component: Component,
    ) -> Result<Self, LoadError> {
        let wasm_engine = engine.engine();
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(wasm_engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if let Some(import) = imports
            .iter()
            .find(|i| !(i.starts_with("wasi:") || i.starts_with(&format!("{WIT_PACKAGE}/"))))
        {
            return Err(LoadError::ForbiddenImport {
                component: name.to_string(),
                import: import.clone(),
            });
        }

        let export_names: Vec<String> = ty
            .exports(wasm_engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let (version, kinds) = kinds_and_version(name, &export_names)?;

        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                component: name.to_string(),
                message: format!("{e:#}"),
            })?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            component: name.to_string(),
            message: format!("{e:#}"),
        };
        let mut indices = KindIndices::default();
        for kind in &kinds {
            use v1::exports::proxbox::mapper as x;
            match kind {
                Kind::Device => {
                    indices.device = Some(x::device::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::VirtualMachine => {
                    indices.virtual_machine =
                        Some(x::virtual_machine::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::VirtualDisk => {
                    indices.virtual_disk =
                        Some(x::virtual_disk::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::Storage => {
                    indices.storage = Some(x::storage::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::Backup => {
                    indices.backup = Some(x::backup::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::Snapshot => {
                    indices.snapshot = Some(x::snapshot::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::NodeInterface => {
                    indices.node_interface =
                        Some(x::node_interface::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::VmInterface => {
                    indices.vm_interface =
                        Some(x::vm_interface::GuestIndices::new(&pre).map_err(link_err)?)
                }
                Kind::IpAddress => {
                    indices.ip_address =
                        Some(x::ip_address::GuestIndices::new(&pre).map_err(link_err)?)
                }
            }
        }

        Ok(MapperComponent {
            engine: engine.clone(),
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            version,
            kinds,
            imports,
            pre,
            indices,
        })
    }

    /// Name used in errors and events.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kinds this component exports.
    pub fn kinds(&self) -> &BTreeSet<Kind> {
        &self.kinds
    }

    /// Whether it exports `kind`.
    pub fn exports(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// A description for `mapper check`.
    pub fn info(&self) -> ComponentInfo {
        ComponentInfo {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            wit_version: self.version.clone(),
            kinds: self.kinds.iter().copied().collect(),
            imports: self.imports.clone(),
        }
    }
}

/// The kinds a component exports and the single `proxbox:mapper` version they share.
fn kinds_and_version(
    component: &str,
    exports: &[String],
) -> Result<(String, BTreeSet<Kind>), LoadError> {
    let (major, minor, patch) = v1::VERSION;
    let supported = format!("{major}.{minor}.{patch}");
    let mut kinds = BTreeSet::new();
    let mut version: Option<String> = None;
    for export in exports {
        let Some(rest) = export.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let (interface, found) = rest.split_once('@').unwrap_or((rest, ""));
        let incompatible = |hint| LoadError::IncompatibleVersion {
            component: component.to_string(),
            found: if found.is_empty() {
                "(unversioned)".to_string()
            } else {
                found.to_string()
            },
            supported: supported.clone(),
            hint,
        };
        let mut parts = found.split('.').map(|p| p.parse::<u64>());
        let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => (a, b, c),
            _ => {
                return Err(incompatible(
                    "rebuild it against the WIT package in this host's `wit/` folder",
                ));
            }
        };
        if parsed.0 != major {
            return Err(incompatible(
                "a different major version is a different contract; rebuild it against this host's `wit/`",
            ));
        }
        if (parsed.1, parsed.2) > (minor, patch) {
            return Err(incompatible(
                "it needs a newer host; upgrade proxbox-host or rebuild the mapper against this host's `wit/`",
            ));
        }
        if let Some(v) = &version
            && v != found
        {
            return Err(incompatible(
                "all kinds of one component must come from one package version",
            ));
        }
        version = Some(found.to_string());
        if let Some(kind) = Kind::from_interface(interface) {
            kinds.insert(kind);
        }
    }
    match version {
        Some(version) if !kinds.is_empty() => Ok((version, kinds)),
        _ => Err(LoadError::NoKinds {
            component: component.to_string(),
            exports: if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_current_version_and_collects_kinds() {
        let (version, kinds) = kinds_and_version(
            "c",
            &names(&[
                "proxbox:mapper/device@1.0.0",
                "proxbox:mapper/backup@1.0.0",
                "other:x/y@2.0.0",
            ]),
        )
        .unwrap();
        assert_eq!(version, "1.0.0");
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            vec![Kind::Device, Kind::Backup]
        );
    }

    #[test]
    fn refuses_other_major_and_newer_minor() {
        let err = kinds_and_version("c", &names(&["proxbox:mapper/device@2.0.0"])).unwrap_err();
        assert!(
            err.to_string().contains("targets proxbox:mapper@2.0.0"),
            "{err}"
        );
        let err = kinds_and_version("c", &names(&["proxbox:mapper/device@1.2.0"])).unwrap_err();
        assert!(err.to_string().contains("needs a newer host"), "{err}");
    }

    #[test]
    fn accepts_an_older_minor_version() {
        let (version, kinds) = kinds_and_version(
            "c",
            &names(&[
                "proxbox:mapper/virtual-machine@1.0.0",
                "proxbox:mapper/snapshot@1.0.0",
            ]),
        )
        .unwrap();
        assert_eq!(version, "1.0.0");
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn refuses_component_without_kinds() {
        let err = kinds_and_version("c", &names(&["wasi:cli/run@0.2.0"])).unwrap_err();
        assert!(matches!(err, LoadError::NoKinds { .. }), "{err}");
    }
}
