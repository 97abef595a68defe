"""probe: a bench's memory figures, measured in a fresh child process.

The measuring process cannot measure itself: peak RSS never goes down, and by then it has run
timing loops and holds whatever its caller imported. So `measure` starts
`python -m edgepress.runtime.probe SPEC.json`, a process that imports only numpy, the Session and
the engine, reads its RSS, loads the model (timed: a cold-start init), reads RSS again, runs it
a few times and prints its peak RSS. Linux: VmRSS / VmHWM from /proc/self/status; elsewhere
only the peak (ru_maxrss).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHOD = ("fresh child process (python -m edgepress.runtime.probe): imports numpy + engine, "
          "loads the model, runs it {runs} times; peak = VmHWM (ru_maxrss where /proc is "
          "missing); load_added = VmRSS after load - VmRSS before")


def measure(model_path, backend: str, threads: int, options: dict, feeds: dict,
            runs: int = 5) -> dict:
    """Memory figures (bytes) of a process that only loads `model_path` and runs it on `feeds`."""
    import numpy as np

    from edgepress.errors import UserError

    with tempfile.TemporaryDirectory(prefix="edgepress-probe-") as tmp:
        np.savez(Path(tmp) / "feeds.npz", **feeds)
        spec = {"model": str(model_path), "backend": backend, "threads": threads,
                "options": options, "feeds": str(Path(tmp) / "feeds.npz"), "runs": runs}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "edgepress.runtime.probe",
                               str(Path(tmp) / "spec.json")], capture_output=True, text=True,
                              env=_child_env())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"memory probe of {str(model_path)!r} failed: {last}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**figures, "runs": runs, "method": METHOD.format(runs=runs)}


def _child_env() -> dict:
    # The child must import this very edgepress (a source checkout may not be installed).
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # "kB" here means KiB
    except OSError:
        pass
    return None


def _peak_bytes() -> int | None:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows: neither /proc nor getrusage
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # macOS: bytes; others: KiB


def _child(spec_path: str) -> dict:
    import numpy as np

    from edgepress.runtime import session as session_mod

    spec = json.loads(Path(spec_path).read_text())
    with np.load(spec["feeds"], allow_pickle=False) as z:
        feeds = {k: z[k] for k in z.files}
    # Import the engine before the baseline, so "added by loading" is the model, not the library.
    session_mod.import_engine(spec["backend"])
    before = _status_bytes("VmRSS")
    t0 = time.perf_counter_ns()
    sess = session_mod.Session(spec["model"], threads=spec["threads"], backend=spec["backend"],
                               options=spec["options"])
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    after = _status_bytes("VmRSS")
    for _ in range(spec["runs"]):
        sess.run(feeds)
    return {"init_ms": init_ms, "peak_rss_bytes": _peak_bytes(), "rss_before_load_bytes": before,
            "load_added_rss_bytes": after - before if before is not None else None}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])))
