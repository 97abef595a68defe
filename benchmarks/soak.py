"""soak: does a long-lived Session leak? RSS growth over many inferences, after warm-up.

One fresh process per model (numpy + the engine + edgepress.runtime; never torch) loads a
Session, runs --warmup inferences (arenas, caches and lazy allocations settle), then --runs more,
cycling over 16 different inputs, sampling VmRSS every --runs/20 calls. The figure is the growth
from after warm-up to the end, in bytes and as a percentage of the post-warm-up RSS. Target:
under 1% over 100,000 inferences. The last line per model is JSON:

    {"model": ..., "engine": ..., "runs": ..., "rss_after_warmup_bytes": ...,
     "rss_end_bytes": ..., "growth_bytes": ..., "growth_pct": ..., "samples_mib": [...]}

    python benchmarks/soak.py [MODEL ...] [--runs 100000] [--warmup 2000] [--threads 1]

MODEL is a bundle directory or a .onnx / .tflite file; without one, the tiny test CNN
(tests/tiny_models.py) is exported to ONNX and TFLite in a temporary folder and both are soaked.
tests/runtime/test_soak.py runs this with --runs 5000 in CI (a memory bound, not a timing one).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLES = 20  # RSS readings over the timed part


def rss_bytes() -> int:
    from edgepress.runtime.probe import _status_bytes

    value = _status_bytes("VmRSS")
    if value is None:
        raise SystemExit("soak needs /proc/self/status (Linux)")
    return value


def soak(model: str, runs: int, warmup: int, threads: int) -> dict:
    """Runs in this process: keep it free of torch (tests check the figure, not just print it)."""
    from edgepress.runtime import shapes
    from edgepress.runtime import artifact
    from edgepress.runtime.session import Session

    path = Path(model)
    model_path = artifact.open_bundle(path).model_path if path.is_dir() else path
    session = Session(model_path, threads=threads)
    specs = [s if not s.dynamic_dims else None for s in session.inputs]
    if None in specs:
        raise SystemExit(f"{model}: dynamic input shapes; soak a bundle or a fixed-shape model")
    batch = shapes.random_inputs(specs, 16, seed=0)
    feeds = [{k: v[i] for k, v in batch.items()} for i in range(16)]
    for i in range(warmup):
        session.run(feeds[i % 16])
    gc.collect()
    start = rss_bytes()
    samples, every = [start], max(1, runs // SAMPLES)
    for i in range(runs):
        session.run(feeds[i % 16])
        if (i + 1) % every == 0:
            samples.append(rss_bytes())
    gc.collect()
    end = rss_bytes()
    return {"model": str(model), "engine": session.backend, "threads": threads, "runs": runs,
            "warmup": warmup, "rss_after_warmup_bytes": start, "rss_end_bytes": end,
            "growth_bytes": end - start, "growth_pct": round(100.0 * (end - start) / start, 4),
            "samples_mib": [round(s / 2**20, 2) for s in samples]}


def tiny_models(work: Path) -> list[str]:
    """The tiny test CNN's onnx-fp32 and tflite-fp32 bundles (host side: imports torch)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models as tm

    from edgepress.compress import pipeline

    out = work / "cnn"
    pipeline.run(pipeline.Request(source=tm.factory("cnn"), out=out, golden_samples=1,
                                  input_shapes=tuple(tm.MODELS["cnn"][1]), summary=False))
    return [str(out / "onnx-fp32"), str(out / "tflite-fp32")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--in-process", action="store_true",
                    help="soak the one MODEL here (what each child does)")
    args = ap.parse_args(argv)
    if args.in_process:
        print(json.dumps(soak(args.models[0], args.runs, args.warmup, args.threads)))
        return 0
    with tempfile.TemporaryDirectory(prefix="edgepress-soak-") as tmp:
        models = args.models or tiny_models(Path(tmp))
        for model in models:  # a fresh process each: nothing but the runtime in its RSS
            proc = subprocess.run([sys.executable, __file__, model, "--in-process", "--runs",
                                   str(args.runs), "--warmup", str(args.warmup), "--threads",
                                   str(args.threads)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{r['engine']:12} {Path(r['model']).name}: {r['runs']:,} inferences after "
                  f"{r['warmup']:,} warm-up: RSS {r['rss_after_warmup_bytes'] / 2**20:.2f} -> "
                  f"{r['rss_end_bytes'] / 2**20:.2f} MiB, growth {r['growth_bytes'] / 1024:+.0f} "
                  f"KiB ({r['growth_pct']:+.3f}%; target < 1%)")
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
