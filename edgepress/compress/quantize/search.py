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

from edgepress.compress.quantize import choose, normalise, paths
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized, work_dir
from edgepress.compress.quantize import tflite as tflite_paths
from edgepress.errors import UserError
from edgepress.runtime import verify

SENSITIVITY_SAMPLES = 64  # per layer: enough to rank layers, cheap enough for ResNet-sized graphs
ONNX_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Outcome:
    quantized: Quantized
    fidelity: dict | None  # verify.Fidelity result on the --eval data (None without it)
    search: dict | None  # the accuracy-aware search: bound, ranking, steps (None if not needed)
    reported_on: object = None  # the held-out Dataset `fidelity` was measured on


@dataclass(frozen=True)
class Bound:
    """What --max-drop (points of accuracy, else top-1 agreement) and --min-snr (dB of output
    SNR against fp32) ask of the held-out fidelity; None = not asked."""
    max_drop: float | None = None
    min_snr: float | None = None

    def __bool__(self) -> bool:
        return self.max_drop is not None or self.min_snr is not None

    def met(self, fid: dict) -> bool:
        return (self.max_drop is None or _drop(fid) <= self.max_drop) and \
            (self.min_snr is None or fid["snr_db"] >= self.min_snr)

    def flags(self) -> str:
        return " ".join(f"{flag} {v}" for flag, v in (("--max-drop", self.max_drop),
                                                       ("--min-snr", self.min_snr))
                        if v is not None)

    def figures(self, fid: dict) -> dict:
        """The step's measured figures: SNR, and the drop when --max-drop asks for it."""
        out = {"snr_db": round(fid["snr_db"], 3)}
        if self.max_drop is not None:
            out["drop_points"] = _drop(fid)
        return out


def apply(job: Job, cfg: QuantizeConfig, eval_data=None, max_drop: float | None = None,
          max_float_layers: int = 8, min_snr: float | None = None) -> Outcome:
    """Quantizes, measures on `eval_data`, and with `max_drop` / `min_snr` keeps layers in float
    until the drop (accuracy points with labels, else top-1 disagreement points) is within it
    and the output SNR at least it."""
    bound = Bound(max_drop, min_snr)
    if bound and eval_data is None:
        raise UserError(f"{bound.flags()} needs held-out data to measure on: --eval DATA (or "
                        f"at least 4 --calib samples, every 4th then held out)")
    q = paths.run(job, cfg)
    fid = measure(job, q.path, eval_data) if eval_data is not None else None
    if not bound or bound.met(fid):
        return Outcome(q, fid, None)
    # the search keeps the measured path (TFLite: PT2E, whose fake-quantized torch model it
    # ranks layers on; AI Edge Quantizer's recipes take no layer list)
    searched = replace(cfg, path="pt2e" if _in_torch(job, cfg) else q.figures["path"])
    return _search(job, searched, eval_data, bound, max_float_layers, fid)


measure = choose.measure  # fidelity of a quantized file against fp32 on held-out data


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

        src, _ = normalise.normalise_onnx(job.fp32_path, work_dir(job))
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

def _search(job, cfg, data, bound: Bound, cap: int, first_fid) -> Outcome:
    ranking = sensitivity(job, cfg, data)
    steps = [{"float_layers": [], **bound.figures(first_fid)}]
    kept: list[str] = []
    for row in ranking[:cap]:
        kept.append(row["layer"])
        fid = _step_fidelity(job, cfg, data, tuple(kept))
        steps.append({"float_layers": list(kept), **bound.figures(fid)})
        if bound.met(fid):
            break
    else:
        raise UserError(f"{bound.flags()}: not met with up to {min(cap, len(ranking))} "
                        f"layer(s) kept in float (per step: {_trail(steps)}); relax the bound "
                        f"or raise --max-float-layers, or try another --calib-method")
    q = paths.run(job, replace(cfg, exclude=tuple(kept)))
    fid = measure(job, q.path, data)
    modules = torch_modules(job)
    search = {"max_drop_points": bound.max_drop, "min_snr_db": bound.min_snr,
              "measured_on": _measured_on(job, cfg), "ranking": ranking, "steps": steps,
              "float_layers": kept, "float_modules": [modules.get(n, n) for n in kept],
              "final": bound.figures(fid)}
    if bound.max_drop is not None:
        search["final_drop_points"] = _drop(fid)
    if not bound.met(fid):
        raise UserError(f"{bound.flags()}: the search met the bound in torch "
                        f"({_trail(steps[-1:])}) but the converted {job.fmt} model measures "
                        f"{_trail([{'float_layers': kept, **bound.figures(fid)}])}")
    return Outcome(q, fid, search)


def _trail(steps: list) -> str:
    return "; ".join(f"{len(s['float_layers'])} float: " + ", ".join(
        f"{k} {v:.2f}" for k, v in s.items() if k != "float_layers") for s in steps)


def _step_fidelity(job, cfg, data, kept: tuple) -> dict:
    if _in_torch(job, cfg):
        return _torch_fidelity(job, data, exclude=kept)
    step = replace(job, out_path=work_dir(job) / f"step.{job.fmt}")
    q = paths.run(step, replace(cfg, exclude=kept, speed_check=False))
    return measure(job, q.path, data)


def _measured_on(job, cfg) -> str:
    return ("PT2E fake-quantized model in torch; the final model converted and measured"
            if _in_torch(job, cfg) else f"the quantized {job.fmt} model at every step")
