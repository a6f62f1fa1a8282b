//! Real boots under QEMU (TCG): Debian's cloud kernel with the initramfs its import built,
//! holding the static ignite-init, plus each VM's own configuration appended. Covers the
//! boot chain of ARCHITECTURE §2: modules, root disk, online grow, provisioning, VM mode,
//! container mode (status, signals, reaping), the agent, and boot failures.

use std::path::PathBuf;
use std::time::Duration;

use ignite_guest_protocol::agent::{ExecRequest, FrameKind, WindowSize};
use ignite_guest_protocol::config::{BootMode, GuestConfig, Interface, Volume, Workload};
use ignite_guest_protocol::status;
use ignite_oci::fetch::NoProgress;
use ignite_runtime::guest::{FileCopy, workload_of, write_vm_initramfs};
use ignite_runtime::images::{ImportOptions, import_image, rootfs_path};
use ignite_runtime::kernels::{
    BZIMAGE_FILE, INITRAMFS_FILE, KernelImportOptions, MODULES_DISK_FILE, import_kernel, kernel_dir,
};
use ignite_store::Store;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::qemu::TestVm;
use ignite_testkit::{guest_init, kernel_deb};
use ignite_vmm::{Accel, ConsoleSpec, DiskFormat, DiskSpec, MachineSpec, NicBackend, NicSpec};

const BOOT: Duration = Duration::from_secs(120);
const CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    kdir: PathBuf,
    _watchdog: ignite_testkit::watchdog::Watchdog,
}

fn fixture() -> Fixture {
    ignite_testkit::require_root("unpacking a kernel package and importing images");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let options = KernelImportOptions {
        init: Some(guest_init()),
        ..KernelImportOptions::default()
    };
    let kernel = import_kernel(
        &store,
        &kernel_deb().display().to_string(),
        &options,
        &NoProgress,
    )
    .unwrap()
    .kernel;
    let kdir = kernel_dir(&store, &kernel);
    let _watchdog = ignite_testkit::watchdog::arm(dir.path());
    Fixture {
        dir,
        store,
        kdir,
        _watchdog,
    }
}

fn config(name: &str, mode: BootMode, workload: Workload) -> GuestConfig {
    GuestConfig {
        name: name.into(),
        uid: "0123456789abcdef".into(),
        hostname: name.into(),
        mode,
        workload,
        modules_device: Some("/dev/vdb".into()),
        ..GuestConfig::defaults()
    }
}

