"""pipeline: the stages in order. Each takes the State and returns it, recording what it did.

Every bundle is written inside one temp directory that replaces `out` only when all of them are
complete (docs/architecture.md: nothing half-written is ever left under the output path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepress import atomic, progress
from edgepress.compress import (
    calibrate,
    distill,
    export,
    load,
    prune,
    quantize,
    summarize,
    verify,
)
from edgepress.options import Recipe
from edgepress.compress.state import State

Request = Recipe.from_flat  # flat keywords (the manifest's recipe names) -> a Recipe


@dataclass
class Result:
    bundle: Path
    verdict: object  # runtime.verify.Verdict
    size_bytes: int
    figures: dict = field(default_factory=dict)  # the bundle's stages, plus fidelity/warnings


@dataclass
class Outcome:
    results: list  # one Result per bundle written (already moved to [export] out)
    failures: list  # guard.record per bundle an engine or converter could not build


class _NothingBuilt(Exception):
    """Every bundle failed: the output is not written (there is nothing in it to use)."""


def run(recipe: Recipe) -> list[Result]:
    """Runs the pipeline; returns one Result per bundle written (see outcome for failures)."""
    return outcome(recipe).results


def outcome(recipe: Recipe) -> Outcome:
    """Runs the pipeline. A bundle an engine cannot build is recorded and the others are still
    written; when none can be, nothing is written under --out."""
    check(recipe)
    out = Path(recipe.export.out)
    atomic.refuse_existing(out, recipe.export.overwrite)
    state = load.apply(State(recipe), recipe.model)
    state = distill.split_teacher(state, recipe.distill)  # the teacher, before pruning
    state = prune.apply(state, recipe.prune)
    state = distill.apply(state, recipe.distill)
    if state.rank != 0:
        return Outcome([], [])  # under torchrun only rank 0 writes
    state = calibrate.apply(state, recipe.data)
    state = verify.capture(state, recipe.verify)  # golden outputs of the final torch model
    try:
        with atomic.directory(out, recipe.export.overwrite) as tmp:
            state = _write(state, recipe, tmp)
    except _NothingBuilt:
        return Outcome([], state.failures)
    return Outcome([_result(out, state, b) for b in state.bundles], state.failures)


def _write(state: State, recipe: Recipe, tmp: Path) -> State:
    state.work = tmp
    if state.pruned is not None:  # its layers no longer fit the factory: keep it as a SOURCE
        prune.save(state.pruned.model, state.pruned.example, tmp / prune.SAVED)
    steps = len(recipe.export.formats) * (1 + len(recipe.quantize.precisions))
    with progress.bar("building bundles", steps) as state.progress:  # one step per guard.build
        state = export.apply(state, recipe.export)
        state = quantize.apply(state, recipe.quantize)
    state.progress = progress.OFF
    state = verify.apply(_built(state), recipe.verify)
    state = summarize.apply(_built(state), recipe)
    return verify.finish(_built(state), recipe.verify)


def _built(state: State) -> State:
    # Each step may lose bundles (compress/guard.py); with none left there is nothing to write.
    if not state.bundles:
        raise _NothingBuilt
    return state


def check(recipe: Recipe) -> None:
    """Every table's own checks, before any work is done."""
    load.check(recipe.model)
    export.check(recipe.export)
    verify.check(recipe.verify)
    calibrate.preprocess(recipe.data)
    quantize.check(recipe)


def _result(out: Path, state: State, bundle) -> Result:
    path = out / bundle.name
    figures = {**state.stages, **bundle.stages, **bundle.extra}
    return Result(path, bundle.verdict, (path / bundle.model_file.name).stat().st_size, figures)
