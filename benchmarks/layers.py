"""layers: which MobileNetV2 layer types int8 speeds up, per engine: the evidence behind
MobileNetV2's TFLite int8/fp32 ratio (issue 4's one missed target).

Each single layer (benchmarks/models/layers.py, seeded random weights) is built by
`edgepress compress --quantize int8 --calib random` in both formats. Its fp32 and int8 models
are timed on the raw engine, in alternating blocks in one process (benchmarks/prune.py), at
--threads (default 1): onnxruntime, and LiteRT's interpreter (XNNPACK) fed the int8 model's own
int8 input. edgepress's Session would quantize that input and dequantize the output in numpy,
which on a single layer costs as much as the layer, so it is left out here. A ratio above 1
means int8 is slower than fp32 on that engine.

    python benchmarks/layers.py [--seconds 2] [--threads 1] [--work DIR]

This process never imports torch; building runs in `edgepress compress` subprocesses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prune import alternate
from benchmarks.quantize import FORMATS, compress

_FILE = ROOT / "benchmarks" / "models" / "layers.py"
LAYERS = {"stem": "1,3,224,224", "depthwise": "1,96,56,56", "depthwise_s2": "1,96,56,56",
          "pointwise": "1,96,56,56"}


def engine_call(model: Path, threads: int):
    """A no-argument call of the model on its raw engine, with a random input of its own type."""
    rng = np.random.default_rng(0)
    if model.suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32)
                 for i in sess.get_inputs()}
        return lambda: sess.run(None, feeds)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=threads)
    it.allocate_tensors()
    for d in it.get_input_details():
        x = rng.standard_normal(d["shape"])
        if np.issubdtype(d["dtype"], np.integer):
            x = rng.integers(-128, 128, d["shape"])
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    return it.invoke


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per layer and format")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, help="where bundles are kept (and reused)")
    args = ap.parse_args(argv)
    print(f"{'layer':<14}{'format':<8}{'fp32 p50 ms':>12}{'int8 p50 ms':>13}{'int8/fp32':>11}"
          f"  ({args.threads} thread)")
    with tempfile.TemporaryDirectory(prefix="edgepress-layers-") as tmp:
        work = args.work or Path(tmp)
        for name, shape in LAYERS.items():
            out = compress(name, work, ["--calib", "random", "--calib-samples", "8"],
                           source=(f"{_FILE}:{name}", [shape]))
            for fmt in FORMATS:
                f_ns, q_ns = alternate([engine_call(out / f"{fmt}-{p}" / f"model.{fmt}",
                                                    args.threads) for p in ("fp32", "int8")],
                                       args.seconds)
                f, q = np.median(f_ns) / 1e6, np.median(q_ns) / 1e6
                print(f"{name:<14}{fmt:<8}{f:>12.3f}{q:>13.3f}{q / f:>11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
