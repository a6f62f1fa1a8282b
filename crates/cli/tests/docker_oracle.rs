//! A differential suite with Docker as the oracle: container mode promises `docker run`'s
//! behaviour, so the same image and the same argv go to `docker run --rm --network none`
//! (Debian's dockerd, an engine of the test's own) and to `ignite run --rm --network none`
//! (a VM under QEMU, TCG), and their stdout, stderr and exit status must be the same, byte
//! for byte. The images are built by that engine from contexts written here (`FROM scratch`,
//! a static busybox), saved with `docker save` and imported with `ignite image import
//! docker-archive:`, under the same names on both sides.
//!
//! Differences on purpose, each for a reason that is not ignite's to remove:
//! - The hostname (`HOSTNAME`, `hostname`): a container is named by its id, a VM by its
//!   name. No case prints it; the environment cases drop the `HOSTNAME=` line.
//! - The kernel (`uname -r`, `/proc/version`): a VM runs its own kernel, not the host's.
//! - Control groups (`/proc/self/cgroup`) and process ids: a VM is not a container. Its PID
//!   1 is `ignite-init`, so the workload is what it is under `docker run --init`: the signal
//!   cases give docker `--init` (without it the workload is docker's PID 1, which the
//!   kernel spares the signals it has no handler for, so `kill $$` does nothing there).
//! - When the workload cannot be started as asked (no such command or entrypoint, a file
//!   that is not executable, a user the image lacks, a bad working directory or env file,
//!   nothing to run), docker prints its own error (`docker: Error response from daemon: ...
//!   OCI runtime create failed ...`): those cases compare stdout and the exit status (127,
//!   126, 125) exactly and check that ignite's stderr names what failed, in its own words.
//! - The order of `-e` variables: docker's own varies from run to run (and a shell's `env`
//!   follows it), so the environment cases print it sorted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::docker::DockerEngine;

/// One side's run may take this long (a boot under TCG is 2-4 s; 10 MB streams more).
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Cases whose ignite side runs at once: each is a VM, and this machine has 2 cores.
const THREADS: usize = 3;

/// Ten megabytes of text on each stream: 1..=1_400_000, one number a line, is 10_088_895
/// bytes; the same again on stderr.
const TEN_MB_SCRIPT: &str = "seq 1 1400000; seq 1 1400000 >&2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Compare {
    /// stdout, stderr and exit status byte for byte.
    Exact,
    /// The engine cannot start the program: stdout and exit status exactly; stderr is
    /// docker's daemon error on one side and ignite's on the other, and ignite's must name
    /// the program.
    EngineError(&'static str),
}

struct Case {
    name: &'static str,
    /// Flags only docker gets: `--init` (see the module's documentation).
    docker_only: &'static [&'static str],
    /// `run` flags both get, before the image.
    flags: Vec<String>,
    image: &'static str,
    /// The command after the image, if any.
    command: Vec<String>,
    /// What the caller's stdin holds (otherwise /dev/null).
    stdin: Option<Vec<u8>>,
    compare: Compare,
}

fn case(name: &'static str, image: &'static str, command: &[&str]) -> Case {
    Case {
        name,
        docker_only: &[],
        flags: Vec::new(),
        image,
        command: command.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        compare: Compare::Exact,
    }
}

impl Case {
    fn flags(mut self, flags: &[&str]) -> Case {
        self.flags = flags.iter().map(|s| s.to_string()).collect();
        self
    }
    fn stdin(mut self, bytes: Vec<u8>) -> Case {
        self.stdin = Some(bytes);
        self
    }
    fn docker_only(mut self, flags: &'static [&'static str]) -> Case {
        self.docker_only = flags;
        self
    }
    fn engine_error(mut self, program: &'static str) -> Case {
        self.compare = Compare::EngineError(program);
        self
    }
}

/// What one side printed and how it ended.
#[derive(Debug)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The exit status; `None` when it was killed, by us at [`RUN_LIMIT`] or otherwise.
    code: Option<i32>,
    timed_out: bool,
    took: Duration,
}

/// Runs `cmd` with `stdin` as its input, collects both outputs, and kills it at `limit`.
fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Outcome {
    let start = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command starts");
    let writer = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut pipe = child.stdin.take().unwrap();
        // A side that never reads its stdin (no -i) must not block us: the writer is its
        // own thread, and a closed pipe ends it.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    if let Some(w) = writer {
        // The writer may still be blocked on a pipe nobody reads: it ends with the child's
        // stdin, which is closed now that the child is gone.
        let _ = w.join();
    }
    Outcome {
        stdout,
        stderr,
        code: status.code(),
        timed_out,
        took: start.elapsed(),
    }
}

