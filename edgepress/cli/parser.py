"""The parser every command shares: argparse mistakes are one line and exit 2, and the compress
flags are generated from the option dataclasses (options.py), so a flag is never declared here."""

from __future__ import annotations

import argparse
from dataclasses import fields

from edgepress import options
from edgepress.errors import UserError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message}")


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise UserError(f"expected yes or no, got {text!r}")
    return text == "yes"


def floats(flag: str, text: str) -> tuple:
    try:
        return tuple(float(t) for t in csv(text))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated numbers") from None


def add_options(parser, table: str, title: str | None = None) -> None:
    """One flag per field of options.TABLES[table]; defaults are None ("not given"), so the
    recipe's value, else the field's default, applies. Help shows the field's default."""
    group = parser.add_argument_group(title) if title else parser
    for f in fields(options.TABLES[table]):
        add_flag(group, table, f)


def add_flag(group, table: str, f, default=None) -> None:
    meta, kwargs = f.metadata, {"help": _help(f)}
    if meta["flag"] == "SOURCE":
        group.add_argument("source", nargs="?", **kwargs)
        return
    kwargs["dest"] = f"{table}.{f.name}"
    kwargs["default"] = default
    if meta["cli"] == "switch":
        group.add_argument(meta["flag"], action="store_true", **{**kwargs, "default": default})
        return
    if meta["repeat"] or meta["kind"] == "[str]":
        # a comma-separated list given twice adds up (argparse would keep the last one silently)
        kwargs["action"] = "append"
    elif meta["cli"] == "yes-no":
        kwargs["type"] = yes_no
    elif meta["kind"] in ("int", "float"):
        kwargs["type"] = int if meta["kind"] == "int" else float
    kwargs["metavar"] = meta["metavar"] or meta["flag"].lstrip("-").upper().replace("-", "_")
    group.add_argument(meta["flag"], **kwargs)


def _help(f) -> str:
    text, value = f.metadata["help"], options.default(f)
    if value in (None, (), False) or f.metadata["cli"] == "switch":
        return text
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return f"{text} (default {shown})".replace("%", "%%")


def given(args) -> dict:
    """{table: {field: value}} for the option flags given on this command line."""
    out = {}
    for table, cls in options.TABLES.items():
        for f in fields(cls):
            dest = "source" if f.metadata["flag"] == "SOURCE" else f"{table}.{f.name}"
            value = getattr(args, dest, None)
            # None: not given. A yes-no flag's `no` is False and must reach the recipe: dropping
            # it ran `--prune-skip-defaults no` as yes (the stem skipped, unlike the same recipe).
            if value is not None:
                out.setdefault(table, {})[f.name] = _value(f, value)
    return out


def _value(f, value):
    kind, flag = f.metadata["kind"], f.metadata["flag"]
    if not kind.startswith("["):
        return value
    if f.metadata["repeat"]:  # one item per flag (an input shape holds commas itself)
        items = value
    else:  # a,b,c, possibly over several flags
        items = [t for v in (value if isinstance(value, list) else [value]) for t in csv(v)]
    if kind == "[int]":
        return tuple(int(v) for v in floats(flag, ",".join(items)))
    if kind == "[float]":
        return floats(flag, ",".join(items))
    return tuple(items)
