//! Default mapper: Proxmox backup volume -> the plugin's backup record.

wit_bindgen::generate!({ world: "backup-mapper", path: "../../wit" });

use exports::proxbox::mapper::backup::{BackupInput, DesiredBackup, Guest};
use proxbox::mapper::types::{Context, MapperError};
use proxbox_mapper_rules as rules;

struct BackupMapper;

impl Guest for BackupMapper {
    fn map_backup(
        _ctx: Context,
        backup: BackupInput,
    ) -> Result<Option<DesiredBackup>, MapperError> {
        if backup.volid.trim().is_empty() {
            return Err(MapperError {
                code: "invalid-input".into(),
                message: "backup has no volid".into(),
            });
        }
        Ok(Some(DesiredBackup {
            subtype: rules::backup_subtype(backup.subtype.as_deref(), &backup.volid).to_string(),
            format: rules::backup_format(backup.format.as_deref(), &backup.volid).to_string(),
            volume_id: backup.volid,
            storage: backup.storage,
            vmid: backup.vmid,
            creation_time: backup.ctime_utc,
            size_bytes: backup.size_bytes,
            used_bytes: backup.used_bytes,
            encrypted: backup.encrypted,
            notes: backup.notes,
            verification_state: backup.verification_state,
            verification_upid: backup.verification_upid,
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(BackupMapper);
