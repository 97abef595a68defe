"""measure: the device side of the suite, torch-free (docs/architecture.md: torch is never
imported in the process that runs or measures a model). For every artifact build.py listed: its
accuracy (labelled data) or top-1 agreement with the fp32 model of its format, `edgepress bench`
reports at each thread count, and its roofline efficiency against this host's theoretical peak.

Roofline: achieved GMAC/s = MACs of the model (edgepress inspect, on the fp32 model with the same
layers) / p50 latency; peak GMAC/s for T threads = T cores x clock x MACs/cycle for the precision,
from the host's ISA features (edgepress.devices.estimate.host_profile, the figure `estimate` uses,
with AMX counted where the CPU has it: see host_peaks).
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepress.devices import estimate, profile
from edgepress.runtime import artifact, bench, fingerprint, inspect, report, verify
from edgepress.runtime.session import Session

FULL = bench.Protocol()  # edgepress bench's defaults: 10 warm-up runs / 0.2 s, 50 runs / 1 s
QUICK = bench.Protocol(warmup_runs=3, warmup_s=0.05, min_runs=20, min_s=0.2, memory=False)


def quality(row: dict) -> dict:
    """A real model's task metric (tasks.py); else accuracy on labelled eval data, else top-1
    agreement with the fp32 reference; SNR always (against the same fp32 model of the same
    format, on the same held-out inputs)."""
    if row.get("task"):
        from benchmarks import tasks

        return tasks.evaluate(row)
    session = Session(artifact.open_bundle(row["bundle"]).model_path)
    fid = verify.Fidelity()
    refs = _reference_outputs(row["reference"], row["eval"])
    for (sample, label), ref in zip(_pairs(row["eval"], session), refs, strict=True):
        fid.add(ref, session.run(sample), label)
    res = fid.result()
    out = {"snr_db": res["snr_db"], "eval_samples": res["samples"]}
    if "accuracy" in res:
        return {**out, "metric": "accuracy", "value": res["accuracy"]["quantized"]}
    return {**out, "metric": "agreement", "value": res.get("top1_agreement")}


@functools.lru_cache(maxsize=2)
def _reference_outputs(reference: str, npz: str) -> tuple:
    """The fp32 reference's outputs on the eval data, computed once per (model, format): every
    artifact of that model and format is compared with the same outputs, and hundreds of
    held-out samples cost one fp32 pass instead of one per artifact."""
    session = Session(artifact.open_bundle(reference).model_path)
    return tuple(session.run(sample) for sample, _ in _pairs(npz, session))


def _pairs(npz: str, session: Session):
    """(sample, label) pairs from an .npz, renamed to the session's inputs by position where the
    names differ (a .tflite's signature names need not match the ONNX export's)."""
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    labels = arrays.pop("labels", None)
    specs = {s.name: s for s in session.inputs}
    if set(specs) != set(arrays):
        arrays = dict(zip(specs, arrays.values()))
    n = len(next(iter(arrays.values())))
    for i in range(n):  # a data set's rows may lack the batch axis of 1 the model declares
        yield ({k: v[i].reshape(specs[k].shape) for k, v in arrays.items()},
               None if labels is None else labels[i])


def pairs_first(rows: list[dict]) -> list[dict]:
    """Measuring order: per model, edgepress's int8 artifact of each format right before the
    peers of that format, then the rest. On a shared machine load drifts over minutes; the
    artifacts the headline compares are timed within seconds of each other."""
    def rank(r):
        if r["recipe"] != "int8":
            return (1, 0)
        return (0, ("onnx", "tflite").index(r["format"]), r["tool"] != "edgepress")
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), rank(r)))


def bench_all(row: dict, threads: tuple, protocol: bench.Protocol, where: Path) -> dict:
    """Bench reports (saved under `where`) per thread count; returns threads -> report."""
    reports = {}
    for t in threads:
        command = (f"edgepress bench {row['bundle']} --threads {t} --runs {protocol.min_runs} "
                   f"--min-seconds {protocol.min_s}" + ("" if protocol.memory else " --no-memory"))
        rep = bench.apply(row["bundle"], threads=t, protocol=protocol, command=command)
        path = where / f"{slug(row)}-t{t}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        report.save(rep, path, overwrite=True)
        reports[t] = rep
    return reports


def slug(row: dict) -> str:
    """A file-name-safe label: model/tool-recipe-format."""
    text = f"{row['tool']}-{row['recipe']}-{row['format']}"
    return f"{row['model']}/" + re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def macs(row: dict) -> int:
    return inspect.apply(artifact.open_bundle(row["macs_of"]).model_path)["macs"]


# Intel AMX (amx_int8): 2048 int8 ops = 1024 MACs per cycle per core, 8x AVX-512 VNNI's 128
# (Intel's Sapphire Rapids figures). estimate.host_profile counts vector units only; onnxruntime
# (MLAS) and XNNPACK both ship AMX int8 kernels, and int8 artifacts here beat the VNNI-only peak.
AMX_INT8_MACS_PER_CYCLE = 1024


def host_peaks():
    """This host as edgepress.devices sees it (cores, clock, vector MACs/cycle from the ISA),
    with the int8 figure raised to AMX's where the CPU has it."""
    host = estimate.host_profile()
    if "amx_int8" not in fingerprint.fingerprint()["isa"]:
        return host
    cores = tuple(replace(c, int8_macs_per_cycle=max(c.int8_macs_per_cycle,
                                                     AMX_INT8_MACS_PER_CYCLE))
                  for c in host.cores)
    return replace(host, cores=cores, description=host.description + ", AMX int8")


def peak_gmacs(precision: str, threads: int, host) -> float:
    """The host's theoretical peak in GMAC/s for `threads` cores at `precision`."""
    return host.peak_gops(precision, threads) / profile.OPS_PER_MAC


def efficiency(n_macs: int, p50_ms: float, precision: str, threads: int, host) -> dict:
    achieved = n_macs / (p50_ms / 1e3) / 1e9
    return {"gmacs_per_s": achieved, "peak_gmacs_per_s": peak_gmacs(precision, threads, host),
            "fraction": achieved / peak_gmacs(precision, threads, host)}


def measure(row: dict, threads: tuple, protocol: bench.Protocol, where: Path, host) -> dict:
    """Everything the tables need about one artifact (JSON-ready)."""
    bundle = artifact.open_bundle(row["bundle"])
    n_macs = macs(row)
    out = {**row, **quality(row), "size_bytes": bundle.model_path.stat().st_size,
           "macs": n_macs, "runs": {}}
    for t, rep in bench_all(row, threads, protocol, where).items():
        lat = rep["results"]["latency_ms"]
        out["runs"][str(t)] = {"p50_ms": lat["p50"], "p90_ms": lat["p90"], "n": lat["n"],
                               "report": f"reports/{slug(row)}-t{t}.json",
                               **efficiency(n_macs, lat["p50"], row["precision"], t, host)}
    return out
