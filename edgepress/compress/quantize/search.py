"""search: fidelity of a quantized model on held-out data, per-layer sensitivity, and the
accuracy-aware fallback (--max-drop): keep the most sensitive layers in float, one at a time,
until the drop is within the bound.

Like NNCF's quantize_with_accuracy_control, the search ranks layers once and walks the ranking
instead of searching combinations: each step costs one quantization and one evaluation. ONNX steps
re-run onnxruntime's quantizer on cached calibration ranges (no re-calibration). TFLite int8 steps
run PT2E's fake-quantized model in torch, which is seconds instead of a litert conversion per
step; only the final choice is converted, then measured for real.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import islice

from edgepress.compress.quantize import paths
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized, work_dir
from edgepress.compress.quantize import onnx as onnx_paths
from edgepress.compress.quantize import tflite as tflite_paths
from edgepress.errors import UserError
from edgepress.runtime import verify
from edgepress.runtime.session import Session

SENSITIVITY_SAMPLES = 64  # per layer: enough to rank layers, cheap enough for ResNet-sized graphs
ONNX_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Outcome:
    quantized: Quantized
    fidelity: dict | None  # verify.Fidelity result on the --eval data (None without it)
    search: dict | None  # the accuracy-aware search: bound, ranking, steps (None if not needed)


def apply(job: Job, cfg: QuantizeConfig, eval_data=None,
          max_drop: float | None = None, max_float_layers: int = 8) -> Outcome:
    """Quantizes, measures on `eval_data`, and with `max_drop` keeps layers in float until the
    drop (accuracy points with labels, else top-1 disagreement points) is within it."""
    if max_drop is not None and eval_data is None:
        raise UserError("--max-drop needs held-out data to measure the drop: --eval DATA")
    q = paths.run(job, cfg)
    fid = measure(job, q.path, eval_data) if eval_data is not None else None
    if max_drop is None or _drop(fid) <= max_drop:
        return Outcome(q, fid, None)
    return _search(job, cfg, eval_data, max_drop, max_float_layers, fid)


def measure(job: Job, model_path, data, limit: int | None = None) -> dict:
    """Fidelity of a quantized model file against the fp32 export over `data`."""
    pairs = islice(_for_layout(data.labelled(), job), limit)
    return verify.evaluate(Session(model_path), Session(job.fp32_path), pairs)


def _for_layout(pairs, job):
    from edgepress.runtime.layout import to_nhwc

    nhwc = job.fmt == "tflite" and job.layout == "nhwc"
    for sample, label in pairs:
        yield ({k: to_nhwc(v) if nhwc else v for k, v in sample.items()}, label)


def _drop(fid: dict) -> float:
    if "accuracy" in fid:
        return fid["accuracy"]["drop_points"]
    if "top1_agreement" in fid:
        return 100 * (1 - fid["top1_agreement"])
    raise UserError("--max-drop needs a classification-shaped output (one score vector per "
                    "sample) or labels in --eval; this model has neither")


# ---- sensitivity ------------------------------------------------------------------------------

def layers(job: Job) -> list[str]:
    """Quantizable layers by the name the quantizer takes: ONNX node names (of the normalised
    model) or torch module names."""
    if job.fmt == "onnx":
        import onnx

        src, _ = onnx_paths.normalise_onnx(job.fp32_path, work_dir(job))
        return [n.name for n in onnx.load(str(src)).graph.node if n.op_type in ONNX_LAYER_OPS]
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    return [name for name, m in job.loaded.model.named_modules() if isinstance(m, kinds)]


def sensitivity(job: Job, cfg: QuantizeConfig, data) -> list[dict]:
    """Each layer's error contribution: output SNR with only that layer quantized, worst first."""
    names = layers(job)
    if not names:
        raise UserError(f"the {job.fmt} model has no quantizable layers "
                        f"({', '.join(ONNX_LAYER_OPS)} / torch Conv and Linear)")
    modules = torch_modules(job)
    rows = [{"layer": name, "module": modules.get(name), **_only(job, cfg, data, name)}
            for name in names]
    return sorted(rows, key=lambda r: r["snr_db"])


