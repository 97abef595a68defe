"""sensors: CPU frequency and thermal-zone temperature sampled during the timed runs, and the
per-window view of a sustained run that shows throttling.

A phone throttles within seconds of sustained load, so a latency figure means little without the
clock and temperature it was measured at. Samples are taken between inference calls (never inside
the timed call) at most every `interval_s`; a kernel that hides a value (a container without
cpufreq, Android's SELinux denying an app the thermal zones) gives null, never a guess. Like
cores.py, every reader takes `root`, so tests read recorded sysfs trees through the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepress.runtime.cores import CPU_DIR

THERMAL_DIR = "sys/class/thermal"
INTERVAL_S = 0.5
WINDOWS = 10  # a sustained run's p50 is reported per tenth of its duration
THROTTLE_RATIO = 1.10  # last window's p50 over the first's above this: throttled


class Sampler:
    """Call `tick(now_ns)` after each timed run; it reads the sensors when `interval_s` passed."""

    def __init__(self, cpus, root="/", interval_s: float = INTERVAL_S):
        self.root, self.cpus = Path(root), list(cpus)
        self.zones = sorted((self.root / THERMAL_DIR).glob("thermal_zone[0-9]*"),
                            key=lambda p: int(p.name.removeprefix("thermal_zone")))
        self.interval_ns = int(interval_s * 1e9)
        self.samples: list[dict] = []
        self._start = self._next = None

    def tick(self, now_ns: int) -> None:
        if self._next is not None and now_ns < self._next:
            return
        if self._start is None:
            self._start = now_ns
        self._next = now_ns + self.interval_ns
        self.samples.append({"t_s": round((now_ns - self._start) / 1e9, 3), **self.read()})

    def read(self) -> dict:
        """One reading: each chosen CPU's current MHz, and the hottest thermal zone."""
        freqs = [_number(self.root / CPU_DIR / f"cpu{n}" / "cpufreq" / "scaling_cur_freq")
                 for n in self.cpus]
        temps = [(_celsius(_number(z / "temp")), _text(z / "type") or z.name) for z in self.zones]
        temps = [(t, name) for t, name in temps if t is not None]
        hottest = max(temps, default=(None, None))
        return {"freq_mhz": [f / 1000 if f is not None else None for f in freqs],
                "temp_c": hottest[0], "zone": hottest[1]}

    def summary(self) -> dict:
        freqs = [f for s in self.samples for f in s["freq_mhz"] if f is not None]
        temps = [s["temp_c"] for s in self.samples if s["temp_c"] is not None]
        return {
            "interval_s": self.interval_ns / 1e9, "cpus": self.cpus,
            "freq_exposed": bool(freqs), "thermal_exposed": bool(temps),
            "freq_mhz": {"min": min(freqs), "max": max(freqs)} if freqs else None,
            "temp_c": {"start": temps[0], "end": temps[-1], "max": max(temps)} if temps else None,
            "samples": self.samples,
        }


def windows(samples_ns, starts_ns, seconds: float, count: int = WINDOWS) -> dict:
    """p50 per window of a sustained run (by when each run started) and whether it throttled:
    the last window's p50 over THROTTLE_RATIO x the first's."""
    samples = np.asarray(samples_ns, np.float64) / 1e6
    starts = np.asarray(starts_ns, np.float64) / 1e9
    width = seconds / count
    index = np.minimum((starts // width).astype(int), count - 1)
    rows = [{"start_s": round(i * width, 3), "end_s": round((i + 1) * width, 3),
             "n": int((index == i).sum()),
             "p50_ms": float(np.median(samples[index == i])) if (index == i).any() else None}
            for i in range(count)]
    filled = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
    ratio = filled[-1] / filled[0] if len(filled) > 1 and filled[0] > 0 else None
    return {"seconds": seconds, "windows": rows, "last_over_first": ratio,
            "threshold": THROTTLE_RATIO, "throttled": ratio is not None and ratio > THROTTLE_RATIO}


def _celsius(value: float | None) -> float | None:
    # The kernel reports millidegrees; some older phone drivers report whole degrees (a reading
    # of 45 is 45 C, not 0.045 C), and a disabled sensor reads a large negative number.
    if value is None:
        return None
    c = value / 1000 if abs(value) >= 200 else value
    return round(c, 1) if -40 <= c <= 150 else None


def _number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def describe(rep: dict) -> list[str]:
    """What `bench` prints under its table about where and how hot a report ran."""
    cpu, sens = rep.get("cpu") or {}, rep.get("sensors") or {}
    mask = cpu.get("mask")
    lines = [f"t{rep['engine']['threads']}: cores {_cpus(mask)} ({cpu.get('why', '-')})"]
    if sens.get("freq_mhz"):
        lines.append(f"  clock {sens['freq_mhz']['min']:g}-{sens['freq_mhz']['max']:g} MHz")
    if sens.get("temp_c"):
        t = sens["temp_c"]
        lines.append(f"  hottest zone {t['start']:g} C at start, {t['max']:g} C max")
    sustained = rep["results"].get("sustained")
    if sustained:
        p50s = ", ".join("-" if w["p50_ms"] is None else f"{w['p50_ms']:.3f}"
                         for w in sustained["windows"])
        ratio = sustained["last_over_first"]
        verdict = "THROTTLED" if sustained["throttled"] else "steady"
        lines.append(f"  p50 per {sustained['seconds'] / len(sustained['windows']):g} s window: "
                     f"{p50s} ms; last/first {ratio:.2f}x: {verdict}" if ratio else
                     f"  p50 per window: {p50s} ms")
    return lines


def _cpus(mask) -> str:
    from edgepress.runtime.cores import format_list

    return format_list(mask) if mask else "-"
