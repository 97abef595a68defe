"""guard: one bundle at a time, so that an engine or converter failing on a valid model costs that
bundle only. `build` wraps making a bundle, `each` every later step on the built ones (verification,
the summary's timing). The run goes on with the others; the failure is recorded in the state (the
summary, every manifest and the CLI list it) and the run exits 1, as for a failed verification.

edgepress's own UserError (bad input) is not caught: it still ends the run before anything is
written, with exit status 2. An engine refusing a file edgepress wrote (runtime's EngineError, a
UserError where the user gave the file) is the engine's limit here, and is caught.

Other libraries' warnings while a bundle is built belong to that bundle: they go into its
manifest (`library_warnings`) and the summary, and reach the terminal only through logging
(--verbose).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import sys
import warnings
from pathlib import Path

from edgepress import progress
from edgepress.errors import UserError, first_line
from edgepress.runtime.session import EngineError

log = logging.getLogger(__name__)

MAX_WARNINGS = 20  # distinct warnings kept per bundle; the rest are counted


class Limit(Exception):
    """A library's limit edgepress finds in what the library returned (it raised nothing):
    recorded like the library's own error, naming `library`."""

    def __init__(self, library: str, message: str):
        super().__init__(message)
        self.library = library


def build(state, where: Path, stage: str, make):
    """`make()` (which builds the bundle directory `where`), or None after removing what it
    left of `where` and recording why it failed. Each build is one step of state.progress."""
    state.progress.update(0, note=where.name)
    try:
        with _collected(where.name) as caught:
            bundle = make()
        if caught:
            bundle.extra["library_warnings"] = caught
        return bundle
    except Exception as e:  # noqa: BLE001 - _failed re-raises the user's own mistakes
        _failed(state, where, stage, e)
        return None
    finally:
        state.progress.update(1)


def each(state, stage: str, title: str, step) -> None:
    """`step(bundle)` for every built bundle, under one progress bar; a bundle whose step fails
    (an engine that cannot load or run it) is removed and its failure recorded."""
    with progress.bar(title, len(state.bundles)) as bar:
        for bundle in list(state.bundles):
            bar.update(0, note=bundle.name)
            try:
                step(bundle)
            except Exception as e:  # noqa: BLE001 - _failed re-raises the user's own mistakes
                _failed(state, bundle.path, stage, e)
                state.bundles.remove(bundle)
            bar.update()


def _failed(state, where: Path, stage: str, e: Exception) -> None:
    if isinstance(e, UserError) and not isinstance(e, EngineError):
        raise e
    log.debug("%s of %s failed", stage, where.name, exc_info=e)
    shutil.rmtree(where, ignore_errors=True)
    state.failures.append(record(where.name, stage, e))


def skipped(state, name: str, parent: str) -> None:
    """Records `name` as not attempted: the bundle it is made from failed."""
    state.failures.append({"bundle": name, "stage": "quantize", "library": None,
                           "error": f"not attempted: {parent} failed",
                           "what_to_do": f"see {parent}"})


def record(name: str, stage: str, e: BaseException) -> dict:
    """{bundle, stage, library, error, what_to_do} for one failed bundle. The error is the first
    line of the library's own message, whole."""
    lib = library(e)
    if isinstance(e, EngineError):
        error = (f"{e.backend} cannot {e.action} it: {type(e.cause).__name__}: "
                 f"{first_line(e.cause, None)}")
    elif isinstance(e, Limit):
        error = f"{lib} {first_line(e, None)}"
    else:
        error = f"{type(e).__name__}: {first_line(e, None)}"
    return {"bundle": name, "stage": stage, "library": lib, "error": error,
            "what_to_do": what_to_do(name, stage, lib)}


def what_to_do(name: str, stage: str, lib: str) -> str:
    if lib == "edgepress":
        return ("this is a bug in edgepress: please report it with the traceback that --debug "
                "prints")
    fmt, _, precision = name.partition("-")
    leave = (f"leave {fmt} out of --format" if precision == "fp32" else
             f"leave {precision} out of --quantize (or {fmt} out of --format)")
    if stage in ("verify", "summary"):  # the file was written: the engine refuses it
        leave += f", try another {lib} version"
    return f"{leave}, or report this error to {lib}"


def library(e: BaseException) -> str:
    """The library that raised: the engine, the exception type's package, or (for a builtin type
    such as RuntimeError) the first library edgepress called on the way to the error; edgepress
    when the error is raised in edgepress's own code and no library is on the way."""
    if isinstance(e, EngineError):
        from edgepress.runtime.engines import module_of

        return _dist(module_of(e.backend))
    if isinstance(e, Limit):
        return e.library
    module = type(e).__module__
    if _is_library(module):
        return _dist(module)
    tb, called = e.__traceback__, None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if called is None and _is_library(module):
            called = module
        tb = tb.tb_next
    return _dist(called) if called else "edgepress"


def _is_library(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in sys.stdlib_module_names and top not in (
        "builtins", "edgepress", "__main__")


def _dist(module: str) -> str:
    """A module's distribution name (litert_torch -> litert-torch), else its top package."""
    top = module.split(".")[0]
    return (_distributions().get(top) or [top])[0]


@functools.lru_cache(maxsize=1)
def _distributions() -> dict:
    # Reads every installed distribution's file list: 0.27 s a call on this project's machine
    # under load, once per warning before it was kept.
    from importlib.metadata import packages_distributions

    return packages_distributions()


# ---- warnings: the bundle's own -----------------------------------------------------------------

@contextlib.contextmanager
def _collected(name: str):
    """Every warning raised inside, as {library, category, message} (distinct ones, in order, at
    most MAX_WARNINGS), instead of the terminal; each is logged at INFO (shown with --verbose)."""
    seen: dict = {}

    def keep(message, category, filename, lineno, file=None, line=None):
        key = (filename, lineno, category.__name__, first_line(message, None))
        if key not in seen:  # the stack is walked once per distinct warning
            seen[key] = {"library": _library_at(filename), "category": key[2], "message": key[3]}

    caught: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the quiet filter would drop them: they are recorded
        warnings.showwarning = keep
        yield caught
    distinct = list({tuple(e.values()): e for e in seen.values()}.values())
    for entry in distinct:  # logged here: inside, export.quiet() may hold stderr
        log.info("%s: %s %s: %s", name, *entry.values())
    caught.extend(distinct[:MAX_WARNINGS])
    if len(distinct) > MAX_WARNINGS:
        caught.append({"library": None, "category": None,
                       "message": f"{len(distinct) - MAX_WARNINGS} more distinct warnings"})


def _library_at(filename: str) -> str:
    """The library a warning comes from: the module it is attributed to, or, where that is the
    standard library's (torch's deprecated LeafSpec warns from copyreg, which deepcopy runs),
    the first library on the way out from there."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename != filename:
        frame = frame.f_back
    if frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "edgepress":
        return "edgepress"
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if _is_library(module):
            return _dist(module)
        frame = frame.f_back
    return "python"
