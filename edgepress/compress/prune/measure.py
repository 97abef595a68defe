"""What pruning is measured by: which layers a forward pass calls, params, MACs and sparsity, and
the data in batches (for Taylor importance and the sensitivity scan)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepress.compress import load
from edgepress.compress.prune.plan import PruneConfig
from edgepress.errors import UserError

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Layer types torch-pruning has no pruner for (its ops.TORCH_LSTM is nn.LSTM only): left alone,
# and listed among the skipped layers so the manifest and the CLI say so.
UNPRUNED = (nn.LSTMCell, nn.GRUCell, nn.RNNCell, nn.GRU, nn.RNN)


def skipped_layers(model: nn.Module, cfg: PruneConfig, example: dict) -> dict:
    """name -> why, for every module this run leaves alone; unknown names are an error."""
    names = dict(model.named_modules())
    unknown = [n for n in list(cfg.skip) + [n for n, _ in cfg.layer_ratios] if n not in names]
    if unknown:
        layers = [n for n, m in names.items() if isinstance(m, PRUNABLE)]
        raise UserError(f"--prune-skip/--prune-layer: no layer named {unknown[0]!r}; prunable "
                        f"layers: {', '.join(layers[:12])}{' ...' if len(layers) > 12 else ''}")
    skipped = {n: "asked (--prune-skip)" for n in cfg.skip}
    skipped.update({n: f"{type(m).__name__}: torch-pruning cannot prune it; its widths stay"
                    for n, m in names.items() if isinstance(m, UNPRUNED)})
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
    order = []
    each_layer(model, example, lambda name, m, inputs, out: order.append(name))
    return order


def each_layer(model: nn.Module, example: dict, record) -> None:
    """One forward pass calling record(name, module, inputs, output) the first time each
    Conv/Linear module runs."""
    seen, hooks = set(), []

    def hook(name, m, inputs, out) -> None:  # a hook's return value would replace the output
        if name not in seen:
            seen.add(name)
            record(name, m, inputs, out)

    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: hook(name, m, i, o)))
    try:
        with torch.no_grad():
            model(**example)
    finally:
        for h in hooks:
            h.remove()



def measure(model, example) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    # Grad mode on: without it nn.TransformerEncoderLayer takes a fused fast path whose kernel
    # the flop counter does not know (it would count 0 MACs for the whole layer).
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        out = model(**example)
    outs = load.outputs(out)
    weights = {n: m.weight for n, m in model.named_modules()
               if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), torch.Tensor)}
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



def batches(data, limit: int, size: int = 16):
    """(name -> tensor, labels tensor or None) in batches of `size` samples from a Dataset."""
    chunk = []
    for i, item in enumerate(data.labelled()):
        if i >= limit:
            break
        chunk.append(item)
        if len(chunk) == size:
            yield _stack(chunk)
            chunk = []
    if chunk:
        yield _stack(chunk)


def _stack(chunk):
    names = chunk[0][0].keys()
    # Samples come shaped like the input spec (batch 1): concatenate along the batch axis.
    batch = {n: torch.from_numpy(np.concatenate([s[n] for s, _ in chunk])) for n in names}
    labels = [lab for _, lab in chunk]
    if any(lab is None for lab in labels):
        return batch, None
    return batch, torch.as_tensor(np.asarray(labels)).long().reshape(-1)


def first_output(out) -> torch.Tensor:
    return load.outputs(out)[0]
