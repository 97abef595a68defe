"""pipeline: the stages in order. Each takes the State and returns it, recording what it did.

Every bundle is written inside one temp directory that replaces `out` only when all of them are
complete (docs/architecture.md: nothing half-written is ever left under the output path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepress import atomic
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


def run(recipe: Recipe) -> list[Result]:
    """Runs the pipeline; returns one Result per bundle (already moved to [export] out)."""
    check(recipe)
    out = Path(recipe.export.out)
    atomic.refuse_existing(out, recipe.export.overwrite)
    state = load.apply(State(recipe), recipe.model)
    state = distill.split_teacher(state, recipe.distill)  # the teacher, before pruning
    state = prune.apply(state, recipe.prune)
    state = distill.apply(state, recipe.distill)
    if state.rank != 0:
        return []  # under torchrun only rank 0 writes
    state = calibrate.apply(state, recipe.data)
    state = verify.capture(state, recipe.verify)  # golden outputs of the final torch model
    with atomic.directory(out, recipe.export.overwrite) as tmp:
        state.work = tmp
        if state.pruned is not None:  # its layers no longer fit the factory: keep it as a SOURCE
            prune.save(state.pruned.model, state.pruned.example, tmp / prune.SAVED)
        state = export.apply(state, recipe.export)
        state = quantize.apply(state, recipe.quantize)
        state = verify.apply(state, recipe.verify)
        state = summarize.apply(state, recipe)
    return [_result(out, state, b) for b in state.bundles]


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
