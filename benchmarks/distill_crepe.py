"""crepe full teaches crepe tiny pruned 50% on real speech without labels (issue 16, item 3),
through edgepress's own pipeline (prune -> distill -> export -> int8), and what it costs.

Data (disjoint in time; 64 ms frames, each normalised as torchcrepe does): train = the pyannote
call's first TRAIN_S s every 10 ms, plus AUGMENTED frames cut from the same 20 s, pitch-shifted
by resampling (up to an octave), some with noise or a second voice mixed in
(benchmarks/models/crepe.py: augmented), which the teacher labels like any other; validation
(early stopping, best epoch) = ARCTIC 0-2 s every 10 ms plus VAL_AUGMENTED frames augmented from
those same 2 s (another seed); calibration (BatchNorm statistics after pruning, int8) = every 8th
train frame of the call; held-out eval = the call from TRAIN_S s and ARCTIC 2-4 s every 10 ms,
kept where crepe full calls the frame voiced (eval_40ms: the same audio every 40 ms, the eval set
of the runs before 2026-12-02 07:00 UTC, still scored beside it). The teacher's outputs are
the only targets. Metric: share of voiced eval frames whose decoded pitch is within 50 cents of
crepe full's (benchmarks/tasks.py), on the exported bundles through the edgepress runtime.

Student: tiny (its real weights) pruned by the plan edgepress itself chooses for half its MACs,
`--prune auto:macs=0.5` through the pipeline, the stem included (conv1 and conv2 hold ~91% of its
MACs): a sensitivity scan on the calibration frames (each layer alone at 25/50/75%, top-1
agreement with tiny), then the per-layer ratios that reach the MACs target with the least summed
drop (benchmarks/distill.py prints the plan each run chose; all three runs scan the same frames).
conv6, whose outputs a fixed reshape feeds to the classifier, and the classifier (its outputs
are the model's) are skipped; channels ranked by L2 norm. Before this, the student was a uniform
channels:0.5 on every conv (benchmarks/results/stages/distill.txt keeps that run's figures).
Fine-tune (the teacher's hard decisions, BCE) and KD (BCE against the teacher's probabilities
mixed half and half with its decisions: KD below) get the same data, the same budget and the same
selection of the best epoch on validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import tasks
from benchmarks.prune import timed_pair
from edgepress.compress import pipeline
from edgepress.runtime import compare

MODELS = Path(__file__).resolve().parent / "models"
TINY, TRAINABLE = f"{MODELS}/crepe.py:crepe_tiny", f"{MODELS}/crepe.py:crepe_tiny_trainable"
FULL = f"{MODELS}/crepe.py:crepe_full"
TRAIN_S, TRAIN_HOP, VAL_HOP, EVAL_HOP, RATE = 20, 160, 160, 160, 16_000
# The eval hop of the earlier runs: 209 voiced frames, one frame = 0.48 points, too coarse to
# tell KD from fine-tuning; 10 ms gives 4x the frames (still the same 12 s of held-out audio:
# neighbouring frames overlap, so the quantum shrinks more than the sampling noise does)
EARLIER_EVAL_HOP = 640
AUGMENTED = 4000  # the teacher labels them: crepe full costs ~1.3 GMAC a frame
# ARCTIC 0-2 s alone gave ~90 voiced validation frames: the best epoch moved with a frame or two
# (KD's was epoch 1 of 6, fine-tuning's epoch 4); pitch-shifted, noisy copies of the same 2 s
# (never trained on, never evaluated) give the selection ~10x the frames to judge by
VAL_AUGMENTED = 1000
PRUNE = {"prune": "auto:macs=0.5", "prune_importance": "l2", "prune_skip_defaults": False,
         "prune_skip": ("conv6", "classifier")}
# torchrun's throughput runs (samples/s only) distil the same auto:macs=0.5 student through the
# CLI (its scan and BatchNorm re-estimation on --calib, as the pipeline's). It once failed there
# ("reach only 0.71 x the MACs"): the CLI dropped `--prune-skip-defaults no` (a `no` read as "not
# given", so the stem stayed whole) and kept only the last of two --prune-skip flags; both fixed
# in edgepress/cli/parser.py, so the figure is now of the KD run's own student
SCALING_PRUNE = PRUNE["prune"]
METRIC = "benchmarks.tasks:pitch_agreement"
# The KD budget (fine-tuning gets the same): epochs over the train frames, AdamW, cosine decay.
EPOCHS = 6
BUDGET = {"distill_batch_size": 64, "distill_lr": 3e-3, "distill_patience": 0}
# BCE against the mixture 0.5 x the teacher's probabilities + 0.5 x its decisions (BCE is linear
# in its target): Hinton's soft + hard terms. Pure soft targets (alpha 1, the runs before
# 2026-12-02 07:00 UTC) left a larger median error than fine-tuning's 0/1 targets (4.3 cents
# against 3.3 on the 40 ms eval) and picked the first epoch of six on validation.
KD = {"distill_alpha": 0.5, "distill_temperature": 1.0}
FT = {"distill_alpha": 0.0}  # BCE on the teacher's decisions (p > 0.5) only


def splits(where: Path) -> dict:
    """train / val / calib / eval (/ eval_40ms) .npz under `where`, their sizes."""
    from benchmarks.models import crepe, speech

    call, arctic = speech.call(), speech.arctic()
    cut, half = TRAIN_S * RATE, len(arctic) // 2
    spoken = crepe.frames(call[:cut], TRAIN_HOP)
    train = np.concatenate([spoken, crepe.augmented(call[:cut], AUGMENTED)])
    val = np.concatenate([crepe.frames(arctic[:half], VAL_HOP),
                          crepe.augmented(arctic[:half], VAL_AUGMENTED, seed=1)])
    paths = {name: where / f"{name}.npz" for name in ("train", "val", "calib", "eval",
                                                      "eval_40ms")}
    np.savez(paths["train"], x=train[:, None])
    np.savez(paths["val"], x=val[:, None])
    np.savez(paths["calib"], x=spoken[::8][:, None])
    sizes = {"train": len(train), "spoken": len(spoken), "val": len(val),
             "calib": len(spoken[::8])}
    teacher = crepe.crepe_full()
    for name, hop in (("eval", EVAL_HOP), ("eval_40ms", EARLIER_EVAL_HOP)):
        held = np.concatenate([crepe.frames(call[cut:], hop), crepe.frames(arctic[half:], hop)])
        sizes.update({name: _held_out(paths[name], held, teacher), f"{name}_all": len(held)})
    return {"paths": paths, "sizes": sizes}


def _held_out(path: Path, held: np.ndarray, teacher) -> int:
    """Writes the frames of `held` that crepe full calls voiced, with its decoded pitch
    (ref_cents); how many there are."""
    import torch

    with torch.no_grad():
        full = torch.cat([teacher(torch.from_numpy(held[i:i + 256]))
                          for i in range(0, len(held), 256)]).numpy()
    voiced = full.max(axis=1) >= tasks.VOICED
    np.savez(path, x=held[voiced][:, None], ref_cents=tasks.cents(full[voiced]))
    return int(voiced.sum())


def request(out: Path, data: dict, source: str = TINY, **kw) -> pipeline.Request:
    # int8's calibration, and the BatchNorm statistics re-estimated after pruning
    calib = {"calib": str(data["calib"])} if kw.get("quantize") or kw.get("prune") else {}
    return pipeline.Request(source=source, input_shapes=("1,1024",), out=out, golden_samples=2,
                            overwrite=True, summary=False,
                            **{"formats": ("onnx",), "train_device": "cpu", **calib, **kw})


def trained(out: Path, data: dict, epochs: int, how: dict, **kw) -> dict:
    """prune + distill (KD or fine-tune, as `how` says) from crepe full; the run's figures."""
    pipeline.run(request(out, data, TRAINABLE, teacher=FULL, distill="logits",
                         train=str(data["train"]), val=str(data["val"]), distill_metric=METRIC,
                         distill_epochs=epochs, **PRUNE, **BUDGET, **how, **kw))
    return manifest(out / "onnx-fp32")["stages"]["distill"]


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def pitch(bundle: Path, data: dict) -> dict:
    """Pitch agreement on the eval frames (and on the earlier 40 ms eval set), size."""
    row = {"size": manifest(bundle)["model_size_bytes"]}
    for split, suffix in (("eval", ""), ("eval_40ms", "_40ms")):
        res = tasks.evaluate({"bundle": str(bundle), "reference": str(bundle), "task": "pitch",
                              "eval": str(data[split])})
        row.update({f"pct{suffix}": 100 * res["value"],
                    f"median_cents{suffix}": res["task_detail"]["median_error_cents"]})
    return row


