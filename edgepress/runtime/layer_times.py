"""layer_times: the p50 latency of several model files, timed in interleaved rounds: the device's
half of `--prune auto:latency=F`. compress/prune/latency.py hands it the files of a latency table
(one per layer and width, and the whole model), on this host or over SSH on a device that
edgepress was deployed to; it needs numpy and one engine, like bench.

    python -m edgepress.runtime.layer_times DIR [THREADS [ROUNDS BLOCK_S]]
                                        prints {file name: p50 ms} as JSON
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgepress.runtime import shapes
from edgepress.runtime.bench import as_declared
from edgepress.runtime.session import Session

ROUNDS = 5  # each file is timed in every round, the order reversed every other round
BLOCK_S = 0.02  # per file and round: a few calls of a small layer, one of a whole model
WARMUP = 3


def measure(paths, threads: int = 1, rounds: int = ROUNDS, block_s: float = BLOCK_S) -> dict:
    """{str(path): p50 ms} of each model file, one session each, all timed in the same rounds so
    load on a shared machine drifts over every file alike."""
    runs = {str(p): _runner(Path(p), threads) for p in paths}
    samples = {p: [] for p in runs}
    for run in runs.values():
        for _ in range(WARMUP):
            run()
    gc.disable()  # as timeit does: a collection must not land in a sample
    try:
        for r in range(rounds):
            for p in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                _block(runs[p], samples[p], block_s)
    finally:
        gc.enable()
    return {p: float(np.median(v)) / 1e6 for p, v in samples.items()}


def _runner(path: Path, threads: int):
    session = Session(path, threads=threads)
    feeds = as_declared(session, {k: v[0] for k, v in
                                  shapes.random_inputs(session.inputs, 1).items()})
    return lambda: session.run(feeds)


def _block(run, out: list, block_s: float) -> None:
    end, n = time.perf_counter() + block_s, 0
    while n < 2 or time.perf_counter() < end:
        t = time.perf_counter_ns()
        run()
        out.append(time.perf_counter_ns() - t)
        n += 1


def main(argv) -> int:
    if len(argv) not in (1, 2, 4):
        print("usage: python -m edgepress.runtime.layer_times DIR [THREADS [ROUNDS BLOCK_S]]",
              file=sys.stderr)
        return 2
    folder = Path(argv[0])
    files = sorted(p for p in folder.iterdir() if p.suffix in (".onnx", ".tflite"))
    timing = {"rounds": int(argv[2]), "block_s": float(argv[3])} if len(argv) == 4 else {}
    times = measure(files, int(argv[1]) if len(argv) > 1 else 1, **timing)
    print(json.dumps({Path(p).name: ms for p, ms in times.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
