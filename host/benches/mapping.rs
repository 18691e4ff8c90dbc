//! Per-object mapping cost of each built-in mapper, on a reused instance (the sync's
//! steady state) and on a fresh instance per object (the cost after a failure).
//!
//! Inputs are golden cases, so the objects are realistic. Run with
//! `cargo bench -p proxbox-host --bench mapping`.

use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use proxbox_host::cases::ObjectFile;
use proxbox_host::mapper::{
    Kind, Limits, MapperComponent, MapperEngine, MapperInstance, default_component,
};

/// One representative golden case per kind.
const CASES: [(Kind, &str); 6] = [
    (Kind::Device, "device/clustered-node-online"),
    (Kind::VirtualMachine, "virtual-machine/qemu-every-qemu-bus"),
    (Kind::VirtualDisk, "virtual-disk/qemu-scsi0-lvm-raw"),
    (Kind::Storage, "storage/pbs-datastore"),
    (Kind::Backup, "backup/pbs-vm-encrypted-verified"),
    (Kind::Snapshot, "snapshot/qemu-chained-parent"),
];

fn load(engine: &MapperEngine, kind: Kind) -> Arc<MapperComponent> {
    let (name, bytes) = default_component(kind);
    engine.load(name, bytes).expect("built-in mapper loads")
}

fn bench_mapping(c: &mut Criterion) {
    let engine = MapperEngine::new(Limits::default(), None).expect("engine");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    for (kind, case) in CASES {
        let file =
            ObjectFile::read(&golden.join(format!("{case}.input.json"))).expect("golden case");
        let (ctx, input) = file.prepare(kind).expect("case normalises");
        let component = load(&engine, kind);

        let mut group = c.benchmark_group(kind.interface());
        let mut reused = MapperInstance::new(Arc::clone(&component));
        group.bench_function("reused-instance", |b| {
            b.iter(|| reused.map(&ctx, &input).expect("maps"));
        });
        group.bench_function("fresh-instance", |b| {
            b.iter_batched(
                || MapperInstance::new(Arc::clone(&component)),
                |mut instance| instance.map(&ctx, &input).expect("maps"),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("normalise-and-map", |b| {
            b.iter(|| {
                let (ctx, input) = file.prepare(kind).expect("case normalises");
                reused.map(&ctx, &input).expect("maps")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench_mapping);
criterion_main!(benches);
