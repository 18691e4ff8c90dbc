//! A storage mapper built against proxbox:mapper@2.0.0, which this host does not support.

wit_bindgen::generate!({ world: "storage-mapper", path: "wit" });

struct FutureMajor;

impl exports::proxbox::mapper::storage::Guest for FutureMajor {
    fn map_storage(name: String) -> Result<Option<String>, String> {
        Ok(Some(name))
    }
}

export!(FutureMajor);
