"""A factory SOURCE (`pkg.mod:fn`, `path/file.py:fn`) and its --weights (safetensors, or a
state dict read with weights_only=True)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from edgepress.compress.load.loaded import Loaded, unpickle
from edgepress.errors import UserError
from edgepress.runtime import shapes
from edgepress.runtime.artifact import sha256_file


def load(source, weights, given, trust_pickle) -> Loaded:
    import torch

    fn, module = _resolve_factory(source)
    try:
        model = fn()
    except Exception as e:
        raise UserError(f"factory {source!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"factory {source!r} returned {type(model).__name__}, not a "
                        f"torch.nn.Module")
    prov = {"kind": "factory", "path": source, **_file_hash(module)}
    if weights is not None:
        prov["weights"] = _load_weights(model, Path(weights), trust_pickle)
    names, defaults = _inputs(model, given)
    if defaults:
        prov["defaults"] = defaults
    specs = shapes.resolve(names, given, declared={}, what=f"factory {source!r}")
    return Loaded("factory", source, specs, model=model.eval(), provenance=prov)


def _inputs(model, given) -> tuple[list[str], dict]:
    """The forward parameters that become inputs: the required ones, plus any optional one
    given a shape by name. The other optional ones (torchcrepe's `embed=False`) stay at their
    defaults, returned (JSON-safe) for the manifest; *args / **kwargs are never inputs."""
    named = {g[0] for g in given if g[0] is not None}
    names, defaults = [], {}
    for p in inspect.signature(model.forward).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty or p.name in named:
            names.append(p.name)
        else:
            plain = p.default is None or isinstance(p.default, (bool, int, float, str))
            defaults[p.name] = p.default if plain else repr(p.default)
    return names, defaults


def _resolve_factory(source: str):
    target, _, attr = source.rpartition(":")
    if not target or not attr:
        raise UserError(f"factory {source!r} must be module:function or path/file.py:function")
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UserError(f"factory {source!r}: {target} has no callable {attr!r}; it has: "
                        f"{', '.join(public[:12]) or 'nothing callable'}")
    return fn, module


def _file_hash(module) -> dict:
    """The file that defines the model, hashed like every other source (a module without a
    file, e.g. a namespace or built-in one, has nothing to hash)."""
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return {}
    return {"file": str(Path(file).resolve()), "sha256": sha256_file(Path(file))}


def _import_file(path_str: str):
    path = Path(path_str)
    if not path.is_file():
        raise UserError(f"factory file {path_str!r} does not exist")
    name = f"_edgepress_factory_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling need the module registered
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserError(f"factory file {path_str!r} failed to import: {type(e).__name__}: {e}") \
            from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UserError(f"factory module {name!r} cannot be imported: {e}") from None
    except Exception as e:
        raise UserError(f"factory module {name!r} failed to import: {type(e).__name__}: {e}") \
            from None


def _load_weights(model, path: Path, trust_pickle: bool = False) -> dict:
    """Loads a state dict strictly into `model`; returns provenance for the manifest."""
    import torch

    if not path.is_file():
        raise UserError(f"weights file {str(path)!r} does not exist")
    state = _read_state_dict(path, trust_pickle)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise UserError(f"weights {str(path)!r} do not match the model: {'; '.join(parts)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return {"path": str(path), "sha256": sha256_file(path), "tensors": len(state)}


def _read_state_dict(path: Path, trust_pickle: bool = False) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"weights {str(path)!r} are not a valid .safetensors file ({e})") \
                from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-carrying pickles, RuntimeError for junk
        unsafe = "weights_only" in str(e) or "Unsupported global" in str(e)
        if unsafe and trust_pickle:
            state = unpickle(path)
        else:
            why = ("it holds objects other than tensors, and unpickling them could execute code "
                   "(pass --trust-pickle only if you made or fully trust this file)" if unsafe
                   else f"not a readable torch state dict ({type(e).__name__})")
            raise UserError(f"weights {str(path)!r} refused: {why}; save a state dict of "
                            f"tensors or use .safetensors") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights {str(path)!r} are not a state dict (name -> tensor)")
    return state