def torch_modules(job: Job) -> dict:
    """ONNX node name -> the torch module it came from, read off its weight's name (torch's
    exporters name weight initializers after the parameter, `stem.0.weight`), so a ranking of
    `node_Conv_63` also says `stem.0`. Nodes whose weight has no such name are left out."""
    if job.fmt != "onnx":
        return {}
    import onnx

    out = {}
    for node in onnx.load(str(job.fp32_path), load_external_data=False).graph.node:
        if node.op_type in ONNX_LAYER_OPS and len(node.input) > 1 \
                and node.input[1].endswith(".weight"):
            out[node.name] = node.input[1][: -len(".weight")]
    return out


def _only(job, cfg, data, name: str) -> dict:
    if _in_torch(job, cfg):
        fid = _torch_fidelity(job, data, only=(name,), limit=SENSITIVITY_SAMPLES)
    else:
        probe = replace(job, out_path=work_dir(job) / f"probe.{job.fmt}")
        q = paths.run(probe, replace(cfg, only=(name,), exclude=(), speed_check=False))
        fid = measure(job, q.path, data, SENSITIVITY_SAMPLES)
    return {"snr_db": round(fid["snr_db"], 2), "cosine": fid["cosine"]}


def _in_torch(job, cfg) -> bool:
    return job.fmt == "tflite" and cfg.precision == "int8"


def _torch_fidelity(job, data, exclude=(), only=(), limit=None) -> dict:
    """verify.Fidelity of PT2E's fake-quantized torch model against the torch fp32 model."""
    import torch

    model = job.loaded.model
    fq, _ = tflite_paths.pt2e_model(model, job.sample, job.calib, "nchw", exclude=exclude, only=only)
    fid = verify.Fidelity()
    with torch.no_grad():
        for sample, label in islice(data.labelled(), limit):
            kwargs = {k: torch.from_numpy(v) for k, v in sample.items()}
            ref, out = _named(model(**kwargs)), _named(fq(**kwargs))
            fid.add(ref, out, label)
    return fid.result()


def _named(out) -> dict:
    from edgepress.compress import load

    return {f"output_{i}": o.detach().numpy() for i, o in enumerate(load.outputs(out))}


# ---- the accuracy-aware search ---------------------------------------------------------------

def _search(job, cfg, data, max_drop, cap, first_fid) -> Outcome:
    ranking = sensitivity(job, cfg, data)
    steps = [{"float_layers": [], "drop_points": _drop(first_fid),
              "snr_db": first_fid["snr_db"]}]
    kept: list[str] = []
    for row in ranking[:cap]:
        kept.append(row["layer"])
        fid = _step_fidelity(job, cfg, data, tuple(kept))
        steps.append({"float_layers": list(kept), "drop_points": _drop(fid),
                      "snr_db": fid["snr_db"]})
        if _drop(fid) <= max_drop:
            break
    else:
        trail = "; ".join(f"{len(s['float_layers'])} float: {s['drop_points']:.2f}" for s in steps)
        raise UserError(f"--max-drop {max_drop}: not met with up to {min(cap, len(ranking))} "
                        f"layer(s) kept in float (drop in points per step: {trail}); raise "
                        f"--max-drop or --max-float-layers, or try another --calib-method")
    q = paths.run(job, replace(cfg, exclude=tuple(kept)))
    fid = measure(job, q.path, data)
    modules = torch_modules(job)
    search = {"max_drop_points": max_drop, "measured_on": _measured_on(job, cfg),
              "ranking": ranking, "steps": steps, "float_layers": kept,
              "float_modules": [modules.get(n, n) for n in kept],
              "final_drop_points": _drop(fid)}
    if _drop(fid) > max_drop:
        raise UserError(f"--max-drop {max_drop}: the search met the bound in torch "
                        f"({steps[-1]['drop_points']:.2f}) but the converted {job.fmt} model "
                        f"drops {_drop(fid):.2f} points with {len(kept)} layer(s) in float")
    return Outcome(q, fid, search)


def _step_fidelity(job, cfg, data, kept: tuple) -> dict:
    if _in_torch(job, cfg):
        return _torch_fidelity(job, data, exclude=kept)
    step = replace(job, out_path=work_dir(job) / f"step.{job.fmt}")
    q = paths.run(step, replace(cfg, exclude=kept, speed_check=False))
    return measure(job, q.path, data)


def _measured_on(job, cfg) -> str:
    return ("PT2E fake-quantized model in torch; the final model converted and measured"
            if _in_torch(job, cfg) else f"the quantized {job.fmt} model at every step")