/// A printable view of a stream: the text, or its size and the first difference.
fn show(bytes: &[u8]) -> String {
    if bytes.len() <= 2000 {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!(
            "{} bytes, beginning {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..200])
        )
    }
}

/// A readable diff of two streams: the lines that differ, docker's with `-`, ignite's `+`.
fn diff(stream: &str, docker: &[u8], ignite: &[u8]) -> String {
    if docker == ignite {
        return String::new();
    }
    let mut text = format!(
        "  {stream} differs (docker {} bytes, ignite {} bytes)\n",
        docker.len(),
        ignite.len()
    );
    let d: Vec<&[u8]> = docker.split_inclusive(|b| *b == b'\n').collect();
    let i: Vec<&[u8]> = ignite.split_inclusive(|b| *b == b'\n').collect();
    let first = d.iter().zip(&i).take_while(|(a, b)| a == b).count();
    text.push_str(&format!("    first difference at line {}\n", first + 1));
    let end = (first + 8).min(d.len().max(i.len()));
    for n in first..end {
        if let Some(line) = d.get(n) {
            text.push_str(&format!(
                "    -docker {:?}\n",
                String::from_utf8_lossy(line)
            ));
        }
        if let Some(line) = i.get(n) {
            text.push_str(&format!(
                "    +ignite {:?}\n",
                String::from_utf8_lossy(line)
            ));
        }
    }
    text
}

/// Empty when the two sides agree as the case asks; otherwise what differs.
fn compare(case: &Case, docker: &Outcome, ignite: &Outcome) -> String {
    let mut text = String::new();
    if docker.timed_out || ignite.timed_out {
        text.push_str(&format!(
            "  timed out after {RUN_LIMIT:?}: docker {}, ignite {}\n",
            docker.timed_out, ignite.timed_out
        ));
    }
    if docker.code != ignite.code {
        text.push_str(&format!(
            "  exit status: docker {:?}, ignite {:?}\n",
            docker.code, ignite.code
        ));
    }
    text.push_str(&diff("stdout", &docker.stdout, &ignite.stdout));
    match case.compare {
        Compare::Exact => text.push_str(&diff("stderr", &docker.stderr, &ignite.stderr)),
        Compare::EngineError(program) => {
            let ours = String::from_utf8_lossy(&ignite.stderr);
            if docker.stderr.is_empty() || !ours.contains(program) {
                text.push_str(&format!(
                    "  stderr: docker {}, ignite {} (must name {program:?})\n",
                    show(&docker.stderr),
                    show(&ignite.stderr)
                ));
            }
        }
    }
    text
}

