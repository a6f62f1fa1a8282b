"""Bare QEMU baselines for the boot benchmarks: the command line Ignite recorded for a VM
(`<state>/vms/<uid>/vmm.cmdline`), turned into a plain `qemu-system-x86_64` run of the same
kernel, initramfs and disk with no supervisor.

Without a supervisor nobody takes the workload's output and exit over the agent channel (the
guest would wait for that), so the bare run has no agent port and its guest is told so
(`ignite.agent=off`: the workload writes on the console and ends at once).

`fastest=True` also drops TCG's instruction counting (`-icount`) and hands the guest the host's
TSC frequency (`tsc_early_khz=`) instead, the fastest reliable TCG boot known for this guest
(issue 19's measurement: ~1.45 s against 3.2-6.7 s with `-icount shift=auto`). The guest's
CPU model stays the recorded one (under TCG Ignite's x86-64-v2 model, faster than `max`), so
both sides of a ratio boot the same CPU.
"""
import re
from pathlib import Path


def host_tsc_khz() -> int:
    """The host's TSC frequency in kHz: sysfs where the kernel exports it, else cpuinfo's
    `cpu MHz` (the nominal frequency, which a constant TSC runs at)."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz")
    if sysfs.exists():
        return int(sysfs.read_text().strip())
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    raise RuntimeError("no TSC frequency in sysfs or /proc/cpuinfo")


def bare_cmdline(recorded_file: Path, fastest: bool = False) -> list:
    recorded = [c.decode() for c in recorded_file.read_bytes().split(b"\0") if c]
    extra = " ignite.agent=off"
    append = recorded[recorded.index("-append") + 1] if "-append" in recorded else ""
    if fastest and "tsc_early_khz=" not in append:
        extra += f" tsc_early_khz={host_tsc_khz()}"
    cmdline, skip = [], 0
    for i, arg in enumerate(recorded):
        if skip:
            skip -= 1
            continue
        nxt = recorded[i + 1] if i + 1 < len(recorded) else ""
        if arg in ("-device", "-chardev") and ("virtio-serial" in nxt or "virtserialport" in nxt or "id=agent" in nxt):
            skip = 1
            continue
        if fastest and arg == "-icount":
            skip = 1
            continue
        if arg == "-append":
            cmdline += [arg, nxt + extra]
            skip = 1
            continue
        # Confinement is the supervisor's (the user it claimed, the seccomp filter): the
        # bare QEMU runs as the caller, unfiltered.
        if arg in ("-runas", "-sandbox"):
            skip = 1
            continue
        # A confined VMM inherits its own disk open (`file=/proc/self/fd/N`): the bare run
        # opens it by name, the VM's root disk beside the recorded command line.
        if arg.startswith("id=disk") and "file=/proc/self/fd/" in arg:
            arg = re.sub(r"file=/proc/self/fd/\d+", f"file={recorded_file.parent / 'root.qcow2'}", arg)
        cmdline.append(arg)
    return cmdline
