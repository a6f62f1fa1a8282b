//! Warm starts through the `ignite` binary, booting real VMs under QEMU (TCG): the first
//! container-mode run of a machine boots cold and has its template built; later runs are
//! restored from it and give exactly what a cold run gives (output, streams apart, exit
//! status, environment, user, working directory); a changed kernel makes a new template;
//! `--cold` boots; templates' VMs never show in `ps`.

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;

/// A command with warm starts on (the test kit turns them off everywhere else).
fn warm(host: &Host) -> assert_cmd::Command {
    let mut cmd = host.ignite();
    cmd.env("IGNITE_WARM_STARTS", "on");
    cmd
}

/// stdout, stderr and exit status of `run --rm` with `args`.
fn run_rm(cmd: &mut assert_cmd::Command, host: &Host, args: &[&str]) -> (String, String, i32) {
    let out = cmd
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "GREETING=warm",
            "-u",
            "0",
            "-w",
            "/tmp",
        ])
        .arg(host.image())
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

const WORKLOAD: &[&str] = &[
    "echo out $GREETING; echo err >&2; id -u; pwd; busybox head -c 8 /dev/urandom | busybox od -An -tx1; exit 3",
];

#[test]
fn warm_runs_give_what_cold_runs_give_and_templates_follow_the_kernel() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args(["image", "import", &host.image()])
        .assert()
        .success();
    // Cold, building the template meanwhile.
    let cold = run_rm(&mut warm(&host), &host, WORKLOAD);
    assert_eq!(cold.2, 3, "{cold:?}");
    assert!(cold.0.starts_with("out warm\n0\n/tmp\n"), "{cold:?}");
    assert_eq!(cold.1, "err\n");
    let first = host.templates(1);
    assert!(first[0].starts_with("ignite-template-"), "{first:?}");
    // The template's VM is gone, and never showed.
    assert!(!host.ps_all().contains("ignite-template-"));

    let hot = run_rm(&mut warm(&host), &host, WORKLOAD);
    assert_eq!(hot.2, cold.2, "{hot:?}");
    assert_eq!(hot.1, cold.1, "{hot:?}");
    // Everything but the random bytes is the same; those differ from the cold run's.
    let head = |s: &str| s.lines().take(3).collect::<Vec<_>>().join("\n");
    assert_eq!(head(&hot.0), head(&cold.0));
    assert_ne!(hot.0, cold.0);

    // A detached warm VM says where it came from; exec reaches it.
    warm(&host)
        .args(["run", "--name", "w1", "--network", "none", &host.image()])
        .arg("echo up; exec busybox sleep 1000")
        .assert()
        .success();
    let w1 = host.vm("w1");
    assert_eq!(w1.status.restored_from.as_deref(), Some(first[0].as_str()));
    host.wait_for_log("w1", "up");
    let exec = host
        .ignite()
        .args(["exec", "w1", "busybox", "hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "w1");
    // --cold boots.
    warm(&host)
        .args([
            "run",
            "--cold",
            "--name",
            "c1",
            "--network",
            "none",
            &host.image(),
        ])
        .arg("exec busybox sleep 1000")
        .assert()
        .success();
    assert_eq!(host.vm("c1").status.restored_from, None);
    for vm in ["w1", "c1"] {
        host.ignite().args(["rm", "-f", vm]).assert().success();
    }

    // The kernel imported again: its template goes, the next run boots cold and a new
    // template is built, which the run after starts from.
    host.ignite()
        .args(["kernel", "import", "--pull"])
        .arg(ignite_testkit::kernel_deb())
        .assert()
        .success();
    warm(&host)
        .args(["run", "--name", "k1", "--network", "none", &host.image()])
        .arg("exec busybox sleep 1000")
        .assert()
        .success();
    assert_eq!(host.vm("k1").status.restored_from, None);
    let second = host.templates(1);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    warm(&host)
        .args(["run", "--name", "k2", "--network", "none", &host.image()])
        .arg("exec busybox sleep 1000")
        .assert()
        .success();
    assert_eq!(
        host.vm("k2").status.restored_from.as_deref(),
        Some(second[0].as_str())
    );
    for vm in ["k1", "k2"] {
        host.ignite().args(["rm", "-f", vm]).assert().success();
    }
    host.ignite()
        .args(["snapshot", "rm", &second[0]])
        .assert()
        .success();
    let left: Vec<_> = std::fs::read_dir(host.state().join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty());
}