def run(work: Path, epochs: int, seconds: float) -> dict:
    """Every row of the comparison, the p50 ratio and the KD run's own figures."""
    data = splits(work)
    p = data["paths"]
    pipeline.run(request(work / "tiny", p))
    pipeline.run(request(work / "pruned", p, **PRUNE))
    ft = trained(work / "ft", p, epochs, FT)
    kd = trained(work / "kd", p, epochs, KD, quantize=("int8",), formats=("onnx", "tflite"))
    bundles = {"tiny": work / "tiny/onnx-fp32", "pruned": work / "pruned/onnx-fp32",
               "pruned_ft": work / "ft/onnx-fp32", "pruned_kd": work / "kd/onnx-fp32",
               "int8_onnx": work / "kd/onnx-int8", "int8_tflite": work / "kd/tflite-int8"}
    rows = {name: pitch(b, p) for name, b in bundles.items()}
    tiny_ns, kd_ns = timed_pair(bundles["tiny"], bundles["pruned_kd"], 1, seconds)
    ci = compare.median_ratio_ci(tiny_ns, kd_ns, np.random.default_rng(0))
    return {"paths": p, "sizes": data["sizes"], "rows": rows, "kd": kd, "ft": ft,
            "p50_ms": (np.median(tiny_ns) / 1e6, np.median(kd_ns) / 1e6),
            "p50_ratio": float(np.median(kd_ns) / np.median(tiny_ns)), "ci": ci,
            "calls": tiny_ns.size, "macs": manifest(bundles["pruned_kd"])["stages"]["prune"]["macs"],
            "plans": {name: plan(work / name / "onnx-fp32") for name in ("pruned", "ft", "kd")}}


