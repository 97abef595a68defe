"""choose: which candidate path quantizes this model, decided by measurement (issue 15, item 3).

Every candidate that applies to the model is built and measured on the selection split (held-out
samples, never calibration ones, never the ones the reported fidelity comes from): its output SNR
against fp32. The candidates within MARGIN_DB of the best are eligible; the first eligible one in
the list order (the paths.py lists put the most quantized first) is preferred, except that among
the members of one family (ONNX int8: one recipe with other calibrators or weight granularity,
one graph with other scales) the best SNR is. For
`--quant-target host` a faster eligible candidate replaces it when the 95% interval of their p50
ratio lies wholly below 1 (latencies timed here, interleaved in rounds, so load drift hits every
candidate alike); a tie keeps the preferred one. For any other target the choice is by fidelity
alone: this host's timings say nothing about that CPU. Every candidate's fidelity and p50 go into
the manifest (figures["choice"]).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from itertools import islice

import numpy as np

from edgepress import progress
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized, work_dir
from edgepress.errors import UserError, first_line
from edgepress.runtime import compare, verify
from edgepress.runtime.session import Session

MARGIN_DB = 3.0  # eligible: SNR within 3 dB of the best candidate's (at most twice its noise)
SELECT_CAP = 32  # selection samples per candidate: enough to tell 0.96 from 0.998 cosine
ROUNDS, ROUND_S, MAX_CALLS = 7, 0.03, 10  # timing: rounds x (<= 30 ms or 10 calls) per candidate


def apply(job: Job, cfg: QuantizeConfig, methods: list) -> tuple:
    """(kept method, its result at job.out_path), every candidate's figures recorded."""
    if len(methods) == 1:
        return methods[0], methods[0](job, cfg)
    if job.select is None:
        result = methods[0](job, cfg)
        result.figures["choice"] = {"kept": key(methods[0]), "by": "not measured: no held-out "
                                    "data to select on (the first candidate that applies)",
                                    "candidates": [{"path": key(m)} for m in methods]}
        return methods[0], result
    rows, built = _build_all(job, cfg, methods)
    _time(job, built, rows)
    kept, by = decide(rows, cfg.target)
    shutil.copyfile(built[kept].path, job.out_path)
    figures = {**built[kept].figures, "choice": {
        "kept": kept, "by": by, "margin_db": MARGIN_DB, "candidates": rows,
        "selection": {**job.select.record(),
                      "used_samples": next(r["samples"] for r in rows if "samples" in r)}}}
    return next(m for m in methods if key(m) == kept), Quantized(job.out_path, figures)


def key(method) -> str:
    return getattr(method, "key", method.__name__)


def _build_all(job: Job, cfg: QuantizeConfig, methods: list) -> tuple[list, dict]:
    """Each candidate built into its own file and measured; one that fails (a library's limit)
    is recorded and skipped, unless every one fails."""
    rows, built, errors = [], {}, []
    with progress.bar("candidate paths", len(methods)) as bar:
        for method in methods:
            bar.update(0, note=key(method))
            _build_one(job, cfg, method, (rows, built, errors))
            bar.update(1)
    if not built:
        raise errors[0]
    return rows, built


def _build_one(job: Job, cfg: QuantizeConfig, method, into: tuple) -> None:
    """One candidate built and measured on the selection split, its row added to `into`'s
    rows (and its result to built, or its exception to errors)."""
    rows, built, errors = into
    name = key(method)
    out = work_dir(job) / f"candidate-{name}{job.out_path.suffix}"
    try:
        q = method(replace(job, out_path=out), cfg)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a candidate a library cannot build is a result
        errors.append(e)
        rows.append({"path": name, "error": f"{type(e).__name__}: {first_line(e, 200)}"})
        return
    try:  # a file the engine refuses (MiniLM port: onnxruntime's AddInitializerWithOrtValue)
        fid = measure(job, q.path, job.select, SELECT_CAP)
    except Exception as e:  # noqa: BLE001 - is a failed candidate, not a failed bundle
        errors.append(e)
        rows.append({"path": name, "error": f"does not run: {first_line(e, 200)}"})
        return
    built[name] = q
    rows.append({"path": name, "family": getattr(method, "family", name),
                 "method": q.figures.get("method"),
                 "size_bytes": q.path.stat().st_size, **_fidelity(fid)})


def _fidelity(fid: dict) -> dict:
    out = {"samples": fid["samples"], "snr_db": round(fid["snr_db"], 3),
           "cosine": round(fid["cosine"], 6)}
    if "top1_agreement" in fid:
        out["top1_agreement"] = fid["top1_agreement"]
    if "accuracy" in fid:
        out["accuracy"] = fid["accuracy"]["quantized"]
    return out


def measure(job: Job, model_path, data, limit: int | None = None) -> dict:
    """Fidelity of a quantized model file against the fp32 export over `data`."""
    pairs = islice(_for_layout(data.labelled(), job), limit)
    return verify.evaluate(Session(model_path), Session(job.fp32_path), pairs)


