"""schema: the JSON Schema files beside this module, and a small checker for them.

`manifest.schema.json` documents a bundle's manifest, `report.schema.json` a bench report (both
JSON Schema 2020-12). Readers check a file against the parts of its schema they rely on, so a
truncated, hand-edited or foreign file fails with one line naming the bad field and value
instead of a KeyError deep inside a reader, or a silently wrong default.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> dict:
    """The schema `name` ("manifest", "report") as a fresh dict."""
    return json.loads((HERE / f"{name}.schema.json").read_text())


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
          "integer": int, "number": (int, float)}


def check(value, node: dict, where: str = "", root: dict | None = None) -> str | None:
    """The first way `value` breaks `node`'s types, enums, required keys, properties or items,
    as text; None if it fits.

    A deliberately small subset of JSON Schema (type, enum, const, required, properties, items,
    and $ref to the schema's own #/$defs), enough to keep readers from crashing and from taking
    a wrong value for a default; tests validate the full schemas with the jsonschema package.
    """
    root = node if root is None else root
    if "$ref" in node:
        node = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
    problem = _check_type(value, node, where) or _check_enum(value, node, where)
    if problem:
        return problem
    if isinstance(value, dict):
        for key in node.get("required", ()):
            if key not in value:
                return f"missing field {where + '.' if where else ''}{key}"
        for key, sub in node.get("properties", {}).items():
            if key in value:
                problem = check(value[key], sub, f"{where + '.' if where else ''}{key}", root)
                if problem:
                    return problem
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            problem = check(item, node["items"], f"{where}[{i}]", root)
            if problem:
                return problem
    return None


def _check_type(value, node: dict, where: str) -> str | None:
    types = node.get("type")
    if types is None:
        return None
    names = [types] if isinstance(types, str) else types
    is_bool = isinstance(value, bool)
    if any(isinstance(value, _TYPES[t]) and (t == "boolean" or not is_bool) for t in names):
        return None
    return f"field {where or '(top)'} should be {' or '.join(names)}, got {type(value).__name__}"


def _check_enum(value, node: dict, where: str) -> str | None:
    valid = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if valid is None or any(value == v and type(value) is type(v) for v in valid):
        return None
    # "FP32" for "fp32": the choices are exact, and a near miss gets named
    near = [v for v in valid if isinstance(v, str) and isinstance(value, str)
            and v.lower() == value.lower()]
    hint = f" (values are case-sensitive: {near[0]!r})" if near else ""
    return (f"field {where or '(top)'} {value!r:.80} is not one of: "
            f"{', '.join(map(str, valid))}{hint}")
