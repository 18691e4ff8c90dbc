//! Loading components: version checks, forbidden imports, core modules, the artefact cache,
//! and per-kind overrides of the built-in mappers.

mod common;

use std::collections::BTreeMap;

use proxbox_host::mapper::{
    Kind, Limits, LoadError, MapOutput, MapperEngine, MapperInstance, MapperSet, default_component,
};

fn engine() -> MapperEngine {
    MapperEngine::new(Limits::default(), None).expect("engine")
}

#[test]
fn refuses_an_incompatible_major_version() {
    let err = engine()
        .load_file(&common::test_component("future-major"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, LoadError::IncompatibleVersion { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("proxbox:mapper@2.0.0") && text.contains("proxbox:mapper@1.1.0"),
        "{text}"
    );
}

#[test]
fn a_component_built_against_1_0_loads_and_maps_beside_1_1_defaults() {
    let engine = engine();
    let legacy = common::test_component("legacy-1-0");
    let component = engine.load_file(&legacy).expect("a 1.0 component loads");
    assert_eq!(component.info().wit_version, "1.0.0");
    assert_eq!(
        component.kinds().iter().copied().collect::<Vec<_>>(),
        vec![Kind::VirtualMachine]
    );
    let overrides = BTreeMap::from([(Kind::VirtualMachine, legacy)]);
    let set = MapperSet::load(&engine, &overrides).expect("mapper set");
    assert_eq!(
        set.component(Kind::VirtualMachine).info().wit_version,
        "1.0.0"
    );
    assert_eq!(set.component(Kind::IpAddress).info().wit_version, "1.1.0");
    let mut instance = MapperInstance::new(set.component(Kind::VirtualMachine).clone());
    let mapped = instance
        .map(&common::mapper_context(), &common::mapper_guest(7, "web"))
        .expect("maps");
    match mapped.output {
        Some(MapOutput::VirtualMachine(vm)) => assert_eq!(vm.name, "legacy-web"),
        other => panic!("expected a VM, got {other:?}"),
    }
}

#[test]
fn refuses_imports_beyond_wasi() {
    let err = engine()
        .load_file(&common::test_component("forbidden-import"))
        .map(|_| ())
        .unwrap_err();
    match err {
        LoadError::ForbiddenImport { import, .. } => assert_eq!(import, "acme:secrets/vault@0.1.0"),
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn refuses_core_modules_and_garbage() {
    let core = b"\0asm\x01\0\0\0";
    let err = engine().load("core.wasm", core).map(|_| ()).unwrap_err();
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"));
    let err = engine()
        .load("junk.wasm", b"not wasm at all")
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

#[test]
fn builtin_defaults_each_export_their_kind() {
    let engine = engine();
    for kind in Kind::ALL {
        let (name, bytes) = default_component(kind);
        let component = engine.load(name, bytes).expect("built-in loads");
        assert_eq!(
            component.kinds().iter().copied().collect::<Vec<_>>(),
            vec![kind],
            "{name}"
        );
        assert_eq!(component.info().wit_version, "1.1.0");
        assert!(
            component
                .info()
                .imports
                .iter()
                .all(|i| i.starts_with("wasi:") || i.starts_with("proxbox:mapper/"))
        );
    }
}

#[test]
fn compiled_components_are_cached_by_content_and_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let (name, bytes) = default_component(Kind::Backup);

    let first = MapperEngine::new(Limits::default(), Some(cache_dir.clone())).expect("engine");
    first.load(name, bytes).expect("compile and store");
    let entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .expect("cache dir")
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one artefact per component");
    let entry = entries[0].path();
    let stored = std::fs::metadata(&entry)
        .expect("entry")
        .modified()
        .expect("mtime");
    assert!(
        entry
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".cwasm")
    );

    // A second engine (a later process) loads the artefact instead of compiling again.
    let second = MapperEngine::new(Limits::default(), Some(cache_dir.clone())).expect("engine");
    let component = second.load(name, bytes).expect("load from cache");
    assert!(component.exports(Kind::Backup));
    let after = std::fs::metadata(&entry)
        .expect("entry")
        .modified()
        .expect("mtime");
    assert_eq!(
        stored, after,
        "the cached artefact was reused, not rewritten"
    );

    // A corrupt artefact is ignored and replaced.
    std::fs::write(&entry, b"garbage").expect("corrupt");
    second
        .load(name, bytes)
        .expect("recompiles over a corrupt entry");
    assert_ne!(std::fs::read(&entry).expect("entry"), b"garbage");

    // Other bytes get another entry.
    let (name, bytes) = default_component(Kind::Snapshot);
    second.load(name, bytes).expect("second component");
    assert_eq!(std::fs::read_dir(&cache_dir).expect("cache dir").count(), 2);
}

#[test]
fn overrides_replace_one_kind_and_must_export_it() {
    let engine = engine();
    let misbehaving = common::test_component("misbehaving");
    let overrides = BTreeMap::from([(Kind::VirtualMachine, misbehaving.clone())]);
    let set = MapperSet::load(&engine, &overrides).expect("mapper set");
    assert_eq!(
        set.component(Kind::VirtualMachine).name(),
        "misbehaving.wasm"
    );
    assert_eq!(
        set.component(Kind::Device).name(),
        "builtin:proxbox_mapper_device.wasm"
    );

    let overrides = BTreeMap::from([(Kind::Device, misbehaving)]);
    let err = MapperSet::load(&engine, &overrides)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::MissingKind {
                kind: Kind::Device,
                ..
            }
        ),
        "{err}"
    );
}
