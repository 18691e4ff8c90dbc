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

/// Objects mapped per blocking task: only one chunk's inputs exist at a time.
const CHUNK: usize = 256;

/// Mapper inputs produced lazily, as they are mapped. Boxed: an iterator whose closures
/// borrow the stage's guests would otherwise be part of the stage's future, and rustc
/// cannot prove such futures `Send` (rust-lang/rust#110338). Inputs already built can be
/// passed as they are (a `Vec`).
pub type Inputs<'a> = Box<dyn Iterator<Item = (Context, MapInput)> + Send + 'a>;

/// Map `inputs` of `kind`, in order. The inputs are built (the iterator advanced) and
/// mapped [`CHUNK`] at a time, so a stage given a lazy iterator never holds the mapper
/// inputs of a whole estate at once (a guest's input is copied into each of its disks').
pub async fn map_batch<I>(mappers: Arc<MapperSet>, kind: Kind, inputs: I) -> Vec<MapResult>
where
    I: IntoIterator<Item = (Context, MapInput)>,
    I::IntoIter: Send,
{
    let mut inputs = inputs.into_iter();
    let mut out = Vec::new();
    loop {
        let chunk: Vec<(Context, MapInput)> = inputs.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            return out;
        }
        let mappers = mappers.clone();
        let mapped = tokio::task::spawn_blocking(move || {
            let mut instance = mappers.instance(kind);
            chunk
                .iter()
                .map(|(ctx, input)| instance.map(ctx, input).map(|m| m.output))
                .collect::<Vec<MapResult>>()
        })
        .await
        .unwrap_or_else(|e| panic!("mapping task failed: {e}"));
        out.extend(mapped);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::v1::GuestType;
    use crate::mapper::{Limits, MapperEngine};
    use serde_json::json;

    fn context() -> Context {
        Context {
            endpoint_id: 1,
            endpoint_name: "pve".into(),
            cluster_name: "pve".into(),
            cluster_mode: ClusterMode::Cluster,
            node: "pve1".into(),
            site_hint: None,
            tenant_hint: None,
            params: Vec::new(),
            now: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn inputs_spanning_several_chunks_are_mapped_once_each_in_order() {
        let engine = MapperEngine::new(Limits::default(), None).expect("engine");
        let mappers = Arc::new(MapperSet::load(&engine, &Default::default()).expect("mappers"));
        let count = 2 * CHUNK + 3;
        let produced = std::sync::atomic::AtomicUsize::new(0);
        let inputs: Inputs<'_> = Box::new((0..count).map(|i| {
            produced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let entry = json!({"name": format!("snap-{i}"), "snaptime": 1_700_000_000 + i});
            let input = crate::normalize::snapshot(&entry, 100, GuestType::Qemu, "pve1")
                .expect("snapshot input");
            (context(), MapInput::Snapshot(input))
        }));
        let mapped = map_batch(mappers, Kind::Snapshot, inputs).await;
        assert_eq!(produced.into_inner(), count, "each input built once");
        let names: Vec<String> = mapped
            .into_iter()
            .map(|result| match result {
                Ok(Some(MapOutput::Snapshot(snapshot))) => snapshot.name,
                other => panic!("unexpected mapping result: {other:?}"),
            })
            .collect();
        let expected: Vec<String> = (0..count).map(|i| format!("snap-{i}")).collect();
        assert_eq!(names, expected);
    }

    #[tokio::test]
    async fn no_inputs_map_to_nothing() {
        let engine = MapperEngine::new(Limits::default(), None).expect("engine");
        let mappers = Arc::new(MapperSet::load(&engine, &Default::default()).expect("mappers"));
        assert!(
            map_batch(mappers, Kind::Snapshot, Vec::new())
                .await
                .is_empty()
        );
    }
}
