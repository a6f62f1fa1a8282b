//! Ignite's e2e/run_volume_test.go: a block device (a loop device over an ext4 file) given
//! with `--volumes=DEV:/my-vol` keeps what one VM wrote for the next VM. The file is 64 MiB
//! instead of Ignite's 1 GiB.

use std::process::Command;

use crate::util::E2e;

/// A loop device over an ext4 file, detached when dropped.
struct LoopDevice(String);

impl LoopDevice {
    fn new(file: &std::path::Path) -> LoopDevice {
        let ok = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        ok(Command::new("truncate").args(["-s", "64M"]).arg(file));
        ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(file));
        let device = ok(Command::new("losetup").args(["--find", "--show"]).arg(file));
        LoopDevice(device.trim().to_string())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

fn run_volume(vm: &str, runtime: &str, plugin: &str) {
    ignite_testkit::require_program("losetup", "mount");
    let e2e = E2e::new("volume");
    let loop_device = LoopDevice::new(&e2e.host.root().join(format!("{vm}_vol")));
    let volume = format!("--volumes={}:/my-vol", loop_device.0);
    let providers = [
        format!("--runtime={runtime}"),
        format!("--network-plugin={plugin}"),
    ];
    e2e.ok(&[
        &providers[0],
        &providers[1],
        "run",
        &format!("--name={vm}"),
        "--ssh",
        &volume,
        &e2e.image(),
    ]);
    e2e.ok(&["exec", vm, "touch", "/my-vol/hello-world"]);
    e2e.ok(&["stop", vm]);
    let second = format!("{vm}-2");
    e2e.ok(&[
        &providers[0],
        &providers[1],
        "run",
        &format!("--name={second}"),
        "--ssh",
        &volume,
        &e2e.image(),
    ]);
    e2e.ok(&["exec", &second, "stat", "/my-vol/hello-world"]);
    e2e.ok(&["rm", "-f", vm, &second]);
}

#[test]
fn test_volume_with_docker_and_docker_bridge() {
    ignite_testkit::require_root!("booting VMs");
    run_volume(
        "e2e-test-volume-docker-and-docker-bridge",
        "docker",
        "docker-bridge",
    );
}

#[test]
fn test_volume_with_docker_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_volume("e2e-test-volume-docker-and-cni", "docker", "cni");
}

#[test]
fn test_volume_with_containerd_and_cni() {
    ignite_testkit::require_root!("booting VMs");
    run_volume("e2e-test-volume-containerd-and-cni", "containerd", "cni");
}
