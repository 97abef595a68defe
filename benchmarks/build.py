"""build: the host side of the suite (imports torch). Every zoo model through edgepress's recipes,
then each peer (peers.py) on the same fp32 model files and calibration samples; writes the bundles
and WORK/build.json, the list of artifacts that run.py measures in a torch-free process.

    python benchmarks/build.py --work DIR [--models digits,kws] [--recipes int8,pruned] ...

Calibration: the digits model on its real calibration split (examples/digits/data/calib.npz); the
real models (models/real.py) on their real calibration splits, with a disjoint selection split
given to edgepress as its held-out data (`eval` in the request) and a third, disjoint split for
the task metric; every random-weight model on `random` (explicit: no real data exists for random
weights), the same seed-0 samples for edgepress and the peers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from benchmarks import peers
from benchmarks.models import MODELS, PEAK, WEIGHTS
from benchmarks.models.real import REAL
from edgepress.runtime import shapes
from edgepress.runtime import artifact

DIGITS_DATA = ROOT / "examples" / "digits" / "data"
FORMATS = ("onnx", "tflite")
PRUNE = "channels:0.5"

# recipe -> the pipeline.Request fields it sets. "int8" also yields the fp32 bundles; "kd" needs
# training data, so only models with real data get it.
RECIPES = {
    "int8": {"quantize": ("int8",)},
    "pruned": {"prune": PRUNE, "quantize": ("int8",)},
    "kd": {"prune": PRUNE, "quantize": ("int8",), "distill": "logits"},
    "dynamic": {"quantize": ("dynamic",)},
    "fp32": {"quantize": ()},  # only where int8 fails: the fp32 base the peers start from
}
LABELS = {"int8": "int8", "pruned": "pruned50+int8", "kd": "pruned50+kd+int8",
          "dynamic": "dynamic-int8", "fp32": "fp32"}
# Real models get int8 and dynamic int8: pruning a pretrained model needs its training data to
# recover (none ships with them); random-weight models get no dynamic recipe (latency only).
REAL_RECIPES = ("int8", "dynamic")


def quiet_stdout():
    """Points fd 1 at stderr for the rest of the process (the converters print diagnostics
    straight to stdout, some from C++); returns a stream on the real stdout for progress."""
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return progress


PROGRESS = sys.stdout


def say(line: str) -> None:
    print(line, file=PROGRESS, flush=True)


def data_for(name: str, calib_samples: int, work: Path) -> dict:
    """Request fields for the model's data: real splits for digits and the real models,
    explicit random otherwise."""
    if name in REAL:
        where = work / name / "data"
        where.mkdir(parents=True, exist_ok=True)
        splits = REAL[name].splits(where)
        return {"calib": splits["calib"], "eval": splits["select"], "splits": splits}
    if name != "digits":
        return {"calib": "random", "calib_samples": calib_samples}
    if not (DIGITS_DATA / "eval.npz").is_file():  # a clean clone: train.py writes weights + data
        subprocess.run([sys.executable, str(ROOT / "examples/digits/train.py")], check=True)
    return {"calib": str(DIGITS_DATA / "calib.npz"), "weights": WEIGHTS["digits"],
            "train": str(DIGITS_DATA / "train.npz"), "val": str(DIGITS_DATA / "val.npz")}


def run_recipe(name: str, recipe: str, out: Path, data: dict, epochs: int, fmt: str) -> dict:
    """One pipeline run; {bundle name: failure record} of the bundles it could not build (the
    pipeline still writes the others)."""
    from edgepress.compress import pipeline

    source, input_shapes = MODELS[name] if name in MODELS else (REAL[name].source(),
                                                                REAL[name].input_shapes)
    fields = {**RECIPES[recipe], **{k: v for k, v in data.items() if k != "splits"},
              "formats": (fmt,)}
    if "distill" not in fields:
        fields.pop("train", None), fields.pop("val", None)
    if not fields["quantize"]:  # fp32 alone: calibration and selection data have no use
        for key in ("calib", "calib_samples", "eval"):
            fields.pop(key, None)
    run = pipeline.outcome(pipeline.Request(source=source, input_shapes=tuple(input_shapes),
                                            out=out, overwrite=True, summary=False,
                                            distill_epochs=epochs, **fields))
    return {f["bundle"]: f for f in run.failures}


def formats_of(name: str) -> tuple:
    return REAL[name].formats if name in REAL else FORMATS


def entries(name: str, recipe: str, out: Path, base: Path, calib: str) -> list[dict]:
    """One artifact per format (and the fp32 ones for the plain int8 recipe)."""
    precisions = ("fp32", "int8") if recipe == "int8" else ("int8",)
    folder = RECIPES[recipe]["quantize"][0]  # the pipeline names bundles <fmt>-<precision>
    return [{"model": name, "tool": "edgepress",
             "recipe": LABELS[recipe] if p == "int8" else "fp32", "format": fmt, "precision": p,
             "bundle": str(out / fmt / f"{fmt}-{folder if p == 'int8' else p}"),
             "reference": str(base / fmt / f"{fmt}-fp32"),
             "macs_of": str(out / fmt / f"{fmt}-fp32"), "calib": calib}
            for fmt in formats_of(name) for p in precisions]


def peer_entries(name: str, work: Path, data: dict) -> list[dict]:
    base, rows = work / name / "int8", []
    transformer = name in REAL and REAL[name].transformer
    for peer, (_, fmt, _) in peers.PEERS.items():
        if fmt not in formats_of(name) or (name not in REAL and peer not in peers.FOR_RANDOM):
            continue  # an ONNX source has no TFLite model; random weights get the int8 peers
        row = {"model": name, "tool": peer, "recipe": "int8", "format": fmt,
               "precision": "int8", "bundle": str(work / name / peer),
               "reference": str(base / fmt / f"{fmt}-fp32"),
               "macs_of": str(base / fmt / f"{fmt}-fp32"),
               "calib": describe_calib(data)}
        t0 = time.time()
        try:
            record = peers.apply(peer, base / fmt / f"{fmt}-fp32", data["calib"],
                                 data.get("calib_samples"), Path(row["bundle"]), transformer)
            row["call"] = f"{record['call']} ({record['library']} {record['version']})"
        except peers.Unavailable as e:
            row["error"] = str(e)
        say(f"  {name} {peer}: {row.get('error', 'ok')} ({time.time() - t0:.0f} s)")
        rows.append(row)
    return rows


def describe_calib(data: dict) -> str:
    if "splits" in data:
        sizes = data["splits"]["sizes"]
        return (f"real: {sizes['calib']} calib / {sizes['select']} select / {sizes['eval']} "
                f"eval samples ({data['splits']['data']})")
    if data["calib"] == "random":
        return f"random ({data['calib_samples']} samples, seed 0)"
    return f"{Path(data['calib']).relative_to(ROOT)} (real data)"


def eval_data(name: str, work: Path, samples: int, data: dict) -> str:
    """Held-out data for accuracy/fidelity: the digits test split, else random inputs (seed 1,
    never the calibration samples) written once as WORK/NAME/eval.npz; a real model's eval split."""
    if "splits" in data:
        return data["splits"]["eval"]
    if name == "digits":
        return str(DIGITS_DATA / "eval.npz")
    bundle = artifact.open_bundle(work / name / "int8" / "onnx" / "onnx-fp32")
    samples = 2 if name == PEAK else samples  # its speed is what counts, not its outputs
    arrays = shapes.random_inputs(bundle.inputs, samples, seed=1)
    path = work / name / "eval.npz"
    np.savez(path, **arrays)
    return str(path)