def _for_layout(pairs, job):
    from edgepress.runtime.layout import to_nhwc

    nhwc = job.fmt == "tflite" and job.layout == "nhwc"
    for sample, label in pairs:
        yield ({k: to_nhwc(v) if nhwc else v for k, v in sample.items()}, label)


# ---- timing ----------------------------------------------------------------------------------

def _time(job: Job, built: dict, rows: list) -> None:
    """p50 (ms) of every built candidate, 1 thread, interleaved rounds; kept in the rows."""
    feeds = next(_for_layout(((s, None) for s in job.select.samples()), job))[0]
    times = interleaved({name: q.path for name, q in built.items()}, feeds)
    for row in rows:
        if row["path"] in times:
            t = times[row["path"]]
            row.update(p50_ms=round(float(np.median(t)) * 1e3, 4), timed_calls=int(t.size))
            row["_times"] = t


def interleaved(paths: dict, feeds: dict) -> dict:
    """name -> call times (s): ROUNDS rounds, each running every model in turn for about
    ROUND_S (at least 2 calls, at most MAX_CALLS), after one warm-up call each."""
    sessions = {name: Session(p, threads=1) for name, p in paths.items()}
    calls = {}
    for name, s in sessions.items():
        s.run(feeds)  # first run allocates
        t0 = time.perf_counter()
        s.run(feeds)
        calls[name] = int(np.clip(ROUND_S / max(time.perf_counter() - t0, 1e-6), 2, MAX_CALLS))
    times = {name: [] for name in sessions}
    with progress.bar("timing paths", ROUNDS) as bar:
        for _ in range(ROUNDS):
            for name, s in sessions.items():
                for _ in range(calls[name]):
                    t0 = time.perf_counter()
                    s.run(feeds)
                    times[name].append(time.perf_counter() - t0)
            bar.update(1)  # between rounds: the line is never drawn while a call is timed
    return {name: np.asarray(t) for name, t in times.items()}


# ---- the decision ----------------------------------------------------------------------------

def decide(rows: list, target: str) -> tuple[str, str]:
    """(kept path, why) from the measured rows (list order = preference order). Rows carry
    snr_db and, when timed, `_times` (removed here: the manifest keeps p50 and the interval)."""
    ok = [r for r in rows if "error" not in r]
    best = max(r["snr_db"] for r in ok)
    for r in ok:
        r["eligible"] = bool(r["snr_db"] >= best - MARGIN_DB)
    eligible = [r for r in ok if r["eligible"]]
    kept = _preferred(eligible)
    why = (f"selection-split SNR within {MARGIN_DB:g} dB of the best ({best:.2f} dB): "
           f"{', '.join(r['path'] for r in eligible)}; preferred: {kept['path']} (first in order"
           f"{'' if kept is eligible[0] else ', its family best by SNR'})")
    if target == "host":
        kept, why = _faster(kept, eligible, why)
    else:
        why += f"; by fidelity only: --quant-target {target} (this host's timings do not apply)"
    for r in rows:
        r.pop("_times", None)
    return kept["path"], why


def _preferred(eligible: list) -> dict:
    """The first eligible row, or the best-SNR row of its family: members of a family build the
    same graph (same speed), so their order says nothing and their fidelity decides."""
    family = eligible[0].get("family", eligible[0]["path"])
    members = [r for r in eligible if r.get("family", r["path"]) == family]
    return max(members, key=lambda r: r["snr_db"])  # max keeps the first of equals


def _faster(kept: dict, eligible: list, why: str) -> tuple[dict, str]:
    """The eligible candidate with the lowest p50 replaces `kept` when their p50 ratio's 95%
    interval lies below 1; otherwise it is a tie and `kept` stays."""
    timed = [r for r in eligible if "_times" in r]
    if len(eligible) == 1:
        return kept, why + "; the only eligible one (p50s recorded, not needed to choose)"
    if "_times" not in kept or len(timed) < 2:
        return kept, why + "; not timed"
    rng = np.random.default_rng(0)
    for r in timed:
        if r is not kept:
            lo, hi = compare.median_ratio_ci(kept["_times"], r["_times"], rng)
            r["p50_ratio_to_preferred_ci95"] = [round(lo, 4), round(hi, 4)]
    fastest = min(timed, key=lambda r: r["p50_ms"])
    if fastest is kept:
        return kept, why + "; it is also the fastest here (--quant-target host)"
    lo, hi = fastest["p50_ratio_to_preferred_ci95"]
    if hi < 1.0:
        return fastest, why + (f"; {fastest['path']} is faster here (p50 ratio 95% CI "
                               f"[{lo:.3f}, {hi:.3f}] < 1, --quant-target host)")
    return kept, why + (f"; {fastest['path']}'s lower p50 is a tie (95% CI [{lo:.3f}, "
                        f"{hi:.3f}] includes 1)")
