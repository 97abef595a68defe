"""guard: one bundle's build, so that an engine or converter failing on a valid model costs that
bundle only. The run goes on with the others; the failure is recorded in the state (the summary,
every manifest and the CLI list it) and the run exits 1, as for a failed verification.

edgepress's own UserError (bad input) is not caught: it still ends the run before anything is
written, with exit status 2.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from edgepress.errors import UserError, first_line

log = logging.getLogger(__name__)

# What the user can do, by stage: the failing library's message names the cause.
HINTS = {
    "export": "leave {fmt} out of --format, or report this error to {library}",
    "quantize": "leave {precision} out of --quantize (or {fmt} out of --format), or report this "
                "error to {library}",
}


def build(state, where: Path, stage: str, make):
    """`make()` (which builds the bundle directory `where`), or None after removing what it
    left of `where` and recording why it failed. Each build is one step of state.progress."""
    state.progress.update(0, note=where.name)
    try:
        return make()
    except UserError:
        raise
    except Exception as e:
        log.debug("building %s failed", where.name, exc_info=True)
        shutil.rmtree(where, ignore_errors=True)
        state.failures.append(record(where.name, stage, e))
        return None
    finally:
        state.progress.update(1)


def skipped(state, name: str, parent: str) -> None:
    """Records `name` as not attempted: the bundle it is made from failed."""
    state.failures.append({"bundle": name, "stage": "quantize", "library": None,
                           "error": f"not attempted: {parent} failed",
                           "what_to_do": f"see {parent}"})


def record(name: str, stage: str, e: BaseException) -> dict:
    """{bundle, stage, library, error, what_to_do} for one failed bundle."""
    fmt, _, precision = name.partition("-")
    lib = library(e)
    return {"bundle": name, "stage": stage, "library": lib,
            "error": f"{type(e).__name__}: {first_line(e)}",
            "what_to_do": HINTS[stage].format(library=lib, fmt=fmt, precision=precision)}


def library(e: BaseException) -> str:
    """The library that raised: the exception type's package, or (for a builtin type such as
    RuntimeError) the first library edgepress called on the way to the error."""
    module = type(e).__module__
    if _is_library(module):
        return _dist(module)
    tb, called = e.__traceback__, None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if called is None and _is_library(module):
            called = module
        tb = tb.tb_next
    return _dist(called) if called else "unknown"


def _is_library(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in ("builtins", "edgepress", "contextlib", "__main__")


def _dist(module: str) -> str:
    """A module's distribution name (litert_torch -> litert-torch), else its top package."""
    from importlib.metadata import packages_distributions

    top = module.split(".")[0]
    return (packages_distributions().get(top) or [top])[0]
