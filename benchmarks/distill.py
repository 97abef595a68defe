"""Distillation on real data: does KD win back what 50% channel pruning and int8 cost?

1. On scikit-learn's digits (real handwritten images): the fp32 teacher (examples/digits/train.py),
the same 50%-channel-pruned student trained two ways for the same epochs — distilled from the
teacher (KD + labels) and fine-tuned with labels only — and the distilled student's int8 ONNX and
int8 TFLite bundles. Accuracies are on the 450-image test split, measured through the edgepress
runtime for the artifacts.

2. On real speech without labels (distill_crepe.py says the data and the pruning): crepe full
teaches crepe tiny pruned to half its
MACs by the plan edgepress chooses (auto:macs=0.5), stem included. Pitch agreement with crepe full (within 50 cents,
voiced held-out frames) for tiny as shipped, pruned without training, pruned + fine-tuned on the
teacher's hard labels, pruned + KD, and pruned + KD + int8 (ONNX, TFLite); crepe_p50_ratio =
pruned + KD over tiny, both fp32 ONNX, 1 thread, timed in alternating blocks.

3. Distillation throughput: samples/s of the KD run's training steps per device kind found, and
1 vs 2 processes under torchrun on the CPU (gloo, 1 thread each). Last line:

  distill: teacher=<acc> student_kd=<acc> student_ft=<acc> int8_onnx=<acc> int8_tflite=<acc> size_ratio=<r>; crepe_tiny=<pct> crepe_pruned=<pct> crepe_pruned_ft=<pct> crepe_pruned_kd=<pct> crepe_int8_onnx=<pct> crepe_int8_tflite=<pct> crepe_p50_ratio=<r> samples_per_s_cpu=<n>

size_ratio: the int8 student's file size over the fp32 teacher's, the larger of the two formats.
Targets (issue 6): student_kd >= teacher - 1.0; both int8 >= teacher - 1.5; size_ratio <= 0.15.
Targets (issue 16): crepe_pruned_kd >= crepe_tiny - 2, above crepe_pruned_ft, crepe_p50_ratio <= 0.6.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
sys.path.insert(0, str(DIGITS))
sys.path.insert(0, str(ROOT))

from benchmarks import distill_crepe  # noqa: E402
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


def digits(epochs: int) -> str:
    """The digits comparison, printed; its part of the last line."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import train

        train.main(["--out", str(data)])
        teacher = rows(teacher_run(Path(tmp) / "teacher", data))
        kd = rows(run_recipe(Path(tmp) / "kd", data, epochs, 0.7, ("int8",), ("onnx", "tflite")))
        ft = rows(run_recipe(Path(tmp) / "ft", data, epochs, 0.0, (), ("onnx",)))
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
    print(f"\ndigits: epochs {epochs} each")
    return (" ".join(f"{k}={v:.2f}" for k, v in pct.items()) + f" size_ratio={size_ratio:.3f}")


CREPE_ROWS = (("tiny", "tiny as shipped"), ("pruned", "pruned (auto:macs=0.5), no training"),
              ("pruned_ft", "pruned + fine-tuned (teacher's hard labels)"),
              ("pruned_kd", "pruned + KD"), ("int8_onnx", "pruned + KD, int8 ONNX"),
              ("int8_tflite", "pruned + KD, int8 TFLite"))


def crepe(epochs: int, scale_epochs: int, seconds: float) -> str:
    """The crepe comparison and the throughput figures, printed; their part of the last line."""
    with tempfile.TemporaryDirectory(prefix="edgepress-crepe-kd-") as tmp:
        r = distill_crepe.run(Path(tmp), epochs, seconds)
        table(r, epochs)  # before the throughput runs: their failure does not lose these figures
        scale = distill_crepe.scaling(Path(tmp), r["paths"], scale_epochs) if scale_epochs else {}
    sps = r["kd"]["trained_on"]["samples_per_s"]
    print(f"distillation samples/s: cpu {sps:g} (KD run, {torch.get_num_threads()} threads); "
          f"{cuda_note()}")
    if not scale:
        print("torchrun on CPU: not run (--scale-epochs 0)")
        return line(r, sps)
    one, two = scale[1]["samples_per_s"], scale[2]["samples_per_s"]
    print(f"torchrun on CPU (gloo, 1 thread per process, {scale_epochs} epochs, student "
          f"{distill_crepe.SCALING_PRUNE}): 1 process {one:g} samples/s, 2 processes {two:g} "
          f"samples/s, scaling {two / one:.2f}x")
    return line(r, sps)