def build_model(name: str, recipes: list, work: Path, args) -> list[dict]:
    data = data_for(name, args.calib_samples, work)
    rows = []
    for recipe in ["int8"] + [r for r in recipes if r != "int8"]:  # int8 first: the fp32 base
        if recipe == "kd" and "train" not in data:
            continue  # distillation needs real training data (random weights have none)
        if (name in REAL) != (recipe in REAL_RECIPES) and recipe != "int8":
            continue  # real models: int8 + dynamic; random ones: int8 + pruned (+ kd)
        if name == PEAK and recipe != "int8":
            continue
        rows += build_recipe(name, recipe, work, data, args.distill_epochs)
    if name == PEAK:  # the engines' measured peak: edgepress's fp32 and int8 only
        return _label(name, rows, work, args, data)
    if not any(r["precision"] == "fp32" and not r.get("error") for r in rows):
        return _label(name, rows, work, args, data)  # no fp32 base: no peer can run
    rows += peer_entries(name, work, data)
    return _label(name, rows, work, args, data)


def build_recipe(name: str, recipe: str, work: Path, data: dict, epochs: int) -> list[dict]:
    """The recipe's rows, one pipeline run per format (a TFLite failure must not take the ONNX
    artifact with it); a failure is recorded in its rows (one recipe failing is a row, not the
    suite's end). When int8 fails, the fp32 bundle is built alone so the peers still run."""
    out, t0 = work / name / recipe, time.time()
    made = entries(name, recipe, out, work / name / "int8", describe_calib(data))
    for fmt in formats_of(name):
        mine = [r for r in made if r["format"] == fmt]
        try:
            failed = run_recipe(name, recipe, out / fmt, data, epochs, fmt)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            reason = f"edgepress {LABELS[recipe]} failed: {type(e).__name__}: {_first(e)}"
        else:  # the bundles the pipeline could not build; the others are rows as usual
            for row in mine:
                f = failed.get(Path(row["bundle"]).name)
                if f:
                    row["error"] = (f"edgepress {LABELS[recipe]} failed: {f['bundle']} "
                                    f"({f['stage']}, {f['library']}): {f['error']}")
            continue
        for row in mine:
            row["error"] = reason
        if recipe == "int8" and _fp32_alone(name, out / fmt, data, fmt):
            for row in mine:
                if row["precision"] == "fp32":
                    del row["error"]
    say(f"  {name} {LABELS[recipe]}: {time.time() - t0:.0f} s")
    return made


