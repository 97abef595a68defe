"""bench: measure a bundle or model file with the runtime, and return a report dict.

Protocol: load (timed), first inference (timed), warm-up, then timed runs until both a minimum
count and a minimum duration are reached. `time.perf_counter_ns` wraps the engine call only;
inputs are prepared once (the bundle's golden inputs, else random of the declared shape).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepress import shapes
from edgepress.errors import UserError
from edgepress.runtime import artifact, report
from edgepress.runtime.session import Session


@dataclass(frozen=True)
class Protocol:
    warmup_runs: int = 10
    warmup_s: float = 0.2
    min_runs: int = 50
    min_s: float = 1.0

    def __post_init__(self):
        if self.min_runs < 1 or self.warmup_runs < 0 or self.min_s < 0 or self.warmup_s < 0:
            raise UserError(f"bench protocol {self}: counts and durations must be >= 0 "
                            f"(and at least 1 timed run)")


def apply(target, threads: int = 1, protocol: Protocol = Protocol(), input_shapes=(),
          backend: str | None = None, options: dict | None = None, command: str = "") -> dict:
    """Benchmarks `target` (a bundle directory or a .onnx/.tflite file); returns a report."""
    model_path, bundle = _resolve(Path(target))
    t0 = time.perf_counter_ns()
    session = Session(model_path, threads=threads, backend=backend, options=options)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    feeds = _inputs(session, bundle, input_shapes)
    first_ms = _time_once(session, feeds)
    _warm_up(session, feeds, protocol)
    samples = _timed_runs(session, feeds, protocol)
    return report.bench_report(session, bundle, samples, init_ms, first_ms,
                               protocol=vars(protocol), command=command)


def _resolve(target: Path):
    if target.is_dir():
        bundle = artifact.open_bundle(target)
        return bundle.model_path, bundle
    if not target.exists():
        raise UserError(f"bench target {str(target)!r} does not exist (give a bundle directory "
                        f"or a .onnx / .tflite file)")
    artifact.format_of(target)
    return target, None


def _inputs(session: Session, bundle, input_shapes) -> dict:
    if bundle is not None:
        golden, _ = bundle.golden()
        return {k: np.ascontiguousarray(v[0]) for k, v in golden.items()}
    names = [s.name for s in session.inputs]
    declared = {s.name: (s.shape, s.dtype) for s in session.inputs}
    specs = shapes.resolve(names, shapes.parse_all(input_shapes), declared,
                           what=f"model {str(session.path)!r}")
    return {k: v[0] for k, v in shapes.random_inputs(specs, 1, seed=0).items()}


def _time_once(session: Session, feeds: dict) -> float:
    t0 = time.perf_counter_ns()
    session.run(feeds)
    return (time.perf_counter_ns() - t0) / 1e6


def _warm_up(session: Session, feeds: dict, p: Protocol) -> None:
    end = time.perf_counter() + p.warmup_s
    runs = 0
    while runs < p.warmup_runs or time.perf_counter() < end:
        session.run(feeds)
        runs += 1


def _timed_runs(session: Session, feeds: dict, p: Protocol) -> list[float]:
    """Latency samples in ms; the clock wraps the run call and nothing else."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    run = session.run
    budget_ns = int(p.min_s * 1e9)
    spent = 0
    while len(samples) < p.min_runs or spent < budget_ns:
        t0 = clock()
        run(feeds)
        dt = clock() - t0
        samples.append(dt)
        spent += dt
    return [s / 1e6 for s in samples]
