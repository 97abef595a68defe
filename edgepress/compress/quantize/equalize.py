"""equalize: cross-layer equalization (Nagel et al. 2019, as AIMET and NNCF do it) of a torch
model before PT2E quantization (issue 15, item 5), kept only where it raises fidelity.

For two layers with only positively homogeneous ops between them (ReLU, max-pool, zero padding,
and a BatchNorm after the ReLU as in crepe), scaling output channel c of the first by 1/s_c and
input channel c of the second by s_c computes the same function; s_c = sqrt(r1_c / r2_c) makes the
channel's weight range equal in both (r = max |w|), which narrows per-tensor weight ranges.
ReLU6 / hardtanh are not homogeneous (relu6(x/s) != relu6(x)/s), so a MobileNetV2-style block is
left alone: there is no pair to equalize until its ReLU6 is replaced by ReLU, which changes the
model. tflite.py measures the equalized model's PT2E fidelity on the selection split beside the
plain one and keeps the better (the manifest's `equalization` records both).
"""

from __future__ import annotations

import copy

_PASS = ("relu.", "max_pool2d", "max_pool1d", "constant_pad_nd", "aten.pad.")
_BN = ("batch_norm",)


def pairs(graph) -> list[tuple[str, str | None, str]]:
    """(first layer, BatchNorm between or None, second layer) module names found in an
    exported graph module: a conv whose only path to the next conv is through _PASS ops."""
    found = []
    for node in graph.graph.nodes:
        if not _is_conv(node):
            continue
        bn, cur = None, node
        while len(cur.users) == 1:
            cur = next(iter(cur.users))
            target = str(cur.target)
            if _is_conv(cur):
                if _groups(cur) == 1 and cur.args[0] is not None:
                    found.append((_module(node), bn, _module(cur)))
                break
            if any(p in target for p in _BN) and bn is None:
                bn = _module(cur)
            elif not any(p in target for p in _PASS):
                break
    return [p for p in found if None not in (p[0], p[2])]


def _is_conv(node) -> bool:
    return node.op == "call_function" and "conv" in str(node.target)


def _groups(node) -> int:
    return node.args[6] if len(node.args) > 6 else 1


def _module(node):
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def apply(model, found: list) -> tuple[object, int]:
    """(an equalized copy of `model`, pairs equalized)."""
    import torch

    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    done = 0
    with torch.no_grad():
        for first, bn, second in found:
            a, b = modules[first], modules[second]
            if a.out_channels != b.in_channels:
                continue
            r1 = a.weight.abs().flatten(1).amax(1)
            r2 = b.weight.abs().transpose(0, 1).flatten(1).amax(1)
            s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-12)),
                            torch.ones_like(r1))
            _scale(a, b, modules.get(bn), s)
            done += 1
    return out, done


def _scale(a, b, bn, s) -> None:
    shape = (-1,) + (1,) * (a.weight.dim() - 1)
    a.weight.div_(s.view(shape))
    if a.bias is not None:
        a.bias.div_(s)
    b.weight.mul_(s.view((1, -1) + (1,) * (b.weight.dim() - 2)))
    if bn is not None:  # BN(x / s) = BN'(x) / s with these statistics
        bn.running_var.copy_((bn.running_var + bn.eps) / s ** 2 - bn.eps)
        bn.running_mean.div_(s)
        bn.weight.div_(s)
        bn.bias.div_(s)
