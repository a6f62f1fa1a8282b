#!/usr/bin/env python3
"""Warm starts and snapshots, each against a baseline measured in the same run:

- `ignite run --rm IMAGE true` of a container-mode busybox image started warm (restored
  from its machine's template) against the same run booted cold (`--cold`) (target: at
  most 0.3x), and against `docker run --rm` of the same image (moonshot: within 2x);
- `ignite snapshot create` and `ignite run --from-snapshot` of a counting guest with
  128 MiB and 1 GiB of memory: times and sizes (reported);
- the host memory (the VMMs' summed PSS and RSS) of 16 idle VMs started warm from one
  template, whose memory file each maps privately, against 16 VMs booted cold (reported).

Needs root, QEMU, qemu-img, Debian's kernel package (scripts/setup.sh), the static guest
init (IGNITE_INIT) and docker.io (a dockerd of its own: own data root and socket, no
bridge, no iptables). Uses IGNITE_ACCEL if set.
"""
import argparse
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
from own_dockerd import DOCKER, OwnDockerd  # noqa: E402

WARM_TARGET = 0.3
DOCKER_MOONSHOT = 2.0
CLONES = 16
COUNTER = "busybox mkdir -p /tmp; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; busybox sleep 0.2; done"


def timed(cmd, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def vmm_memory_mib(root: Path) -> tuple:
    """The summed PSS (shared pages divided among their users) and RSS of the QEMUs whose
    command line names a VM of `root`."""
    pss = rss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            if b"qemu-system" not in cmdline or str(root).encode() not in cmdline:
                continue
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss / 1024, rss / 1024


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench warm-starts: needs root", file=sys.stderr)
        return 1
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if not debs or not os.environ.get("IGNITE_INIT") or not shutil.which("dockerd"):
        print("bench warm-starts: needs docker.io, Debian's kernel package (scripts/setup.sh) and IGNITE_INIT",
              file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ibws", dir="/tmp"))
    state = work / "state"
    env = dict(os.environ, IGNITE_WARM_STARTS="on")
    ig = [os.path.abspath(args.ignite), "-q", "--root", str(state)]

    def ignite(*a):
        done = subprocess.run(ig + list(a), capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"ignite {' '.join(a)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    def wait_for_template():
        for _ in range(1200):
            listed = json.loads(ignite("snapshots", "-o", "json"))
            if any("ignite.weave.works/template" in s["metadata"].get("labels", {}) for s in listed):
                return
            time.sleep(0.25)
        raise RuntimeError("no warm-start template was built")

    dockerd = None
    try:
        ignite("kernel", "import", debs[0])
        tar = work / "busybox.tar"
        busybox_tar(tar, 0)
        layout = work / "layout"
        write_layout(tar, layout, "busybox", ["/bin/true"])
        image = f"oci:{layout}:busybox"
        ignite("image", "import", "--name", "bench/busybox:1", image)

        # Warm against cold: the first run builds the template.
        run = ig + ["run", "--rm", "--network", "none", "bench/busybox:1", "true"]
        subprocess.run(run, check=True, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        wait_for_template()
        cold, warm = [], []
        for _ in range(args.runs):
            cold.append(timed(run[:4] + ["run", "--cold"] + run[5:], env=env, stdin=subprocess.DEVNULL))
            warm.append(timed(run, env=env, stdin=subprocess.DEVNULL))
        c, w = statistics.median(cold), statistics.median(warm)
        verdict = "ok" if w / c <= WARM_TARGET else "MISSED"
        accel = os.environ.get("IGNITE_ACCEL", "auto")
        print(f"bench warm-start: ignite run --rm warm {w:.2f} s, cold {c:.2f} s (median of {args.runs}, "
              f"accel {accel}); ratio {w / c:.2f}x, target <= {WARM_TARGET}x: {verdict}")

        # Against a container of the same image.
        dockerd = OwnDockerd(work)
        denv = dockerd.env
        if not dockerd.ready():
            print("bench warm-start: dockerd did not start", file=sys.stderr)
            return 1
        with open(tar, "rb") as f:
            subprocess.run([DOCKER, "import", "-", "bench/busybox:1"], env=denv, stdin=f, check=True,
                           stdout=subprocess.DEVNULL)
        container = [timed([DOCKER, "run", "--rm", "--network", "none", "bench/busybox:1", "/bin/true"],
                           env=denv, stdin=subprocess.DEVNULL) for _ in range(args.runs)]
        d = statistics.median(container)
        verdict = "ok" if w / d <= DOCKER_MOONSHOT else "not yet"
        print(f"bench warm-vs-container: ignite run --rm warm {w:.2f} s, docker run --rm {d:.2f} s "
              f"(median of {args.runs}); ratio {w / d:.1f}x, moonshot <= {DOCKER_MOONSHOT}x: {verdict}")

        # Snapshots of 128 MiB and 1 GiB guests: create, restore, sizes.
        for memory in ["128MB", "1GB"]:
            creates, restores = [], []
            for i in range(max(2, args.runs // 2)):
                src = f"src-{memory.lower()}-{i}"
                ignite("run", "--cold", "--name", src, "--network", "none", "--memory", memory, "-u", "0",
                       "bench/busybox:1", "sh", "-c", COUNTER)
                start = time.perf_counter()
                ignite("snapshot", "create", src, "--name", f"s-{src}")
                creates.append(time.perf_counter() - start)
                start = time.perf_counter()
                ignite("run", "--from-snapshot", f"s-{src}", "--name", f"r-{src}")
                restores.append(time.perf_counter() - start)
                snap = next(s for s in json.loads(ignite("snapshots", "-o", "json"))
                            if s["metadata"]["name"] == f"s-{src}")
                ignite("rm", "-f", src, f"r-{src}")
                ignite("snapshot", "rm", f"s-{src}")
            state_mib = snap["status"]["stateBytes"] / (1 << 20)
            disk_mib = snap["status"]["diskBytes"] / (1 << 20)
            print(f"bench snapshot-{memory}: create {statistics.median(creates):.2f} s, run --from-snapshot "
                  f"{statistics.median(restores):.2f} s (median of {len(creates)}); {state_mib:.1f} MiB of state, "
                  f"{disk_mib:.1f} MiB of disk layer (reported)")

        # Host memory: 16 VMs started warm from one template (its memory file mapped
        # privately by each) against 16 cold VMs, all idle.
        def start_all(prefix, extra):
            for i in range(CLONES):
                ignite("run", *extra, "--name", f"{prefix}-{i}", "--network", "none", "bench/busybox:1",
                       "sleep", "100000")
            time.sleep(2)
            usage = vmm_memory_mib(state)
            ignite("rm", "-f", *[f"{prefix}-{i}" for i in range(CLONES)])
            return usage
        warm_pss, warm_rss = start_all("warm", [])
        cold_pss, cold_rss = start_all("cold", ["--cold"])
        print(f"bench clone-memory: {CLONES} idle VMs started warm from one template: {warm_pss:.0f} MiB of VMM "
              f"PSS ({warm_rss:.0f} MiB RSS); {CLONES} cold VMs: {cold_pss:.0f} MiB PSS ({cold_rss:.0f} MiB RSS); "
              f"PSS ratio {warm_pss / cold_pss:.2f}x (reported)")
        return 0
    finally:
        if dockerd:
            dockerd.stop()
        left = subprocess.run(ig + ["ps", "-a", "-q"], capture_output=True, text=True, env=env).stdout.split()
        if left:
            subprocess.run(ig + ["rm", "-f"] + left, capture_output=True, env=env)
        for snap in subprocess.run(ig + ["snapshots", "-q"], capture_output=True, text=True, env=env).stdout.split():
            subprocess.run(ig + ["snapshot", "rm", snap], capture_output=True, env=env)
        subprocess.run(["sh", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