def _fp32_alone(name: str, out: Path, data: dict, fmt: str) -> bool:
    try:
        run_recipe(name, "fp32", out, data, 0, fmt)
        return True
    except Exception:  # noqa: BLE001 - the fp32 rows keep the int8 recipe's reason
        traceback.print_exc()
        return False


def _first(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"  # whole: the table's notes quote it


def _label(name: str, rows: list, work: Path, args, data: dict) -> list[dict]:
    evaluation = eval_data(name, work, args.eval_samples, data) if any(
        not r.get("error") for r in rows) else None
    for row in rows:
        row.update(eval=evaluation, random_weights=name not in WEIGHTS and name not in REAL,
                   peak=name == PEAK)
        if name in REAL:
            row.update(task=REAL[name].task, family=REAL[name].family,
                       coverage=REAL[name].coverage)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--models", default=",".join([*MODELS, *REAL]))
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"from {list(RECIPES)}")
    ap.add_argument("--calib-samples", type=int, default=32, help="random calibration samples")
    ap.add_argument("--eval-samples", type=int, default=32, help="random held-out samples")
    ap.add_argument("--distill-epochs", type=int, default=10)
    args = ap.parse_args(argv)
    global PROGRESS
    PROGRESS = quiet_stdout()
    recipes = args.recipes.split(",")
    rows = []
    for name in args.models.split(","):
        t0 = time.time()
        rows += build_model(name, recipes, args.work, args)
        say(f"built {name} in {time.time() - t0:.0f} s")
    (args.work / "build.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