/// The image contexts: one busybox root (every applet linked in /bin, a passwd and group
/// file) and images on top of it that set the configuration the cases read.
fn write_contexts(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let base = dir.join("base");
    let bin = base.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    let etc = base.join("rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         app:x:1000:1000:The App:/home/app:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::write(etc.join("motd"), "not a program\n").unwrap();
    std::fs::write(
        base.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCMD [\"echo\", \"the image's CMD, exec form\"]\n",
    )
    .unwrap();

    let mut contexts = vec![("oracle/base", base)];
    for (name, dockerfile) in [
        // ENTRYPOINT and CMD in exec form, ENV, WORKDIR and USER.
        (
            "oracle/config",
            "FROM oracle/base\n\
             ENV GREETING=\"hello world\" APP_MODE=prod\n\
             WORKDIR /srv/app\n\
             USER app\n\
             ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
             CMD [\"echo \\\"$GREETING from $PWD as $(id -u):$(id -g) home=$HOME\\\"\"]\n",
        ),
        // CMD in shell form: /bin/sh -c with the line; a command replaces it.
        (
            "oracle/shellcmd",
            "FROM oracle/base\nENV WHO=shell\nCMD echo \"$WHO form CMD\" in $PWD; exit 3\n",
        ),
        // ENTRYPOINT in shell form: CMD and the command given are ignored.
        (
            "oracle/shellentry",
            "FROM oracle/base\nENTRYPOINT echo shell form ENTRYPOINT, args: \"$@\" $#\nCMD [\"ignored\"]\n",
        ),
    ] {
        let context = dir.join(name.replace('/', "-"));
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        contexts.push((name, context));
    }
    contexts
}

/// The cases, at least one for each promise of container mode.
fn cases(dir: &Path) -> Vec<Case> {
    let env_file = dir.join("app.env");
    std::fs::write(
        &env_file,
        "# comment lines and blank ones are skipped\n\nFILE_ONE=from the file\nOVERRIDE=file\nSPACED= kept as written \n",
    )
    .unwrap();
    let env_file = env_file.display().to_string();
    let binary: Vec<u8> = {
        // Every byte value, no line structure: a fixed xorshift sequence.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..10 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    };
    let env_without_hostname = "env | grep -v '^HOSTNAME=' | sort";
    vec![
        // Exit statuses, with output on both streams.
        case(
            "exit 0",
            "oracle/base",
            &["sh", "-c", "echo out; echo err >&2; exit 0"],
        ),
        case(
            "exit 1",
            "oracle/base",
            &["sh", "-c", "echo failing >&2; exit 1"],
        ),
        case("exit 7", "oracle/base", &["sh", "-c", "echo seven; exit 7"]),
        case(
            "exit 126 from the workload",
            "oracle/base",
            &["sh", "-c", "exit 126"],
        ),
        case(
            "exit 127: the shell finds no command",
            "oracle/base",
            &["sh", "-c", "no-such-command"],
        ),
        case("exit 300 is 44", "oracle/base", &["sh", "-c", "exit 300"]),
        case("a program's own status (false)", "oracle/base", &["false"]),
        // What the engine cannot start.
        case(
            "a missing command",
            "oracle/base",
            &["no-such-command", "arg"],
        )
        .engine_error("no-such-command"),
        case(
            "a missing command by path",
            "oracle/base",
            &["/no/such/program"],
        )
        .engine_error("/no/such/program"),
        case(
            "a file that is not executable",
            "oracle/base",
            &["/etc/motd"],
        )
        .engine_error("/etc/motd"),
        case("a missing entrypoint", "oracle/base", &["arg"])
            .flags(&["--entrypoint", "/no/such/entrypoint"])
            .engine_error("/no/such/entrypoint"),
        // docker run's flags.
        case("-e", "oracle/base", &["sh", "-c", env_without_hostname]).flags(&[
            "-e",
            "ONE=1",
            "-e",
            "TWO=two words",
            "-e",
            "FROM_CALLER",
            "-e",
            "UNSET_IN_CALLER",
            "-e",
            "EMPTY=",
        ]),
        case(
            // Sorted: docker's own order of -e variables varies from run to run.
            "-e over HOSTNAME and PATH",
            "oracle/base",
            &["sh", "-c", "env | sort"],
        )
        .flags(&[
            "-e",
            "HOSTNAME=fixed",
            "-e",
            "ZED=1",
            "-e",
            "ALPHA=2",
            "-e",
            "PATH=/bin:/usr/bin",
        ]),
        case(
            "--env-file, and -e over it",
            "oracle/base",
            &["sh", "-c", env_without_hostname],
        )
        .flags(&["--env-file", &env_file, "-e", "OVERRIDE=flag"]),
        case(
            "-w creates and enters the directory",
            "oracle/base",
            &["sh", "-c", "pwd; ls -ld . | cut -c1-10"],
        )
        .flags(&["-w", "/work/dir"]),
        case(
            "-u uid:gid",
            "oracle/base",
            &["sh", "-c", "id; echo HOME=$HOME"],
        )
        .flags(&["-u", "1000:50"]),
        case(
            "-u name",
            "oracle/base",
            &["sh", "-c", "id; echo HOME=$HOME"],
        )
        .flags(&["-u", "app"]),
        case(
            "-u name:group",
            "oracle/base",
            &["sh", "-c", "id; echo HOME=$HOME"],
        )
        .flags(&["-u", "app:nogroup"]),
        case(
            "-u a uid not in /etc/passwd",
            "oracle/base",
            &["sh", "-c", "id; echo HOME=$HOME"],
        )
        .flags(&["-u", "4242"]),
        case(
            "--entrypoint with the command as its arguments",
            "oracle/base",
            &["hello", "from", "argv"],
        )
        .flags(&["--entrypoint", "echo"]),
        case(
            "--entrypoint over the image's ENTRYPOINT and CMD",
            "oracle/config",
            &["-c", "echo $GREETING; pwd"],
        )
        .flags(&["--entrypoint", "/bin/sh"]),
        case(
            "-w and -u over the image's WORKDIR and USER",
            "oracle/config",
            &["pwd; id -u"],
        )
        .flags(&["-w", "/tmp/elsewhere", "-u", "root"]),
        case(
            "-e over the image's ENV",
            "oracle/config",
            &["echo $GREETING $APP_MODE"],
        )
        .flags(&["-e", "APP_MODE=test"]),
        // The image's own configuration.
        case("the image's CMD (exec form)", "oracle/base", &[]),
        case(
            "the image's ENTRYPOINT, CMD, ENV, WORKDIR and USER",
            "oracle/config",
            &[],
        ),
        case(
            "a command replaces the image's CMD after its ENTRYPOINT",
            "oracle/config",
            &["echo $APP_MODE in $PWD; id"],
        ),
        case("the image's ENV", "oracle/config", &[env_without_hostname]),
        case("CMD in shell form", "oracle/shellcmd", &[]),
        case(
            "a command replaces a shell-form CMD",
            "oracle/shellcmd",
            &["echo", "replaced", "$WHO"],
        ),
        case(
            "ENTRYPOINT in shell form ignores the command",
            "oracle/shellentry",
            &["these", "args"],
        ),
        // stdin.
        case(
            "stdin with -i",
            "oracle/base",
            &["sh", "-c", "cat; echo end of input"],
        )
        .flags(&["-i"])
        .stdin(b"first line\nsecond line without newline".to_vec()),
        case(
            "-i with a workload that reads nothing",
            "oracle/base",
            &["echo", "not reading"],
        )
        .flags(&["-i"])
        .stdin(b"unread\n".to_vec()),
        case(
            "no stdin without -i",
            "oracle/base",
            &["sh", "-c", "cat; read line; echo read $? [$line]"],
        )
        .stdin(b"never seen\n".to_vec()),
        case(
            "-t: one terminal for stdin, stdout and stderr",
            "oracle/base",
            &[
                "sh",
                "-c",
                "tty; echo out; echo err >&2; echo TERM=$TERM; [ -t 0 ] && echo stdin too",
            ],
        )
        .flags(&["-t"]),
        // Volume.
        case(
            "10 MB on stdout and 10 MB on stderr",
            "oracle/base",
            &["sh", "-c", TEN_MB_SCRIPT],
        ),
        case(
            "10 MB of binary stdin back on stdout and stderr",
            "oracle/base",
            &["sh", "-c", "tee /dev/stderr"],
        )
        .flags(&["-i"])
        .stdin(binary),
        // Signals (docker --init: see the module's documentation).
        case(
            "killed by SIGTERM: 143",
            "oracle/base",
            &["sh", "-c", "echo before; kill -TERM $$; echo after"],
        )
        .docker_only(&["--init"]),
        case(
            "killed by SIGKILL: 137",
            "oracle/base",
            &["sh", "-c", "echo before >&2; kill -KILL $$"],
        )
        .docker_only(&["--init"]),
        // Arguments pass untouched: no shell between docker run and the program.
        case(
            "arguments are passed as given",
            "oracle/base",
            &["printf", "[%s]\\n", "two words", "$HOME", "*", "", "-n"],
        ),
        case(
            "a background child does not hold the run open",
            "oracle/base",
            &["sh", "-c", "sleep 30 & echo done"],
        ),
        case(
            "-i with a workload that stops reading early",
            "oracle/base",
            &["head", "-c", "5"],
        )
        .flags(&["-i"])
        .stdin(vec![b'x'; 10 << 20]),
        // What docker run refuses with 125.
        case("-u of a user the image lacks", "oracle/base", &["id"])
            .flags(&["-u", "ghost"])
            .engine_error("ghost"),
        case("-w of a relative path", "oracle/base", &["pwd"])
            .flags(&["-w", "relative/dir"])
            .engine_error("relative"),
        case("--env-file of a missing file", "oracle/base", &["true"])
            .flags(&["--env-file", "/no/such/env-file"])
            .engine_error("/no/such/env-file"),
        case("-w of a file", "oracle/base", &["pwd"])
            .flags(&["-w", "/etc/motd"])
            .engine_error("/etc/motd"),
        case("nothing to run", "oracle/base", &[])
            .flags(&["--entrypoint", ""])
            .engine_error("no command"),
    ]
}

fn docker_side(engine: &DockerEngine, case: &Case) -> Outcome {
    let mut cmd = engine.docker();
    cmd.args(["run", "--rm", "--network", "none"])
        .args(case.docker_only)
        .args(&case.flags)
        .arg(case.image)
        .args(&case.command)
        .env("FROM_CALLER", "the caller's value")
        .env_remove("UNSET_IN_CALLER");
    run(cmd, case.stdin.as_deref(), RUN_LIMIT)
}

fn ignite_side(host: &Host, case: &Case) -> Outcome {
    let mut cmd = host.std_ignite();
    cmd.env_remove("RUST_LOG")
        .env("IGNITE_WARM_STARTS", "on")
        .env("NO_COLOR", "1")
        .args(["run", "--rm", "--network", "none"])
        .args(&case.flags)
        .arg(case.image)
        .args(&case.command)
        .env("FROM_CALLER", "the caller's value")
        .env_remove("UNSET_IN_CALLER");
    run(cmd, case.stdin.as_deref(), RUN_LIMIT)
}

#[test]
fn docker_run_and_ignite_run_agree() {
    ignite_testkit::require_root!("booting VMs and running a Docker Engine");
    ignite_testkit::require_program!("dockerd", "docker.io");
    let host = Host::new(cargo_bin!("ignite"));
    let engine = DockerEngine::start();
    let dir = host.root().join("oracle");
    std::fs::create_dir_all(&dir).unwrap();

    // The images, in docker and then, through `docker save`, in ignite.
    let started = Instant::now();
    for (name, context) in write_contexts(&dir) {
        engine.build(name, &context);
        let archive = dir.join(format!("{}.tar", name.replace('/', "-")));
        engine.run(&["save", "-o", &archive.display().to_string(), name]);
        host.ignite()
            .args(["image", "import", "--name", name])
            .arg(format!("docker-archive:{}", archive.display()))
            .assert()
            .success();
    }
    eprintln!("images built and imported in {:?}", started.elapsed());

    let cases = cases(&dir);
    assert!(cases.len() >= 25, "the suite promises at least 25 cases");
    // Docker's side first, one at a time: it is quick, and its containers then do not
    // compete with the VMs for the two cores.
    let started = Instant::now();
    let docker: Vec<Outcome> = cases.iter().map(|c| docker_side(&engine, c)).collect();
    eprintln!("{} docker runs in {:?}", cases.len(), started.elapsed());

    // Ignite's side runs warm: restored from the template of its machine, built here by
    // a first run (every case has the same machine: no network, the default size).
    let first = host
        .std_ignite()
        .env("IGNITE_WARM_STARTS", "on")
        .args(["run", "--rm", "--network", "none", "oracle/base", "true"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let template = host.templates(1).remove(0);

    let started = Instant::now();
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(cases.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().unwrap();
                        let i = *next;
                        *next += 1;
                        i
                    };
                    let Some(case) = cases.get(i) else { return };
                    let outcome = ignite_side(&host, case);
                    results.lock().unwrap()[i] = Some(outcome);
                }
            });
        }
    });
    let ignite: Vec<Outcome> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.expect("every case ran"))
        .collect();
    eprintln!(
        "{} ignite runs on {THREADS} threads in {:?}",
        cases.len(),
        started.elapsed()
    );

    let mut report = String::new();
    let mut failed = 0;
    for ((case, d), i) in cases.iter().zip(&docker).zip(&ignite) {
        let differences = compare(case, d, i);
        eprintln!(
            "{} {} (docker {:.1?}, ignite {:.1?})",
            if differences.is_empty() {
                "same"
            } else {
                "DIFF"
            },
            case.name,
            d.took,
            i.took
        );
        if !differences.is_empty() {
            failed += 1;
            report.push_str(&format!(
                "\n{}: docker run --rm --network none {} {} {} {:?}\n{differences}",
                case.name,
                case.docker_only.join(" "),
                case.flags.join(" "),
                case.image,
                case.command
            ));
            if case.compare != Compare::Exact || d.stderr.len() <= 2000 {
                report.push_str(&format!("  (ignite's stderr: {})\n", show(&i.stderr)));
            }
        }
    }
    // They were warm: a VM of the same machine starts from the template.
    host.ignite()
        .env("IGNITE_WARM_STARTS", "on")
        .args([
            "run",
            "--name",
            "probe",
            "--network",
            "none",
            "oracle/base",
            "sleep",
            "100",
        ])
        .assert()
        .success();
    assert_eq!(
        host.vm("probe").status.restored_from.as_deref(),
        Some(template.as_str())
    );
    host.ignite().args(["rm", "-f", "probe"]).assert().success();
    // Nothing stays behind: every run was --rm.
    let left = ignite_testkit::stdout(host.ignite().args(["ps", "-a", "-q"]));
    assert!(
        failed == 0 && left.is_empty(),
        "{failed} of {} cases differ from docker run:{report}\nVMs left behind: {left:?}",
        cases.len()
    );
}
