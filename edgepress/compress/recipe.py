"""recipe: a TOML file with flat sections, parsed strictly into the pipeline's Request.

Every `compress` flag has a recipe key, and a flag given on the command line overrides the file:

    [model]    source, weights, input_shape, trust_pickle
    [data]     calib, calib_samples, eval, train, val, image_size, image_mean, image_std, image_layout
    [prune]    method (--prune), importance, scope, round_to, skip, layers, skip_defaults
    [distill]  method (--distill), teacher, student, epochs, batch_size, lr, optimizer, schedule,
               temperature, alpha, features, patience, checkpoint
    [quantize] precisions (--quantize), calib_method, max_drop, max_float_layers, target
    [export]   formats (--format), tflite_layout, out, overwrite
    [verify]   golden_samples, seed

An unknown section or key, or a value of the wrong type, is one clear error naming the valid
choices. Relative paths in a recipe are taken relative to the recipe file's folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgepress.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# section -> key -> (Request field, CLI flag, type). Types: str, int, float, bool, path (a str
# resolved against the recipe's folder), data (path unless it is 'random' or module:function),
# and [T] for arrays of T. A trailing ? allows the key to be absent/None.
KEYS = {
    "model": {
        "source": ("source", "SOURCE", "data"),
        "weights": ("weights", "--weights", "path"),
        "input_shape": ("input_shapes", "--input-shape", "[str]"),
        "trust_pickle": ("trust_pickle", "--trust-pickle", "bool"),
    },
    "data": {
        "calib": ("calib", "--calib", "data"),
        "calib_samples": ("calib_samples", "--calib-samples", "int"),
        "eval": ("eval", "--eval", "data"),
        "train": ("train", "--train", "data"),
        "val": ("val", "--val", "data"),
        "image_size": ("image_size", "--image-size", "[int]"),
        "image_mean": ("image_mean", "--image-mean", "[float]"),
        "image_std": ("image_std", "--image-std", "[float]"),
        "image_layout": ("image_layout", "--image-layout", "str"),
    },
    "prune": {
        "method": ("prune", "--prune", "str"),
        "importance": ("prune_importance", "--prune-importance", "str"),
        "scope": ("prune_scope", "--prune-scope", "str"),
        "round_to": ("prune_round_to", "--prune-round-to", "int"),
        "skip": ("prune_skip", "--prune-skip", "[str]"),
        "layers": ("prune_layers", "--prune-layer", "[str]"),
        "skip_defaults": ("prune_skip_defaults", "--prune-skip-defaults", "bool"),
    },
    "distill": {
        "method": ("distill", "--distill", "str"),
        "teacher": ("teacher", "--teacher", "data"),
        "student": ("student", "--student", "data"),
        "epochs": ("distill_epochs", "--distill-epochs", "int"),
        "batch_size": ("distill_batch_size", "--distill-batch-size", "int"),
        "lr": ("distill_lr", "--distill-lr", "float"),
        "optimizer": ("distill_optimizer", "--distill-optimizer", "str"),
        "schedule": ("distill_schedule", "--distill-schedule", "str"),
        "temperature": ("distill_temperature", "--distill-temperature", "float"),
        "alpha": ("distill_alpha", "--distill-alpha", "float"),
        "features": ("distill_features", "--distill-feature", "[str]"),
        "patience": ("distill_patience", "--distill-patience", "int"),
        "checkpoint": ("distill_checkpoint", "--distill-checkpoint", "path"),
    },
    "quantize": {
        "precisions": ("quantize", "--quantize", "[str]"),
        "calib_method": ("calib_method", "--calib-method", "str"),
        "max_drop": ("max_drop", "--max-drop", "float"),
        "max_float_layers": ("max_float_layers", "--max-float-layers", "int"),
        "target": ("quant_target", "--quant-target", "str"),
    },
    "export": {
        "formats": ("formats", "--format", "[str]"),
        "tflite_layout": ("tflite_layout", "--tflite-layout", "str"),
        "out": ("out", "--out", "path"),
        "overwrite": ("overwrite", "--overwrite", "bool"),
    },
    "verify": {
        "golden_samples": ("golden_samples", "--golden-samples", "int"),
        "seed": ("seed", "--seed", "int"),
    },
}


def load(path) -> dict:
    """Reads a recipe file into {Request field: value}, strictly."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"recipe {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"recipe {str(path)!r} is not valid TOML ({e})") from None
    return parse(doc, base=path.parent, where=str(path))


def parse(doc: dict, base: Path = Path("."), where: str = "recipe") -> dict:
    fields = {}
    for section, table in doc.items():
        if section not in KEYS:
            raise UserError(f"{where}: unknown section [{section}]; valid: "
                            f"{', '.join(f'[{s}]' for s in KEYS)}")
        if not isinstance(table, dict):
            raise UserError(f"{where}: {section} must be a [{section}] table")
        for key, value in table.items():
            if key not in KEYS[section]:
                raise UserError(f"{where}: unknown key {key!r} in [{section}]; valid: "
                                f"{', '.join(KEYS[section])}")
            field, _flag, kind = KEYS[section][key]
            fields[field] = _convert(value, kind, base, f"{where}: [{section}] {key}")
    return fields


def _convert(value, kind: str, base: Path, what: str):
    if kind.startswith("["):
        if not isinstance(value, list):
            raise UserError(f"{what}: expected an array of {kind[1:-1]}, got {_show(value)}")
        return tuple(_convert(v, kind[1:-1], base, what) for v in value)
    ok = {"str": str, "path": str, "data": str, "int": int, "float": (int, float),
          "bool": bool}[kind]
    if not isinstance(value, ok) or (kind in ("int", "float") and isinstance(value, bool)):
        raise UserError(f"{what}: expected {_article(kind)}, got {_show(value)}")
    if kind == "path" or (kind == "data" and _is_file_like(value)):
        return str(base / value) if not Path(value).is_absolute() else value
    return float(value) if kind == "float" else value


def _is_file_like(value: str) -> bool:
    # 'random' and module:function are not paths; file.py:function is, up to the colon.
    return value != "random" and (":" not in value or value.split(":")[0].endswith(".py"))


def _article(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
        kind, "a string")


def _show(value) -> str:
    return f"{type(value).__name__} {value!r}"


def flag_of(field: str) -> str:
    """The CLI flag for a Request field (for messages)."""
    for table in KEYS.values():
        for f, flag, _kind in table.values():
            if f == field:
                return flag
    return field
