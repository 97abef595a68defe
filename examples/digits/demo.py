"""The README's main job: the digits CNN from training to verified, measured edge artifacts.

Each step is the `edgepress` command a user would type (printed before it runs):
train on real data -> compress to ONNX + TFLite bundles -> verify -> bench, then a summary table
with held-out accuracy measured through the edgepress runtime.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = Path("out/digits")


def sh(*argv) -> None:
    print(f"\n$ {shlex.join(map(str, argv))}", flush=True)
    subprocess.run(list(map(str, argv)), check=True)


def accuracy(bundle: Path) -> float:
    """Top-1 accuracy on the held-out digits, one image at a time through the runtime."""
    from edgepress.runtime.artifact import open_bundle
    from edgepress.runtime.session import Session

    b = open_bundle(bundle)
    session = Session(b.model_path, threads=1)
    with np.load(DATA / "eval.npz") as z:
        images, labels = z["image"], z["labels"]
    name = b.inputs[0].name
    preds = [session.run({name: img[None]})["output_0"].argmax() for img in images]
    return float(np.mean(np.array(preds) == labels))


def main() -> None:
    edgepress = [sys.executable, "-m", "edgepress.cli"]
    if not (DATA / "weights.safetensors").is_file():
        sh(sys.executable, HERE / "train.py")
    sh(*edgepress, "compress", "examples/digits/model.py:digits_cnn",
       "--weights", DATA / "weights.safetensors", "--input-shape", "image=1,1,8,8",
       "--format", "onnx,tflite", "--out", OUT, "--overwrite")
    rows = []
    for bundle in sorted(OUT.iterdir()):
        sh(*edgepress, "verify", bundle)
        report = OUT.parent / f"{OUT.name}-{bundle.name}-bench.json"
        sh(*edgepress, "bench", bundle, "--threads", "1", "--out", report)
        rep = json.loads(report.read_text())
        manifest = json.loads((bundle / "manifest.json").read_text())
        rows.append((bundle.name, f"{manifest['model_size_bytes'] / 1024:.1f}",
                     f"{accuracy(bundle):.4f}", f"{rep['results']['latency_ms']['p50']:.3f}"))
    print("\nSummary (digits CNN, 450 held-out images, 1 thread)")
    print(f"{'bundle':<12} {'size KiB':>9} {'accuracy':>9} {'p50 ms':>8}")
    for r in rows:
        print(f"{r[0]:<12} {r[1]:>9} {r[2]:>9} {r[3]:>8}")


if __name__ == "__main__":
    main()
