"""pipeline: the stages in order. load -> (prune -> distill) -> export -> verify, per format.

Every bundle is written inside one temp directory that replaces `out` only when all of them are
complete (DESIGN.md: nothing half-written is ever left under the output path).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from edgepress import atomic, shapes
from edgepress.compress import export, load
from edgepress.errors import UserError, choices
from edgepress.runtime import artifact, verify
from edgepress.runtime.session import Session

FORMATS = ("onnx", "tflite")


@dataclass(frozen=True)
class Request:
    """What `edgepress compress` was asked to do (the recipe, as applied, goes in manifests)."""

    source: str | None = None  # checked in run(): a recipe may leave it to the command line
    out: Path | None = None
    formats: tuple = ("onnx", "tflite")
    weights: str | None = None
    input_shapes: tuple = ()
    tflite_layout: str = "nchw"
    golden_samples: int = 8
    seed: int = 0
    overwrite: bool = False
    quantize: tuple = ()  # extra precisions per format: int8, dynamic, weight-int8, fp16
    calib: str | None = None  # calibration DATA (see calibrate.open_data); "random" explicitly
    calib_method: str = "minmax"
    calib_samples: int | None = None
    eval: str | None = None  # held-out DATA: fidelity (and accuracy, with labels) per bundle
    max_drop: float | None = None  # accuracy-aware mode: points of accuracy (or agreement)
    max_float_layers: int = 8
    quant_target: str = "host"
    image_size: tuple | None = None  # image-folder DATA: (H, W); None: the input's own
    image_mean: tuple = (0.0,)
    image_std: tuple = (1.0,)
    image_layout: str = "nchw"
    prune: str | None = None  # --prune SPEC (prune.parse): channels:R, magnitude:R, nm:N:M, auto:macs=F
    prune_importance: str = "l1"
    prune_scope: str = "uniform"
    prune_round_to: int = 8
    prune_skip: tuple = ()  # module names to leave alone
    prune_layers: tuple = ()  # "NAME=RATIO" overrides
    prune_skip_defaults: bool = True  # leave the first conv and the classifier alone
    distill: str | None = None  # distill.METHODS key (logits, features); None: no distillation
    teacher: str | None = None  # SOURCE of the teacher; None: the model as loaded (before pruning)
    student: str | None = None  # factory SOURCE of another student; None: the (pruned) model
    train: str | None = None  # training DATA for distillation
    val: str | None = None  # validation DATA for early stopping; None: --eval, else train
    distill_epochs: int = 10
    distill_batch_size: int = 64
    distill_lr: float = 3e-3
    distill_optimizer: str = "adamw"
    distill_schedule: str = "cosine"
    distill_temperature: float = 4.0
    distill_alpha: float = 0.7
    distill_features: tuple = ()  # "student.layer=teacher.layer"
    distill_patience: int = 0
    distill_checkpoint: str | None = None  # folder for resumable checkpoints
    trust_pickle: bool = False  # allow pickled weights/models (they can execute code)
    summary: bool = True  # measure every bundle into summary.md / summary.json

    @property
    def image_preprocess(self):
        """calibrate.Preprocess for image-folder DATA."""
        from edgepress.compress import calibrate

        return calibrate.Preprocess(self.image_size, tuple(self.image_mean),
                                    tuple(self.image_std), self.image_layout)

    @property
    def distill_config(self):
        from edgepress.compress import distill

        return distill.DistillConfig(
            method=self.distill, epochs=self.distill_epochs, batch_size=self.distill_batch_size,
            lr=self.distill_lr, optimizer=self.distill_optimizer,
            schedule=self.distill_schedule, temperature=self.distill_temperature,
            alpha=self.distill_alpha, features=tuple(self.distill_features),
            patience=self.distill_patience, seed=self.seed,
            checkpoint_dir=self.distill_checkpoint)


@dataclass
class Result:
    bundle: Path
    verdict: verify.Verdict
    size_bytes: int
    figures: dict = field(default_factory=dict)


def run(req: Request) -> list[Result]:
    """Runs the pipeline; returns one Result per bundle (already moved to `req.out`)."""
    for fmt in req.formats:
        if fmt not in FORMATS:
            raise choices("format", fmt, FORMATS)
    if req.tflite_layout not in export.LAYOUTS:
        raise choices("--tflite-layout", req.tflite_layout, export.LAYOUTS)
    if not req.source:
        raise UserError("no model: give SOURCE (or [model] source in the recipe)")
    if req.out is None:
        raise UserError("no output folder: give --out DIR (or [export] out in the recipe)")
    req = replace(req, out=Path(req.out))
    atomic.refuse_existing(req.out, req.overwrite)
    loaded = load.apply(req.source, req.weights, req.input_shapes, req.trust_pickle)
    teacher = _split_teacher(req, loaded)  # kept before pruning changes loaded.model
    pruned = _prune(req, loaded)  # before golden outputs: bundles verify against the pruned model
    distilled = _distill(req, loaded, teacher)
    if distilled is not None and distilled.rank != 0:
        return []  # under torchrun only rank 0 writes
    calib, held_out = _quant_data(req, loaded)
    golden_in = (shapes.random_inputs(loaded.inputs, req.golden_samples, req.seed, loaded.int_high)
                 if (held_out or calib) is None else (held_out or calib).first(req.golden_samples))
    golden_out = reference_outputs(loaded, golden_in)
    results = []
    with atomic.directory(req.out, req.overwrite) as tmp:
        if pruned is not None:  # its layers no longer fit the factory: keep it as a SOURCE
            from edgepress.compress import prune

            prune.save(pruned.model, pruned.example, tmp / prune.SAVED)
        for fmt in req.formats:
            name = f"{fmt}-fp32"
            results.append(_bundle(loaded, req, fmt, tmp / name, golden_in, golden_out, pruned))
            fp32 = results[-1]
            results += [_quantized(loaded, req, fmt, fp32, p, calib, held_out) for p in req.quantize]
        if req.summary:
            from edgepress.compress import summarize

            summarize.apply(tmp, [r.bundle for r in results], held_out, _summary_notes(loaded))
    return [Result(req.out / r.bundle.name, r.verdict, r.size_bytes, r.figures) for r in results]


def _bundle(loaded, req, fmt, where: Path, golden_in, golden_out, pruned=None) -> Result:
    where.mkdir()
    opts = export.ExportOptions(tflite_layout=req.tflite_layout)
    sample = {k: torch.from_numpy(v[0]) for k, v in golden_in.items()}
    exported = export.apply(loaded, fmt, where, opts, sample, len(golden_out))
    nhwc = fmt == "tflite" and req.tflite_layout == "nhwc"
    ins = {k: _nhwc_samples(v) if nhwc else v for k, v in golden_in.items()}
    outs = {k: _nhwc_samples(v) if nhwc else v for k, v in golden_out.items()}
    artifact.write_golden(where / artifact.GOLDEN, ins, outs)
    for rel, src in loaded.extra_files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(Path(src).read_bytes())
    manifest = _manifest(loaded, req, fmt, exported, layout="NHWC" if nhwc else "NCHW")
    if pruned is not None:
        from edgepress.compress import prune

        manifest["recipe"]["prune"] = req.prune
        manifest["stages"]["prune"] = prune.artifact_figures(pruned, exported.path)
    artifact.write_manifest(where / artifact.MANIFEST, manifest)
    verdict = verify.apply(artifact.open_bundle(where))
    return Result(where, verdict, exported.path.stat().st_size, exported.figures)


def reference_outputs(loaded, golden_in: dict) -> dict:
    """fp32 reference outputs, one sample at a time: from torch, or onnxruntime for ONNX
    (which keeps the source's output names; torch outputs are named output_0..)."""
    n = next(iter(golden_in.values())).shape[0]
    if loaded.model is None:
        session = Session(loaded.onnx_path)
        runs = [session.run({k: v[i] for k, v in golden_in.items()}) for i in range(n)]
        return {name: np.stack([r[name] for r in runs]) for name in runs[0]}
    try:
        with torch.no_grad():
            runs = [_flatten(loaded.model(**{k: torch.from_numpy(v[i])
                                             for k, v in golden_in.items()})) for i in range(n)]
    except UserError:
        raise
    except Exception as e:  # a wrong --input-shape usually surfaces here, as a torch error
        shapes_given = " ".join(s.describe() for s in loaded.inputs)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"the model cannot run on inputs {shapes_given} ({first}); check "
                        f"--input-shape") from None
    names = export.output_names(len(runs[0]))
    return {name: np.stack([r[j] for r in runs]) for j, name in enumerate(names)}


