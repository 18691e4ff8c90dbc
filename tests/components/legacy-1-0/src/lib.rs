//! A virtual-machine mapper built against the frozen `proxbox:mapper@1.0.0` contract
//! (`wit/frozen/1.0.0`), as a site's mapper from before 1.1 was: it must keep loading
//! and mapping on a 1.1 host.

wit_bindgen::generate!({ world: "virtual-machine-mapper", path: "../../../wit/frozen/1.0.0" });

use exports::proxbox::mapper::virtual_machine::{DesiredVirtualMachine, Guest};
use proxbox::mapper::types::{Context, GuestInput, MapperError};

struct Legacy;

impl Guest for Legacy {
    fn map_guest(
        ctx: Context,
        guest: GuestInput,
    ) -> Result<Option<DesiredVirtualMachine>, MapperError> {
        Ok(Some(DesiredVirtualMachine {
            name: format!("legacy-{}", guest.name),
            status: "active".into(),
            cluster: ctx.cluster_name,
            device: None,
            site: None,
            role: None,
            virtual_machine_type: None,
            platform: None,
            tenant: None,
            vcpus: guest.vcpus,
            memory_mib: None,
            disk_mib: None,
            description: String::new(),
            comments: None,
            custom_fields: Vec::new(),
            tags: vec!["Proxbox".into()],
        }))
    }
}

export!(Legacy);
