"""Distillation on real data: does KD win back what 50% channel pruning and int8 cost?

On scikit-learn's digits (real handwritten images): the fp32 teacher (examples/digits/train.py),
the same 50%-channel-pruned student trained two ways for the same epochs — distilled from the
teacher (KD + labels) and fine-tuned with labels only — and the distilled student's int8 ONNX and
int8 TFLite bundles. Accuracies are on the 450-image test split, measured through the edgepress
runtime for the artifacts. Last line:

  distill: teacher=<acc> student_kd=<acc> student_ft=<acc> int8_onnx=<acc> int8_tflite=<acc> size_ratio=<r>

size_ratio: the int8 student's file size over the fp32 teacher's, the larger of the two formats.
Targets (issue 6): student_kd >= teacher - 1.0; both int8 >= teacher - 1.5; size_ratio <= 0.15.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
sys.path.insert(0, str(DIGITS))

from edgepress.compress import pipeline  # noqa: E402


def run_recipe(out: Path, data: Path, epochs: int, alpha: float, quantize: tuple, formats):
    req = pipeline.Request(
        source=f"{DIGITS}/model.py:digits_cnn", weights=str(data / "weights.safetensors"),
        input_shapes=("image=1,1,8,8",), out=out, formats=formats, prune="channels:0.5",
        prune_skip_defaults=False, prune_skip=("head",),  # as examples/digits/recipe.toml
        distill="logits", train=str(data / "train.npz"), val=str(data / "val.npz"),
        eval=str(data / "eval.npz"), calib=str(data / "calib.npz"), quantize=quantize,
        distill_epochs=epochs, distill_alpha=alpha, distill_patience=0)
    pipeline.run(req)
    return json.loads((out / "summary.json").read_text())


def teacher_run(out: Path, data: Path):
    req = pipeline.Request(source=f"{DIGITS}/model.py:digits_cnn",
                           weights=str(data / "weights.safetensors"),
                           input_shapes=("image=1,1,8,8",), out=out, eval=str(data / "eval.npz"),
                           calib=str(data / "calib.npz"), quantize=("fp16",),
                           formats=("onnx", "tflite"))
    pipeline.run(req)
    return json.loads((out / "summary.json").read_text())


def rows(summary) -> dict:
    return {r["bundle"]: r for r in summary["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import train

        train.main(["--out", str(data)])
        teacher = rows(teacher_run(Path(tmp) / "teacher", data))
        kd = rows(run_recipe(Path(tmp) / "kd", data, args.epochs, 0.7, ("int8",),
                             ("onnx", "tflite")))
        ft = rows(run_recipe(Path(tmp) / "ft", data, args.epochs, 0.0, (), ("onnx",)))
    pct = {k: 100 * v for k, v in {
        "teacher": teacher["onnx-fp32"]["value"], "student_kd": kd["onnx-fp32"]["value"],
        "student_ft": ft["onnx-fp32"]["value"], "int8_onnx": kd["onnx-int8"]["value"],
        "int8_tflite": kd["tflite-int8"]["value"]}.items()}
    size_ratio = max(kd[f"{f}-int8"]["size_bytes"] / teacher[f"{f}-fp32"]["size_bytes"]
                     for f in ("onnx", "tflite"))
    print(f"\n| artifact | accuracy % | size KiB |\n| --- | --- | --- |")
    for name, r in [("teacher onnx-fp32", teacher["onnx-fp32"]),
                    ("teacher tflite-fp32", teacher["tflite-fp32"]),
                    ("student (KD) onnx-fp32", kd["onnx-fp32"]),
                    ("student (labels only) onnx-fp32", ft["onnx-fp32"]),
                    ("student (KD) onnx-int8", kd["onnx-int8"]),
                    ("student (KD) tflite-int8", kd["tflite-int8"])]:
        print(f"| {name} | {100 * r['value']:.2f} | {r['size_bytes'] / 1024:.1f} |")
    print(f"\nepochs {args.epochs} each; wall time {time.time() - t0:.0f} s")
    print("distill: " + " ".join(f"{k}={v:.2f}" for k, v in pct.items())
          + f" size_ratio={size_ratio:.3f}")


if __name__ == "__main__":
    main()
