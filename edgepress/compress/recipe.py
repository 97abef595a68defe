"""recipe: a TOML file with one table per stage, parsed strictly from the option dataclasses.

The tables and their keys are options.TABLES and their fields (`edgepress compress --help` lists
each key's flag): [model], [data], [prune], [distill], [quantize], [export], [verify]. A flag
given on the command line overrides the file. An unknown table or key, or a value of the wrong
type, is one clear error naming the table, the key and the valid choices. Relative paths in a
recipe are taken relative to the recipe file's folder.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from edgepress import options
from edgepress.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load(path) -> dict:
    """Reads a recipe file into {table: {field: value}}, strictly."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"recipe {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"recipe {str(path)!r} is not valid TOML ({e})") from None
    return parse(doc, base=path.parent, where=str(path))


def parse(doc: dict, base: Path = Path("."), where: str = "recipe") -> dict:
    given = {}
    for section, table in doc.items():
        if section not in options.TABLES:
            raise UserError(f"{where}: unknown section [{section}]; valid: "
                            f"{', '.join(f'[{s}]' for s in options.TABLES)}")
        if not isinstance(table, dict):
            raise UserError(f"{where}: {section} must be a [{section}] table")
        keys = {options.recipe_key(f): f for f in fields(options.TABLES[section])}
        for key, value in table.items():
            if key not in keys:
                raise UserError(f"{where}: unknown key {key!r} in [{section}]; valid: "
                                f"{', '.join(keys)}")
            f = keys[key]
            given.setdefault(section, {})[f.name] = _convert(
                value, f.metadata["kind"], base, f"{where}: [{section}] {key}")
    return given


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
