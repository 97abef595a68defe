"""prune: remove weights before export, and say honestly what that buys.

Methods (`--prune SPEC`):
  channels:R     structured: removes a fraction R of the channels (and attention heads) of every
                 prunable layer, consistently across coupled layers (residual adds, concatenations,
                 depthwise convs, attention) through torch-pruning's dependency graph. The model
                 really gets smaller and faster on every engine.
  magnitude:R    unstructured: zeroes the fraction R of smallest-magnitude weights. The tensors keep
                 their shape, so dense engines run exactly as fast as before; the gain is in the
                 compressed (gzip) artifact size.
  nm:N:M         semi-structured N:M (2:4): keeps the N largest of every M consecutive input weights.
                 Dense ONNX/TFLite engines do not exploit it either; again a compressed-size gain.
  auto:macs=F    channel pruning to F x the original MACs, per-layer ratios chosen from the
                 sensitivity scan (edgepress.compress.sensitivity) on --calib data.

The first conv and the classifier are left alone by default (the stem is cheap and sensitive; the
classifier's outputs are the model's outputs). `schedule()` gives the gradual cubic sparsity
schedule for pruning combined with fine-tuning or distillation.
"""

from __future__ import annotations

import copy
import gzip
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from edgepress.errors import UserError, choices

IMPORTANCES = ("l1", "l2", "taylor", "random")
SCOPES = ("uniform", "global")
DENSE_ENGINE_NOTE = ("unstructured and N:M sparsity do not speed up dense engines (onnxruntime, "
                     "LiteRT/XNNPACK run every zero): the gain is the compressed artifact size; "
                     "use channels:R for a faster model")
_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class PruneConfig:
    """What to prune, as parsed from `--prune SPEC` and the --prune-* options."""

    method: str
    ratio: float = 0.5  # channels/magnitude: fraction removed; auto: MACs kept (macs=F)
    n: int = 2  # nm: keep n of every m
    m: int = 4
    importance: str = "l1"  # channels: how channels are ranked
    scope: str = "uniform"  # uniform: each layer pruned by `ratio`; global: ranked across layers
    round_to: int = 8  # channels: remaining channel counts are multiples of this (odd widths run slowly)
    skip: tuple = ()  # module names left untouched, besides the defaults
    skip_defaults: bool = True  # leave the first conv and the classifier alone
    layer_ratios: tuple = ()  # ((module name, ratio), ...): overrides `ratio` for those layers
    permanent: bool = True  # magnitude/nm: fold masks into the weights (False: keep them for fine-tuning)

    def spec(self) -> str:
        if self.method == "nm":
            return f"nm:{self.n}:{self.m}"
        return f"auto:macs={self.ratio:g}" if self.method == "auto" else f"{self.method}:{self.ratio:g}"


SAVED = "pruned.pt2"  # the pruned model, beside the bundles, as an ExportedProgram


@dataclass
class PruneResult:
    model: nn.Module
    figures: dict = field(default_factory=dict)  # for the manifest's stages.prune
    example: dict = field(default_factory=dict)  # name -> tensor the model was traced with

    @property
    def sparse(self) -> bool:
        """True where the gain is zeros in dense tensors (worth a gzip figure), not smaller ones."""
        return self.figures.get("method") in ("magnitude", "nm")


# ---- parsing and checking ---------------------------------------------------------------------

def parse(spec: str, **options) -> PruneConfig:
    """`channels:0.5`, `magnitude:0.8`, `nm:2:4`, `auto:macs=0.5` (+ PruneConfig fields)."""
    method, _, arg = spec.partition(":")
    if method not in METHODS:
        raise choices("--prune method", method, METHODS)
    if method == "nm":
        n, m = _nm_numbers(spec, arg or "2:4")
        return check(PruneConfig(method, n=n, m=m, **options))
    if method == "auto":
        key, _, value = arg.partition("=")
        if key != "macs":
            raise UserError(f"--prune {spec!r}: auto takes a MACs target, e.g. auto:macs=0.5")
        return check(PruneConfig(method, ratio=_number(spec, value), **options))
    if not arg:
        raise UserError(f"--prune {spec!r}: give a ratio, e.g. {method}:0.5")
    return check(PruneConfig(method, ratio=_number(spec, arg), **options))


def parse_layer_ratios(texts) -> tuple:
    """`--prune-layer NAME=RATIO` values -> ((name, ratio), ...)."""
    out = []
    for text in texts or ():
        name, _, value = text.rpartition("=")
        try:
            out.append((name, float(value)))
        except ValueError:
            name = ""
        if not name:
            raise UserError(f"--prune-layer {text!r}: expected NAME=RATIO, e.g. layer1.0.conv1=0.3")
    return tuple(out)


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--prune {spec!r}: {text!r} is not a number (expected a ratio like 0.5)") \
            from None


