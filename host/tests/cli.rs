//! The mapper authors' CLI: `mapper test` over the golden corpus, `mapper run`, `mapper check`.

mod common;

use std::path::Path;

use common::{repo_root, run_host};

/// Kinds and quirks the golden corpus must cover (case files that must exist).
const REQUIRED_CASES: &[&str] = &[
    "device/standalone-node",
    "device/clustered-node-online",
    "device/clustered-node-offline",
    "virtual-machine/qemu-memory-as-string",
    "virtual-machine/qemu-memory-as-int",
    "virtual-machine/qemu-agent-fstrim-custom-fields",
    "virtual-machine/qemu-template-bare-resource",
    "virtual-machine/qemu-tags-duplicates-mixed-case",
    "virtual-machine/lxc-rootfs-and-mountpoint",
    "virtual-disk/qemu-ide2-cdrom-iso",
    "virtual-disk/qemu-efidisk0-528K",
    "virtual-disk/qemu-tpmstate0-4M",
    "virtual-disk/qemu-scsi0-1.5T",
    "virtual-disk/qemu-scsi1-bare-bytes",
    "virtual-disk/lxc-rootfs-subvol",
    "virtual-disk/lxc-mp0-bind-mount-skipped",
    "storage/pbs-datastore",
    "backup/vzdump-qemu-vma-zst",
    "backup/pbs-vm-encrypted-verified",
    "snapshot/qemu-current-skipped",
    "snapshot/lxc-with-parent",
    "node-interface/bond-member",
    "node-interface/vlan-subinterface-string-vid",
    "node-interface/ovs-port-of-ovs-bridge",
    "vm-interface/qemu-e1000-tag-trunks-link-down",
    "vm-interface/qemu-mtu-from-bridge",
    "vm-interface/lxc-named-eth0",
    "ip-address/agent-alias-merged-into-parent",
    "ip-address/lxc-dhcp-from-running-container",
    "ip-address/lxc-link-local-skipped",
    "ip-address/primary-first-usable-per-family",
];

#[test]
fn golden_corpus_passes_on_every_default_mapper() {
    let golden = repo_root().join("tests").join("golden");
    for case in REQUIRED_CASES {
        let input = golden.join(format!("{case}.input.json"));
        assert!(input.is_file(), "missing golden case {}", input.display());
    }
    let cache = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) =
        run_host(&["mapper", "test", golden.to_str().unwrap()], cache.path());
    assert_eq!(code, 0, "mapper test failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with("passed, 0 failed, 0 skipped"),
        "{summary}"
    );
    for kind in [
        "device",
        "virtual-machine",
        "virtual-disk",
        "storage",
        "backup",
        "snapshot",
        "node-interface",
        "vm-interface",
        "ip-address",
    ] {
        let passed = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("PASS {kind}/")))
            .count();
        assert!(passed >= 5, "only {passed} passing cases for {kind}");
    }
    // Every passing case reports the fuel it used.
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("PASS"))
            .all(|l| l.contains(" fuel="))
    );
}

#[test]
fn mapper_test_reports_a_wrong_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let golden = repo_root()
        .join("tests")
        .join("golden")
        .join("virtual-machine");
    for name in [
        "qemu-memory-as-string.input.json",
        "qemu-memory-as-string.expected.json",
    ] {
        std::fs::copy(golden.join(name), dir.path().join(name)).expect("copy case");
    }
    let expected = dir.path().join("qemu-memory-as-string.expected.json");
    let text = std::fs::read_to_string(&expected).expect("read");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["value"]["memory_mib"] = serde_json::json!(1);
    std::fs::write(&expected, value.to_string()).expect("write");

    let cache = tempfile::tempdir().expect("tempdir");
    let (code, stdout, _) = run_host(
        &["mapper", "test", dir.path().to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL qemu-memory-as-string"), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn mapper_run_prints_the_mapped_record() {
    let input = repo_root().join("tests/golden/virtual-machine/qemu-memory-as-string.input.json");
    let cache = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = run_host(
        &[
            "mapper",
            "run",
            "--kind",
            "virtual-machine",
            "--input",
            input.to_str().unwrap(),
            "--show-input",
        ],
        cache.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let outcome: serde_json::Value = serde_json::from_str(&stdout).expect("JSON outcome");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(input.with_file_name("qemu-memory-as-string.expected.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(outcome, expected);
    // --show-input prints the normalised input: memory as a number of bytes.
    assert!(stderr.contains("\"memory_bytes\""), "{stderr}");

    let (code, _, stderr) = run_host(
        &[
            "mapper",
            "run",
            "--kind",
            "backup",
            "--input",
            input.to_str().unwrap(),
        ],
        cache.path(),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("does not match the file's kind"),
        "{stderr}"
    );
}

#[test]
fn mapper_check_lists_kinds_version_and_imports() {
    let cache = tempfile::tempdir().expect("tempdir");
    let misbehaving = common::test_component("misbehaving");
    let (code, stdout, stderr) = run_host(
        &["mapper", "check", misbehaving.to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("wit version: proxbox:mapper@1.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("kinds:       virtual-machine"), "{stdout}");
    assert!(stdout.contains("wasi:cli/environment@"), "{stdout}");

    let future = common::test_component("future-major");
    let (code, _, stderr) = run_host(&["mapper", "check", future.to_str().unwrap()], cache.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("targets proxbox:mapper@2.0.0"), "{stderr}");
}

/// Run `mapper test` with an example's component over its `cases/`; the stdout.
fn example_cases_pass(example: &str, component: &Path, cache: &Path) -> String {
    let cases = repo_root().join("examples").join(example).join("cases");
    let (code, stdout, stderr) = run_host(
        &[
            "mapper",
            "test",
            "--component",
            component.to_str().unwrap(),
            cases.to_str().unwrap(),
        ],
        cache,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

#[test]
fn example_site_mapper_passes_its_cases() {
    let example = repo_root().join("examples").join("site-vm-mapper");
    if !Path::new(&example).join("Cargo.toml").is_file() {
        panic!("examples/site-vm-mapper is missing");
    }
    let cache = tempfile::tempdir().expect("tempdir");
    example_cases_pass("site-vm-mapper", &common::example_component(), cache.path());
}

#[test]
fn example_ip_mapper_moves_the_primary_ip_into_the_preferred_subnet() {
    let component = common::example_ip_component();
    let cache = tempfile::tempdir().expect("tempdir");
    let stdout = example_cases_pass("site-ip-mapper", &component, cache.path());
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
    let cases = repo_root()
        .join("examples")
        .join("site-ip-mapper")
        .join("cases");

    // The same guest with the built-in mapper: the primary stays on the first NIC.
    let case = cases.join("primary-from-preferred-subnet.input.json");
    let run = |extra: &[&str]| {
        let mut args = vec!["mapper", "run", "--input", case.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run_host(&args, cache.path());
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON")
    };
    let default = run(&[]);
    let site = run(&["--component", component.to_str().unwrap()]);
    assert_eq!(default["value"]["ipv4"], "192.168.30.5/24");
    assert_eq!(site["value"]["ipv4"], "203.0.113.31/24");
}