def _flatten(out) -> list[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return [out.detach().numpy()]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flatten(o)]
    raise UserError(f"the model returned {type(out).__name__}; edgepress needs tensors (or "
                    f"tuples/dicts of tensors) as outputs")


def _nhwc_samples(a: np.ndarray) -> np.ndarray:
    # (samples, N, C, H, W) -> (samples, N, H, W, C); other ranks are left alone.
    return a.transpose(0, 1, 3, 4, 2).copy() if a.ndim == 5 else a


def _manifest(loaded, req, fmt, exported, layout) -> dict:
    model_file = exported.path
    session = Session(model_file)
    # LiteRT lists signature inputs alphabetically; the manifest keeps the model's own order.
    order = {s.name: i for i, s in enumerate(loaded.inputs)}
    inputs = sorted(session.inputs, key=lambda s: order.get(s.name, len(order)))
    return {
        "schema_version": artifact.SCHEMA_VERSION,
        "format": fmt,
        "precision": "fp32",
        "model_file": model_file.name,
        "model_sha256": artifact.sha256_file(model_file),
        "model_size_bytes": model_file.stat().st_size,
        "source": loaded.provenance,
        "recipe": recipe_record(req),
        "stages": {"load": {"kind": loaded.kind, "notes": loaded.notes}, **loaded.stages,
                   "export": exported.figures},
        "inputs": [_with_layout(s, layout) for s in inputs],
        "outputs": [_with_layout(s, layout) for s in session.outputs],
        "preprocessing": ({"tokenizer": sorted(loaded.extra_files)} if loaded.extra_files
                          else None),
        "golden": {"file": artifact.GOLDEN, "samples": req.golden_samples, "seed": req.seed,
                   "reference": "onnxruntime (ONNX source)" if loaded.model is None else "torch"},
        "tools": tool_versions(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def recipe_record(req: Request) -> dict:
    """The recipe as applied: every Request field, JSON-ready (what a rerun needs)."""
    from dataclasses import fields

    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else \
            str(v) if isinstance(v, Path) else v

    return {f.name: plain(getattr(req, f.name)) for f in fields(req)}


def _with_layout(spec, layout: str) -> dict:
    d = asdict(spec)
    d["shape"] = list(spec.shape)
    d["layout"] = layout if len(spec.shape) == 4 and spec.dtype.startswith("float") else None
    return d


def tool_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("edgepress", "numpy", "torch", "onnx", "onnxruntime", "litert-torch",
                 "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _summary_notes(loaded) -> dict:
    notes = {}
    if "distill" in loaded.stages:
        d = loaded.stages["distill"]
        notes["distill"] = (f"teacher {d['teacher']}; best {d['metric']} {d['best_metric']:.4f} "
                            f"(torch, validation data) at epoch {d['best_epoch'] + 1} of "
                            f"{d['epochs_run']}")
        if "teacher_eval" in d:
            t = d["teacher_eval"]
            notes["teacher"] = f"{t['metric']} {100 * t['value']:.2f}% (torch, eval data)"
    if "prune" in loaded.stages:
        notes["prune"] = loaded.stages["prune"].get("spec")
    return notes


# ---- distill (after prune, before export) ------------------------------------------------------

def _split_teacher(req, loaded):
    """The teacher for --distill, taken before pruning touches loaded.model: --teacher SOURCE,
    else a copy of the model as loaded. With --student, loaded.model becomes that student."""
    import copy

    if not req.distill:
        for flag, value in (("--teacher", req.teacher), ("--student", req.student),
                            ("--train", req.train)):
            if value:
                raise UserError(f"{flag} applies to distillation: add --distill logits|features")
        return None
    if loaded.model is None:
        raise UserError(f"--distill needs a torch model; {req.source!r} is ONNX")
    teacher = (load.apply(req.teacher, None, req.input_shapes).model if req.teacher
               else copy.deepcopy(loaded.model))
    if req.student:
        loaded.model = load.apply(req.student, None, req.input_shapes).model.train()
        loaded.stages["student"] = {"source": req.student}
    return teacher


def _distill(req, loaded, teacher):
    """Distills `teacher` into loaded.model in place; the DistillResult, or None."""
    if not req.distill:
        return None
    from edgepress.compress import calibrate, distill

    if not req.train:
        raise UserError("--distill needs training data: --train DATA (.npz of the model's "
                        "inputs with optional `labels`, image folder or module:function)")
    cfg = distill.check(req.distill_config)
    pre = req.image_preprocess
    train = calibrate.open_data(req.train, loaded.inputs, None, pre, req.seed, loaded.int_high)
    val_source = req.val or req.eval
    val = calibrate.open_data(val_source, loaded.inputs, None, pre) if val_source else None
    result = distill.apply(loaded.model, teacher, cfg, train, val)
    loaded.model = result.model.eval()
    loaded.stages["distill"] = {**result.figures(), "teacher": req.teacher or "the source model",
                                "train": train.record(), "config": vars(cfg)}
    if req.eval:  # the teacher's own score on the held-out data, for the summary
        ex, ey = distill.as_tensors(calibrate.open_data(req.eval, loaded.inputs, None, pre))
        loaded.stages["distill"]["teacher_eval"] = {
            "metric": "accuracy" if ey is not None else "agreement",
            "value": distill.evaluate(teacher, teacher, ex, ey)}
    return result


# ---- prune (before export, in torch) ----------------------------------------------------------

def _prune(req, loaded):
    """Prunes loaded.model in place as --prune says; the PruneResult, or None if not asked."""
    if not req.prune:
        return None
    from edgepress.compress import calibrate, prune

    if loaded.model is None:
        raise UserError(f"--prune {req.prune!r} needs a torch model; {req.source!r} is ONNX")
    cfg = prune.parse(req.prune, importance=req.prune_importance, scope=req.prune_scope,
                      round_to=req.prune_round_to, skip=tuple(req.prune_skip),
                      skip_defaults=req.prune_skip_defaults,
                      layer_ratios=prune.parse_layer_ratios(req.prune_layers))
    data = (calibrate.open_data(req.calib, loaded.inputs, req.calib_samples,
                                req.image_preprocess, req.seed, loaded.int_high)
            if req.calib else None)
    one = shapes.random_inputs(loaded.inputs, 1, req.seed, loaded.int_high)
    example = {k: torch.from_numpy(v[0]) for k, v in one.items()}
    return prune.apply(loaded.model, cfg, example, data)


# ---- quantize (after export; the fp32 bundle is its reference) --------------------------------

def _quant_data(req, loaded):
    """(calibration, held-out) Datasets, checked in full before any work is done."""
    from edgepress.compress import calibrate, quantize

    if not req.quantize:
        if (req.calib and not req.prune) or req.max_drop is not None:
            raise UserError("--calib and --max-drop apply to quantized bundles: add "
                            "--quantize int8|dynamic|weight-int8|fp16")
        # --eval alone still measures every bundle's accuracy in the summary
        held_out = calibrate.open_data(req.eval, loaded.inputs, None, req.image_preprocess) \
            if req.eval else None
        return None, held_out
    for p in req.quantize:
        for fmt in req.formats:
            if (fmt, p) not in quantize.METHODS:
                valid = sorted(q for f, q in quantize.METHODS if f == fmt)
                raise UserError(f"--quantize {p!r} is not available for {fmt}; valid: "
                                f"{', '.join(valid)}")
    if "int8" in req.quantize and not req.calib:
        raise UserError("--quantize int8 needs calibration data: --calib DATA (.npz, image "
                        "folder or module:function; `--calib random` only to smoke-test)")
    pre = req.image_preprocess
    calib = (calibrate.open_data(req.calib, loaded.inputs, req.calib_samples, pre, req.seed,
                                 loaded.int_high) if req.calib else None)
    held_out = calibrate.open_data(req.eval, loaded.inputs, None, pre) if req.eval else None
    for data in (calib, held_out):
        if data is not None:
            data.record()  # one full pass: every sample checked and hashed up front
    return calib, held_out


def _quantized(loaded, req, fmt, fp32: Result, precision, calib, held_out) -> Result:
    """The `<fmt>-<precision>` bundle: quantized model, fp32 golden, manifest with what was done."""
    import json
    import shutil
    import tempfile

    from edgepress.compress import quantize
    from edgepress.compress.quantize import search

    where = fp32.bundle.parent / f"{fmt}-{precision}"
    shutil.copytree(fp32.bundle, where, ignore=shutil.ignore_patterns("model.*", "manifest.json"))
    golden_in, _ = artifact.read_golden(fp32.bundle / artifact.GOLDEN)
    sample = {k: torch.from_numpy(_nchw_sample(v[0], fmt, req)) for k, v in golden_in.items()}
    cfg = quantize.QuantizeConfig(precision, req.calib_method, req.quant_target)
    with tempfile.TemporaryDirectory(prefix="edgepress-quantize-") as work:
        job = quantize.Job(loaded, fmt, fp32.bundle / f"model.{fmt}", where / f"model.{fmt}",
                           calib, sample, req.tflite_layout, work=Path(work))
        outcome = search.apply(job, cfg, held_out, req.max_drop, req.max_float_layers)
    manifest = json.loads((fp32.bundle / artifact.MANIFEST).read_text())
    model_file = outcome.quantized.path
    manifest.update(precision=precision, model_sha256=artifact.sha256_file(model_file),
                    model_size_bytes=model_file.stat().st_size)
    manifest["recipe"].update(quantize=precision, calib_method=req.calib_method,
                              max_drop=req.max_drop, quant_target=req.quant_target)
    manifest["stages"]["quantize"] = outcome.quantized.figures
    if outcome.search:
        manifest["stages"]["quantize"]["accuracy_search"] = outcome.search
    manifest["calibration"] = calib.record() if calib is not None else None
    manifest["fidelity"] = ({"data": held_out.record(), **outcome.fidelity}
                            if outcome.fidelity else None)
    manifest["warnings"] = [w for w in (calib and calib.warning,
                                        outcome.quantized.figures.get("warning")) if w]
    artifact.write_manifest(where / artifact.MANIFEST, manifest)
    verdict = verify.apply(artifact.open_bundle(where))
    figures = {"quantize": outcome.quantized.figures, "fidelity": outcome.fidelity,
               "search": outcome.search, "warnings": manifest["warnings"]}
    return Result(where, verdict, model_file.stat().st_size, figures)


def _nchw_sample(a: np.ndarray, fmt: str, req) -> np.ndarray:
    # golden inputs of an NHWC tflite bundle are NHWC; quantizers trace the NCHW torch model
    nhwc = fmt == "tflite" and req.tflite_layout == "nhwc" and a.ndim == 4
    return a.transpose(0, 3, 1, 2).copy() if nhwc else a
