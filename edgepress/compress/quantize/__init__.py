"""quantize: post-training quantization of the exported fp32 bundles, one `<format>-<precision>`
bundle each. paths.py holds METHODS ((format, precision) -> ordered candidate paths: onnx.py,
tflite.py) and the PASSES after each (speed guard, compaction); search.py is the accuracy-aware
search behind --max-drop. docs/architecture.md has the measurements behind the choices."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgepress.options import Quantize
from edgepress.compress import guard
from edgepress.compress.quantize import search
from edgepress.compress.quantize.job import (
    CALIB_CAP,
    CALIB_METHODS,
    CALIBRATED,
    PRECISIONS,
    TARGETS,
    Job,
    QuantizeConfig,
    Quantized,
    work_dir,
)
from edgepress.compress.quantize.paths import METHODS, PASSES, run, valid
from edgepress.errors import UserError

__all__ = ["CALIB_CAP", "CALIB_METHODS", "PRECISIONS", "TARGETS", "Job", "QuantizeConfig",
           "Quantized", "work_dir", "METHODS", "PASSES", "run", "apply", "check", "describe"]


def check(recipe) -> None:
    """[quantize] against the rest of the recipe, before any work is done."""
    q, data = recipe.quantize, recipe.data
    if q.max_drop is not None and q.max_drop < 0:
        raise UserError(f"--max-drop {q.max_drop}: must be >= 0 points")
    if not q.precisions:
        if (data.calib and not recipe.prune.method) or q.max_drop is not None \
                or q.min_snr is not None:
            raise UserError("--calib, --max-drop and --min-snr apply to quantized bundles: add "
                            "--quantize int8|dynamic|weight-int8|fp16")
        return
    for p in q.precisions:
        for fmt in recipe.export.formats:
            if (fmt, p) not in METHODS:
                raise UserError(f"--quantize {p!r} is not available for {fmt}; valid: "
                                f"{', '.join(sorted(valid(fmt)))}")
    if "int8" in q.precisions and not data.calib:
        raise UserError("--quantize int8 needs calibration data: --calib DATA (.npz, image "
                        "folder or module:function; `--calib random` only to smoke-test)")


def apply(state, cfg: Quantize):
    """The stage: after each fp32 bundle, one bundle per [quantize] precision."""
    bundles = []
    for fp32 in state.bundles:
        bundles.append(fp32)
        for precision in cfg.precisions:
            where = fp32.path.parent / f"{fp32.fmt}-{precision}"
            bundles.append(guard.build(state, where, "quantize",
                                       lambda: _bundle(state, fp32, where, precision, cfg)))
    _skip_orphans(state, cfg)
    state.bundles = [b for b in bundles if b is not None]
    return state


def _skip_orphans(state, cfg: Quantize) -> None:
    """Records the quantized bundles of each format whose fp32 export failed as not attempted."""
    for failed in [f["bundle"] for f in state.failures if f["stage"] == "export"]:
        fmt = failed.split("-")[0]
        for precision in cfg.precisions:
            guard.skipped(state, f"{fmt}-{precision}", failed)


def _bundle(state, fp32, where: Path, precision: str, cfg: Quantize):
    from edgepress.compress.state import Bundle

    shutil.copytree(fp32.path, where, ignore=shutil.ignore_patterns("model.*", "manifest.json"))
    outcome = _quantize(state, fp32, where, QuantizeConfig(precision, cfg.calib_method,
                                                           cfg.target), cfg)
    q = outcome.quantized
    _check_layers(q.figures, precision)
    figures = dict(q.figures)
    if outcome.search:
        figures["accuracy_search"] = outcome.search
    # Only a calibrated precision carries the calibration record and its warning (fp16 read
    # no data, so "calibrated on random noise" on it would be false).
    calib = state.calib if precision in CALIBRATED else None
    held_out = outcome.reported_on
    extra = {"calibration": calib.record() if calib is not None else None,
             "fidelity": ({"data": held_out.record(), **outcome.fidelity}
                          if outcome.fidelity else None),
             "warnings": [w for w in (calib and calib.warning, q.figures.get("warning")) if w]}
    recipe = {"quantize": precision, "calib_method": cfg.calib_method, "max_drop": cfg.max_drop,
              "min_snr": cfg.min_snr,
              "quant_target": cfg.target}
    return Bundle(fp32.fmt, precision, where, q.path, fp32.inputs, fp32.outputs,
                  stages={**fp32.stages, "quantize": figures}, recipe=recipe, extra=extra)


def _check_layers(figures: dict, precision: str) -> None:
    """An int8 or dynamic result with no weight layer at all in its main graph is the fp32
    model under another name: silero-vad's .onnx keeps every weight inside If branches, which
    onnxruntime.quantization does not enter (its int8 came out with SNR 200 dB, 2% larger)."""
    if precision in ("int8", "dynamic") and not figures.get("quantized_layers") \
            and not figures.get("float_layers"):
        raise guard.Limit(figures.get("library", "the quantizer"),
                          f"found no layer to quantize in the model's main graph (weights "
                          f"inside If/Loop branches, which it does not enter, are not there): "
                          f"the {precision} bundle would be the fp32 model")


def _quantize(state, fp32, where: Path, qcfg: QuantizeConfig, cfg: Quantize):
    import torch

    sample = {k: torch.from_numpy(v[0, ...]) for k, v in state.golden_in.items()}  # NCHW, as traced
    select, report = split_held_out(state.held_out, qcfg.precision)
    with tempfile.TemporaryDirectory(prefix="edgepress-quantize-") as work:
        job = Job(state.loaded, fp32.fmt, fp32.model_file, where / f"model.{fp32.fmt}",
                  state.calib, sample, state.recipe.export.tflite_layout, work=Path(work),
                  select=select)
        outcome = search.apply(job, qcfg, report, cfg.max_drop, cfg.max_float_layers,
                               cfg.min_snr)
    outcome.reported_on = report
    return outcome


def split_held_out(held_out, precision: str) -> tuple:
    """(selection, evaluation) parts of the held-out data: a calibrated precision has several
    candidate paths, measured on the odd-indexed samples; the fidelity reported comes from the
    even-indexed ones (golden inputs start at sample 0). Other precisions: (None, all of it)."""
    if held_out is None or precision not in CALIBRATED or held_out.record()["samples"] < 2:
        return None, held_out
    return (held_out.part(lambda i: i % 2 == 1, "odd-indexed held-out samples: the quantization "
                                                "path was selected on these"),
            held_out.part(lambda i: i % 2 == 0, "even-indexed held-out samples (never used to "
                                                "select the path)"))


def describe(name: str, figures: dict, extra: dict) -> tuple[list[str], list[str]]:
    """(lines, warnings) the CLI prints for one quantized bundle: held-out fidelity, layers kept
    in float, speed against fp32 here."""
    lines, fid, search_ = [], extra.get("fidelity"), figures.get("accuracy_search")
    if fid:
        line = (f"{name}: eval {fid['samples']} samples: SNR {fid['snr_db']:.1f} dB, cosine "
                f"{fid['cosine']:.5f}")
        if "top1_agreement" in fid:
            line += f", top-1 agreement {100 * fid['top1_agreement']:.2f}%"
        if "accuracy" in fid:
            a = fid["accuracy"]
            line += (f", accuracy fp32 {100 * a['fp32']:.2f}% -> {100 * a['quantized']:.2f}% "
                     f"(drop {a['drop_points']:.2f} pts)")
        lines.append(line)
    if search_:
        bound = search.Bound(search_["max_drop_points"], search_.get("min_snr_db"))
        lines.append(f"{name}: {bound.flags()}: kept in float {search_['float_layers']} "
                     f"(per float-layer count: {search._trail(search_['steps'])})")
    if "choice" in figures:
        lines.append(f"{name}: path {figures['path']} of "
                     f"{len(figures['choice']['candidates'])} candidates: "
                     f"{figures['choice']['by']}")
    if "speed" in figures:
        s = figures["speed"]
        lines.append(f"{name}: p50 {s['quantized_p50_ms']:.3f} ms vs fp32 {s['fp32_p50_ms']:.3f} "
                     f"ms here (x{s['ratio']:.2f}, 1 thread)")
    return lines, [f"{name}: WARNING: {w}" for w in extra.get("warnings", ())]
