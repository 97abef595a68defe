"""memory: calibration and evaluation stream their data, so peak RSS stays flat as the data set
grows 10x.

A CNN (tests/tiny_models.py's, fully convolutional, run at 1x3x64x64: 48 KiB per sample) is
exported to ONNX once. Two .npz data sets of that input plus labels are written row by row
(1x: --samples, 10x: ten times as many). Each phase then runs in a fresh process that first
sets everything up (imports, sessions, the opened data set), resets its peak RSS
(/proc/self/clear_refs), runs the phase and reads the peak (VmHWM):

- calibration: `quantize.apply` ONNX static int8 on the data set (edgepress's streamed reader
  behind onnxruntime's calibrator, plus the data set's hashing pass for the manifest)
- evaluation: the int8 model against fp32 over every labelled sample (`verify.evaluate`, what
  --eval and --max-drop do)

Printed: per phase and size, the data set's size and the peak RSS above the post-setup baseline;
then `memory 10x/1x: calibration=<r> evaluation=<r>`, the ratios of those peaks (flat: ~1; a
loader holding the data set would grow by the 10x data size). Linux only.

    python benchmarks/memory.py [--samples 400] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPE = (1, 3, 64, 64)


def write_npz(path: Path, n: int, seed: int = 0) -> None:
    """x: (n, 3, 64, 64) float32 and labels: (n,) int64, written a block at a time (the writer
    must not hold the data set either)."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (n, *SHAPE[1:])})
            for start in range(0, n, 256):
                rows = min(256, n - start)
                f.write(rng.standard_normal((rows, *SHAPE[1:])).astype(np.float32).tobytes())
        with z.open("labels.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<i8", "fortran_order": False, "shape": (n,)})
            f.write(rng.integers(0, 5, n).astype(np.int64).tobytes())


def export(work: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models

    from edgepress.compress import pipeline

    out = work / "cnn64"
    if not (out / "onnx-fp32").is_dir():
        pipeline.run(pipeline.Request(source=tiny_models.factory("cnn"), out=out,
                                      formats=("onnx",), input_shapes=(",".join(map(str, SHAPE)),),
                                      golden_samples=1, summary=False, overwrite=True))
    return out / "onnx-fp32" / "model.onnx"


# ---- the child: one phase, one data set -----------------------------------------------------

def _status(field: str) -> int:
    from edgepress.runtime.probe import _status_bytes

    return _status_bytes(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def child(phase: str, data_path: str, fp32: str, int8: str) -> dict:
    from edgepress.compress import calibrate
    from edgepress.runtime.artifact import TensorSpec

    data = calibrate.open_data(data_path, [TensorSpec("x", SHAPE, "float32")])
    if phase == "calibration":
        from edgepress.compress import quantize

        job = quantize.Job(loaded=None, fmt="onnx", fp32_path=Path(fp32), out_path=Path(int8),
                           calib=data, work=Path(int8).parent / f"work-{Path(data_path).stem}")
        cfg = quantize.QuantizeConfig("int8", speed_check=False)
        import onnxruntime.quantization  # noqa: F401 - imported before the baseline

        run = lambda: quantize.run(job, cfg)  # noqa: E731
    else:
        from edgepress.runtime import verify
        from edgepress.runtime.session import Session

        quantized, reference = Session(int8), Session(fp32)
        run = lambda: verify.evaluate(quantized, reference, data.labelled())  # noqa: E731
    _reset_peak()
    base = _status("VmRSS")
    result = run()
    peak = _status("VmHWM")
    return {"phase": phase, "samples": data.record()["samples"],
            "data_bytes": Path(data_path).stat().st_size, "base_rss_bytes": base,
            "peak_rss_bytes": peak, "added_bytes": peak - base,
            "result": result if phase == "evaluation" else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=400, help="1x size (10x is ten times it)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--child", nargs=4, metavar=("PHASE", "DATA", "FP32", "INT8"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="edgepress-memory-") as tmp:
        work = args.work or Path(tmp)
        fp32 = export(work)
        rows = {}
        for scale in (1, 10):
            data = work / f"data-{scale}x.npz"
            write_npz(data, args.samples * scale)
            int8 = work / f"int8-{scale}x.onnx"
            for phase in ("calibration", "evaluation"):
                proc = subprocess.run([sys.executable, __file__, "--child", phase, str(data),
                                       str(fp32), str(int8)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 1
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows[phase, scale] = r
                print(f"{phase:12} {scale:>2}x: {r['samples']:>6,} samples "
                      f"({r['data_bytes'] / 2**20:7.1f} MiB on disk): peak RSS "
                      f"{r['peak_rss_bytes'] / 2**20:7.1f} MiB, {r['added_bytes'] / 2**20:6.1f} "
                      f"MiB above the {r['base_rss_bytes'] / 2**20:.1f} MiB after setup")
                print(json.dumps({k: v for k, v in r.items() if k != "result"}))
        ratios = {p: rows[p, 10]["added_bytes"] / max(rows[p, 1]["added_bytes"], 1)
                  for p in ("calibration", "evaluation")}
        print(f"memory 10x/1x: calibration={ratios['calibration']:.2f} "
              f"evaluation={ratios['evaluation']:.2f} (peak RSS above setup; data set grew 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