/// A busybox image: /bin with busybox and sh, more entries from `extra`, and the given
/// config (the testkit's: ENTRYPOINT /bin/sh -c, WORKDIR /srv, USER 1000:1000, ENV GREETING).
fn busybox_image(
    f: &Fixture,
    name: &str,
    cmd: &[&str],
    extra: impl FnOnce(LayerBuilder) -> LayerBuilder,
) -> ignite_api::Image {
    ignite_testkit::require_program("busybox", "busybox-static");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layer = extra(
        LayerBuilder::new()
            .dir("bin", 0o755)
            .file("bin/busybox", &busybox, 0o755)
            .symlink("bin/sh", "busybox"),
    )
    .finish(Compression::Gzip);
    let layout = f.dir.path().join(format!("layout-{name}"));
    Image::new(vec![layer], cmd).write_oci_layout(&layout, name);
    import_image(
        &f.store,
        &format!("oci:{}:{name}", layout.display()),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap()
    .image
}

/// Boots `image` with `config`: its root disk is a sparse copy grown to `disk_size`, the
/// kernel's modules disk second, the console in a file, the agent on a socket.
fn boot(
    f: &Fixture,
    image: &ignite_api::Image,
    config: &GuestConfig,
    copies: &[FileCopy],
    disk_size: u64,
    memory_mib: u64,
) -> TestVm {
    boot_with(
        f,
        image,
        config,
        copies,
        disk_size,
        memory_mib,
        vec![],
        vec![],
    )
}

#[allow(clippy::too_many_arguments)]
fn boot_with(
    f: &Fixture,
    image: &ignite_api::Image,
    config: &GuestConfig,
    copies: &[FileCopy],
    disk_size: u64,
    memory_mib: u64,
    volumes: Vec<DiskSpec>,
    nics: Vec<NicSpec>,
) -> TestVm {
    let vm_dir = f.dir.path().join(format!("vm-{}", config.name));
    std::fs::create_dir_all(&vm_dir).unwrap();
    let disk = vm_dir.join("root.img");
    let base = rootfs_path(&f.store, image.status.image_id.as_ref().unwrap());
    // A VM's disk outlives its boots: only the first boot of a name gets a fresh copy.
    if !disk.exists() {
        let status = std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(&base)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    if file.metadata().unwrap().len() < disk_size {
        file.set_len(disk_size).unwrap();
    }
    let initrd = vm_dir.join("initramfs.cpio");
    write_vm_initramfs(&f.kdir, config, copies, &initrd).unwrap();
    let mut disks = vec![
        DiskSpec {
            path: disk,
            format: DiskFormat::Raw,
            read_only: false,
            snapshot: false,
            inherited_fd: None,
        },
        DiskSpec {
            path: f.kdir.join(MODULES_DISK_FILE),
            format: DiskFormat::Raw,
            read_only: true,
            snapshot: false,
            inherited_fd: None,
        },
    ];
    disks.extend(volumes);
    let console = vm_dir.join("console.log");
    let _ = std::fs::remove_file(&console);
    TestVm::start(&MachineSpec {
        vcpus: 1,
        memory_mib,
        kernel: f.kdir.join(BZIMAGE_FILE),
        initrd,
        cmdline: CMDLINE.into(),
        disks,
        console: ConsoleSpec::File(console),
        agent_socket: Some(vm_dir.join("agent.sock")),
        nics,
        accel: Accel::Tcg,
        log_dir: None,
        restore: None,
        memory_file: None,
        memory_reporting: false,
        translation_cache_mib: None,
        tcg_icount: false,
        confinement: Default::default(),
    })
}

fn exec(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecRequest::default()
    }
}

#[test]
fn a_blank_disk_is_reported_and_the_vm_powers_off() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    let blank = f.dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut vm = TestVm::start(&MachineSpec {
        vcpus: 1,
        memory_mib: 256,
        kernel: f.kdir.join(BZIMAGE_FILE),
        initrd: f.kdir.join(INITRAMFS_FILE),
        cmdline: CMDLINE.into(),
        disks: vec![DiskSpec {
            path: blank,
            format: DiskFormat::Raw,
            read_only: false,
            snapshot: true,
            inherited_fd: None,
        }],
        console: ConsoleSpec::File(f.dir.path().join("console.log")),
        agent_socket: None,
        nics: vec![],
        accel: Accel::Tcg,
        log_dir: None,
        restore: None,
        memory_file: None,
        memory_reporting: false,
        translation_cache_mib: None,
        tcg_icount: false,
        confinement: Default::default(),
    });
    let (console, powered_off) = vm.wait_exit(BOOT);
    let loaded = console
        .lines()
        .find_map(|l| {
            l.strip_prefix("ignite-init: loaded ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or_else(|| panic!("no module report:\n{console}"));
    // Only the drivers of the devices this machine has: the virtio core and ring, the MMIO
    // transport and the block driver (no NIC, no agent port, no vsock, no PCI here).
    assert!(
        (4..10).contains(&loaded),
        "the guest loaded {loaded} modules:\n{console}"
    );
    assert!(console.contains("(block devices: vda)"), "{console}");
    assert!(!console.contains("cannot load module"), "{console}");
    // A blank disk is no root filesystem: one clear line, the status, then power-off.
    assert!(
        console.contains("ignite-init: cannot mount the root disk /dev/vda")
            && console.contains("block devices: vda"),
        "{console}"
    );
    assert_eq!(
        status::last_exit_status(&console),
        Some(status::ROOT_NOT_FOUND),
        "{console}"
    );
    assert!(
        powered_off,
        "QEMU exited by the guest's power-off:\n{console}"
    );
}

#[test]
fn vm_mode_provisions_the_root_and_hands_over_to_the_images_init() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    let init = "#!/bin/sh\n\
        b=busybox\n\
        echo \"hello from the image's init, pid $$, root $($b grep ' / ' /proc/mounts | $b cut -d' ' -f1-3)\"\n\
        echo \"hostname=$($b hostname)\"\n\
        echo \"keys=$($b cat /root/.ssh/authorized_keys | $b grep -c ssh-ed25519) mode=$($b stat -c %a /root/.ssh/authorized_keys)\"\n\
        echo \"copied=$($b cat /etc/motd.d/hello) mode=$($b stat -c %a /etc/motd.d/hello)\"\n\
        echo \"nested=$($b cat /opt/site/sub/page.html)\"\n\
        echo \"hosts=$($b grep -c 'ignite-init' /etc/hosts) lo=$($b cat /sys/class/net/lo/operstate)\"\n\
        echo \"modules=$($b ls /lib/modules/$($b uname -r)/modules.dep) virtio_net=$($b find /lib/modules/$($b uname -r) -name virtio_net.ko | $b wc -l)\"\n\
        echo \"rootsize=$($b df -m / | $b tail -1 | $b awk '{print $2}')\"\n\
        echo \"volume=$($b cat /data/volume.txt) fstab=$($b grep -c '^/dev/vdc' /etc/fstab)\"\n\
        $b poweroff -f\n";
    let image = busybox_image(&f, "vmmode", &["/sbin/init"], |l| {
        l.dir("sbin", 0o755)
            .file("sbin/init", init.as_bytes(), 0o755)
            .dir("etc", 0o755)
            .file("etc/hosts", b"10.9.9.9 kept-from-image\n", 0o644)
    });
    let mut cfg = config("vm-mode", BootMode::Auto, workload_of(&image, &[]));
    cfg.authorized_keys =
        vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test@host".into()];
    let host_files = f.dir.path().join("host-files");
    std::fs::create_dir_all(host_files.join("site/sub")).unwrap();
    std::fs::write(host_files.join("hello"), "copied from the host").unwrap();
    std::fs::write(host_files.join("site/sub/page.html"), "<p>nested</p>").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        host_files.join("hello"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let copies = [
        FileCopy {
            host: host_files.join("hello"),
            guest: "/etc/motd.d/hello".into(),
        },
        FileCopy {
            host: host_files.join("site"),
            guest: "/opt/site".into(),
        },
    ];
    let volume_tree = f.dir.path().join("volume");
    std::fs::create_dir_all(&volume_tree).unwrap();
    std::fs::write(volume_tree.join("volume.txt"), "on the volume").unwrap();
    let volume = f.dir.path().join("volume.ext4");
    let size = ignite_disk::measure_tree(&volume_tree).unwrap();
    ignite_disk::build_ext4(&volume_tree, size, &volume, "data").unwrap();
    cfg.volumes = vec![Volume {
        name: "data".into(),
        device: "/dev/vdc".into(),
        path: "/data".into(),
        fstype: None,
        read_only: false,
    }];
    let volume_disk = DiskSpec {
        path: volume,
        format: DiskFormat::Raw,
        read_only: false,
        snapshot: false,
        inherited_fd: None,
    };
    // Twice: the second boot of the same disk must apply everything again, not duplicate it.
    for round in 0..2 {
        let mut vm = boot_with(
            &f,
            &image,
            &cfg,
            &copies,
            256 << 20,
            256,
            vec![volume_disk.clone()],
            vec![],
        );
        let (console, powered_off) = vm.wait_exit(BOOT);
        assert!(console.contains("ignite-init: vm mode"), "{console}");
        assert!(
            console.contains("hello from the image's init, pid 1, root /dev/vda / ext4"),
            "{console}"
        );
        for expected in [
            "hostname=vm-mode",
            "keys=1 mode=600",
            "copied=copied from the host mode=640",
            "nested=<p>nested</p>",
            "hosts=1 lo=unknown",
            "virtio_net=1",
            "volume=on the volume fstab=1",
        ] {
            assert!(
                console.contains(expected),
                "round {round}: no {expected:?}:\n{console}"
            );
        }
        assert!(
            console.contains("modules=/lib/modules/"),
            "modprobe's index is there:\n{console}"
        );
        let size: u64 = console
            .lines()
            .find_map(|l| l.strip_prefix("rootsize="))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no root size:\n{console}"));
        assert!(
            (240..=256).contains(&size),
            "root grew to {size} MiB of 256:\n{console}"
        );
        if round == 0 {
            assert!(
                console.contains("ignite-init: grew the root filesystem"),
                "{console}"
            );
        }
        assert!(powered_off, "{console}");
    }
    // The image's own /etc/hosts line is kept, the managed block written once.
    let disk = f.dir.path().join("vm-vm-mode/root.img");
    let hosts =
        String::from_utf8(ignite_testkit::ext4::read_file(&disk, "/etc/hosts").unwrap()).unwrap();
    assert!(hosts.starts_with("10.9.9.9 kept-from-image\n"), "{hosts}");
    assert_eq!(hosts.matches("# BEGIN ignite").count(), 1, "{hosts}");
    assert!(hosts.contains("127.0.1.1\tvm-mode"), "{hosts}");
}

#[test]
fn container_mode_runs_the_workload_reaps_orphans_and_reports_its_status() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    // Orphans whose parent exits at once are reparented to PID 1, which must reap them.
    let script = "b=busybox; for i in 1 2 3; do ($b sleep 0.2 &); done; $b sleep 1; \
        echo \"greeting=$GREETING cwd=$($b pwd) uid=$($b id -u) gid=$($b id -g) pid1=$($b cat /proc/1/comm)\"; \
        echo \"zombies=$($b cat /proc/[0-9]*/stat | $b awk '$3==\"Z\"' | $b wc -l)\"; exit 7";
    let image = busybox_image(&f, "container", &[script], |l| l);
    let cfg = config("box", BootMode::Auto, workload_of(&image, &[]));
    let mut vm = boot(&f, &image, &cfg, &[], 64 << 20, 256);
    let agent = vm.agent(BOOT);
    assert_eq!(agent.guest.mode.as_deref(), Some("container"));
    // The workload's output comes through the agent, not the console.
    let done = agent.workload_output(BOOT).unwrap();
    let output = String::from_utf8_lossy(&done.stdout).into_owned();
    assert_eq!(done.status.code, Some(7), "{output} {}", vm.console_text());
    let (console, powered_off) = vm.wait_exit(BOOT);
    assert!(
        output.contains("greeting=hello cwd=/srv uid=1000 gid=1000 pid1=init"),
        "{output}"
    );
    assert!(output.contains("zombies=0"), "{output}");
    assert!(!console.contains("greeting="), "{console}");
    assert_eq!(status::last_exit_status(&console), Some(7), "{console}");
    assert!(powered_off, "{console}");
}

#[test]
fn container_mode_forwards_sigterm_and_the_agent_runs_concurrent_sessions() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    let script = "trap 'echo got SIGTERM; exit 143' TERM; echo workload ready; \
        while :; do busybox sleep 0.1; done";
    let image = busybox_image(&f, "sigterm", &[script], |l| l);
    let cfg = config("sig", BootMode::Container, workload_of(&image, &[]));
    let mut vm = boot(&f, &image, &cfg, &[], 64 << 20, 256);
    let agent = vm.agent(BOOT);
    let workload = agent.take_workload().unwrap();
    let ready = workload.recv_timeout(BOOT).unwrap();
    assert_eq!(
        (ready.kind, ready.payload.as_slice()),
        (FrameKind::Stdout, &b"workload ready\n"[..])
    );
    let t = Duration::from_secs(60);

    // Several sessions at once: a reader of stdin, a failing command, a slow one.
    let cat = agent.exec(&exec(&["busybox", "cat"])).unwrap();
    let fails = agent
        .exec(&exec(&["/bin/sh", "-c", "echo to stderr >&2; exit 3"]))
        .unwrap();
    let slow = agent
        .exec(&exec(&["/bin/sh", "-c", "busybox sleep 1; echo slow done"]))
        .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    cat.write_stdin(&data).unwrap();
    cat.close_stdin().unwrap();
    let cat = cat.wait(t).unwrap().unwrap();
    assert_eq!(cat.status.code, Some(0));
    assert!(
        cat.stdout == data,
        "stdin came back through cat intact ({} bytes)",
        cat.stdout.len()
    );
    let fails = fails.wait(t).unwrap().unwrap();
    assert_eq!(
        (fails.status.code, fails.stderr.as_slice()),
        (Some(3), &b"to stderr\n"[..])
    );
    let slow = slow.wait(t).unwrap().unwrap();
    assert_eq!(slow.stdout, b"slow done\n");
    // The exec environment is the workload's.
    let env = agent
        .exec(&exec(&["/bin/sh", "-c", "echo $GREETING"]))
        .unwrap()
        .wait(t)
        .unwrap()
        .unwrap();
    assert_eq!(env.stdout, b"hello\n");
    // A missing command fails as in Docker.
    let missing = agent
        .exec(&exec(&["no-such-command"]))
        .unwrap()
        .wait(t)
        .unwrap()
        .unwrap_err();
    assert_eq!(missing.status, Some(127), "{}", missing.message);
    assert!(
        missing.message.contains("no-such-command"),
        "{}",
        missing.message
    );
    // A terminal: the process sees one, of the given size.
    let mut req = exec(&["/bin/sh", "-c", "busybox tty; busybox stty size"]);
    req.tty = true;
    req.window = Some(WindowSize {
        rows: 33,
        cols: 111,
    });
    let tty = agent.exec(&req).unwrap().wait(t).unwrap().unwrap();
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("33 111"),
        "{text}"
    );
    // A signal to a session.
    let sleeper = agent.exec(&exec(&["busybox", "sleep", "30"])).unwrap();
    sleeper.signal(9).unwrap();
    assert_eq!(sleeper.wait(t).unwrap().unwrap().status.signal, Some(9));

    // Graceful stop: the workload gets SIGTERM, its status comes back, the VM powers off.
    agent.shutdown().unwrap();
    let done = ignite_guest_protocol::client::collect_workload(&workload, t).unwrap();
    agent.ack_exit().unwrap();
    assert_eq!(done.status.code, Some(143));
    assert_eq!(done.stdout, b"got SIGTERM\n");
    let (console, powered_off) = vm.wait_exit(BOOT);
    assert_eq!(status::last_exit_status(&console), Some(143), "{console}");
    assert!(powered_off, "{console}");
}