def _nm_numbers(spec: str, arg: str) -> tuple[int, int]:
    n_text, _, m_text = arg.partition(":")
    try:
        n, m = int(n_text), int(m_text)
    except ValueError:
        n, m = 0, 0
    if not 0 < n < m:
        raise UserError(f"--prune {spec!r}: expected nm:N:M with 0 < N < M, e.g. nm:2:4")
    return n, m


def check(cfg: PruneConfig) -> PruneConfig:
    """Refuses configurations that cannot mean anything, naming the bad value."""
    if cfg.method not in METHODS:
        raise choices("--prune method", cfg.method, METHODS)
    if cfg.method != "nm" and not 0.0 < cfg.ratio < 1.0:
        what = "MACs target" if cfg.method == "auto" else "ratio"
        raise UserError(f"--prune {cfg.spec()}: {what} {cfg.ratio:g} must be between 0 and 1 "
                        f"(exclusive)")
    if cfg.importance not in IMPORTANCES:
        raise choices("--prune-importance", cfg.importance, IMPORTANCES)
    if cfg.scope not in SCOPES:
        raise choices("--prune-scope", cfg.scope, SCOPES)
    if cfg.round_to < 1:
        raise UserError(f"--prune-round-to {cfg.round_to}: must be >= 1 (1: no rounding)")
    for name, ratio in cfg.layer_ratios:
        if not 0.0 <= ratio < 1.0:
            raise UserError(f"--prune-layer {name}={ratio:g}: ratio must be >= 0 and < 1")
    return cfg


# ---- the stage --------------------------------------------------------------------------------

def apply(model: nn.Module, cfg: PruneConfig, example: dict, data=None) -> PruneResult:
    """Prunes `model` in place as `cfg` says; `example` maps input names to tensors (the shapes to
    trace), `data` is a calibrate.Dataset (taylor importance and auto need one)."""
    check(cfg)
    if not any(isinstance(m, _PRUNABLE) for m in model.modules()):
        raise UserError(f"--prune {cfg.spec()}: the model has no Conv/Linear modules (an "
                        f"ExportedProgram or TorchScript source is a flat graph of ops): prune "
                        f"the factory source (module:function) instead")
    skipped = skipped_layers(model, cfg, example)
    before = measure(model, example)
    extra = METHODS[cfg.method](model, cfg, example, skipped, data) or {}  # method's own figures
    try:
        after = measure(model, example)
    except RuntimeError as e:  # e.g. a layer pruned to nothing, or a shape the model hard-codes
        raise UserError(f"--prune {cfg.spec()}: the pruned model no longer runs "
                        f"({str(e).strip().splitlines()[0][:200]}); try a smaller ratio, "
                        f"--prune-scope uniform, or --prune-skip the layer named there") from None
    if after["output_shapes"] != before["output_shapes"]:
        raise UserError(f"--prune {cfg.spec()} changed the model's output shapes "
                        f"{before['output_shapes']} -> {after['output_shapes']}: add the layer "
                        f"that produces that output to --prune-skip")
    if after["widths"] == before["widths"] and after["nonzero_params"] == before["nonzero_params"]:
        raise UserError(f"--prune {cfg.spec()} removed nothing: every prunable layer is skipped "
                        f"({', '.join(skipped) or 'none'}), coupled to a skipped one, or too "
                        f"narrow for --prune-round-to {cfg.round_to}")
    figures = {**_figures(cfg, skipped, before, after), **extra}
    if data is not None and (cfg.method == "auto" or cfg.importance == "taylor"):
        figures["data"] = {"kind": data.kind, "source": data.source, "warning": data.warning}
    return PruneResult(model.eval(), figures, example)


def skipped_layers(model: nn.Module, cfg: PruneConfig, example: dict) -> dict:
    """name -> why, for every module this run leaves alone; unknown names are an error."""
    names = dict(model.named_modules())
    unknown = [n for n in list(cfg.skip) + [n for n, _ in cfg.layer_ratios] if n not in names]
    if unknown:
        layers = [n for n, m in names.items() if isinstance(m, _PRUNABLE)]
        raise UserError(f"--prune-skip/--prune-layer: no layer named {unknown[0]!r}; prunable "
                        f"layers: {', '.join(layers[:12])}{' ...' if len(layers) > 12 else ''}")
    skipped = {n: "asked (--prune-skip)" for n in cfg.skip}
    if cfg.skip_defaults:
        order = execution_order(model, example)
        first_conv = next((n for n in order if not isinstance(names[n], nn.Linear)), None)
        if first_conv is not None:
            skipped.setdefault(first_conv, "first conv (default)")
        if order:
            skipped.setdefault(order[-1], "classifier (default)")
    return skipped


