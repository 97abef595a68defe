"""breadth: common `transformers` architectures, as a new user would bring them (random weights,
tiny configs, saved with save_pretrained as model directories), through `edgepress compress DIR`
in fp32, int8 and dynamic, ONNX and TFLite (issue 17, item 1).

A cell passes when its bundle was written, `edgepress verify` passes it at its precision's
thresholds, and (quantized bundles) its manifest names the layers that were quantized
(stages.quantize.quantized_layers). A failed cell says why: the build failure edgepress recorded
(stage, library), the verification's failure, or the missing layer record.

    nice -n 10 .venv/bin/python benchmarks/breadth.py [--only bert,vit] [--write benchmarks/results/breadth.md]

Each architecture is one `edgepress compress DIR --quantize int8,dynamic --calib random` run
(random calibration: the weights are random too; these cells test that a model goes through and
stays the same model, not accuracy). tests/test_breadth.py runs the same matrix (slow-marked) and
checks it against the committed table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from edgepress.cli import quiet

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8", "dynamic")
COMMAND = ("edgepress", "compress", "DIR", "--quantize", "int8,dynamic", "--calib", "random")
RESULTS = ROOT / "benchmarks" / "results" / "breadth.md"

_TEXT = {"vocab_size": 100, "max_position_embeddings": 130}  # RoBERTa: ids from padding_idx + 1
_BERTLIKE = {**_TEXT, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32, "num_labels": 3}
_VIT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "image_size": 32, "patch_size": 8, "num_labels": 3}

# name -> (model class, config class, config keywords): each the smallest config of its kind
ARCHS = {
    "bert": ("BertForSequenceClassification", "BertConfig", _BERTLIKE),
    "distilbert": ("DistilBertForSequenceClassification", "DistilBertConfig",
                   {**_TEXT, "dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32,
                    "num_labels": 3}),
    "roberta": ("RobertaForSequenceClassification", "RobertaConfig", _BERTLIKE),
    "albert": ("AlbertForSequenceClassification", "AlbertConfig",
               {**_BERTLIKE, "embedding_size": 8}),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config",
             {"vocab_size": 100, "n_positions": 128, "n_embd": 16, "n_layer": 1, "n_head": 2}),
    "vit": ("ViTForImageClassification", "ViTConfig", _VIT),
    "swin": ("SwinForImageClassification", "SwinConfig",
             {"image_size": 32, "patch_size": 4, "embed_dim": 8, "depths": [1, 1],
              "num_heads": [1, 2], "window_size": 4, "num_labels": 3}),
    "convnext": ("ConvNextForImageClassification", "ConvNextConfig",
                 {"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2, "num_labels": 3,
                  "image_size": 32}),
    "resnet": ("ResNetForImageClassification", "ResNetConfig",
               {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                "layer_type": "basic", "num_labels": 3}),
    "mobilenet_v2": ("MobileNetV2ForImageClassification", "MobileNetV2Config",
                     # std 0.2, not its 0.02: at these sizes 0.02 leaves the logits at ~1e-27,
                     # where no cosine to fp32 means anything
                     {"depth_multiplier": 0.25, "image_size": 32, "num_labels": 3,
                      "initializer_range": 0.2}),
    "mobilevit": ("MobileViTForImageClassification", "MobileViTConfig",
                  {"image_size": 64, "hidden_sizes": [16, 16, 16],
                   "neck_hidden_sizes": [8, 8, 16, 16, 16, 16, 32], "num_attention_heads": 2,
                   "num_labels": 3}),
    "efficientnet": ("EfficientNetForImageClassification", "EfficientNetConfig",
                     {"image_size": 32, "width_coefficient": 0.25, "depth_coefficient": 0.25,
                      "hidden_dim": 320, "num_labels": 3}),  # = round_filters(1280)
    "wav2vec2": ("Wav2Vec2ForCTC", "Wav2Vec2Config",
                 {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [5, 2],
                  "conv_kernel": [10, 3], "num_conv_pos_embeddings": 8,
                  "num_conv_pos_embedding_groups": 2, "vocab_size": 10}),
}


def save(name: str, directory: Path) -> Path:
    """The architecture's model with seeded random weights, saved as a model directory."""
    import torch
    import transformers

    model_cls, config_cls, kwargs = ARCHS[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs))
    model.eval().save_pretrained(directory)
    return directory