#[test]
fn container_mode_failures_have_distinct_statuses() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    let image = busybox_image(&f, "failures", &["true"], |l| l);
    let cases: [(&str, Vec<String>, i32, &str); 2] = [
        (
            "notfound",
            vec!["/no/such/program".into()],
            status::COMMAND_NOT_FOUND,
            "/no/such/program",
        ),
        (
            "noexec",
            vec!["/bin".into()],
            status::CANNOT_EXECUTE,
            "/bin",
        ),
    ];
    for (name, command, expected, needle) in cases {
        let mut workload = workload_of(&image, &command);
        workload.entrypoint.clear();
        let cfg = config(name, BootMode::Auto, workload);
        let mut vm = boot(&f, &image, &cfg, &[], 64 << 20, 256);
        let (console, powered_off) = vm.wait_exit(BOOT);
        assert_eq!(
            status::last_exit_status(&console),
            Some(expected),
            "{console}"
        );
        assert!(console.contains(needle), "{console}");
        assert!(powered_off, "{console}");
    }
    // VM mode asked for, no /sbin/init in the image.
    let cfg = config("noinit", BootMode::Vm, workload_of(&image, &[]));
    let mut vm = boot(&f, &image, &cfg, &[], 64 << 20, 256);
    let (console, _) = vm.wait_exit(BOOT);
    assert_eq!(
        status::last_exit_status(&console),
        Some(status::NO_INIT),
        "{console}"
    );
}

