"""report: versioned JSON benchmark reports, with units in key names and the full context.

The format is documented by `report.schema.json` beside this file (JSON Schema 2020-12). `load`
checks a report against the parts of that schema the readers rely on (required keys and types),
so a truncated, hand-edited or foreign file fails with one line naming the bad field instead of a
KeyError deep inside `compare`. Minor versions only add optional fields; a newer major is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgepress import __version__, atomic
from edgepress.errors import UserError
from edgepress.runtime import schema as _schema
from edgepress.runtime.fingerprint import fingerprint
from edgepress.runtime.schema import check

SCHEMA_VERSION = "1.1"  # 1.1: cpu, sensors, results.sustained, phone fields
PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99_9": 99.9}
PERCENTILE_METHOD = "linear"  # numpy's default: Hyndman & Fan type 7, as R and Excel use


def bench_report(*, session, model: dict, protocol: dict, results: dict, memory, fidelity,
                 inputs: dict, command: str) -> dict:
    """Assembles a report: everything needed to tell whether two reports are comparable."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "bench",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgepress_version": __version__,
        "command": command,
        "device": fingerprint(),
        "engine": {"name": session.backend, "version": session.version,
                   "threads": session.threads, "options": effective_options(session)},
        "model": model,
        "inputs": inputs,
        "protocol": protocol,
        "results": results,
        "memory": memory,
        "fidelity": fidelity,
    }


def effective_options(session) -> dict:
    """Every engine option with the value in force, defaults included, so two reports that
    differ only by an unstated default still compare as equal (and vice versa)."""
    from edgepress.runtime.session import OPTIONS

    # The first choice listed for each option in session.OPTIONS is the engine's default.
    return {key: session.options.get(key, choices[0])
            for key, choices in OPTIONS[session.backend].items()}


def results(samples_ns, init_ms: float, first_ms: float) -> dict:
    """The timing figures: statistics derived from the raw samples, which are kept (ms, ns
    resolution) so any other statistic can be recomputed later."""
    samples_ms = [round(s / 1e6, 6) for s in samples_ns]
    return {"init_ms": init_ms, "first_inference_ms": first_ms,
            "latency_ms": stats(samples_ms), "samples_ms": samples_ms}


def stats(samples_ms) -> dict:
    """Summary statistics. Percentiles interpolate linearly between order statistics (numpy's
    'linear' method, Hyndman & Fan type 7); std is the sample standard deviation (ddof=1);
    throughput is sequential single-stream inferences per second, 1000 / mean."""
    a = np.asarray(samples_ms, dtype=np.float64)
    out = {k: float(np.percentile(a, q, method=PERCENTILE_METHOD)) for k, q in PERCENTILES.items()}
    out.update(mean=float(a.mean()), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
               min=float(a.min()), max=float(a.max()), n=int(a.size),
               throughput_per_s=float(1000.0 / a.mean()) if a.mean() > 0 else 0.0,
               percentile_method=PERCENTILE_METHOD)
    return out


def save(rep: dict, path: Path, overwrite: bool = True) -> None:
    atomic.write_bytes(Path(path), (json.dumps(rep, indent=1) + "\n").encode(), overwrite)


def load(path) -> dict:
    """Reads a report, rejecting malformed, incomplete or newer-major ones with one clear line."""
    path = Path(path)
    try:
        rep = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"report {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"report {str(path)!r} is a directory, not a JSON report") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"report {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(rep, dict) or "schema_version" not in rep:
        raise UserError(f"report {str(path)!r} has no schema_version (not an edgepress report)")
    major = str(rep["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise UserError(f"report {str(path)!r}: schema_version {rep['schema_version']!r} is not "
                        f"supported (this edgepress reads {SCHEMA_VERSION.split('.')[0]}.x)")
    problem = check(rep, schema())
    if problem:
        raise UserError(f"report {str(path)!r}: {problem}")
    return rep


def schema() -> dict:
    return _schema.load("report")
