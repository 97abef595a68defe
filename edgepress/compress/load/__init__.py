"""load: turn a SOURCE string into a torch module (or an ONNX file) plus its declared inputs.

Source kinds (detected from the string): a factory `pkg.mod:fn` / `path/file.py:fn` with optional
weights, a TorchScript file, an ExportedProgram `.pt2`, a Hugging Face-style directory, or an
`.onnx` file. Nothing here unpickles arbitrary objects: weights are safetensors or a state dict
read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path

from edgepress.compress.load import factory, hf, onnx, torchscript
from edgepress.compress.load.loaded import TRUST_PICKLE_WARNING, Loaded
from edgepress.errors import UserError
from edgepress.options import Model
from edgepress.runtime import shapes

__all__ = ["Loaded", "TRUST_PICKLE_WARNING", "KINDS", "apply", "check", "detect", "example",
           "open_source", "outputs"]


def apply(state, cfg: Model):
    """The stage: loads [model] source into state.loaded."""
    check(cfg)
    state.loaded = open_source(cfg.source, cfg.weights, cfg.input_shape, cfg.trust_pickle)
    state.stages["load"] = {"kind": state.loaded.kind, "notes": state.loaded.notes}
    return state


def example(loaded: Loaded, seed: int = 0) -> dict:
    """One random sample of the model's inputs, as tensors: the shapes a stage traces with."""
    import torch

    one = shapes.random_inputs(loaded.inputs, 1, seed, loaded.int_high)
    return {k: torch.from_numpy(v[0, ...]) for k, v in one.items()}


def check(cfg: Model) -> Model:
    if not cfg.source:
        raise UserError("no model: give SOURCE (or [model] source in the recipe)")
    return cfg


def outputs(out) -> list:
    """What a model returned, as the flat list of tensors every stage works with (tensors,
    tuples/lists/dicts of them, nested): decided here, once."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in outputs(o)]
    raise UserError(f"the model returned {type(out).__name__}; edgepress needs tensors (or "
                    f"tuples/dicts of tensors) as outputs")


def open_source(source: str, weights: str | None = None, input_shapes=(),
                trust_pickle=False) -> Loaded:
    """Loads SOURCE; `input_shapes` are the raw --input-shape strings."""
    kind = detect(source)
    if weights is not None and kind != "factory":
        raise UserError(f"--weights applies to a factory source (module:function), not to a "
                        f"{kind} source {source!r}")
    given = shapes.parse_all(input_shapes)
    loaded = KINDS[kind](source, weights, given, trust_pickle)
    loaded.provenance.setdefault("kind", kind)
    loaded.provenance.setdefault("path", source)
    return loaded


def detect(source: str) -> str:
    """The kind of SOURCE, or a clear error listing the accepted forms."""
    path = Path(source)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        raise UserError(f"source directory {source!r} has no config.json (a Hugging Face-style "
                        f"model directory needs config.json + model.safetensors)")
    suffix = path.suffix.lower()
    if suffix in _FILE_KINDS:
        if not path.is_file():
            raise UserError(f"source file {source!r} does not exist")
        return _FILE_KINDS[suffix]
    if ":" in source:
        return "factory"
    if path.exists():
        raise UserError(f"source {source!r}: unknown file type {path.suffix!r}; valid: "
                        f"{', '.join(sorted(_FILE_KINDS))}, a model directory, or module:function")
    raise UserError(f"source {source!r} does not exist and is not a factory (module:function or "
                    f"path/file.py:function)")


_FILE_KINDS = {".onnx": "onnx", ".pt2": "exported-program", ".pt": "torchscript",
               ".pth": "torchscript", ".ts": "torchscript", ".jit": "torchscript",
               ".torchscript": "torchscript"}


KINDS = {"factory": factory.load, "torchscript": torchscript.load,
         "exported-program": torchscript.load_exported, "hf": hf.load, "onnx": onnx.load}
