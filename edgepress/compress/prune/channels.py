"""channels:R: structured pruning through torch-pruning's dependency graph, so coupled layers
(residual adds, concatenations, depthwise convs, attention heads) lose the same channels."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from edgepress.compress.prune.measure import PRUNABLE, batches, first_output
from edgepress.errors import UserError


def apply(model, cfg, example, skipped, data) -> dict | None:
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


def coupled(model, example, names) -> dict:
    """{name: frozenset of the Conv/Linear names whose output channels go with its own}, from
    one dependency graph: pruning any layer of a group prunes the whole group alike (a ratio on
    one member applies to the group), so the scan tries each group once."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    name_of = {m: n for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
    named, out = dict(model.named_modules()), {}
    for name in names:
        module = named[name]
        group = graph.get_pruning_group(module, graph.get_pruner_of_module(module)
                                        .prune_out_channels, [0])
        out[name] = frozenset(name_of[d.target.module] for d, _ in group
                              if d.target.module in name_of
                              and graph.is_out_channel_pruning_fn(d.handler)) | {name}
    return out


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
        if isinstance(m, PRUNABLE) and channels * (1 - ratios.get(m, cfg.ratio)) < cfg.round_to:
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

