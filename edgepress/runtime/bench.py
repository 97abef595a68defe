"""bench: measure a bundle or model file with the runtime, and return a report dict.

Protocol: load (timed), first inference (timed), warm-up until both a run count and a time are
reached, then timed runs until both a minimum count and a minimum duration are reached (or, with
`duration_s`, for that long). On a CPU whose cores differ the process is first pinned to the
fastest cores (cores.py); CPU frequency and temperature are sampled between timed runs
(sensors.py); a sustained run (`sustained_s`) also reports p50 per time window, and throttling. `time.perf_counter_ns` wraps the engine call only; inputs are
prepared once (given, else the bundle's golden inputs, else random of the declared shape); the
garbage collector is paused while timing, as timeit does, so a collection triggered by earlier
allocations does not land in a sample. Memory is measured in a fresh child process (probe.py).
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime import artifact, cores, probe, report, sensors, shapes, verify
from edgepress.runtime.session import Session


@dataclass(frozen=True)
class Protocol:
    warmup_runs: int = 10
    warmup_s: float = 0.2
    min_runs: int = 50
    min_s: float = 1.0
    duration_s: float | None = None  # set: time runs for this long, whatever their count
    memory: bool = True  # the child-process memory probe (costs a process start and a load)
    cores: str | None = None  # auto (None), big, little, all, or a CPU list: see cores.py
    sustained_s: float | None = None  # time runs this long and report p50 per window

    def __post_init__(self):
        if self.min_runs < 1 or self.warmup_runs < 0 or self.min_s < 0 or self.warmup_s < 0:
            raise UserError(f"bench protocol: warm-up runs/seconds must be >= 0, timed runs >= 1 "
                            f"and seconds >= 0 (got warmup={self.warmup_runs}, "
                            f"warmup_s={self.warmup_s}, runs={self.min_runs}, min_s={self.min_s})")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UserError(f"--duration {self.duration_s}: must be > 0 seconds")
        if self.sustained_s is not None and (self.sustained_s <= 0 or self.duration_s):
            raise UserError(f"--sustained {self.sustained_s}: must be > 0 seconds, and replaces "
                            f"--duration (give one of them)")


def apply(target, threads: int = 1, protocol: Protocol = Protocol(), input_shapes=(),
          backend: str | None = None, options: dict | None = None, command: str = "",
          inputs_file=None) -> dict:
    """Benchmarks `target` (a bundle directory or a .onnx/.tflite file); returns a report."""
    model_path, bundle = _resolve(Path(target))
    placement = cores.plan(protocol.cores, threads)
    with cores.pinned(placement["chosen"]) as mask:  # before the engine starts its threads
        session, init_ms = _load(model_path, threads, backend, options)
        feeds, source = _inputs(session, bundle, input_shapes, inputs_file)
        sampler = sensors.Sampler(mask or [c.cpu for c in cores.topology()])
        results, executed = _measure(session, feeds, protocol, init_ms, sampler)
        memory = (probe.measure(model_path, session.backend, threads, session.options, feeds)
                  if protocol.memory else None)  # the child inherits the mask
        fidelity = _fidelity(session, bundle)
    if memory is not None:  # init in a process that has never loaded anything: a cold start
        results["init_fresh_process_ms"] = memory.pop("init_ms")
    rep = report.bench_report(
        session=session, model=_model(session, bundle), protocol={**asdict(protocol), **executed},
        results=results, memory=memory, fidelity=fidelity,
        inputs={"source": source, "tensors": [_describe(k, v) for k, v in feeds.items()]},
        command=command)
    rep["cpu"] = {**placement, "mask": mask}
    rep["sensors"] = sampler.summary()
    return rep


def _load(model_path: Path, threads: int, backend, options) -> tuple[Session, float]:
    _import_engine(model_path, backend)
    t0 = time.perf_counter_ns()
    session = Session(model_path, threads=threads, backend=backend, options=options)
    return session, (time.perf_counter_ns() - t0) / 1e6


def _measure(session: Session, feeds: dict, protocol: Protocol, init_ms: float, sampler):
    """(results, what ran): first inference, warm-up, then the timed runs."""
    first_ms = _time_once(session, feeds)
    with _gc_paused():
        warmup_done = _warm_up(session.run, feeds, protocol)
        samples_ns, starts_ns, wall_s = _timed_runs(session.run, feeds, protocol, sampler.tick)
    executed = {"warmup_runs_done": warmup_done, "timed_runs": len(samples_ns),
                "timed_wall_s": wall_s, "gc_paused": True}
    results = report.results(samples_ns, init_ms, first_ms)
    if protocol.sustained_s:
        results["sustained"] = sensors.windows(samples_ns, starts_ns, protocol.sustained_s)
    return results, executed


def _import_engine(model_path: Path, backend) -> None:
    # init_ms is the model's load, not the engine library's import (over 100 ms for
    # onnxruntime, paid once per process, so only the first of a thread sweep would carry it).
    from edgepress.runtime import session as session_mod

    name = session_mod.pick_backend(artifact.format_of(model_path), backend)
    session_mod.import_engine(name)


def _resolve(target: Path):
    if target.is_dir():
        bundle = artifact.open_bundle(target)
        return bundle.model_path, bundle
    if not target.exists():
        raise UserError(f"bench target {str(target)!r} does not exist (give a bundle directory "
                        f"or a .onnx / .tflite file)")
    artifact.format_of(target)
    return target, None


def _model(session: Session, bundle) -> dict:
    path = Path(session.path)
    return {"path": str(path), "format": session.format,
            "precision": bundle.precision if bundle else None,
            "sha256": artifact.sha256_file(path), "size_bytes": path.stat().st_size,
            "bundle": str(bundle.path) if bundle else None}


def _inputs(session: Session, bundle, input_shapes, inputs_file) -> tuple[dict, str]:
    """(feeds, where they came from): one sample per input, prepared once before timing."""
    feeds, source = _source_inputs(session, bundle, input_shapes, inputs_file)
    return as_declared(session, feeds), source


def as_declared(session: Session, feeds: dict) -> dict:
    """Integer inputs cast once to the width the model takes (torch's int64 ids for a LiteRT
    model's int32), when every value fits: else Session.run would convert them inside every
    timed call. Anything else is left for Session.run to accept or explain."""
    want = {s.name: np.dtype(s.dtype) for s in session.inputs}
    out = {}
    for name, arr in feeds.items():
        dtype = want.get(name, arr.dtype)
        if arr.dtype != dtype and arr.dtype.kind in "iu" and dtype.kind in "iu" \
                and np.array_equal(arr.astype(dtype), arr):
            arr = arr.astype(dtype)
        out[name] = np.asarray(arr, order="C")  # ascontiguousarray would make a 0-d input 1-d
    return out


def _source_inputs(session: Session, bundle, input_shapes, inputs_file) -> tuple[dict, str]:
    if inputs_file is not None:
        return _read_inputs(Path(inputs_file), session), f"file {inputs_file}"
    if bundle is not None and not input_shapes:
        golden, _ = bundle.golden()
        return {k: np.asarray(v[0], order="C") for k, v in golden.items()}, "golden"
    names = [s.name for s in session.inputs]
    declared = {s.name: (s.shape, s.dtype) for s in session.inputs}
    specs = shapes.resolve(names, shapes.parse_all(input_shapes), declared,
                           what=f"model {str(session.path)!r}")
    feeds = {k: v[0] for k, v in shapes.random_inputs(specs, 1, seed=0).items()}
    return feeds, "random (seed 0)"


def _read_inputs(path: Path, session: Session) -> dict:
    """An .npz of name -> array (a golden.npz's `input.NAME` keys work too); an array may carry
    a leading samples axis, of which the first sample is used."""
    try:
        arrays = {k.removeprefix("input."): v
                  for k, v in artifact.read_npz(path, "--inputs").items()
                  if not k.startswith("output.")}
    except FileNotFoundError:
        raise UserError(f"--inputs {str(path)!r} does not exist") from None
    feeds = {}
    for spec in session.inputs:
        if spec.name not in arrays:
            raise UserError(f"--inputs {str(path)!r} has no array {spec.name!r}; it has: "
                            f"{', '.join(arrays) or 'none'}")
        arr = arrays[spec.name]
        if arr.ndim == len(spec.shape) + 1 and len(arr):  # (samples, ...): the first one
            arr = arr[0]
        if not _fits(arr.shape, spec.shape):
            raise UserError(f"--inputs {str(path)!r}: array {spec.name!r} has shape "
                            f"{list(arr.shape)}; the model expects {list(spec.shape)}")
        feeds[spec.name] = np.asarray(arr, order="C")
    return feeds


def _fits(shape, declared) -> bool:
    return len(shape) == len(declared) and all(
        not isinstance(d, int) or d < 0 or d == s for s, d in zip(shape, declared))


def _describe(name: str, arr: np.ndarray) -> dict:
    return {"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name}


def _time_once(session: Session, feeds: dict) -> float:
    t0 = time.perf_counter_ns()
    session.run(feeds)
    return (time.perf_counter_ns() - t0) / 1e6


def _warm_up(run, feeds: dict, p: Protocol) -> int:
    end = time.perf_counter() + p.warmup_s
    runs = 0
    while runs < p.warmup_runs or time.perf_counter() < end:
        run(feeds)
        runs += 1
    return runs


def _timed_runs(run, feeds: dict, p: Protocol, tick=lambda now_ns: None):
    """(latency samples in ns, when each run started in ns from the first, wall seconds of the
    phase); the clock wraps the run call only, `tick` (the sensors) runs between calls."""
    seconds = p.sustained_s or p.duration_s
    min_runs, min_s = (1, seconds) if seconds else (p.min_runs, p.min_s)
    clock = time.perf_counter_ns
    samples: list[int] = []
    starts: list[int] = []
    start = t1 = clock()
    end = start + int(min_s * 1e9)
    while len(samples) < min_runs or t1 < end:
        tick(t1)
        t0 = clock()
        run(feeds)
        t1 = clock()
        samples.append(t1 - t0)
        starts.append(t0 - start)
    return samples, starts, (t1 - start) / 1e9


@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fidelity(session: Session, bundle) -> dict | None:
    """The bundle's golden check, run after timing so it costs the measurement nothing: lets a
    report plot latency against fidelity. None for a bare model file (no reference)."""
    if bundle is None:
        return None
    golden_in, golden_out = bundle.golden()
    got = verify.run_samples(session, golden_in)
    verify.check_outputs(bundle, golden_out, got)
    tolerance = verify.top1_tolerance(bundle.manifest)  # top-1 as verify judges it
    metrics = [verify.compare(golden_out[name], got[name], tolerance) for name in golden_out]
    out = {"reference": "golden fp32 outputs captured from torch at export",
           "samples": int(next(iter(golden_in.values())).shape[0]),
           "snr_db": min(m["snr_db"] for m in metrics),
           "cosine": min(m["cosine"] for m in metrics),
           "max_abs": max(m["max_abs"] for m in metrics)}
    top1 = [m["top1_agreement"] for m in metrics if "top1_agreement" in m]
    if top1:
        out["top1_agreement"] = min(top1)
        if tolerance:
            out["top1_tolerance"] = tolerance
    return out
