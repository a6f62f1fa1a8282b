//! Ignite's e2e/run_test.go: `ignite --runtime=R --network-plugin=P run`, a VM's network
//! (`exec VM curl`, here a page from the namespace's web server), `--id-prefix`, and a
//! VM run without a name found again by its label.

use crate::util::E2e;

fn run_with_runtime_and_network_plugin(vm: &str, runtime: &str, plugin: &str) {
    let e2e = E2e::new("run");
    e2e.ok(&[
        &format!("--runtime={runtime}"),
        &format!("--network-plugin={plugin}"),
        "run",
        &format!("--name={vm}"),
        &e2e.image(),
    ]);
    e2e.ok(&["rm", "-f", vm]);
    assert!(!e2e.ok(&["ps", "-a"]).contains(vm));
}

#[test]
fn test_ignite_run_with_docker_and_docker_bridge() {
    ignite_testkit::require_root!("booting VMs");
    run_with_runtime_and_network_plugin(
        "e2e-test-ignite-run-docker-and-docker-bridge",
        "docker",
        "docker-bridge",
    );
}

#[test]
fn test_ignite_run_with_docker_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_with_runtime_and_network_plugin("e2e-test-ignite-run-docker-and-cni", "docker", "cni");
}

#[test]
fn test_ignite_run_with_containerd_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_with_runtime_and_network_plugin(
        "e2e-test-ignite-run-containerd-and-cni",
        "containerd",
        "cni",
    );
}

fn run_curl(vm: &str, runtime: &str, plugin: &str, extra_run_args: &[&str]) {
    let e2e = E2e::new("curl");
    let _web = e2e.web_server();
    let mut args = vec![
        format!("--runtime={runtime}"),
        format!("--network-plugin={plugin}"),
        "run".into(),
        format!("--name={vm}"),
        e2e.image(),
        // Flags after the image, as Ignite's tests write them.
        "--ssh".into(),
    ];
    args.extend(extra_run_args.iter().map(|a| a.to_string()));
    e2e.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    e2e.curl(vm);
    e2e.ok(&["rm", "-f", vm]);
}

#[test]
fn test_curl_with_docker_and_docker_bridge() {
    ignite_testkit::require_root!("booting VMs");
    run_curl(
        "e2e-test-curl-docker-and-docker-bridge",
        "docker",
        "docker-bridge",
        &[],
    );
}

#[test]
fn test_curl_with_docker_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_curl("e2e-test-curl-docker-and-cni", "docker", "cni", &[]);
}

#[test]
fn test_curl_with_containerd_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_curl("e2e-test-curl-containerd-and-cni", "containerd", "cni", &[]);
}

#[test]
fn test_id_prefix_curl_with_docker_and_docker_bridge() {
    ignite_testkit::require_root!("booting VMs");
    run_curl(
        "e2e-test-curl-docker-and-docker-bridge",
        "docker",
        "docker-bridge",
        &["--id-prefix=e2e"],
    );
}

#[test]
fn test_id_prefix_curl_with_docker_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_curl(
        "e2e-test-curl-docker-and-cni",
        "docker",
        "cni",
        &["--id-prefix=e2e"],
    );
}

#[test]
fn test_id_prefix_curl_with_containerd_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_curl(
        "e2e-test-curl-containerd-and-cni",
        "containerd",
        "cni",
        &["--id-prefix=e2e"],
    );
}

#[test]
fn test_run_without_name() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("noname");
    let (key, value) = ("testName", "TestRunWithoutName");
    e2e.ok(&["run", &e2e.image(), "--label", &format!("{key}={value}")]);
    let name = e2e.ok(&[
        "ps",
        &format!("--filter={{{{.ObjectMeta.Labels}}}}=~{key}:{value}"),
        "--template={{.ObjectMeta.Name}}",
    ]);
    let name = name.trim();
    assert!(!name.is_empty() && !name.contains('\n'), "{name:?}");
    e2e.ok(&["rm", "-f", name]);
}
