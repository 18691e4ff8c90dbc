//! Default mapper: one guest disk -> NetBox virtual disk.

wit_bindgen::generate!({ world: "virtual-disk-mapper", path: "../../wit" });

use exports::proxbox::mapper::virtual_disk::{DesiredVirtualDisk, Guest};
use proxbox::mapper::types::{Context, DiskInput, GuestInput, MapperError};
use proxbox_mapper_rules as rules;

struct VirtualDiskMapper;

impl Guest for VirtualDiskMapper {
    fn map_disk(
        _ctx: Context,
        _guest: GuestInput,
        disk: DiskInput,
    ) -> Result<Option<DesiredVirtualDisk>, MapperError> {
        if disk.cdrom {
            let description = match disk.volume.as_str() {
                "" | "none" | "cdrom" => "CD-ROM drive".to_string(),
                iso => format!("CD-ROM drive | ISO: {iso}"),
            };
            return Ok(Some(DesiredVirtualDisk {
                name: disk.key,
                size_mib: 0,
                storage: None,
                description,
                custom_fields: Vec::new(),
                tags: rules::tags_with_owner([]),
            }));
        }
        // A passthrough device (`/dev/sdb`) has no size to report: not synced.
        let Some(size) = disk.size_bytes else {
            return Ok(None);
        };
        let storage = disk.storage.clone();
        let format = rules::disk_format(disk.format.as_deref(), &disk.volume);
        let description = match (&storage, &format) {
            (Some(s), Some(f)) => format!("Storage: {s} | Format: {f}"),
            (Some(s), None) => format!("Storage: {s}"),
            (None, Some(f)) => format!("Volume: {} | Format: {f}", disk.volume),
            (None, None) => format!("Volume: {}", disk.volume),
        };
        Ok(Some(DesiredVirtualDisk {
            name: disk.key,
            size_mib: rules::disk_bytes_to_mib(size),
            storage,
            description,
            custom_fields: Vec::new(),
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(VirtualDiskMapper);
