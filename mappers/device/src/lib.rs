//! Default mapper: Proxmox node -> NetBox device, with its cluster.

wit_bindgen::generate!({ world: "device-mapper", path: "../../wit" });

use exports::proxbox::mapper::device::{DesiredCluster, DesiredDevice, Guest, NodeInput};
use proxbox::mapper::types::{ClusterMode, Context, MapperError};
use proxbox_mapper_rules as rules;

struct DeviceMapper;

impl Guest for DeviceMapper {
    fn map_node(ctx: Context, node: NodeInput) -> Result<Option<DesiredDevice>, MapperError> {
        if node.name.trim().is_empty() {
            return Err(MapperError {
                code: "invalid-input".into(),
                message: "node has no name".into(),
            });
        }
        let standalone = matches!(node.cluster.mode, ClusterMode::Standalone);
        let mode = rules::cluster_type_slug(standalone);
        let custom_fields = if rules::param_flag(&ctx.params, "custom-fields", false) {
            vec![(
                "proxmox_last_updated".to_string(),
                rules::json_string(&ctx.now),
            )]
        } else {
            Vec::new()
        };
        let cluster = DesiredCluster {
            name: node.cluster.name.clone(),
            cluster_type: mode.to_string(),
            description: format!("Proxmox {mode} cluster."),
            site: ctx.site_hint.clone(),
            tenant: ctx.tenant_hint.clone(),
            custom_fields: custom_fields.clone(),
            tags: rules::tags_with_owner([]),
        };
        Ok(Some(DesiredDevice {
            status: rules::node_status(node.online).to_string(),
            description: format!("Proxmox Node {}", node.name),
            name: node.name,
            site: ctx.site_hint,
            role: "proxmox-node".into(),
            device_type: "Proxmox Generic Device".into(),
            manufacturer: "proxmox".into(),
            platform: None,
            tenant: ctx.tenant_hint,
            serial: None,
            cluster: Some(cluster),
            custom_fields,
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(DeviceMapper);
