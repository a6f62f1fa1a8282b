#!/usr/bin/env python3
"""Density: many idle container-mode VMs on one host, the machine as it is now against the
machine as it was (the old command line), in the same run.

For each setting, N idle VMs (`ignite run -d --network none --memory 128MB IMAGE
/bin/sleep 100000`, `--parallel` at a time) are brought up, left to settle, then measured:

- time to bring all up;
- host memory per VM, as a ratio of the VM's memory size: the growth of the memory the
  host holds and cannot simply drop (see `host_used_kib`: page tables, kernel stacks and
  slab are in it, which no PSS shows) divided by N, and the summed PSS (shared pages
  divided among their users) of the VMMs, supervisors and watchers divided by N; the
  larger of the two is the figure judged (the MemAvailable drop is printed beside them);
- idle host CPU (cores busy over 10 s);
- `ignite ps -a` time (median of 5);
- whether every VM answers `ignite exec` (a sample of 8, or all with --exec-all);
- what `ignite rm -f` of all of them leaves (VM directories, VMM processes);
- and first, `ignite run --rm --cold` of the machine now against the old machine (the boot
  must not be slower), alternating.

Settings: `before` is the old machine as far as the environment can bring it back (boots
cold, no balloon, only guest RAM mergeable: IGNITE_WARM_STARTS=off
IGNITE_FREE_PAGE_REPORTING=off IGNITE_VMM_MEMORY_MERGEABLE=off; its guests are tickless too,
which no setting undoes); `now` is the default machine (warm starts from the machine's
template, a balloon with free page reporting, all of the VMM's memory mergeable); `now+ksm`
is `now` with the host's
KSM turned on for the measurement (its former settings are put back afterwards; the project
itself never changes them).

Targets (issue "Density"): KSM off at most 0.75x of the VM's memory (0.5x wished); KSM on
at most 0.35x.

Needs root, QEMU, Debian's kernel package (scripts/setup.sh) and the static guest init
(IGNITE_INIT). Uses IGNITE_ACCEL if set.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from oci_layout import write_layout  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle import busybox_tar  # noqa: E402

TARGET_KSM_OFF = 0.75
WISHED_KSM_OFF = 0.5
TARGET_KSM_ON = 0.35
MEMORY_MIB = 128
KSM = Path("/sys/kernel/mm/ksm")
SETTINGS = {
    "before": {"IGNITE_WARM_STARTS": "off", "IGNITE_FREE_PAGE_REPORTING": "off",
               "IGNITE_VMM_MEMORY_MERGEABLE": "off"},
    "now": {"IGNITE_WARM_STARTS": "on"},
}


def meminfo(field: str) -> int:
    """A /proc/meminfo figure in KiB."""
    for line in open("/proc/meminfo"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/meminfo")


def cpu_ticks() -> tuple:
    """(busy, total) jiffies of all CPUs."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def processes_of(root: Path) -> list:
    """PIDs of the VMs' processes: those whose command line names the state root (VMMs,
    supervisors) and their children (each confined VMM's watcher)."""
    named, parents = [], {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(root).encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                named.append(int(pid))
            # The parent is the field after the command's name, which may hold spaces.
            parents[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found = set(named)
    return sorted(found | {pid for pid, parent in parents.items() if parent in found})


def host_used_kib() -> int:
    """Memory the host holds and cannot simply drop: MemAvailable's own estimate (free
    pages, plus the file pages on the LRU, plus reclaimable slab) without its low-watermark
    clamp. MemAvailable counts only half of the page cache while that is below twice the
    zones' low watermark (~180 MiB here), which is where the caches dropped before a
    measurement leave it: the page cache the VMs' start adds (the template's memory
    file, kernel, logs) then shows half as used, and the more so the fewer VMs there are.
    The page cache a VMM maps is in its PSS, the other figure judged."""
    free = meminfo("MemFree") + meminfo("Active(file)") + meminfo("Inactive(file)") + meminfo("SReclaimable")
    return meminfo("MemTotal") - free


def pss_kib(pids: list) -> int:
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Ksm:
    """The host's KSM switched on for a measurement and put back as it was."""

    FILES = ["run", "pages_to_scan", "sleep_millisecs"]

    def __init__(self):
        self.saved = {f: (KSM / f).read_text().strip() for f in self.FILES}

    def on(self):
        (KSM / "pages_to_scan").write_text("4000")
        (KSM / "sleep_millisecs").write_text("20")
        (KSM / "run").write_text("1")

    def sharing_mib(self) -> float:
        return int((KSM / "pages_sharing").read_text()) * 4 / 1024

    def restore(self):
        # Unmerging (run=2) first would copy every merged page back: just stop scanning.
        for f in ["pages_to_scan", "sleep_millisecs", "run"]:
            (KSM / f).write_text(self.saved[f])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--vms", type=int, default=32)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--settle", type=float, default=20.0, help="seconds idle before measuring")
    p.add_argument("--settings", default="before,now,now+ksm")
    p.add_argument("--exec-all", action="store_true", help="exec into every VM, not a sample of 8")
    p.add_argument("--boot-runs", type=int, default=5, help="cold run --rm pairs timed (0: none)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench density: needs root", file=sys.stderr)
        return 1
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if not debs or not os.environ.get("IGNITE_INIT"):
        print("bench density: needs Debian's kernel package (scripts/setup.sh) and IGNITE_INIT", file=sys.stderr)
        return 1
    if "now+ksm" in args.settings and not KSM.is_dir():
        print("bench density: this host's kernel has no KSM", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ibden", dir="/tmp"))
    state = work / "state"
    ig = [os.path.abspath(args.ignite), "-q", "--root", str(state)]

    def ignite(*a, env=None, check=True):
        done = subprocess.run(ig + list(a), capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise RuntimeError(f"ignite {' '.join(a)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    results = {}
    ksm = None
    try:
        ignite("kernel", "import", debs[0])
        tar = work / "busybox.tar"
        busybox_tar(tar, 0)
        layout = work / "layout"
        write_layout(tar, layout, "busybox", ["/bin/true"])
        ignite("image", "import", "--name", "bench/busybox:1", f"oci:{layout}:busybox")
        run = ["run", "-d", "--network", "none", "--memory", f"{MEMORY_MIB}MB", "bench/busybox:1",
               "/bin/sleep", "100000"]
        if args.boot_runs:
            # The balloon must not slow a boot: `run --rm
            # --cold` of the machine now against the old machine, alternating.
            once = ig + ["run", "--rm", "--cold", "--network", "none", "--memory", f"{MEMORY_MIB}MB",
                         "bench/busybox:1", "true"]
            old_env = dict(os.environ, IGNITE_FREE_PAGE_REPORTING="off", IGNITE_VMM_MEMORY_MERGEABLE="off")
            new_t, old_t = [], []
            for _ in range(args.boot_runs):
                for env, times in [(os.environ, new_t), (old_env, old_t)]:
                    t = time.perf_counter()
                    subprocess.run(once, check=True, env=env, stdin=subprocess.DEVNULL, capture_output=True)
                    times.append(time.perf_counter() - t)
            n, o = statistics.median(new_t), statistics.median(old_t)
            print(f"bench density boot: run --rm --cold {n:.2f} s now against {o:.2f} s with the old machine "
                  f"(no balloon; median of {args.boot_runs}): ratio {n / o:.2f}x, "
                  f"target: not slower beyond noise")
        for setting in args.settings.split(","):
            env = dict(os.environ, **SETTINGS[setting.split("+")[0]])
            if setting.startswith("now"):
                # The machine's template first, as a user's first run would build it.
                ignite("run", "--rm", "--network", "none", "--memory", f"{MEMORY_MIB}MB", "bench/busybox:1",
                       "true", env=env)
                for _ in range(1200):
                    listed = json.loads(ignite("snapshots", "-o", "json"))
                    if any("ignite.weave.works/template" in s["metadata"].get("labels", {}) for s in listed):
                        break
                    time.sleep(0.25)
                else:
                    raise RuntimeError("no warm-start template was built")
            if setting.endswith("+ksm"):
                ksm = Ksm()
                ksm.on()
            # Drop clean page cache so both sides start from the same host state.
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("1")
            time.sleep(1)
            available_before = meminfo("MemAvailable")
            used_before = host_used_kib()
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                uids = list(pool.map(lambda _: ignite(*run, env=env), range(args.vms)))
            up = time.perf_counter() - start
            time.sleep(args.settle)
            if ksm:
                # Until merging stops growing (bounded).
                last = -1.0
                for _ in range(30):
                    now = ksm.sharing_mib()
                    if now - last < 4:
                        break
                    last = now
                    time.sleep(4)
            busy0, total0 = cpu_ticks()
            time.sleep(10)
            busy1, total1 = cpu_ticks()
            cores = os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0)
            drop_mib = (available_before - meminfo("MemAvailable")) / 1024 / args.vms
            used_mib = (host_used_kib() - used_before) / 1024 / args.vms
            pss_mib = pss_kib(processes_of(state)) / 1024 / args.vms
            ps_times = []
            for _ in range(5):
                t = time.perf_counter()
                ignite("ps", "-a")
                ps_times.append(time.perf_counter() - t)
            sample = uids if args.exec_all else uids[:: max(1, len(uids) // 8)]
            answered = sum(1 for uid in sample if ignite("exec", uid, "busybox", "echo", "ok", check=False) == "ok")
            ignite("rm", "-f", *uids)
            left_dirs = [d for d in (state / "vms").iterdir() if not d.name.startswith(".")]
            left_procs = processes_of(state)
            if ksm:
                ksm.restore()
                ksm = None
            per_vm = max(used_mib, pss_mib)
            results[setting] = per_vm / MEMORY_MIB
            print(f"bench density {setting}: {args.vms} VMs of {MEMORY_MIB} MiB up in {up:.1f} s "
                  f"({args.parallel} at a time); host memory per VM {per_vm:.0f} MiB = "
                  f"{per_vm / MEMORY_MIB:.2f}x of its memory (host memory used {used_mib:.0f} MiB, "
                  f"PSS {pss_mib:.0f} MiB; MemAvailable drop {drop_mib:.0f} MiB); idle {cores:.2f} cores; ps -a {statistics.median(ps_times) * 1000:.0f} ms; "
                  f"exec answered {answered}/{len(sample)}; after rm -f: {len(left_dirs)} VM directories, "
                  f"{len(left_procs)} processes left")
        if "before" in results and "now" in results:
            ok = results["now"] <= TARGET_KSM_OFF
            print(f"bench density: KSM off {results['now']:.2f}x of the VM's memory against "
                  f"{results['before']:.2f}x before (ratio {results['now'] / results['before']:.2f}x); "
                  f"target <= {TARGET_KSM_OFF}x (wished {WISHED_KSM_OFF}x): {'ok' if ok else 'MISSED'}")
        if "now+ksm" in results:
            ok = results["now+ksm"] <= TARGET_KSM_ON
            print(f"bench density: KSM on {results['now+ksm']:.2f}x of the VM's memory; "
                  f"target <= {TARGET_KSM_ON}x: {'ok' if ok else 'MISSED'}")
    finally:
        if ksm:
            ksm.restore()
        for pid in processes_of(state):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        time.sleep(0.5)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
