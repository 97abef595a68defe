"""--input-shape: parse `1,3,224,224`, `name=1,128:int64`, and resolve them against a model's
declared inputs. Torch-free: `compress` and `bench` (on the device) both take the flag."""

from __future__ import annotations

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime.artifact import TensorSpec

DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


def parse(text: str) -> tuple[str | None, tuple[int, ...], str | None]:
    """`[name=]d0,d1,...[:dtype]` -> (name or None, dims, dtype or None)."""
    name, _, rest = text.rpartition("=")
    dims_text, _, dtype = rest.partition(":")
    try:
        dims = tuple(int(d) for d in dims_text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise UserError(f"--input-shape {text!r}: expected positive integers like 1,3,224,224 "
                        f"or name=1,128:int64")
    if dtype and dtype not in DTYPES:
        raise UserError(f"--input-shape {text!r}: dtype {dtype!r} is not one of: "
                        f"{', '.join(DTYPES)}")
    return (name or None), dims, (dtype or None)


def parse_all(texts) -> list:
    return [parse(t) for t in texts or ()]


def resolve(names: list[str], given: list, declared: dict, what: str) -> list[TensorSpec]:
    """Input specs for `names`: a --input-shape wins, else the source's declared shape.

    `given` comes from parse_all; `declared` maps name -> (shape, dtype) where the source says.
    An unnamed --input-shape applies to the only input (or, with several, in order).
    """
    by_name = _assign(names, given, what)
    specs = []
    for name in names:
        shape, dtype = declared.get(name, (None, "float32"))
        if name in by_name:
            dims, gdtype = by_name[name]
            if shape is not None and len(shape) != len(dims):
                raise UserError(f"--input-shape for {name!r} has {len(dims)} dimensions; "
                                f"{what} declares {len(shape)}: {list(shape)}")
            shape, dtype = dims, gdtype or dtype
        spec = TensorSpec(name, tuple(shape) if shape is not None else (), dtype)
        if shape is None or spec.dynamic_dims:
            dyn = "no declared shape" if shape is None else f"dynamic dims {list(shape)}"
            raise UserError(f"input {name!r} of {what} has {dyn}: pass --input-shape "
                            f"{name}=<dims>[:dtype], e.g. {name}=1,3,224,224")
        specs.append(spec)
    return specs


def _assign(names, given, what) -> dict:
    unnamed = [g for g in given if g[0] is None]
    if unnamed and len(given) != len(unnamed):
        raise UserError("--input-shape: name every shape (name=dims) or none of them")
    if unnamed:
        if len(unnamed) != len(names):
            raise UserError(f"{what} takes {len(names)} input(s) ({', '.join(names)}) but "
                            f"{len(unnamed)} --input-shape given; name them as name=dims")
        return {n: (g[1], g[2]) for n, g in zip(names, unnamed)}
    unknown = [g[0] for g in given if g[0] not in names]
    if unknown:
        raise UserError(f"--input-shape names input {unknown[0]!r}; {what} has inputs: "
                        f"{', '.join(names)}")
    return {g[0]: (g[1], g[2]) for g in given}


def random_inputs(specs, samples: int, seed: int = 0, int_high: dict | None = None) -> dict:
    """Random inputs for `specs`: name -> array (samples, *shape). Floats ~ N(0,1); integer ids
    uniform below the input's bound (vocabulary size where known, else 2); masks all ones."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        shape, dtype = (samples, *s.shape), np.dtype(s.dtype)
        if dtype.kind == "f":
            out[s.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b" or s.name == "attention_mask":
            out[s.name] = np.ones(shape, dtype=dtype)
        else:
            out[s.name] = rng.integers(0, (int_high or {}).get(s.name, 2), size=shape).astype(dtype)
    return out
