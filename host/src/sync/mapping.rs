//! Running a mapper over a batch of objects, off the async runtime (mapping is CPU work
//! inside wasmtime). One instance per batch, reused across objects; a failing object
//! gets a fresh instance for the next one (see [`crate::mapper::MapperInstance`]).

use std::sync::Arc;

use crate::mapper::v1::{ClusterMode, Context};
use crate::mapper::{Kind, MapError, MapInput, MapOutput, MapperSet};
use crate::server::sessions::{Session, SessionMode};

/// One object's mapping: the desired record, `None` (the mapper chose not to sync it), or
/// why it failed.
pub type MapResult = Result<Option<MapOutput>, MapError>;

/// Map `inputs` of `kind`, in order.
pub async fn map_batch(
    mappers: Arc<MapperSet>,
    kind: Kind,
    inputs: Vec<(Context, MapInput)>,
) -> Vec<MapResult> {
    if inputs.is_empty() {
        return Vec::new();
    }
    tokio::task::spawn_blocking(move || {
        let mut instance = mappers.instance(kind);
        inputs
            .iter()
            .map(|(ctx, input)| instance.map(ctx, input).map(|m| m.output))
            .collect()
    })
    .await
    .unwrap_or_else(|e| panic!("mapping task failed: {e}"))
}

/// The mapper context of objects read through `session`, on `node`.
pub fn context(session: &Session, node: &str, params: &[(String, String)], now: &str) -> Context {
    let endpoint = &session.endpoint;
    Context {
        endpoint_id: u64::try_from(endpoint.id).unwrap_or_default(),
        endpoint_name: endpoint.name.clone(),
        cluster_name: session.name.clone(),
        cluster_mode: match session.mode {
            SessionMode::Standalone => ClusterMode::Standalone,
            SessionMode::Cluster | SessionMode::Restricted => ClusterMode::Cluster,
        },
        node: node.to_string(),
        site_hint: endpoint.site_slug.clone().filter(|s| !s.is_empty()),
        tenant_hint: endpoint.tenant_slug.clone().filter(|s| !s.is_empty()),
        params: params.to_vec(),
        now: now.to_string(),
    }
}