#[test]
fn debian_with_systemd_boots_to_multi_user_in_vm_mode() {
    ignite_testkit::require_root!("booting VMs");
    let f = fixture();
    let layout = ignite_testkit::base_image_layout();
    let image = import_image(
        &f.store,
        &format!("oci:{}:bookworm", layout.display()),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap()
    .image;
    let mut cfg = config("debian-vm", BootMode::Auto, workload_of(&image, &[]));
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDebianTestKeyDebianTestKeyDebianTestKey00 test@host";
    cfg.authorized_keys = vec![key.into()];
    let mac = "52:54:00:12:34:56";
    cfg.interfaces = vec![Interface {
        mac: mac.into(),
        addresses: vec!["10.0.2.15/24".into()],
        gateway: Some("10.0.2.2".into()),
        mtu: None,
    }];
    cfg.nameservers = vec!["10.0.2.3".into()];
    let copied = f.dir.path().join("motd");
    std::fs::write(&copied, "welcome to an ignite VM\n").unwrap();
    let copies = [FileCopy {
        host: copied,
        guest: "/etc/motd".into(),
    }];
    // The guest's user-mode network is isolated: nothing leaves this machine.
    let nic = NicSpec {
        mac: mac.into(),
        backend: NicBackend::User {
            forwards: vec![],
            isolated: true,
        },
    };
    let mut vm = boot_with(&f, &image, &cfg, &copies, 2 << 30, 512, vec![], vec![nic]);
    let agent = vm.agent(BOOT);
    assert_eq!(agent.guest.mode.as_deref(), Some("vm"));
    let run = |argv: &[&str]| -> String {
        let done = agent
            .exec(&exec(argv))
            .unwrap()
            .wait(Duration::from_secs(120))
            .unwrap()
            .unwrap_or_else(|e| panic!("{argv:?}: {}", e.message));
        String::from_utf8_lossy(&done.stdout).trim().to_string()
    };
    // systemd's own verdict on the boot: up to the multi-user target.
    let started = std::time::Instant::now();
    loop {
        let state = run(&["systemctl", "is-active", "multi-user.target"]);
        if state == "active" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "multi-user.target is {state:?} after {:?}:\n{}\n{}",
            started.elapsed(),
            run(&["systemctl", "--failed", "--no-legend"]),
            vm.console_text()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "multi-user.target reached {:?} after the agent answered",
        started.elapsed()
    );
    // Nothing the image leaves out of its boot is missed: no unit failed.
    let state = loop {
        let state = run(&["systemctl", "is-system-running"]);
        if state != "starting" || started.elapsed() > Duration::from_secs(300) {
            break state;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(
        state,
        "running",
        "{}",
        run(&["systemctl", "--failed", "--no-legend"])
    );
    assert_eq!(run(&["cat", "/proc/1/comm"]), "systemd");
    assert_eq!(run(&["hostname"]), "debian-vm");
    // Under TCG the guest's CPU is x86-64-v2 with RDRAND, without AVX and SVM
    // (ignite_vmm::qemu::TCG_CPU).
    let cpuinfo = run(&["grep", "-m1", "^flags", "/proc/cpuinfo"]);
    let flags: Vec<&str> = cpuinfo.split_whitespace().collect();
    for flag in [
        "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3", "rdrand", "arat",
    ] {
        assert!(flags.contains(&flag), "no {flag} in {cpuinfo}");
    }
    for flag in ["avx", "avx2", "svm"] {
        assert!(!flags.contains(&flag), "{flag} in {cpuinfo}");
    }
    // The TSC stays the clocksource (tsc=reliable), so timers are high-resolution.
    assert_eq!(
        run(&[
            "cat",
            "/sys/devices/system/clocksource/clocksource0/current_clocksource"
        ]),
        "tsc"
    );
    assert_eq!(
        run(&["cat", "/root/.ssh/authorized_keys"])
            .lines()
            .filter(|l| *l == key)
            .count(),
        1
    );
    assert_eq!(run(&["cat", "/etc/motd"]), "welcome to an ignite VM");
    let size: u64 = run(&["df", "-B1", "--output=size", "/"])
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap();
    assert!(
        size > (19 << 30) / 10,
        "the root filesystem has {size} bytes of 2 GiB"
    );
    assert_eq!(run(&["systemctl", "is-active", "ssh"]), "active");
    let listening = run(&["ss", "-Htln"]);
    assert!(listening.contains(":22 "), "sshd listens: {listening}");
    let addresses = run(&["ip", "-4", "-o", "addr", "show"]);
    assert!(addresses.contains("10.0.2.15/24"), "{addresses}");
    assert!(run(&["ip", "route"]).contains("default via 10.0.2.2"));
    assert!(run(&["cat", "/etc/resolv.conf"]).contains("nameserver 10.0.2.3"));
    // The kernel's modules are visible to the image's own tools.
    assert!(run(&["modinfo", "-F", "filename", "virtio_net"]).starts_with("/lib/modules/"));

    // A graceful stop through the agent: systemd powers the VM off.
    agent.shutdown().unwrap();
    let (console, powered_off) = vm.wait_exit(BOOT);
    assert!(powered_off, "systemd powered the VM off:\n{console}");
}
