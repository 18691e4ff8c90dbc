//! Purpose-built bad components fail only their own object, with the right reason,
//! and the next object maps fine on the same instance.

mod common;

use std::time::Duration;

use proxbox_host::mapper::v1::Context;
use proxbox_host::mapper::{FailReason, Limits, MapInput, MapOutput, MapperEngine, MapperInstance};

fn context() -> Context {
    common::mapper_context()
}

fn guest(vmid: u32, name: &str) -> MapInput {
    common::mapper_guest(vmid, name)
}

fn limits() -> Limits {
    Limits {
        fuel: 50_000_000,
        wall_time: Duration::from_secs(5),
        memory_bytes: 32 * 1024 * 1024,
        output_bytes: 256 * 1024,
        max_instances: 8,
    }
}

fn misbehaving(limits: Limits) -> MapperInstance {
    let engine = MapperEngine::new(limits, None).expect("engine");
    let component = engine
        .load_file(&common::test_component("misbehaving"))
        .expect("load misbehaving");
    MapperInstance::new(component)
}

/// Map a well-behaved guest and check the result is the mapper's own output.
fn assert_maps_fine(instance: &mut MapperInstance, vmid: u32) {
    let mapped = instance
        .map(&context(), &guest(vmid, "fine"))
        .expect("a good object maps");
    match mapped.output {
        Some(MapOutput::VirtualMachine(vm)) => {
            assert_eq!(vm.name, "fine");
            assert_eq!(vm.description, format!("mapped {vmid}"));
        }
        other => panic!("unexpected output {other:?}"),
    }
    assert!(mapped.fuel_used > 0);
}

fn fail(instance: &mut MapperInstance, name: &str) -> (FailReason, String) {
    let err = instance
        .map(&context(), &guest(666, name))
        .expect_err(&format!("`{name}` must fail"));
    assert_eq!(err.component, "misbehaving.wasm");
    assert_eq!(err.object, format!("qemu/666 \"{name}\" on pve1"));
    let text = err.to_string();
    assert!(
        text.contains("misbehaving.wasm") && text.contains("virtual-machine"),
        "{text}"
    );
    (err.reason, text)
}

#[test]
fn every_bad_behaviour_fails_only_its_object() {
    let mut instance = misbehaving(limits());
    assert_maps_fine(&mut instance, 1);

    let (reason, _) = fail(&mut instance, "loop");
    assert_eq!(reason, FailReason::OutOfFuel { budget: 50_000_000 });
    assert_maps_fine(&mut instance, 2);

    let (reason, _) = fail(&mut instance, "bomb");
    assert_eq!(
        reason,
        FailReason::MemoryLimit {
            limit_bytes: 32 * 1024 * 1024
        }
    );
    assert_maps_fine(&mut instance, 3);

    let (reason, text) = fail(&mut instance, "panic");
    match reason {
        FailReason::Trap { message } => {
            assert!(message.contains("mapper bug on guest 666"), "{message}")
        }
        other => panic!("panic should trap, got {other:?}"),
    }
    assert!(text.contains("trapped"), "{text}");
    assert_maps_fine(&mut instance, 4);

    let (reason, _) = fail(&mut instance, "huge");
    match reason {
        FailReason::OutputTooLarge {
            size_bytes,
            limit_bytes,
        } => {
            assert!(size_bytes > 4 << 20, "{size_bytes}");
            assert_eq!(limit_bytes, 256 * 1024);
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert_maps_fine(&mut instance, 5);

    for (name, what) in [("file", "file:"), ("env", "env:"), ("net", "net:")] {
        let (reason, _) = fail(&mut instance, name);
        match reason {
            FailReason::Rejected { code, message } => {
                assert_eq!(code, "denied");
                assert!(message.starts_with(what), "{message}");
            }
            other => panic!("`{name}` must be denied by the sandbox, got {other:?}"),
        }
        assert_maps_fine(&mut instance, 6);
    }

    let (reason, _) = fail(&mut instance, "sleep");
    match reason {
        FailReason::Trap { message } => assert!(message.contains("may not sleep"), "{message}"),
        other => panic!("sleeping must trap at once, got {other:?}"),
    }
    assert_maps_fine(&mut instance, 7);
}

#[test]
fn mappers_see_a_frozen_clock() {
    let mut instance = misbehaving(limits());
    let mapped = instance
        .map(&context(), &guest(9, "clock"))
        .expect("clock maps");
    match mapped.output {
        Some(MapOutput::VirtualMachine(vm)) => assert_eq!(vm.description, "clock 0"),
        other => panic!("unexpected output {other:?}"),
    }
}

#[test]
fn wall_clock_backstop_stops_a_loop_with_fuel_to_spare() {
    let mut instance = misbehaving(Limits {
        fuel: u64::MAX / 2,
        wall_time: Duration::from_millis(100),
        ..limits()
    });
    let (reason, _) = fail(&mut instance, "loop");
    assert_eq!(reason, FailReason::Timeout { limit_ms: 100 });
    assert_maps_fine(&mut instance, 10);
}