def line(r: dict, sps: float) -> str:
    """The crepe part of the last line."""
    return (" ".join(f"crepe_{k}={r['rows'][k]['pct']:.2f}" for k, _ in CREPE_ROWS)
            + f" crepe_p50_ratio={r['p50_ratio']:.3f} samples_per_s_cpu={sps:.0f}")


def table(r: dict, epochs: int) -> None:
    """The crepe comparison: data, budget, the plan, every row and the p50 ratio."""
    sz, kd, ft = r["sizes"], r["kd"], r["ft"]
    print(f"\ncrepe: train {sz['train']} frames (call 0-{distill_crepe.TRAIN_S} s: "
          f"{sz['spoken']} every 10 ms, {sz['train'] - sz['spoken']} augmented), val {sz['val']} "
          f"(ARCTIC 0-2 s: 10 ms hop, {distill_crepe.VAL_AUGMENTED} augmented), calib "
          f"{sz['calib']}; eval {sz['eval']} voiced of {sz['eval_all']} held-out frames "
          f"(call {distill_crepe.TRAIN_S}-30 s, ARCTIC 2-4 s, 10 ms hop; the earlier 40 ms "
          f"hop: {sz['eval_40ms']} of {sz['eval_40ms_all']})")
    print(f"budget: {epochs} epochs each, batch {distill_crepe.BUDGET['distill_batch_size']}, "
          f"AdamW lr {distill_crepe.BUDGET['distill_lr']} cosine; KD {distill_crepe.KD}, "
          f"FT {distill_crepe.FT}; best epoch on val: "
          f"KD {kd['best_epoch'] + 1} ({100 * kd['best_metric']:.2f}%), "
          f"FT {ft['best_epoch'] + 1} ({100 * ft['best_metric']:.2f}%); "
          f"pruned MACs ratio {r['macs']['ratio']}")
    plans = r["plans"]
    same = len({json.dumps(p, sort_keys=True) for p in plans.values()}) == 1
    print(f"student: --prune {distill_crepe.PRUNE['prune']} chose {plans['kd']} "
          + ("(the same for pruned, FT and KD)" if same else f"(DIFFERENT: {plans})"))
    print("\n| crepe artifact | within 50 cents of full % (10 ms eval) | median error cents | "
          "% on the earlier 40 ms eval | size KiB |\n| --- | --- | --- | --- | --- |")
    for key, name in CREPE_ROWS:
        row = r["rows"][key]
        print(f"| {name} | {row['pct']:.2f} | {row['median_cents']:.1f} | "
              f"{row['pct_40ms']:.2f} | {row['size'] / 1024:.1f} |")
    (t_ms, k_ms), (lo, hi) = r["p50_ms"], r["ci"]
    print(f"\np50 fp32 ONNX, 1 thread: tiny {t_ms:.3f} ms, pruned + KD {k_ms:.3f} ms, ratio "
          f"{r['p50_ratio']:.3f} (95% CI {lo:.3f}-{hi:.3f}, {r['calls']} calls each, alternating)",
          flush=True)


def cuda_note() -> str:
    if torch.cuda.is_available():
        return f"cuda present ({torch.cuda.get_device_name()}): not measured by this script"
    return f"cuda: none here (torch {torch.__version__})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="digits")
    ap.add_argument("--crepe-epochs", type=int, default=distill_crepe.EPOCHS)
    ap.add_argument("--scale-epochs", type=int, default=1, help="each torchrun run (0: no "
                    "torchrun runs)")
    ap.add_argument("--seconds", type=float, default=4.0, help="p50 timing (both sides)")
    ap.add_argument("--parts", default="digits,crepe", help="digits, crepe or both (the last "
                    "line then carries only the figures of the parts run)")
    args = ap.parse_args()
    t0 = time.time()
    parts = args.parts.split(",")
    line = "; ".join(([digits(args.epochs)] if "digits" in parts else [])
                     + ([crepe(args.crepe_epochs, args.scale_epochs, args.seconds)]
                        if "crepe" in parts else []))
    print(f"\nwall time {time.time() - t0:.0f} s")
    print("distill: " + line)


if __name__ == "__main__":
    main()
