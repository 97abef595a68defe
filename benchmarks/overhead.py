"""overhead: what edgepress's `Session.run` costs over calling the engine directly.

For each model (the digits CNN and MobileNetV2) and each engine, one process holds a Session and
calls it, and calls the very engine object inside it directly (onnxruntime's
InferenceSession.run with precomputed output names; the LiteRT Interpreter's set_tensor / invoke /
get_tensor), on the same input in alternating blocks, so drift on a shared machine hits both
alike. One engine object, not two: two instances of the same model can differ by a few percent
from where their weights landed in memory, which would swamp the wrapper's cost. The overhead is
the median over rounds of p50(Session's block) / p50(bare's block of the same round), with a
bootstrap 95% interval; the pooled p50s are printed beside it. The last
line is `overhead p50 ratio: onnx=<x> tflite=<y>`, each the worse of the two models. Target: both
at most 1.03. (For onnxruntime, Session skips InferenceSession.run's Python-level input re-check,
having checked the inputs itself, so its ratio can come out just under 1.)

    python benchmarks/overhead.py [--seconds 3] [--min-calls 300] [--threads 1] [--work DIR]

Models are exported once into --work (default: a temporary directory) via the host-side pipeline.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import MODELS, WEIGHTS  # noqa: E402
from edgepress.runtime import artifact  # noqa: E402
from edgepress.runtime.session import Session  # noqa: E402

ZOO = ("digits", "mobilenet_v2")
BLOCK_S = 0.005  # calls per block: about this long, so switching costs little and drift is shared


def export(name: str, work: Path) -> Path:
    """The model's onnx-fp32 and tflite-fp32 bundles under WORK/NAME (exported once)."""
    out = work / name
    if not (out / "onnx-fp32").is_dir() or not (out / "tflite-fp32").is_dir():
        from edgepress.compress import pipeline

        source, shapes = MODELS[name]
        pipeline.run(pipeline.Request(source=source, out=out, weights=WEIGHTS.get(name),
                                      input_shapes=tuple(shapes), golden_samples=1,
                                      overwrite=True))
    return out


def bare_onnxruntime(session: Session):
    """What a careful user writes against onnxruntime.InferenceSession: output names computed
    once, the public run()."""
    sess = session._engine.sess  # the InferenceSession inside the Session
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: sess.run(names, feeds)


def bare_litert(session: Session):
    """What a careful user writes against the LiteRT Interpreter: indices looked up once."""
    it = session._engine.it  # the Interpreter inside the Session
    ins = [d["index"] for d in it.get_input_details()]
    outs = [d["index"] for d in it.get_output_details()]

    def run(feeds):
        for index, value in zip(ins, feeds.values()):
            it.set_tensor(index, value)
        it.invoke()
        return [it.get_tensor(index) for index in outs]
    return run


BARE = {"onnx": bare_onnxruntime, "tflite": bare_litert}


def measure(ours, bare, feeds: dict, seconds: float, min_calls: int) -> tuple:
    """Per-call ns for both, shaped (rounds, calls per block): each round one block of each, the
    order swapped every round, until `seconds` have passed and each side made `min_calls` calls."""
    for fn in (ours, bare) * 20:  # warm-up
        fn(feeds)
    t0 = time.perf_counter()
    bare(feeds)
    block = max(1, int(BLOCK_S / max(time.perf_counter() - t0, 1e-7)))
    samples = {ours: [], bare: []}
    clock = time.perf_counter_ns
    end = time.perf_counter() + seconds
    gc.disable()
    try:
        while time.perf_counter() < end or len(samples[ours]) * block < min_calls or \
                len(samples[ours]) < 20:
            for fn in ((ours, bare) if len(samples[ours]) % 2 else (bare, ours)):
                times = []
                for _ in range(block):
                    t = clock()
                    fn(feeds)
                    times.append(clock() - t)
                samples[fn].append(times)
    finally:
        gc.enable()
    return np.asarray(samples[ours], float), np.asarray(samples[bare], float)


def paired_ratio(ours: np.ndarray, bare: np.ndarray, seed: int = 0) -> tuple:
    """(median, 95% interval) over rounds of p50(Session's block) / p50(bare's block in the same
    round). Pairing neighbours cancels the slow drift a shared machine adds to both sides."""
    ratios = np.median(ours, axis=1) / np.median(bare, axis=1)
    rng = np.random.default_rng(seed)
    boot = np.median(ratios[rng.integers(0, ratios.size, (2000, ratios.size))], axis=1)
    return float(np.median(ratios)), tuple(np.percentile(boot, [2.5, 97.5]))


def one(name: str, fmt: str, work: Path, threads: int, seconds: float, min_calls: int) -> dict:
    bundle = artifact.open_bundle(export(name, work) / f"{fmt}-fp32")
    golden, _ = bundle.golden()
    feeds = {k: np.ascontiguousarray(v[0]) for k, v in golden.items()}
    session = Session(bundle.model_path, threads=threads)
    ours, bare = measure(session.run, BARE[fmt](session), feeds, seconds, min_calls)
    ratio, ci95 = paired_ratio(ours, bare)
    return {"model": name, "format": fmt, "engine": session.backend, "calls": ours.size,
            "ours_p50_us": np.median(ours) / 1e3, "bare_p50_us": np.median(bare) / 1e3,
            "ratio": ratio, "ci95": ci95}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per model and engine")
    ap.add_argument("--min-calls", type=int, default=300, help="per side, at least")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, help="where exported models are kept (and reused)")
    ap.add_argument("--models", default=",".join(ZOO), help=f"comma-separated, from {ZOO}")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgepress-overhead-") as tmp:
        work = args.work or Path(tmp)
        rows = [one(name, fmt, work, args.threads, args.seconds, args.min_calls)
                for name in args.models.split(",") for fmt in ("onnx", "tflite")]
    print(f"{'model':<14}{'engine':<13}{'calls':>8}{'edgepress p50 us':>18}{'bare p50 us':>13}"
          f"{'paired ratio':>14}  95% CI")
    for r in rows:
        print(f"{r['model']:<14}{r['engine']:<13}{r['calls']:>8}{r['ours_p50_us']:>18.1f}"
              f"{r['bare_p50_us']:>13.1f}{r['ratio']:>14.3f}  [{r['ci95'][0]:.3f}, "
              f"{r['ci95'][1]:.3f}]")
    worst = {fmt: max(r["ratio"] for r in rows if r["format"] == fmt)
             for fmt in ("onnx", "tflite")}
    print(f"overhead p50 ratio: onnx={worst['onnx']:.3f} tflite={worst['tflite']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
