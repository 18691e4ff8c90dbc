//! The reconciliation golden cases (from the reference plugin's test corpus) against the
//! reconcile engine: which desired VMs are created, left alone or patched, and with what.

use std::collections::BTreeMap;
use std::path::Path;

use proxbox_host::netbox::OverwriteFlags;
use proxbox_host::netbox::reconcile::{self, Desired, KindSpec};
use serde_json::{Map, Value, json};

/// VM identity as the reference keys it: NetBox cluster, Proxmox VMID and guest type.
fn vm_spec(flags: &OverwriteFlags) -> KindSpec {
    KindSpec {
        path: "virtualization/virtual-machines/".into(),
        identity: Box::new(|o: &Map<String, Value>| {
            let cluster = reconcile::normalise(o.get("cluster")?);
            let cf = o.get("custom_fields")?.as_object()?;
            let vmid = cf.get("proxmox_vm_id").filter(|v| !v.is_null())?;
            // Legacy records may lack the type; they then match a desired object without one.
            let kind = cf.get("proxmox_vm_type").cloned().unwrap_or(Value::Null);
            (!cluster.is_null()).then(|| vec![cluster, reconcile::normalise(vmid), kind])
        }),
        owned: flags.vm_fields(),
        merge_tags: true,
        ownership_tag: "proxbox".into(),
    }
}

#[test]
fn reconciliation_golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/netbox/reconciliation");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let flags = OverwriteFlags(
            case["flags"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with("overwrite_"))
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap()))
                .collect::<BTreeMap<_, _>>(),
        );
        let spec = vm_spec(&flags);
        let desired: Vec<Desired> = case["prepared_vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let payload = p["desired_payload"].as_object().unwrap().clone();
                Desired {
                    identity: (spec.identity)(&payload),
                    payload,
                }
            })
            .collect();
        let existing = case["netbox_snapshot"].as_array().unwrap().clone();
        let plan = reconcile::plan(&spec, &desired, &existing);

        let mut methods = vec![String::new(); desired.len()];
        let mut patches = vec![json!({}); desired.len()];
        let mut ids = vec![None; desired.len()];
        for (i, _) in &plan.creates {
            methods[*i] = "CREATE".into();
        }
        for (i, id) in &plan.unchanged {
            methods[*i] = "GET".into();
            ids[*i] = Some(*id);
        }
        for (i, patch) in &plan.updates {
            methods[*i] = "UPDATE".into();
            let mut patch = patch.clone();
            ids[*i] = patch.remove("id").and_then(|v| v.as_u64());
            patches[*i] = Value::Object(patch);
        }
        let expected = &case["expected"];
        assert_eq!(json!(methods), expected["methods"], "{name}: methods");
        assert_eq!(
            json!(patches),
            expected["patch_payloads"],
            "{name}: patch payloads"
        );
        if let Some(existing_ids) = expected.get("existing_ids") {
            assert_eq!(json!(ids), *existing_ids, "{name}: matched ids");
        }
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} golden cases");
}

#[test]
fn delete_candidates_carry_the_ownership_mark() {
    let spec = vm_spec(&OverwriteFlags::default());
    let existing = vec![
        json!({"id": 1, "name": "ours", "cluster": 1, "tags": [{"id": 9, "slug": "proxbox"}],
               "custom_fields": {"proxmox_vm_id": 100, "proxmox_vm_type": "qemu"}}),
        json!({"id": 2, "name": "operator's", "cluster": 1, "tags": [{"id": 3, "slug": "manual"}],
               "custom_fields": {"proxmox_vm_id": 101, "proxmox_vm_type": "qemu"}}),
    ];
    let plan = reconcile::plan(&spec, &[], &existing);
    assert_eq!(plan.delete_candidates, vec![(1, true), (2, false)]);
}

#[test]
fn duplicate_identities_are_reported_not_created_twice() {
    let spec = vm_spec(&OverwriteFlags::default());
    let vm = json!({"name": "a", "cluster": 1, "custom_fields": {"proxmox_vm_id": 5, "proxmox_vm_type": "qemu"}});
    let payload = vm.as_object().unwrap().clone();
    let identity = (spec.identity)(&payload);
    let desired = vec![
        Desired {
            identity: identity.clone(),
            payload: payload.clone(),
        },
        Desired { identity, payload },
    ];
    let plan = reconcile::plan::<Value>(&spec, &desired, &[]);
    assert_eq!(plan.creates.len(), 1);
    assert_eq!(plan.duplicates, vec![1]);
}