def plan(bundle: Path) -> dict:
    """The per-layer ratios auto:macs chose for this bundle's student."""
    return manifest(bundle)["stages"]["prune"]["auto"]["chosen_ratios"]


def scaling(work: Path, paths: dict, epochs: int) -> dict:
    """Distillation samples/s under torchrun with 1 and 2 CPU processes (gloo, 1 thread each),
    the KD run's loop on the SCALING_PRUNE student (its plan chosen on the calibration frames, as
    the KD run's); tiny (unpruned) teaches here, as the loop reads the teacher's cached outputs
    and its cost does not enter the figure."""
    out = {}
    for n in (1, 2):
        dest = work / f"torchrun{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(n), "-m", "edgepress.cli", "distill", TRAINABLE,
               "--teacher", TINY, "--input-shape", "1,1024", "--train", str(paths["train"]),
               "--distill-epochs", str(epochs), "--train-device", "cpu", "--format", "onnx",
               "--golden-samples", "2", "--out", str(dest), "--overwrite",
               "--calib", str(paths["calib"]),
               "--prune", SCALING_PRUNE, "--prune-importance", PRUNE["prune_importance"],
               "--prune-skip-defaults", "no",
               "--prune-skip", ",".join(PRUNE["prune_skip"])]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              cwd=MODELS.parent.parent)
        if proc.returncode != 0:
            sys.exit(f"torchrun failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
        out[n] = manifest(dest / "onnx-fp32")["stages"]["distill"]["trained_on"]
    return out


def main(argv=None) -> None:
    """Writes the splits for running the same recipe through the CLI (README, the demo)."""
    import argparse

    ap = argparse.ArgumentParser(description="write crepe KD's train/val/calib/eval .npz")
    ap.add_argument("dir", type=Path)
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(splits(args.dir)["sizes"]))


if __name__ == "__main__":
    main()
