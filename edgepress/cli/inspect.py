"""`edgepress inspect`: what a model is (inputs, outputs, params, MACs, ops), and the per-layer
sensitivity scans. Each is built from the stages' public functions (load, export, calibrate, the
prune scan, the quantize search), not a pipeline run of its own."""

from __future__ import annotations

import json
import tempfile
from dataclasses import fields
from pathlib import Path

from edgepress.cli.output import table
from edgepress.cli.parser import add_flag, floats
from edgepress import options
from edgepress.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("inspect", help="inputs/outputs, params, MACs, size, op histogram")
    p.add_argument("target", help="a SOURCE (as for compress), a bundle, or a model file")
    p.add_argument("--weights")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prune-sensitivity", action="store_true", help="prune each layer alone at "
                   "--prune-ratios and report the metric drop on --eval data")
    p.add_argument("--eval", metavar="DATA", help="--prune-sensitivity: .npz named as the "
                   "inputs (optional `labels`), image folder or module:function")
    p.add_argument("--prune-ratios", help="--prune-sensitivity ratios (unset: the scan's own)")
    _option(p, "prune", "round_to")
    p.add_argument("--sensitivity", action="store_true", help="quantization sensitivity: output "
                   "SNR with only each layer quantized, worst first (needs --calib)")
    p.add_argument("--calib", metavar="DATA", help="--sensitivity: calibration data (as for "
                   "compress); also the measurement data without --eval")
    _option(p, "quantize", "calib_method")
    p.add_argument("--quantize", default="int8", help="--sensitivity: int8 or dynamic")
    p.add_argument("--format", default="onnx", help="--sensitivity: onnx or tflite")
    p.set_defaults(func=run)


def _option(p, table: str, name: str) -> None:
    """A compress option reused here, with its default filled in."""
    f = next(f for f in fields(options.TABLES[table]) if f.name == name)
    add_flag(p, table, f, default=f.default)


def run(args) -> int:
    from edgepress.runtime import artifact, inspect

    if args.prune_sensitivity:
        return _prune_sensitivity(args)
    if args.sensitivity:
        return _quant_sensitivity(args)
    target = Path(args.target)
    if target.is_dir() and (target / artifact.MANIFEST).is_file():
        info = inspect.apply(artifact.open_bundle(target).model_path)
    elif target.suffix.lower() in artifact.FORMATS and target.is_file() and not args.input_shape:
        info = inspect.apply(target)
    else:
        info = _inspect_source(args)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"model    {info['model']} ({info['format']}, {info['size_bytes']:,} bytes)")
    print(f"inputs   {'  '.join(info['inputs'])}")
    print(f"outputs  {'  '.join(info['outputs'])}")
    print(f"params   {info['params']:,}")
    print(f"MACs     {info['macs']:,}")
    print("ops      " + ", ".join(f"{op} x{n}" for op, n in info["ops"].items()))
    return 0


def _inspect_source(args) -> dict:
    """A torch source is exported to a temporary ONNX file and inspected there, so every
    source kind is counted by the same code."""
    from edgepress.compress import load
    from edgepress.runtime import inspect

    loaded = load.open_source(args.target, args.weights, tuple(args.input_shape))
    with tempfile.TemporaryDirectory() as tmp:
        info = inspect.apply(_fp32(loaded, "onnx", Path(tmp), load.example(loaded)))
    info["model"] = args.target
    return info


def _fp32(loaded, fmt: str, where: Path, sample: dict) -> Path:
    from edgepress.compress import export, verify

    n_outputs = len(verify.reference_outputs(loaded, {k: v.numpy()[None] for k, v in
                                                       sample.items()}))
    return export.write(loaded, fmt, where, export.ExportOptions(), sample, n_outputs).path


def _prune_sensitivity(args) -> int:
    """A table: per prunable layer (one per group of coupled layers), the metric drop when it
    alone loses each ratio of its channels, and the MACs that saves."""
    from edgepress.compress import calibrate, load, prune
    from edgepress.compress.prune import auto

    if not args.eval:
        raise UserError("--prune-sensitivity measures on data: pass --eval DATA (.npz named as "
                        "the model's inputs, optional `labels`)")
    loaded = load.open_source(args.target, args.weights, args.input_shape)
    if loaded.model is None:
        raise UserError(f"--prune-sensitivity needs a torch model; {args.target!r} is ONNX")
    data = calibrate.open_data(args.eval, loaded.inputs, None, None, 0, loaded.int_high)
    cfg = prune.check(prune.PruneConfig("channels", round_to=getattr(args, "prune.round_to")))
    ratios = floats("--prune-ratios", args.prune_ratios) if args.prune_ratios else auto.RATIOS
    scan = auto.scan(loaded.model, load.example(loaded), data, cfg, ratios)
    if args.json:
        print(json.dumps(scan, indent=1))
        return 0
    _print_scan(scan, ratios)
    return 0


def _print_scan(scan: dict, ratios) -> None:
    print(f"{scan['metric']}: {scan['baseline']:.2f} unpruned, {scan['samples']} samples; "
          f"skipped: {', '.join(f'{n} ({why})' for n, why in scan['skipped'].items())}")
    header = ("layer", *[f"drop@{r:g}" for r in ratios], *[f"SNR dB@{r:g}" for r in ratios],
              *[f"MACs saved@{r:g}" for r in ratios])
    rows = [(layer["name"], *[f"{t['drop']:.2f}" for t in layer["trials"]],
             *[f"{t['snr_db']:.1f}" for t in layer["trials"]],
             *[f"{100 * t['macs_saved']:.1f}%" for t in layer["trials"]])
            for layer in scan["layers"]]
    table(header, rows)
    print("drop: points lost with only that layer (and the layers coupled to it) pruned; SNR: "
          "its outputs against the unpruned model's; choose per-layer ratios with --prune-layer "
          "NAME=RATIO, or --prune auto:macs=F / auto:latency=F")


def _quant_sensitivity(args) -> int:
    """Exports fp32 to a scratch directory, then ranks every quantizable layer by the output SNR
    with only that layer quantized."""
    if not args.calib:
        raise UserError("inspect --sensitivity needs calibration data: --calib DATA")
    rows = _quant_rows(args)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table(("layer", "module", "SNR dB (only this layer quantized)", "cosine"),
          [(r["layer"], r["module"] or "-", f"{r['snr_db']:.1f}", f"{r['cosine']:.5f}")
           for r in rows])
    return 0


def _quant_rows(args) -> list[dict]:
    import torch

    from edgepress.compress import calibrate, load, quantize
    from edgepress.compress.quantize import search

    loaded = load.open_source(args.target, args.weights, tuple(args.input_shape))
    cal = calibrate.open_data(args.calib, loaded.inputs, int_high=loaded.int_high)
    data = calibrate.open_data(args.eval, loaded.inputs) if args.eval else cal
    sample = {k: torch.from_numpy(v[0]) for k, v in cal.first(1).items()}
    with tempfile.TemporaryDirectory(prefix="edgepress-sensitivity-") as tmp:
        fp32 = _fp32(loaded, args.format, Path(tmp), sample)
        job = quantize.Job(loaded, args.format, fp32, Path(tmp) / f"q.{args.format}", cal,
                           sample, work=Path(tmp) / "work")
        cfg = quantize.QuantizeConfig(args.quantize, getattr(args, "quantize.calib_method"),
                                      speed_check=False)
        quantize.run(job, cfg)  # checks the method; fills the calibration cache once
        return search.sensitivity(job, cfg, data)