def execution_order(model: nn.Module, example: dict) -> list[str]:
    """Names of the Conv/Linear modules in the order a forward pass calls them (definition order
    can differ from it)."""
    order, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, _PRUNABLE):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: order.append(name) if name not in order else None))
    try:
        with torch.no_grad():
            model(**example)
    finally:
        for h in hooks:
            h.remove()
    return order


# ---- channels (structured) --------------------------------------------------------------------

def _channels(model, cfg, example, skipped, data) -> dict | None:
    named = dict(model.named_modules())
    ratios = {named[n]: r for n, r in cfg.layer_ratios if named[n] not in skipped}
    ignored = [named[n] for n in skipped] + _too_narrow(model, cfg, ratios)
    if cfg.importance == "taylor":
        _accumulate_gradients(model, data, cfg)
    with warnings.catch_warnings(record=True) as caught:  # kept for the manifest, not stderr
        warnings.simplefilter("always")
        pruner = _pruner(model, cfg, example, ratios, ignored)
        with torch.no_grad():
            pruner.step()
    _fix_attention_attributes(model)
    model.zero_grad(set_to_none=True)
    notes = sorted({"torch-pruning: " + " ".join(str(w.message).split()) for w in caught})
    return {"notes": notes} if notes else None


def _pruner(model, cfg, example, ratios: dict, ignored: list):
    import torch_pruning as tp

    heads = _attention_heads(model)
    return tp.pruner.BasePruner(
        model, example, _importance(cfg.importance), global_pruning=cfg.scope == "global",
        pruning_ratio=cfg.ratio, pruning_ratio_dict=ratios or None,
        max_pruning_ratio=0.9,  # global ranking may otherwise empty a whole layer
        ignored_layers=ignored, round_to=cfg.round_to if cfg.round_to > 1 else None,
        num_heads=heads, prune_num_heads=bool(heads), prune_head_dims=False,
        head_pruning_ratio=cfg.ratio if heads else 0.0)


def _importance(name: str):
    import torch_pruning as tp

    imp = tp.importance
    return {"l1": lambda: imp.GroupMagnitudeImportance(p=1),
            "l2": lambda: imp.GroupMagnitudeImportance(p=2),
            "taylor": lambda: imp.GroupTaylorImportance(),
            "random": lambda: imp.RandomImportance()}[name]()


def _too_narrow(model, cfg, ratios: dict) -> list:
    """Layers where rounding to `round_to` would leave no channel at all (torch-pruning rounds the
    remaining count down and does not stop at zero): left whole instead."""
    if cfg.round_to <= 1:
        return []
    out = []
    for m in model.modules():
        channels = getattr(m, "out_channels", getattr(m, "out_features", None))
        if isinstance(m, _PRUNABLE) and channels * (1 - ratios.get(m, cfg.ratio)) < cfg.round_to:
            out.append(m)
    return out


def _attention_heads(model) -> dict:
    """{module: heads} for torch-pruning, so whole heads are removed: nn.MultiheadAttention
    itself, and the q/k/v Linear layers of attention modules that declare `num_heads`."""
    heads = {}
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            heads[m] = m.num_heads
            continue
        if not isinstance(getattr(m, "num_heads", None), int):
            continue
        for name, child in m.named_children():
            if isinstance(child, nn.Linear) and name in ("q", "k", "v", "query", "key", "value", "qkv"):
                heads[child] = m.num_heads
    return heads


def _fix_attention_attributes(model) -> None:
    # The module's forward reshapes with num_heads; after whole heads are gone it must agree.
    for m in model.modules():
        q = getattr(m, "q", None) or getattr(m, "query", None)
        if isinstance(q, nn.Linear) and isinstance(getattr(m, "head_dim", None), int):
            m.num_heads = q.out_features // m.head_dim


