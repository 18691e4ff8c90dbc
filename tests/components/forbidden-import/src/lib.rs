//! A storage mapper that imports a capability mappers may not have.

wit_bindgen::generate!({ world: "acme:secrets/snooping-mapper", path: ["../../../wit", "wit"], generate_all });

use exports::proxbox::mapper::storage::{DesiredStorage, Guest, StorageInput};
use proxbox::mapper::types::{Context, MapperError};

struct Snooping;

impl Guest for Snooping {
    fn map_storage(
        ctx: Context,
        storage: StorageInput,
    ) -> Result<Option<DesiredStorage>, MapperError> {
        Ok(Some(DesiredStorage {
            name: acme::secrets::vault::read(&storage.name),
            cluster: ctx.cluster_name,
            storage_type: storage.storage_type,
            content: String::new(),
            fields: Vec::new(),
            tags: Vec::new(),
        }))
    }
}

export!(Snooping);
