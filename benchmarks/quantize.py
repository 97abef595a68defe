"""quantize: what int8 post-training quantization costs in accuracy and buys in speed and size.

- digits (real data, trained weights): `edgepress compress --quantize int8` for ONNX and TFLite,
  calibrated on examples/digits/data/calib.npz; the drop is fp32 minus int8 accuracy on the
  held-out test split (points), read from each int8 bundle's manifest (fidelity.accuracy).
- MobileNetV2 and ResNet-18 at 224x224 (seeded random weights: speed and size figures are
  meaningful, accuracy is not; calibrated with `--calib random`): p50 latency of the int8 bundle
  over the fp32 one, 1 thread (onnxruntime / LiteRT with XNNPACK), fp32 and int8 timed in
  alternating blocks in one process so drift on a shared machine hits both alike.
- size_ratio: the largest int8/fp32 model-file size ratio over every int8 bundle built here.
- The activation-type choice: MobileNetV2 ONNX int8 with s8 activations (--quant-target arm)
  timed against the u8 ones the host choice made (s8/u8 p50 ratio, printed, not a target).

    python benchmarks/quantize.py [--seconds 4] [--threads 1] [--work DIR]

Exports run as `edgepress compress` subprocesses; this process never imports torch. The last line:
`quantize: digits_drop onnx=<pts> tflite=<pts>; mbv2_p50_ratio onnx=<r> tflite=<r>;
resnet18_p50_ratio onnx=<r> tflite=<r>; size_ratio=<r>`
Targets (issue 4): drops <= 0.5; MobileNetV2 ratios <= 0.55; ResNet-18 <= 0.45 (onnx) and
<= 0.55 (tflite); size_ratio <= 0.30.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import MODELS, WEIGHTS
from benchmarks.prune import timed_pair
from edgepress.runtime import compare

DIGITS_DATA = ROOT / "examples" / "digits" / "data"
FORMATS = ("onnx", "tflite")


def compress(name: str, work: Path, extra: list[str], tag: str = "",
             formats: tuple = FORMATS, source: tuple | None = None) -> Path:
    """WORK/<name><tag>: {format}-{fp32,int8} (built once, reused with --work). `source`:
    (SOURCE, input shapes) when the model is not a zoo model."""
    out = work / f"{name}{tag}"
    if all((out / f"{f}-int8").is_dir() for f in formats):
        return out
    source, shapes = source or MODELS[name]
    cmd = [sys.executable, "-m", "edgepress.cli", "compress", source, "--format", ",".join(formats),
           "--quantize", "int8", "--golden-samples", "2", "--out", str(out), "--overwrite",
           *extra]
    cmd += [a for s in shapes for a in ("--input-shape", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    # exit 1 = written, but a bundle missed its verify thresholds (random weights may): say so
    if proc.returncode not in (0, 1) or not (out / "onnx-int8").is_dir():
        sys.exit(f"compress failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    if proc.returncode == 1:
        print(f"note: {name}: a bundle missed its verify thresholds (see {out}/*/manifest.json)")
    return out


def digits(work: Path) -> dict:
    if not (DIGITS_DATA / "eval.npz").is_file():
        subprocess.run([sys.executable, str(ROOT / "examples/digits/train.py")], check=True)
    out = compress("digits", work, ["--weights", WEIGHTS["digits"], "--calib",
                                    str(DIGITS_DATA / "calib.npz"), "--eval",
                                    str(DIGITS_DATA / "eval.npz")])
    rows = {}
    for fmt in FORMATS:
        m = json.loads((out / f"{fmt}-int8" / "manifest.json").read_text())
        rows[fmt] = {**m["fidelity"]["accuracy"], "snr_db": m["fidelity"]["snr_db"]}
    return {"out": out, "rows": rows}


def speed(name: str, work: Path, threads: int, seconds: float) -> dict:
    out = compress(name, work, ["--calib", "random", "--calib-samples", "16"])
    rows = {}
    for fmt in FORMATS:
        f_ns, q_ns = timed_pair(out / f"{fmt}-fp32", out / f"{fmt}-int8", threads, seconds)
        lo, hi = compare.median_ratio_ci(f_ns, q_ns, np.random.default_rng(0))
        rows[fmt] = {"fp32_p50_ms": np.median(f_ns) / 1e6, "int8_p50_ms": np.median(q_ns) / 1e6,
                     "ratio": float(np.median(q_ns) / np.median(f_ns)), "ci95": (lo, hi),
                     "calls": f_ns.size}
    return {"out": out, "rows": rows}


def activation_types(name: str, work: Path, threads: int, seconds: float) -> dict:
    """ONNX int8 with s8 activations (what --quant-target arm picks) against the u8 ones picked
    on this x86 host: the measurement behind the manifest's types.why."""
    u8 = compress(name, work, ["--calib", "random", "--calib-samples", "16"])
    s8 = compress(name, work, ["--calib", "random", "--calib-samples", "16", "--quant-target",
                               "arm"], tag="-s8s8", formats=("onnx",))
    u_ns, s_ns = timed_pair(u8 / "onnx-int8", s8 / "onnx-int8", threads, seconds)
    return {"u8s8_p50_ms": np.median(u_ns) / 1e6, "s8s8_p50_ms": np.median(s_ns) / 1e6,
            "ratio": float(np.median(s_ns) / np.median(u_ns))}