def compress(directory: Path, out: Path) -> subprocess.CompletedProcess:
    argv = [a if a != "DIR" else str(directory) for a in COMMAND[1:]]
    return subprocess.run([sys.executable, "-m", "edgepress.cli", *argv, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)


def row(name: str, work: Path) -> dict:
    """bundle name -> cell for one architecture: "pass" or "FAIL: why"."""
    out = work / f"{name}-bundles"
    run = compress(save(name, work / name), out)
    failed = _failures(out, run)
    return {f"{fmt}-{p}": cell(out / f"{fmt}-{p}", failed) for fmt in FORMATS for p in PRECISIONS}


def _failures(out: Path, run) -> dict:
    """bundle -> the failure edgepress recorded; or, when nothing was written, the run's last
    stderr line for every bundle."""
    summary = out / "summary.json"
    if summary.is_file():
        return {f["bundle"]: f for f in json.loads(summary.read_text()).get("failed", [])}
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    why = lines[-1] if lines else f"exit {run.returncode}, nothing written"
    return {f"{fmt}-{p}": {"stage": "run", "library": None, "error": why}
            for fmt in FORMATS for p in PRECISIONS}


def cell(bundle: Path, failed: dict) -> str:
    if bundle.name in failed:
        f = failed[bundle.name]
        where = f" in {f['library']}" if f.get("library") else ""
        return f"FAIL: {f['stage']}{where}: {f['error']}"
    if not bundle.is_dir():
        return "FAIL: not written, no failure recorded"
    verify = subprocess.run([sys.executable, "-m", "edgepress.cli", "verify", str(bundle),
                             "--json"], capture_output=True, text=True, cwd=ROOT)
    if verify.returncode != 0:
        try:
            return "FAIL: verify: " + "; ".join(json.loads(verify.stdout)["failures"])
        except (json.JSONDecodeError, KeyError):
            lines = verify.stderr.strip().splitlines() or ["(no message)"]
            return f"FAIL: verify exit {verify.returncode}: {lines[-1]}"  # edgepress's one line
    manifest = json.loads((bundle / "manifest.json").read_text())
    quantize = manifest.get("stages", {}).get("quantize")
    if quantize is not None and not quantize.get("quantized_layers"):
        return "FAIL: the manifest names no quantized layer"
    return "pass"


def passes(rows: dict, bundle: str) -> list[str]:
    return [name for name, cells in rows.items() if cells[bundle] == "pass"]


def markdown(rows: dict) -> str:
    bundles = [f"{fmt}-{p}" for fmt in FORMATS for p in PRECISIONS]
    lines = ["| architecture | " + " | ".join(bundles) + " |",
             "|---|" + "---|" * len(bundles)]
    notes = []
    for name, cells in rows.items():
        marks = []
        for b in bundles:
            if cells[b] == "pass":
                marks.append("pass")
            else:
                notes.append(f"- {name} {b}: {cells[b][len('FAIL: '):]}")
                marks.append(f"FAIL ({len(notes)})")
        lines.append(f"| {name} ({ARCHS[name][0]}) | " + " | ".join(marks) + " |")
    totals = ", ".join(f"{b} {len(passes(rows, b))}/{len(rows)}" for b in bundles)
    versions = ", ".join(f"{d} {_version(d)}" for d in ("transformers", "torch", "onnxruntime",
                                                        "litert-torch", "ai-edge-quantizer"))
    return "\n".join([f"Cells passed: {totals}.", "", *lines, "",
                      *([f"({i}) " + n[2:] for i, n in enumerate(notes, 1)] or ["No failures."]),
                      "", f"`{' '.join(COMMAND)}` per architecture, then `edgepress verify` per "
                      f"bundle ({versions}).", ""])


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(ARCHS), help="comma-separated architectures")
    p.add_argument("--rows", type=Path, help="also append each row as a JSON line here")
    p.add_argument("--render", type=Path, nargs="+", help="no runs: the table from --rows files "
                   "of earlier (e.g. parallel) runs")
    p.add_argument("--write", type=Path, help=f"write the table here (e.g. {RESULTS})")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(ARCHS))
    if unknown:
        p.error(f"unknown architecture {unknown[0]!r}; valid: {', '.join(ARCHS)}")
    rows = _read_rows(args.render) if args.render else _run(names, args.rows)
    text = markdown(rows)
    print(text)
    if args.write:
        args.write.write_text(text)
    return 0


def _run(names, rows_file: Path | None) -> dict:
    quiet.apply(verbose=False, debug=False)  # transformers' save bars, as the CLI does
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgepress-breadth-") as work:
        for name in names:
            rows[name] = row(name, Path(work))
            print(name, " ".join(f"{b}={'pass' if c == 'pass' else 'FAIL'}"
                                 for b, c in rows[name].items()), flush=True)
            if rows_file:
                with rows_file.open("a") as f:
                    f.write(json.dumps({"name": name, "cells": rows[name]}) + "\n")
    return rows


def _read_rows(files) -> dict:
    found = {}
    for path in files:
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            found[entry["name"]] = entry["cells"]
    return {name: found[name] for name in ARCHS if name in found}


if __name__ == "__main__":
    sys.exit(main())
