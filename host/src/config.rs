//! The host's configuration file (`serve --config FILE` / `PROXBOX_CONFIG`), TOML:
//!
//! ```toml
//! [mappers]                       # replace built-in mappers, by kind
//! virtual-machine = "site_vm_mapper.wasm"   # relative to this file
//!
//! [mapper-params]                 # passed to every mapper in `context.params`, in order
//! default-site = "lab"
//! role-qemu = "server"
//! ```
//!
//! Flags and environment variables add to it: `--mapper KIND=PATH` (`PROXBOX_MAPPERS`)
//! replaces a file entry of the same kind, `--mapper-param KEY=VALUE`
//! (`PROXBOX_MAPPER_PARAMS`) comes after the file's parameters (a later entry wins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::mapper::Kind;

/// What the file configures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    /// Mapper components by kind (paths resolved against the file's directory).
    pub mappers: BTreeMap<Kind, PathBuf>,
    /// Mapper parameters, in file order.
    pub mapper_params: Vec<(String, String)>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML or has unknown keys or kinds.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FileConfig {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        FileConfig::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse TOML text; relative mapper paths are joined to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<FileConfig, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut config = FileConfig::default();
        for (section, value) in table {
            let entries = value
                .as_table()
                .ok_or_else(|| format!("`{section}` must be a table"))?;
            match section.as_str() {
                "mappers" => {
                    for (kind, path) in entries {
                        let kind: Kind = kind.parse()?;
                        let path = path
                            .as_str()
                            .ok_or_else(|| format!("mappers.{kind}: expected a path string"))?;
                        config.mappers.insert(kind, base.join(path));
                    }
                }
                "mapper-params" => {
                    for (key, value) in entries {
                        let value = match value {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(_)
                            | toml::Value::Boolean(_)
                            | toml::Value::Float(_) => value.to_string(),
                            _ => return Err(format!("mapper-params.{key}: expected a scalar")),
                        };
                        config.mapper_params.push((key.clone(), value));
                    }
                }
                other => {
                    return Err(format!(
                        "unknown section `{other}` (expected `mappers`, `mapper-params`)"
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// Parse `KEY=VALUE`.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("empty key in `{text}`"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_mappers_and_params_in_order() {
        let config = FileConfig::parse(
            "[mappers]\nvirtual-machine = \"m/site.wasm\"\n\n[mapper-params]\nz = \"last\"\na = 1\nflag = true\n",
            Path::new("/etc/proxbox"),
        )
        .expect("config");
        assert_eq!(
            config.mappers[&Kind::VirtualMachine],
            PathBuf::from("/etc/proxbox/m/site.wasm")
        );
        assert_eq!(
            config.mapper_params,
            vec![
                ("z".to_string(), "last".to_string()),
                ("a".to_string(), "1".to_string()),
                ("flag".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let base = Path::new(".");
        assert!(
            FileConfig::parse("[mappers]\nvm = \"x.wasm\"", base)
                .unwrap_err()
                .contains("vm")
        );
        assert!(
            FileConfig::parse("[mapper]\n", base)
                .unwrap_err()
                .contains("unknown section")
        );
        assert!(FileConfig::parse("[mappers]\ndevice = 3", base).is_err());
        assert!(FileConfig::parse("not toml =", base).is_err());
        assert_eq!(parse_param("a = b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_param("=x").is_err());
    }
}
