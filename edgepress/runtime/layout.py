"""NCHW <-> NHWC, the one place edgepress converts layouts: for numpy arrays and torch tensors
alike (a tensor has .permute, an array .transpose), so host and device code share it. `lead` is
the number of axes before C: 1 for (N, C, H, W), 2 for golden files' (samples, N, C, H, W).
Other ranks are left alone (only image-shaped tensors have a layout)."""

from __future__ import annotations


def to_nhwc(a, lead: int = 1):
    """(..., C, H, W) -> (..., H, W, C)."""
    if a.ndim != lead + 3:
        return a
    return _permute(a, (*range(lead), lead + 1, lead + 2, lead))


def to_nchw(a, lead: int = 1):
    """(..., H, W, C) -> (..., C, H, W)."""
    if a.ndim != lead + 3:
        return a
    return _permute(a, (*range(lead), lead + 2, lead, lead + 1))


def _permute(a, order):
    if hasattr(a, "permute"):  # a torch tensor; this module never imports torch
        return a.permute(*order).contiguous()
    return a.transpose(order).copy()
