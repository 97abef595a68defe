"""ONNX static int8 on the torch model rewritten and exported again: the same quantization
(onnx.py's static_qdq) on another float graph, each its own candidate or family member.

- int8 on the folded stem: the torch model with its strided few-channel convs folded into
  stride-1 ones (space_to_depth.py) and exported again (a second graph: timed).
- Cross-layer equalization (equalize.py, where the torch model has conv pairs with only ReLU /
  max-pool / padding / BatchNorm between): static_int8 and the folded stem also on the equalized
  model, as members of their recipe's family (same graph, other weights: the best SNR is kept).
  crepe tiny: 26.4 dB equalized vs 29.1 plain (Percentile), so not kept there.
"""

from __future__ import annotations

import json
from dataclasses import replace

from edgepress.compress.quantize import graph_facts
from edgepress.compress.quantize import onnx as onnx_paths
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized, work_dir


def static_int8_folded_stem(job: Job, cfg: QuantizeConfig) -> Quantized:
    """static_int8 on the torch model with its strided few-channel convs folded into stride-1
    ones (space_to_depth.py, exact) and exported again. crepe tiny's stem (1 channel, 512 taps,
    stride 4) is what it is for: onnxruntime's u8s8 QLinearConv over one input channel ran the
    int8 model at about fp32's speed; folded (4 channels, 128 taps) 0.40 vs 0.84 ms (1 thread,
    timed interleaved, same cosine 0.99916 to fp32)."""
    return _rewritten(job, cfg, fold=True, equalize=False)


static_int8_folded_stem.key = "onnx-static-folded-stem"
static_int8_folded_stem.applies = lambda job: (
    _torch_model(job) is not None and _folds(job) and not graph_facts.attention(job.fp32_path))


def static_int8_equalized(job: Job, cfg: QuantizeConfig) -> Quantized:
    """static_int8 on the cross-layer-equalized torch model (equalize.py), exported again: the
    same graph with other weights, so a member of static_int8's family (the best SNR of a family
    is kept)."""
    return _rewritten(job, cfg, fold=False, equalize=True)


static_int8_equalized.key = "onnx-static-all-ops-equalized"
static_int8_equalized.family_key = "onnx-static-all-ops"
static_int8_equalized.applies = lambda job: (
    _torch_model(job) is not None and not graph_facts.attention(job.fp32_path)
    and bool(_pairs(job)))


def static_int8_folded_equalized(job: Job, cfg: QuantizeConfig) -> Quantized:
    """The folded-stem recipe on the equalized model: a member of the folded-stem family."""
    return _rewritten(job, cfg, fold=True, equalize=True)


static_int8_folded_equalized.key = "onnx-static-folded-stem-equalized"
static_int8_folded_equalized.family_key = "onnx-static-folded-stem"
static_int8_folded_equalized.applies = lambda job: (
    static_int8_folded_stem.applies(job) and bool(_pairs(job)))


def _torch_model(job: Job):
    return getattr(job.loaded, "model", None)


def _folds(job: Job) -> bool:
    from edgepress.compress.quantize import space_to_depth

    return space_to_depth.applies(_torch_model(job))


def _pairs(job: Job) -> list:
    """The conv pairs equalize.py can scale (found once per job: torch.export is seconds)."""
    cache = work_dir(job) / "equalize-pairs.json"
    if cache.exists():
        return [tuple(p) for p in json.loads(cache.read_text())]
    import torch

    from edgepress.compress.quantize import equalize

    if not job.sample:  # nothing to trace with (a Job built without export's sample)
        return []
    found = equalize.pairs(torch.export.export(_torch_model(job).eval(), (),
                                               dict(job.sample)).module())
    cache.write_text(json.dumps(found))
    return found


def _rewritten(job: Job, cfg: QuantizeConfig, fold: bool, equalize: bool) -> Quantized:
    """static_int8 on the torch model rewritten (equalized, then folded), exported again into
    its own work folder (its own normalised model and range caches)."""
    from edgepress.compress import export
    from edgepress.compress.quantize import equalize as eq
    from edgepress.compress.quantize import space_to_depth

    model, notes = _torch_model(job), []
    if equalize:
        model, done = eq.apply(model, _pairs(job))
        notes.append(f"cross-layer equalization: {done} conv pair(s) (equalize.py)")
    if fold:
        model, folded = space_to_depth.rewrite(model)
        notes += folded
    name = "-".join(n for n, on in (("folded", fold), ("equalized", equalize)) if on)
    work = work_dir(job) / name
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "model.onnx"
    if not fp32.exists():
        import onnx

        outputs = len(onnx.load(str(job.fp32_path), load_external_data=False).graph.output)
        opts = export.ExportOptions(opset=export._opset(job.fp32_path) or 18)
        export._onnx(replace(job.loaded, model=model), fp32, opts, job.sample, outputs)
    how = " and ".join(w for w, on in (("equalized", equalize), ("stem-folded", fold)) if on)
    q = onnx_paths.static_qdq(replace(job, fp32_path=fp32, work=work), cfg,
                {"method": f"static int8 QDQ, per-channel weights, on the {how} model"})
    q.figures["rewritten"] = notes
    return q