def _accumulate_gradients(model, data, cfg, samples: int = 64) -> None:
    """Leaves in each weight's .grad the sum over samples of |per-sample gradient| (each sample
    scaled to unit norm, so confident samples still count), which torch-pruning's Taylor
    importance turns into sum_s |w * g_s| per channel, as Molchanov et al. accumulate per step.
    One summed gradient would not do: on a converged model per-sample gradients largely cancel
    (digits CNN, channels:0.5, no fine-tuning: 16.4% accuracy that way, 58.7% per sample; l1
    56.9%, l2 72.0%). The loss uses labels where the data has them, else the model's top-1."""
    if data is None:
        raise UserError(f"--prune {cfg.spec()} with --prune-importance taylor needs data: pass "
                        f"--calib DATA (.npz of the model's inputs, optional labels)")
    from edgepress.compress.sensitivity import batches, first_output

    total = {p: torch.zeros_like(p) for p in model.parameters() if p.requires_grad}
    for batch, labels in batches(data, limit=samples, size=1):
        model.zero_grad(set_to_none=True)
        logits = first_output(model(**batch))
        target = labels if labels is not None else logits.argmax(-1).detach()
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                    target.reshape(-1)).backward()
        grads = [p.grad for p in total if p.grad is not None]
        norm = torch.sqrt(sum((g * g).sum() for g in grads)) + 1e-12
        for p, acc in total.items():  # each sample weighs the same, however confident
            if p.grad is not None:
                acc.add_(p.grad.abs() / norm)
    for p, acc in total.items():
        p.grad = acc


# ---- unstructured and N:M ---------------------------------------------------------------------

def _magnitude(model, cfg, example, skipped, data) -> None:
    import torch.nn.utils.prune as tprune

    layers = _weighted(model, skipped)
    own = dict(cfg.layer_ratios)
    shared = [(m, "weight") for n, m in layers.items() if n not in own]
    if cfg.scope == "global" and shared:
        # One threshold across layers: layers with many small weights lose more of them.
        tprune.global_unstructured(shared, pruning_method=tprune.L1Unstructured, amount=cfg.ratio)
    else:
        for m, _ in shared:
            tprune.l1_unstructured(m, "weight", amount=cfg.ratio)
    for name, ratio in own.items():
        if name in layers and ratio > 0:
            tprune.l1_unstructured(layers[name], "weight", amount=ratio)
    _finish_masks(layers.values(), cfg.permanent)


def _n_of_m(model, cfg, example, skipped, data) -> dict | None:
    import torch.nn.utils.prune as tprune

    weighted = _weighted(model, skipped)
    layers = {n: m for n, m in weighted.items()
              if m.weight.shape[1] % cfg.m == 0}  # input width must split into groups of m
    for m in layers.values():
        tprune.custom_from_mask(m, "weight", _nm_mask(m.weight.detach(), cfg.n, cfg.m))
    _finish_masks(layers.values(), cfg.permanent)
    left = {n: f"{m.weight.shape[1]} inputs per output (per group) is not a multiple of {cfg.m}"
            for n, m in weighted.items() if n not in layers}
    return {"left_dense": left} if left else None


