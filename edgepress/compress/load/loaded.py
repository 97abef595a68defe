"""What loading gives the later stages (Loaded), and the one place edgepress unpickles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepress.errors import UserError, first_line
from edgepress.runtime.artifact import TensorSpec


@dataclass
class Loaded:
    """What the later stages need: a module (or an ONNX file), its inputs, and provenance."""

    kind: str
    source: str
    inputs: list[TensorSpec]
    model: object = None  # torch.nn.Module in eval mode, unless kind == "onnx"
    onnx_path: Path | None = None
    provenance: dict = field(default_factory=dict)  # for the manifest's "source"
    notes: list = field(default_factory=list)  # what was done to the source, in words
    int_high: dict = field(default_factory=dict)  # input name -> exclusive upper bound of ids
    extra_files: dict = field(default_factory=dict)  # bundle-relative name -> source Path


TRUST_PICKLE_WARNING = ("--trust-pickle: unpickled {path}; unpickling runs any code the file "
                        "carries, so do this only for files you made or fully trust")


def unpickle(path: Path):
    """The one place edgepress unpickles, and only behind --trust-pickle."""
    import sys

    import torch

    print(f"warning: {TRUST_PICKLE_WARNING.format(path=path)}", file=sys.stderr)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"{str(path)!r} cannot be unpickled ({first_line(e)})") from None
