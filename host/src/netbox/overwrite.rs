//! The plugin's `overwrite_*` flags: which fields of existing objects a sync may change.

use std::collections::{BTreeMap, BTreeSet};

/// Flag values by name (`overwrite_vm_role`, ...); a flag not given is `true`, as in the plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverwriteFlags(pub BTreeMap<String, bool>);

impl OverwriteFlags {
    /// Whether `flag` allows overwriting.
    pub fn allows(&self, flag: &str) -> bool {
        self.0.get(flag).copied().unwrap_or(true)
    }

    /// The VM fields a sync owns under these flags.
    pub fn vm_fields(&self) -> BTreeSet<String> {
        let mut fields: BTreeSet<String> = [
            "name",
            "status",
            "cluster",
            "device",
            "site",
            "vcpus",
            "memory",
            "disk",
            "start_on_boot",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for (flag, field) in [
            ("overwrite_vm_role", "role"),
            ("overwrite_vm_type", "virtual_machine_type"),
            ("overwrite_vm_tags", "tags"),
            ("overwrite_vm_description", "description"),
            ("overwrite_vm_custom_fields", "custom_fields"),
        ] {
            if self.allows(flag) {
                fields.insert(field.to_string());
            }
        }
        fields
    }

    /// The device fields a sync owns under these flags (`site` never: devices stay where they are).
    pub fn device_fields(&self) -> BTreeSet<String> {
        let mut fields: BTreeSet<String> =
            ["name", "cluster"].into_iter().map(String::from).collect();
        for (flag, field) in [
            ("overwrite_device_role", "role"),
            ("overwrite_device_type", "device_type"),
            ("overwrite_device_tags", "tags"),
            ("overwrite_device_status", "status"),
            ("overwrite_device_description", "description"),
            ("overwrite_device_custom_fields", "custom_fields"),
        ] {
            if self.allows(flag) {
                fields.insert(field.to_string());
            }
        }
        fields
    }
}