def _nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keeps the n largest |w| of every m consecutive input channels, as sparse tensor cores and
    2:4 kernels expect. Linear (O, I) or conv (O, I, *k): groups run along I."""
    moved = w.abs().movedim(1, -1)  # (O, *k, I)
    groups = moved.reshape(-1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(n, dim=1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, 1)


def _weighted(model, skipped) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, _PRUNABLE) and n not in skipped}


def _finish_masks(modules, permanent: bool) -> None:
    # permanent: weight = weight_orig * mask becomes a plain tensor again, so export sees ordinary
    # weights. Not permanent: the masks stay (fine-tuning keeps zeros at zero); finalize() later.
    if permanent:
        finalize(modules)


def finalize(modules) -> None:
    """Folds torch.nn.utils.prune masks into the weights of `modules` (a model's .modules() too)."""
    import torch.nn.utils.prune as tprune

    for m in modules:
        if tprune.is_pruned(m) and hasattr(m, "weight_orig"):
            tprune.remove(m, "weight")


def schedule(step: int, total_steps: int, final: float, initial: float = 0.0,
             begin_step: int = 0) -> float:
    """Sparsity at `step` of gradual pruning (Zhu & Gupta 2017, as in TF-MOT's PolynomialDecay
    with power 3): s = final + (initial - final) * (1 - t)^3, t = progress in [0, 1]. Prunes fast
    early, while the network can still recover, and slowly near the end."""
    if total_steps < 1:
        raise UserError(f"pruning schedule: total_steps {total_steps} must be >= 1")
    t = min(max((step - begin_step) / total_steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - t) ** 3


# ---- auto (MACs target via the sensitivity scan) ----------------------------------------------

def _auto(model, cfg, example, skipped, data) -> dict:
    from edgepress.compress import sensitivity

    if data is None:
        raise UserError(f"--prune {cfg.spec()} measures each layer's sensitivity on data: pass "
                        f"--calib DATA (.npz of the model's inputs, optional labels)")
    base = replace(cfg, method="channels", skip=tuple(skipped), skip_defaults=False)
    scan = sensitivity.scan(model, example, data, base)
    ratios = sensitivity.choose(model, example, scan, base, target=cfg.ratio)
    notes = _channels(model, replace(base, ratio=0.0, layer_ratios=tuple(ratios.items())),
                      example, skipped, data) or {}
    return {**notes, "auto": {"macs_target": cfg.ratio, "chosen_ratios": ratios, "metric": scan["metric"],
                     "baseline": scan["baseline"], "samples": scan["samples"],
                     "scan": scan["layers"]}}


# ---- figures ----------------------------------------------------------------------------------

def measure(model, example) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    # Grad mode on: without it nn.TransformerEncoderLayer takes a fused fast path whose kernel
    # the flop counter does not know (it would count 0 MACs for the whole layer).
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        out = model(**example)
    outs = out if isinstance(out, (tuple, list)) else [out]
    weights = {n: m.weight for n, m in model.named_modules()
               if isinstance(m, _PRUNABLE) and isinstance(getattr(m, "weight", None), torch.Tensor)}
    return {"params": sum(p.numel() for p in model.parameters()),
            "nonzero_params": sum(int(torch.count_nonzero(t)) for t in _effective(model)),
            "macs": counter.get_total_flops() // 2,  # FLOPs count a multiply-add as 2
            "output_shapes": [list(o.shape) for o in outs if isinstance(o, torch.Tensor)],
            "widths": {n: list(w.shape[:2]) for n, w in weights.items()},
            "sparsity": {n: round(1 - int(torch.count_nonzero(w)) / w.numel(), 4)
                         for n, w in weights.items()}}


def _effective(model):
    """Every parameter as the forward pass sees it: with masks not yet folded in
    (permanent=False), `weight` is weight_orig * weight_mask, not a parameter itself."""
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            yield getattr(m, name[: -len("_orig")]) if name.endswith("_orig") else p


def macs(model, example) -> int:
    return measure(model, example)["macs"]


def _figures(cfg, skipped, before, after) -> dict:
    fig = {"method": cfg.method, "spec": cfg.spec(), "scope": cfg.scope,
           "skipped": skipped, "layer_ratios": dict(cfg.layer_ratios),
           "params": {"before": before["params"], "after": after["params"]},
           "nonzero_params": {"before": before["nonzero_params"], "after": after["nonzero_params"]},
           "macs": {"before": before["macs"], "after": after["macs"],
                    "ratio": round(after["macs"] / max(before["macs"], 1), 4)},
           "sparsity": after["sparsity"]}
    if cfg.method in ("channels", "auto"):
        fig.update(importance=cfg.importance, round_to=cfg.round_to,
                   widths={n: {"before": before["widths"][n], "after": w}
                           for n, w in after["widths"].items() if w != before["widths"].get(n)})
    else:
        fig["note"] = DENSE_ENGINE_NOTE
    return fig


def artifact_figures(result: PruneResult, model_file: Path) -> dict:
    """stages.prune for one bundle: the model's figures plus, for zeros in dense tensors, the
    gzip-compressed size of the artifact (the honest measure of what they buy)."""
    fig = dict(result.figures)
    if result.sparse:
        fig["gzip_size_bytes"] = gzip_size(model_file)
        # Later stages (quantize) copy this manifest: say which file the figure is about.
        fig["gzip_of"] = {"file": Path(model_file).name, "size_bytes": Path(model_file).stat().st_size,
                          "precision": "fp32"}
    return fig


def gzip_size(path: Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=6))


def save(model: nn.Module, example: dict, path: Path) -> Path:
    """Writes the pruned model as an ExportedProgram (.pt2): its layers no longer match the
    original factory, so a state dict would not load back into it, but a .pt2 is a SOURCE."""
    try:
        # Positional, in input order: the .pt2 loader calls the program's inputs by position.
        program = torch.export.export(copy.deepcopy(model).eval(), tuple(example.values()))
    except Exception as e:
        raise UserError(f"the pruned model cannot be saved as an ExportedProgram "
                        f"({str(e).splitlines()[0][:200]})") from None
    torch.export.save(program, str(path))
    return Path(path)


METHODS = {"channels": _channels, "magnitude": _magnitude, "nm": _n_of_m, "auto": _auto}
