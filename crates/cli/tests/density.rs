//! Many small VMs on one host, through the `ignite` binary, booting real VMs under QEMU
//! (TCG): memory a guest frees goes back to the host through the balloon (free page
//! reporting), the host memory and the guest's free memory are shown, and 64 VMs started
//! 8 at a time on the bridge network (in a network namespace the test creates) each get
//! their own address and answer `exec`, through concurrent `ps`, a restart of `ignited`
//! and a concurrent `rm -f` of all of them that leaves nothing behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::netns::Netns;

/// The VMM's resident memory in bytes (from `ignite inspect`, which reads it live).
fn vmm_resident(host: &Host, vm: &str) -> u64 {
    host.vm(vm)
        .status
        .memory
        .unwrap_or_else(|| panic!("{vm} shows no memory: is it running?"))
        .vmm_resident_bytes
}

#[test]
fn memory_a_guest_frees_goes_back_to_the_host_and_is_shown() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.run_small("m1", &[], "busybox sleep 100000")
        .env("IGNITE_TCG_TB_SIZE", "48")
        .assert()
        .success();
    // The machine has the balloon and, under TCG, the translation cache asked for.
    let uid = host.vm("m1").metadata.uid.unwrap().to_string();
    let cmdline = std::fs::read(host.state().join("vms").join(&uid).join("vmm.cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("virtio-balloon-device,id=balloon0,free-page-reporting=on"),
        "{cmdline}"
    );
    assert!(cmdline.contains("-accel tcg,tb-size=48 "), "{cmdline}");
    // ignite-init loaded the guest's balloon driver and set small reporting blocks.
    let guest = host.sh(
        "m1",
        "ls /sys/bus/virtio/drivers/virtio_balloon | grep -c virtio; cat /sys/module/page_reporting/parameters/page_reporting_order",
    );
    let lines: Vec<&str> = guest.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"1"),
        "no balloon device bound: {guest}"
    );
    assert!(
        lines
            .get(1)
            .and_then(|o| o.parse::<u32>().ok())
            .is_some_and(|o| o < 9),
        "the reporting order is the kernel's default: {guest}"
    );
    // An idle guest is tickless: its TSC stays the clocksource and it takes far fewer timer
    // interrupts than the periodic tick's 250 a second (1250 in 5 s). Under a loaded CI
    // host a just-booted guest took 253 in 5 s: the bound is half the periodic rate.
    let timers = host.sh(
        "m1",
        "cat /sys/devices/system/clocksource/clocksource0/current_clocksource; grep LOC /proc/interrupts; sleep 5; grep LOC /proc/interrupts",
    );
    let lines: Vec<&str> = timers.lines().collect();
    assert_eq!(lines.first(), Some(&"tsc"), "{timers}");
    let count = |line: &str| -> u64 { line.split_whitespace().nth(1).unwrap().parse().unwrap() };
    let ticks = count(lines[2]) - count(lines[1]);
    assert!(
        ticks < 625,
        "{ticks} timer interrupts in 5 s of idle: {timers}"
    );
    // 40 MiB written into a tmpfs and removed: the host holds it, then gets it back.
    let before = vmm_resident(&host, "m1");
    host.sh("m1", "dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>&1");
    let peak = vmm_resident(&host, "m1");
    assert!(
        peak > before + (24 << 20),
        "writing 40 MiB did not show on the host: {before} -> {peak}"
    );
    host.sh("m1", "rm /dev/shm/x");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = peak;
    while now > peak - (24 << 20) {
        assert!(
            Instant::now() < deadline,
            "the freed memory stayed with the VMM: {before} before, {peak} at the peak, {now} a minute after"
        );
        std::thread::sleep(Duration::from_secs(1));
        now = vmm_resident(&host, "m1");
    }
    // The guest's own figures arrive through the balloon's statistics.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let memory = host.vm("m1").status.memory.unwrap();
        if let (Some(total), Some(free)) = (memory.guest_total_bytes, memory.guest_free_bytes) {
            assert!(total <= 128 << 20 && total > 64 << 20, "{memory:?}");
            assert!(free > 16 << 20 && free < total, "{memory:?}");
            assert!(memory.vmm_proportional_bytes.is_some_and(|p| p > 0));
            break;
        }
        assert!(Instant::now() < deadline, "no guest statistics: {memory:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // All of the VMM's memory is offered to the host's KSM, not only the guest's, and so
    // is its supervisor's and its watcher's; off when asked.
    assert_eq!(ksm_merges_all_of(&host, "m1"), ["yes"; 3]);
    host.ignite().args(["rm", "-f", "m1"]).assert().success();
    host.run_small("m2", &[], "busybox sleep 100000")
        .env("IGNITE_VMM_MEMORY_MERGEABLE", "off")
        .assert()
        .success();
    assert_eq!(ksm_merges_all_of(&host, "m2"), ["no"; 3]);
    host.ignite().args(["rm", "-f", "m2"]).assert().success();
}

