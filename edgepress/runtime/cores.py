"""cores: which CPU cores a benchmark runs on, read from /sys like the kernel's scheduler sees them.

A phone's cores differ (big.LITTLE: a thread on a little core runs 2-4x slower), and an engine's
thread pool lands wherever the scheduler puts it, so an unpinned phone benchmark measures the
scheduler as much as the model. On a CPU whose cores differ in capacity or maximum frequency the
process is pinned, by default, to the fastest cores, as many as the threads asked for; on a
uniform CPU nothing changes. Every reader takes `root` (the directory /sys lives under), so the
same code reads this host, the emulated device and a recorded phone's sysfs tree in the tests.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgepress.errors import UserError

CPU_DIR = "sys/devices/system/cpu"
CHOICES = ("auto", "big", "little", "all")  # or a list such as 4-7 or 0,2


@dataclass(frozen=True)
class Core:
    cpu: int
    capacity: int | None  # cpu_capacity: the scheduler's relative speed (1024 = the fastest)
    max_freq_khz: int | None  # cpufreq/cpuinfo_max_freq

    @property
    def speed(self) -> tuple:
        return (self.capacity or 0, self.max_freq_khz or 0)


def topology(root="/") -> list[Core]:
    """The online cores with their capacity and maximum frequency where readable."""
    base = Path(root) / CPU_DIR
    cpus = parse_list(_read(base / "online")) or sorted(
        int(p.name[3:]) for p in base.glob("cpu[0-9]*")) or list(range(os.cpu_count() or 1))
    return [Core(n, _int(base / f"cpu{n}" / "cpu_capacity"),
                 _int(base / f"cpu{n}" / "cpufreq" / "cpuinfo_max_freq")) for n in cpus]


def heterogeneous(cores: list[Core]) -> bool:
    return len({c.speed for c in cores}) > 1


def clusters(cores: list[Core]) -> list[dict]:
    """Cores grouped by speed, fastest first: what a fingerprint records of the layout."""
    groups: dict[tuple, list[int]] = {}
    for c in cores:
        groups.setdefault(c.speed, []).append(c.cpu)
    return [{"cpus": format_list(cpus), "capacity": speed[0] or None,
             "max_freq_mhz": speed[1] / 1000 if speed[1] else None}
            for speed, cpus in sorted(groups.items(), reverse=True)]


def select(spec: str | None, threads: int, cores: list[Core], allowed=None) -> list[int] | None:
    """The CPUs to pin to for `spec` (None: leave the process as it is). `allowed`: the CPUs
    this process may use (Android keeps a background app's processes on the little cores)."""
    spec = spec or "auto"
    usable = [c for c in cores if allowed is None or c.cpu in allowed]
    if spec == "auto":
        return select("big", threads, cores, allowed) if heterogeneous(usable) else None
    if spec == "all":
        return sorted(c.cpu for c in usable)
    if spec in ("big", "little"):
        sign = -1 if spec == "big" else 1  # fastest (or slowest) first, then in CPU order
        ranked = sorted(usable, key=lambda c: (sign * c.speed[0], sign * c.speed[1], c.cpu))
        return sorted(c.cpu for c in ranked[:max(1, threads)])
    wanted = parse_list(spec)
    if not wanted:
        raise UserError(f"--cores {spec!r}: choose one of {', '.join(CHOICES)}, or a CPU list "
                        f"such as 4-7 or 0,2")
    missing = sorted(set(wanted) - {c.cpu for c in usable})
    if missing:
        raise UserError(f"--cores {spec!r}: CPU {missing[0]} is not available to this process "
                        f"(available: {format_list(c.cpu for c in usable)})")
    return wanted


def affinity() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


@contextlib.contextmanager
def pinned(cpus: list[int] | None):
    """Pins this process (and the engine threads and child processes it starts) to `cpus` for
    the block, then restores the mask it had; yields the mask actually in force."""
    before = affinity()
    if cpus is None or before is None:
        yield before
        return
    os.sched_setaffinity(0, cpus)
    try:
        yield affinity()
    finally:
        os.sched_setaffinity(0, before)


def plan(spec: str | None, threads: int, root="/") -> dict:
    """What bench records and pins: the request, the chosen CPUs and why."""
    cores = topology(root)
    allowed = affinity()
    chosen = select(spec, threads, cores, set(allowed) if allowed is not None else None)
    hetero = heterogeneous(cores)
    return {"requested": spec or "auto", "chosen": chosen, "heterogeneous": hetero,
            "clusters": clusters(cores), "why": _why(spec, chosen, len(cores), hetero)}


def _why(spec, chosen, total: int, hetero: bool) -> str:
    if spec not in (None, "auto"):
        return "as asked"
    if chosen is not None:
        return f"the fastest {len(chosen)} of {total} cores, which differ"
    if hetero:  # e.g. an Android app in the background, held on the little cores
        return "not pinned: the cores this process may use are alike"
    return "not pinned: the cores are alike"


def parse_list(text: str) -> list[int]:
    """The kernel's CPU list format ("0-3,6"); [] for anything else."""
    out: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            return []
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


def format_list(cpus) -> str:
    cpus, runs = sorted(cpus), []
    for n in cpus:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None
