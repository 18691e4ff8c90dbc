//! Default mapper: Proxmox guest snapshot -> the plugin's snapshot record.

wit_bindgen::generate!({ world: "snapshot-mapper", path: "../../wit" });

use exports::proxbox::mapper::snapshot::{DesiredSnapshot, Guest, SnapshotInput};
use proxbox::mapper::types::{Context, GuestType, MapperError};
use proxbox_mapper_rules as rules;

struct SnapshotMapper;

impl Guest for SnapshotMapper {
    fn map_snapshot(
        _ctx: Context,
        snapshot: SnapshotInput,
    ) -> Result<Option<DesiredSnapshot>, MapperError> {
        // `current` is Proxmox's "you are here" marker, not a snapshot.
        if snapshot.name == "current" {
            return Ok(None);
        }
        if snapshot.name.trim().is_empty() {
            return Err(MapperError {
                code: "invalid-input".into(),
                message: "snapshot has no name".into(),
            });
        }
        let subtype = match snapshot.guest_type {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        };
        Ok(Some(DesiredSnapshot {
            name: snapshot.name,
            vmid: snapshot.vmid,
            node: snapshot.node,
            description: snapshot.description.unwrap_or_default(),
            parent: snapshot.parent.filter(|p| p != "current" && !p.is_empty()),
            snaptime: snapshot.snaptime_utc,
            subtype: subtype.to_string(),
            status: "active".to_string(),
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(SnapshotMapper);