/// What the kernel says of the VM's VMM, its supervisor (the VMM's parent) and its
/// watcher (the VMM's child, as the VMM runs as its own user): `yes` when KSM may merge
/// all of a process's private memory (`PR_SET_MEMORY_MERGE`), `no` when only what it
/// marked itself.
fn ksm_merges_all_of(host: &Host, vm: &str) -> [String; 3] {
    let vmm = host.vm(vm).status.vmm.expect("the VM runs").process.pid;
    let stat = std::fs::read_to_string(format!("/proc/{vmm}/stat")).unwrap();
    let supervisor: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let children = std::fs::read_dir(format!("/proc/{vmm}/task"))
        .unwrap()
        .flat_map(|task| {
            std::fs::read_to_string(task.unwrap().path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        children.len(),
        1,
        "the VMM's children (its watcher only): {children:?}"
    );
    let merge_any = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/ksm_stat")).unwrap();
        stat.lines()
            .find_map(|l| l.strip_prefix("ksm_merge_any:"))
            .unwrap_or_else(|| panic!("no ksm_merge_any in /proc/{pid}/ksm_stat: {stat}"))
            .trim()
            .to_string()
    };
    [
        merge_any(&vmm.to_string()),
        merge_any(&supervisor.to_string()),
        merge_any(&children[0]),
    ]
}

const VMS: usize = 64;
const AT_ONCE: usize = 8;

/// `ignited daemon` inside the namespace over an empty manifest directory, until dropped.
struct Ignited(std::process::Child);

impl Ignited {
    fn start(ns: &Netns, host: &Host, log: &Path) -> Ignited {
        let dir = host.root().join("manifests");
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = ns
            .command(&ignite_testkit::workspace_binary(
                "ignited",
                "ignite-daemon",
            ))
            .args(["daemon", "--resync", "1", "--manifest-dir"])
            .arg(&dir)
            .arg("--root")
            .arg(host.state())
            .arg("--ignite")
            .arg(host.ignite_binary())
            .arg("--api-socket")
            .arg(host.root().join("api.sock"))
            .env("IGNITE_INIT", ignite_testkit::guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .stderr(log)
            .spawn()
            .unwrap();
        Ignited(child)
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Ignited {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes whose command line names `root` (supervisors, VMMs, template builders).
fn processes_of(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some(cmdline)
        })
        .collect()
}

#[test]
fn sixty_four_vms_on_the_bridge_come_up_answer_and_go_without_a_trace() {
    ignite_testkit::require_root!("booting VMs");
    ignite_testkit::require_program("nft", "nftables");
    let host = Arc::new(Host::new(cargo_bin!("ignite")));
    let ns = Arc::new(Netns::new("density"));
    let daemon_log = host.root().join("ignited.log");
    let daemon = Ignited::start(&ns, &host, &daemon_log);
    let ignite = |ns: &Netns, host: &Host| {
        let mut cmd = ns.ignite(host);
        cmd.env("IGNITE_WARM_STARTS", "on");
        cmd
    };
    // The machine's template first, as a user's first run builds it.
    ignite(&ns, &host)
        .args(["run", "--rm", "--memory", "128MB", &host.image(), "true"])
        .assert()
        .success();
    host.templates(1);

    // `ps -a` keeps answering while VMs come and go.
    let busy = Arc::new(AtomicBool::new(true));
    let lister = {
        let (host, busy) = (host.clone(), busy.clone());
        std::thread::spawn(move || {
            let mut listings = 0;
            while busy.load(Ordering::Relaxed) {
                host.ignite().args(["ps", "-a"]).assert().success();
                listings += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            listings
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|w| {
            let (host, ns) = (host.clone(), ns.clone());
            std::thread::spawn(move || {
                for i in (w..VMS).step_by(AT_ONCE) {
                    ignite(&ns, &host)
                        .args(["run", "-d", "--memory", "128MB", "--name"])
                        .arg(format!("d{i:02}"))
                        .arg(host.image())
                        .arg("busybox sleep 100000")
                        .assert()
                        .success();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let up = started.elapsed();

    // Each VM has its own address, wears it, and answers.
    let mut addresses = std::collections::BTreeSet::new();
    for i in 0..VMS {
        let name = format!("d{i:02}");
        assert_eq!(host.status_of(&name), "Up");
        let vm = host.vm(&name);
        let ips: Vec<String> = vm
            .status
            .network
            .as_ref()
            .map(|n| n.ip_addresses.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(ips.len(), 1, "{name}: {ips:?}");
        assert!(ips[0].starts_with("10.61."), "{name}: {ips:?}");
        assert!(addresses.insert(ips[0].clone()), "{name} shares {}", ips[0]);
        let worn = host.sh(&name, "hostname; ip -4 -o addr show eth0");
        assert!(
            worn.starts_with(&name) && worn.contains(&format!("{}/", ips[0])),
            "{name} ({}) wears: {worn}",
            ips[0]
        );
    }

    // ignited restarted with all of them running: they run on, the store agrees.
    daemon.stop();
    let daemon = Ignited::start(&ns, &host, &daemon_log);
    std::thread::sleep(Duration::from_secs(5));
    let ps = host.ps_all();
    let running = ps.lines().filter(|l| l.contains("\tUp")).count();
    assert_eq!(running, VMS, "after the daemon's restart:\n{ps}");
    host.sh("d00", "true");
    host.sh(&format!("d{:02}", VMS - 1), "true");

    // All of them removed at once, 8 `rm -f`s side by side.
    let removers: Vec<_> = (0..AT_ONCE)
        .map(|w| {
            let (host, ns) = (host.clone(), ns.clone());
            std::thread::spawn(move || {
                let names: Vec<String> = (w..VMS)
                    .step_by(AT_ONCE)
                    .map(|i| format!("d{i:02}"))
                    .collect();
                ns.ignite(&host)
                    .arg("rm")
                    .arg("-f")
                    .args(&names)
                    .assert()
                    .success();
            })
        })
        .collect();
    for r in removers {
        r.join().unwrap();
    }
    busy.store(false, Ordering::Relaxed);
    let listings = lister.join().unwrap();
    assert!(listings > 0);
    daemon.stop();

    let ps = host.ps_all();
    assert_eq!(ps.lines().count(), 1, "VMs left after rm -f:\n{ps}");
    let dirs: Vec<_> = std::fs::read_dir(host.state().join("vms"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(dirs.is_empty(), "VM directories left: {dirs:?}");
    let (_, links) = ns.run("ip", &["-o", "link", "show"]);
    let taps: Vec<&str> = links.lines().filter(|l| l.contains("tap")).collect();
    assert!(taps.is_empty(), "tap devices left: {taps:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_of(&host.state());
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {left:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{VMS} VMs ({AT_ONCE} runs at a time) up in {:.1} s; ps -a listed {listings} times meanwhile",
        up.as_secs_f64()
    );
}

/// QEMU 7.2 gives a reported free page of a privately mapped file back by punching a hole
/// in the file itself: a warm clone's balloon would zero pages of the template's memory
/// file that every other clone still reads. Clones stop reporting (their balloon driver
/// is unbound on restore), and the template's file stays as it was.
#[test]
fn a_warm_clone_frees_memory_without_touching_its_templates_memory_file() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let warm = |name: &str| {
        host.run_small(name, &[], "busybox sleep 100000")
            .env("IGNITE_WARM_STARTS", "on")
            .assert()
            .success();
    };
    // The first run boots cold and has the machine's template built.
    warm("first");
    let template = host.templates(1).remove(0);
    let listed = String::from_utf8(
        host.ignite()
            .args(["snapshots", "-o", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let snapshots: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let uid = snapshots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == template.as_str())
        .and_then(|s| s["metadata"]["uid"].as_str())
        .unwrap()
        .to_string();
    let memory = host.state().join("snapshots").join(uid).join("memory");
    let digest = |path: &Path| -> (std::time::SystemTime, String) {
        let bytes = std::fs::read(path).unwrap();
        (
            std::fs::metadata(path).unwrap().modified().unwrap(),
            ignite_testkit::images::sha256(&bytes),
        )
    };
    let before = digest(&memory);
    warm("clone");
    let clone = host.vm("clone");
    assert!(
        clone.status.restored_from.is_some(),
        "the second run did not start warm"
    );
    // Its QEMU loads the kernel's own initramfs: no copy of it is written per warm VM.
    let clone_dir = host
        .state()
        .join("vms")
        .join(clone.metadata.uid.unwrap().to_string());
    let cmdline = std::fs::read(clone_dir.join("vmm.cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let initrd = args
        .iter()
        .skip_while(|a| *a != "-initrd")
        .nth(1)
        .expect("an -initrd");
    assert!(
        initrd.starts_with(&host.state().join("kernels").to_string_lossy().into_owned()),
        "{initrd}"
    );
    assert!(!clone_dir.join("initramfs.cpio").exists());
    // Its agent is a fork of PID 1 (the same command line), not a new exec of ignite-init
    // (`ignite-agent agent container ...`), whose code TCG would translate anew.
    let agent = host.sh(
        "clone",
        "for p in /proc/[0-9]*; do [ \"$(busybox cat $p/comm)\" = ignite-agent ] && busybox tr '\\0' ' ' < $p/cmdline && echo; done; busybox tr '\\0' ' ' < /proc/1/cmdline",
    );
    let lines: Vec<&str> = agent.lines().collect();
    assert_eq!(lines.len(), 2, "one agent and PID 1: {agent}");
    assert_eq!(
        lines[0], lines[1],
        "the agent's command line is not PID 1's: {agent}"
    );
    // The clone's balloon reports nothing: its driver is unbound (the device stays).
    let bound = host.sh(
        "clone",
        "busybox ls /sys/bus/virtio/drivers/virtio_balloon | busybox grep -c virtio; true",
    );
    assert_eq!(bound.trim(), "0", "the clone's balloon driver is bound");
    // 40 MiB written and freed in the clone, then time for a report: the template's file
    // is neither written nor punched.
    host.sh(
        "clone",
        "busybox dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>&1; busybox rm /dev/shm/x; busybox sleep 12",
    );
    assert_eq!(
        digest(&memory),
        before,
        "the template's memory file changed under a warm clone"
    );
    host.ignite()
        .args(["rm", "-f", "first", "clone"])
        .assert()
        .success();
}
