"""`module:function` DATA: user code returning an iterable of input dicts (`labels` a key)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


from edgepress.errors import UserError


def reader(source: str):
    fn = _resolve(source)

    def read():
        try:
            items = fn()
        except Exception as e:  # noqa: BLE001 - user code: report it as the user's mistake
            raise UserError(f"data function {source!r} raised {type(e).__name__}: {e}") from None
        try:
            iterator = iter(items)
        except TypeError:
            raise UserError(f"data function {source!r} must return an iterable of input dicts, "
                            f"not {type(items).__name__}") from None
        for item in iterator:
            if isinstance(item, dict) and "labels" in item:
                item = dict(item)  # the caller's dict stays as it was
                yield item, item.pop("labels")
            else:
                yield item, None
    return read


def _resolve(source: str):
    target, _, attr = source.rpartition(":")
    try:
        if target.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"_edgepress_data_{Path(target).stem}",
                                                          target)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except Exception as e:  # noqa: BLE001 - user code: any failure is the user's to fix
        raise UserError(f"data function {source!r}: cannot import {target!r} "
                        f"({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"data function {source!r}: {target} has no callable {attr!r}")
    return fn
