"""The frozen teacher's outputs, computed once per process for the same teacher and the same data.

A teacher is frozen and the data not augmented, so its outputs on a data set are a function of
(its class, its weights and buffers, the inputs, the precision it ran in). fit reads them through
here for the training set and the validation reference, and the stage for the teacher's own
eval score: a second run in the same process (a fine-tune beside a KD run, a sweep over alpha)
pays nothing for a teacher that can cost far more than the student (crepe full: 45x tiny's MACs).
Keyed by content, not identity: every run loads the teacher afresh.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

ENTRIES = 4  # teachers x data sets kept; the oldest goes first
MAX_BYTES = 1 << 28  # outputs larger than 256 MiB are recomputed rather than held

_CACHE: OrderedDict[str, torch.Tensor] = OrderedDict()


def teacher_outputs(teacher, x: dict, device, amp, compute) -> torch.Tensor:
    """compute(teacher, x, device, amp), or the outputs it gave before for the same content."""
    key = _key(teacher, x, device, amp)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key].to(device)
    out = compute(teacher, x, device, amp)
    if out.numel() * out.element_size() <= MAX_BYTES:
        _CACHE[key] = out.cpu()
        while len(_CACHE) > ENTRIES:
            _CACHE.popitem(last=False)
    return out


def clear() -> None:
    _CACHE.clear()


def _key(teacher, x: dict, device, amp) -> str:
    h = hashlib.sha256(f"{type(teacher).__module__}.{type(teacher).__qualname__}|"
                       f"{torch.device(device).type}|{amp}".encode())
    for name, t in [*teacher.state_dict().items(), *sorted(x.items())]:
        _update(h, name, t)
    return h.hexdigest()


def _update(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