def size_ratios(outs: list[Path]) -> dict:
    ratios = {}
    for out in outs:
        for fmt in FORMATS:
            fp32 = (out / f"{fmt}-fp32" / f"model.{fmt}").stat().st_size
            int8 = (out / f"{fmt}-int8" / f"model.{fmt}").stat().st_size
            ratios[f"{out.name}/{fmt}"] = int8 / fp32
    return ratios


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timing per model and format")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, help="where bundles are kept (and reused)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgepress-quantize-") as tmp:
        work = args.work or Path(tmp)
        dig = digits(work)
        fast = {n: speed(n, work, args.threads, args.seconds) for n in ("mobilenet_v2", "resnet18")}
        sizes = size_ratios([dig["out"]] + [f["out"] for f in fast.values()])
        isa = activation_types("mobilenet_v2", work, args.threads, args.seconds)
    for fmt, r in dig["rows"].items():
        print(f"digits {fmt:<7} accuracy fp32 {100 * r['fp32']:.2f}% int8 "
              f"{100 * r['quantized']:.2f}% drop {r['drop_points']:.2f} pts, SNR "
              f"{r['snr_db']:.1f} dB ({r['labelled']} held-out images)")
    print(f"{'model':<14}{'format':<8}{'fp32 p50 ms':>12}{'int8 p50 ms':>13}{'ratio':>7}  95% CI"
          f"          calls  ({args.threads} thread)")
    for name, f in fast.items():
        for fmt, r in f["rows"].items():
            print(f"{name:<14}{fmt:<8}{r['fp32_p50_ms']:>12.2f}{r['int8_p50_ms']:>13.2f}"
                  f"{r['ratio']:>7.3f}  [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  {r['calls']}")
    print(f"mobilenet_v2 onnx int8, s8 over u8 activations: {isa['s8s8_p50_ms']:.2f} / "
          f"{isa['u8s8_p50_ms']:.2f} ms = {isa['ratio']:.2f}x (why u8 is chosen on VNNI x86)")
    print("int8/fp32 file size: " + ", ".join(f"{k} {v:.3f}" for k, v in sizes.items()))
    d, mb, rn = dig["rows"], fast["mobilenet_v2"]["rows"], fast["resnet18"]["rows"]
    print(f"quantize: digits_drop onnx={d['onnx']['drop_points']:.2f} "
          f"tflite={d['tflite']['drop_points']:.2f}; mbv2_p50_ratio onnx={mb['onnx']['ratio']:.3f} "
          f"tflite={mb['tflite']['ratio']:.3f}; resnet18_p50_ratio onnx={rn['onnx']['ratio']:.3f} "
          f"tflite={rn['tflite']['ratio']:.3f}; size_ratio={max(sizes.values()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
