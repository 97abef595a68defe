"""report: versioned JSON benchmark reports, with units in key names and the full context."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from edgepress import atomic
from edgepress.errors import UserError
from edgepress.runtime import artifact

SCHEMA_VERSION = "1.0"


def bench_report(session, bundle, samples_ms, init_ms, first_ms, protocol, command) -> dict:
    path = Path(session.path)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "bench",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "device": fingerprint(),
        "engine": {"name": session.backend, "version": session.version,
                   "threads": session.threads, "options": session.options},
        "model": {"path": str(path), "format": session.format,
                  "precision": bundle.precision if bundle else None,
                  "sha256": artifact.sha256_file(path), "size_bytes": path.stat().st_size,
                  "bundle": str(bundle.path) if bundle else None},
        "protocol": protocol,
        "results": {"init_ms": init_ms, "first_inference_ms": first_ms,
                    "latency_ms": stats(samples_ms), "samples_ms": samples_ms},
    }


def stats(samples_ms) -> dict:
    """Summary statistics; percentiles use numpy's default 'linear' method (Hyndman-Fan 7)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    out = {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 95, 99)}
    out.update(mean=float(a.mean()), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
               min=float(a.min()), max=float(a.max()), n=int(a.size),
               throughput_per_s=float(1000.0 / a.mean()))
    return out


def fingerprint() -> dict:
    """What machine measured this: enough to tell whether two reports are comparable."""
    cpuinfo = _read("/proc/cpuinfo")
    return {
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_model": _cpuinfo_field(cpuinfo, ("model name", "Hardware", "Processor")),
        "cores": os.cpu_count(),
        "isa": _isa(cpuinfo),
    }


_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd", "asimddp",
        "i8mm", "fphp", "asimdhp", "sve")


def _isa(cpuinfo: str) -> list[str]:
    flags = set()
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in _ISA if f in flags)


def _cpuinfo_field(cpuinfo: str, keys) -> str | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return value.strip()
    return platform.processor() or None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def save(rep: dict, path: Path, overwrite: bool = True) -> None:
    atomic.write_bytes(Path(path), (json.dumps(rep, indent=1) + "\n").encode(), overwrite)


def load(path) -> dict:
    """Reads a report, rejecting malformed or newer-major ones with one clear line."""
    path = Path(path)
    try:
        rep = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"report {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"report {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(rep, dict) or "schema_version" not in rep:
        raise UserError(f"report {str(path)!r} has no schema_version (not an edgepress report)")
    major = str(rep["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise UserError(f"report {str(path)!r}: schema_version {rep['schema_version']!r} is not "
                        f"supported (this edgepress reads {SCHEMA_VERSION.split('.')[0]}.x)")
    return rep
