//! Ignite's e2e/zconcurrent_vm_test.go: four `ignite run` at once all succeed.

use crate::util::E2e;

#[test]
fn test_concurrent_vm_creation() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("concurrent");
    let names: Vec<String> = (1..=4)
        .map(|i| format!("e2e-test-concurrent-vm-create-{i}"))
        .collect();
    let image = e2e.image();
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            e2e.std_ignite()
                .args(["run", &format!("--name={name}"), "--ssh", &image])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a concurrent run failed");
    }
    let ps = e2e.ok(&["ps"]);
    for name in &names {
        assert!(ps.lines().any(|l| l.ends_with(name.as_str())), "{ps}");
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    e2e.ok(&rm);
}
