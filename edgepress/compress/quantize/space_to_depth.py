"""space_to_depth: a strided convolution over few input channels rewritten, in torch, as a
stride-1 convolution over `stride` times as many channels, for the int8 candidates to build on.

crepe tiny's stem (1 input channel, 512 taps, stride 4) is what it is for: litert-torch lowers a
1-channel conv to DEPTHWISE_CONV_2D with depth multiplier 128, whose int8 kernel is slow. Timed
interleaved on the real weights and a real frame (1 thread, load 5), its PT2E int8 .tflite ran at
1.063x the fp32 one (95% CI [1.051, 1.077]); with the stem kept float 0.561x; with this rewrite,
every layer int8, 0.420x ([0.415, 0.424]), the file the same size. The rewrite is exact: output
t of the stride-s conv reads samples s*t .. s*t+k-1, which are rows t .. t+k/s-1 of the input
folded into s channels (x'[c*s+j, t] = x[c, s*t+j]) and the weights folded alike
(W'[o, c*s+j, m] = W[o, c, s*m+j]).
"""

from __future__ import annotations

import copy

MAX_CHANNELS = 3  # convs with fewer input channels than int8 kernels align to (4) are rewritten


def rewrite(model) -> tuple[object, list[str]]:
    """(a copy of `model` with every eligible conv rewritten, one note per conv); the model
    itself when none is eligible."""
    eligible = [name for name, m in model.named_modules() if _eligible(m)]
    if not eligible:
        return model, []
    out = copy.deepcopy(model)
    notes = []
    for name in eligible:
        parent, _, leaf = name.rpartition(".")
        owner = out.get_submodule(parent) if parent else out
        conv = getattr(owner, leaf)
        setattr(owner, leaf, Folded(conv))
        s = conv.stride[0]
        notes.append(f"{name}: {conv.in_channels} input channel(s), stride {s} -> "
                     f"{conv.in_channels * s} channels, stride 1 (space-to-depth)")
    return out, notes


def applies(model) -> bool:
    return model is not None and any(_eligible(m) for m in model.modules())


def _eligible(m) -> bool:
    """A Conv1d, or a Conv2d whose kernel and stride span the height only, with few input
    channels, no groups or dilation, zero padding, and taps a multiple of the stride."""
    import torch

    if type(m) not in (torch.nn.Conv1d, torch.nn.Conv2d) or m.groups != 1 \
            or m.in_channels > MAX_CHANNELS or m.padding_mode != "zeros" \
            or isinstance(m.padding, str):
        return False
    if isinstance(m, torch.nn.Conv2d) and (m.kernel_size[1], m.stride[1], m.dilation[1],
                                           m.padding[1]) != (1, 1, 1, 0):
        return False
    s, k = m.stride[0], m.kernel_size[0]
    return s > 1 and k % s == 0 and m.dilation[0] == 1


def _folded_conv(conv):
    """The stride-1 conv over in_channels * stride channels with the folded weights."""
    import torch

    s, k, c = conv.stride[0], conv.kernel_size[0], conv.in_channels
    w = conv.weight.detach()  # (O, C, k[, 1])
    o = w.shape[0]
    folded = w.reshape(o, c, k // s, s, *w.shape[3:]).transpose(2, 3).reshape(
        o, c * s, k // s, *w.shape[3:])
    kind = type(conv)
    new = kind(c * s, o, folded.shape[2:], bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(folded)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def Folded(conv):  # noqa: N802 - a module factory: torch is imported only when a model has one
    import torch

    class _Folded(torch.nn.Module):
        """pad, crop to the samples the strided conv reads, fold into channels, stride-1 conv."""

        def __init__(self):
            super().__init__()
            self.stride, self.taps, self.pad = conv.stride[0], conv.kernel_size[0], conv.padding[0]
            self.conv = _folded_conv(conv)

        def forward(self, x):
            if self.pad:
                x = torch.nn.functional.pad(x, (0, 0, self.pad, self.pad) if x.dim() == 4
                                            else (self.pad, self.pad))
            b, c, length = x.shape[:3]
            used = (length - self.taps) // self.stride * self.stride + self.taps
            x = x[:, :, :used]  # the trailing samples no output reads
            x = x.reshape(b, c, used // self.stride, self.stride, *x.shape[3:])
            x = x.transpose(2, 3).reshape(b, c * self.stride, used // self.stride, *x.shape[4:])
            return self.conv(x)

    return _Folded()
