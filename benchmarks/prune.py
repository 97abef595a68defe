"""prune: what pruning buys on real architectures, measured on the exported ONNX models.

For MobileNetV2 and ResNet-18 (224x224, seeded random weights: speed and size figures are
meaningful, accuracy is not), `edgepress compress --prune channels:0.5` against the unpruned
export: MACs ratio (counted on the ONNX files by `edgepress inspect`'s counter) and p50 latency
ratio with onnxruntime at --threads (default 1), dense and pruned timed in alternating blocks in
one process so drift on a shared machine hits both alike. Then ResNet-18 with
`--prune magnitude:0.8`: the gzip-compressed size of its ONNX file over the dense one's (dense
engines run the zeros, so size is all unstructured sparsity buys).

Latency-aimed (issue 16): the same two models through `--prune auto:latency=0.5` (per-layer
latency table measured here with onnxruntime, fp32, --threads; sensitivity on random --calib
data, so only the latency means anything), then the pruned export's p50 over the unpruned one's,
timed as above. crepe tiny (latency-aimed against MACs-aimed at the same measured p50, after the
same distillation budget) runs in benchmarks/prune_crepe.py, a subprocess (it imports torch);
where it fails, its figures print as n/a with its error.

    python benchmarks/prune.py [--seconds 4] [--threads 1] [--work DIR] [--skip-crepe]
                               [--crepe-json FILE]  (a finished prune_crepe.py run's last line)

Exports run as `edgepress compress` subprocesses; this process never imports torch. The last line:
`prune: mbv2 macs=<r> p50=<r>; resnet18 macs=<r> p50=<r>; unstructured80_gzip=<r>; latency_aimed
mbv2_p50=<r> resnet18_p50=<r> crepe_p50=<r> crepe_kd=<pct> crepe_macs_kd=<pct>`
Targets (issue 5): macs <= 0.55 and p50 <= 0.65 for both; unstructured80_gzip <= 0.45.
Target (issue 16): latency-aimed at 0.5, mbv2_p50 and resnet18_p50 <= 0.55.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import MODELS  # noqa: E402
from edgepress.runtime import artifact, compare, inspect  # noqa: E402
from edgepress.runtime.session import Session  # noqa: E402

# Per block: short enough that drift on a shared machine hits both models alike, long enough to
# time each one warm. Switching models evicts the other's weights from cache: on MobileNetV2 the
# first int8 call after a switch ran 15% slower than the 8th (fp32 8%), so 0.05 s blocks (~6
# calls) timed int8 partly cold (int8/fp32 0.56 vs 0.50-0.53 with 0.5 s blocks, same files).
BLOCK_S = 0.5
LATENCY_TARGET = 0.5
CALIB_SAMPLES = 8  # random: the scan ranks nothing real on random weights; latency is the point


def export(name: str, prune: str | None, work: Path, extra=()) -> Path:
    """WORK/<name>-<prune>/onnx-fp32 (exported once, reused with --work)."""
    out = work / f"{name}-{(prune or 'dense').replace(':', '').replace('=', '')}"
    if not (out / "onnx-fp32").is_dir():
        source, shapes = MODELS[name]
        cmd = [sys.executable, "-m", "edgepress.cli", "compress", source, "--format", "onnx",
               "--golden-samples", "2", "--out", str(out), "--overwrite", *extra]
        cmd += [a for s in shapes for a in ("--input-shape", s)]
        cmd += ["--prune", prune] if prune else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"export failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out / "onnx-fp32"


def timed_pair(a: Path, b: Path, threads: int, seconds: float) -> tuple:
    """Per-call ns of bundles a and b, alternating blocks (order swapped every round)."""
    runs = []
    for bundle in (a, b):
        opened = artifact.open_bundle(bundle)
        golden, _ = opened.golden()
        feeds = {k: np.ascontiguousarray(v[0]) for k, v in golden.items()}
        session = Session(opened.model_path, threads=threads)
        runs.append(lambda s=session, f=feeds: s.run(f))
    return alternate(runs, seconds)


def alternate(runs: list, seconds: float) -> tuple:
    """Per-call ns of the two callables in `runs`, timed in alternating blocks."""
    for _ in range(5):  # warm-up
        for run in runs:
            run()
    t0 = time.perf_counter()
    runs[0]()
    block = max(1, int(BLOCK_S / max(time.perf_counter() - t0, 1e-7)))
    samples = ([], [])
    end, rounds = time.perf_counter() + seconds, 0
    gc.disable()
    try:
        while time.perf_counter() < end or rounds < 10:
            for i in ((0, 1) if rounds % 2 else (1, 0)):
                for _ in range(block):
                    t = time.perf_counter_ns()
                    runs[i]()
                    samples[i].append(time.perf_counter_ns() - t)
            rounds += 1
    finally:
        gc.enable()
    return np.asarray(samples[0], float), np.asarray(samples[1], float)


def channels(name: str, work: Path, threads: int, seconds: float) -> dict:
    dense, pruned = export(name, None, work), export(name, "channels:0.5", work)
    info = {k: inspect.apply(p / "model.onnx") for k, p in (("dense", dense), ("pruned", pruned))}
    d_ns, p_ns = timed_pair(dense, pruned, threads, seconds)
    lo, hi = compare.median_ratio_ci(d_ns, p_ns, np.random.default_rng(0))
    return {"model": name, "macs": info["pruned"]["macs"] / info["dense"]["macs"],
            "params": info["pruned"]["params"] / info["dense"]["params"],
            "dense_p50_ms": np.median(d_ns) / 1e6, "pruned_p50_ms": np.median(p_ns) / 1e6,
            "p50": float(np.median(p_ns) / np.median(d_ns)), "ci95": (lo, hi), "calls": d_ns.size}


def latency_aimed(name: str, work: Path, threads: int, seconds: float) -> dict:
    spec = f"auto:latency={LATENCY_TARGET:g}"
    t0 = time.perf_counter()
    pruned = export(name, spec, work, ("--calib", "random", "--calib-samples",
                                       str(CALIB_SAMPLES), "--latency-threads", str(threads),
                                       "--latency-cache", str(work / "latency-tables")))
    build_s = time.perf_counter() - t0
    dense = export(name, None, work)
    d_ns, p_ns = timed_pair(dense, pruned, threads, seconds)
    lo, hi = compare.median_ratio_ci(d_ns, p_ns, np.random.default_rng(0))
    macs = inspect.apply(pruned / "model.onnx")["macs"] / inspect.apply(dense / "model.onnx")["macs"]
    chosen = artifact.open_bundle(pruned).manifest["stages"]["prune"]["auto"]["latency"]
    return {"model": name, "p50": float(np.median(p_ns) / np.median(d_ns)), "ci95": (lo, hi),
            "macs": macs, "dense_p50_ms": np.median(d_ns) / 1e6,
            "pruned_p50_ms": np.median(p_ns) / 1e6, "calls": d_ns.size, "build_s": build_s,
            "rounds": chosen["rounds"]}


def crepe_aimed(work: Path, threads: int) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prune_crepe.py"), "--threads",
           str(threads), "--work", str(work / "crepe")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gzip_ratio(name: str, work: Path) -> dict:
    sizes = {}
    for prune in (None, "magnitude:0.8"):
        data = (export(name, prune, work) / "model.onnx").read_bytes()
        sizes[prune or "dense"] = (len(data), len(gzip.compress(data, compresslevel=6)))
    return {"raw": sizes, "ratio": sizes["magnitude:0.8"][1] / sizes["dense"][1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timing per model (both sides)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, help="where exports are kept (and reused)")
    ap.add_argument("--skip-crepe", action="store_true", help="leave out the crepe comparison")
    ap.add_argument("--crepe-json", type=Path, help="take the crepe figures from this file (the "
                    "last line of a benchmarks/prune_crepe.py run) instead of running it")
    args = ap.parse_args(argv)
    t0, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgepress-prune-") as tmp:
        work = args.work or Path(tmp)
        rows = [channels(n, work, args.threads, args.seconds) for n in ("mobilenet_v2", "resnet18")]
        gz = gzip_ratio("resnet18", work)
        aimed = [latency_aimed(n, work, args.threads, args.seconds)
                 for n in ("mobilenet_v2", "resnet18")]
        cr = ({"error": "not run (--skip-crepe)"} if args.skip_crepe
              else json.loads(args.crepe_json.read_text().strip().splitlines()[-1])
              if args.crepe_json else crepe_aimed(work, args.threads))
    print(f"{'model':<14}{'MACs':>7}{'params':>8}{'dense p50 ms':>14}{'pruned p50 ms':>15}"
          f"{'p50':>7}  95% CI         calls   (channels:0.5, ONNX fp32, {args.threads} thread)")
    for r in rows:
        print(f"{r['model']:<14}{r['macs']:>7.3f}{r['params']:>8.3f}{r['dense_p50_ms']:>14.2f}"
              f"{r['pruned_p50_ms']:>15.2f}{r['p50']:>7.3f}  [{r['ci95'][0]:.3f}, "
              f"{r['ci95'][1]:.3f}]  {r['calls']}")
    (raw_d, gz_d), (raw_m, gz_m) = gz["raw"]["dense"], gz["raw"]["magnitude:0.8"]
    print(f"resnet18 ONNX bytes: dense {raw_d:,} (gzip {gz_d:,}); magnitude:0.8 {raw_m:,} "
          f"(gzip {gz_m:,}); same latency on dense engines")
    print(f"{'model':<14}{'MACs':>7}{'dense p50 ms':>14}{'pruned p50 ms':>15}{'p50':>7}  95% CI"
          f"         calls  build s  (auto:latency={LATENCY_TARGET:g}: check rounds "
          f"goal/predicted/measured)")
    for r in aimed:
        tried = ", ".join(f"{x['goal']:.3f}/{x['predicted']:.3f}/{x['ratio']:.3f}"
                          for x in r["rounds"])
        print(f"{r['model']:<14}{r['macs']:>7.3f}{r['dense_p50_ms']:>14.2f}"
              f"{r['pruned_p50_ms']:>15.2f}{r['p50']:>7.3f}  [{r['ci95'][0]:.3f}, "
              f"{r['ci95'][1]:.3f}]  {r['calls']:>5}  {r['build_s']:>7.0f}  {tried}")
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {time.perf_counter() - t0:.0f} s"
          f"{' (crepe from ' + str(args.crepe_json) + ')' if args.crepe_json else ''}")
    if "error" in cr:
        print(f"crepe: n/a ({cr['error']})")
        crepe_figs = "crepe_p50=n/a crepe_kd=n/a crepe_macs_kd=n/a"
    else:
        print(f"crepe tiny (stem pruned too; pitch agreement with crepe full within 50 cents on "
              f"{cr['voiced_eval_frames']} voiced held-out frames; KD {cr['epochs']} epochs on "
              f"{cr['train_frames']} frames): as shipped {cr['tiny']:.2f}%; latency-aimed "
              f"p50 x{cr['crepe_p50']:.3f} MACs x{cr['lat_macs']:.3f}: {cr['lat_pruned']:.2f}% "
              f"pruned, {cr['lat_kd']:.2f}% after KD; MACs-aimed (macs={cr['macs_target']:g}) "
              f"p50 x{cr['crepe_macs_p50']:.3f} MACs x{cr['macs_macs']:.3f}: "
              f"{cr['macs_pruned']:.2f}% pruned, {cr['macs_kd']:.2f}% after KD"
              f"{' (the same plan)' if cr.get('same_plan') else ''}; plans "
              f"{cr['lat_ratios']} / {cr['macs_ratios']}; latency rounds "
              f"{', '.join(cr.get('lat_rounds', []))}; {cr['wall_s']} s")
        crepe_figs = (f"crepe_p50={cr['crepe_p50']:.3f} crepe_kd={cr['lat_kd']:.2f} "
                      f"crepe_macs_kd={cr['macs_kd']:.2f}")
    mb, rn = rows
    amb, arn = aimed
    print(f"prune: mbv2 macs={mb['macs']:.3f} p50={mb['p50']:.3f}; resnet18 macs={rn['macs']:.3f} "
          f"p50={rn['p50']:.3f}; unstructured80_gzip={gz['ratio']:.3f}; latency_aimed "
          f"mbv2_p50={amb['p50']:.3f} resnet18_p50={arn['p50']:.3f} {crepe_figs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
