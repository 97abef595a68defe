"""What flows through the pipeline: each stage takes the State and returns it, recording what it
did under `stages[name]` (the model's stages) or a Bundle's own `stages` (per artifact). The
manifests are written once, from here (runtime/artifact.manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepress import progress
from edgepress.options import Recipe


@dataclass
class Bundle:
    """One artifact directory as it is being made: `<format>-<precision>`."""

    fmt: str
    precision: str
    path: Path
    model_file: Path
    inputs: list  # manifest entries (name, shape, dtype, layout): the fp32 export's, float I/O
    outputs: list
    stages: dict = field(default_factory=dict)  # export, prune (this file's gzip), quantize
    recipe: dict = field(default_factory=dict)  # what differs from the run's recipe (quantize=)
    extra: dict = field(default_factory=dict)  # calibration, fidelity, warnings (quantized)
    verdict: object = None  # runtime.verify.Verdict, once verified

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class State:
    recipe: Recipe
    loaded: object = None  # load.Loaded: the model (changed in place by prune and distill)
    teacher: object = None  # distill: the model as loaded, kept before pruning
    pruned: object = None  # prune.PruneResult
    rank: int = 0  # under torchrun: only rank 0 writes
    calib: object = None  # calibrate.Dataset (--calib)
    held_out: object = None  # calibrate.Dataset (--eval)
    golden_in: dict = field(default_factory=dict)  # name -> (samples, *shape), model layout
    golden_out: dict = field(default_factory=dict)
    work: Path | None = None  # the temp directory that becomes --out
    stages: dict = field(default_factory=dict)  # load, student, prune, distill
    bundles: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # guard.record: bundles an engine could not build
    progress: object = progress.OFF  # the live bar of the bundles being built (edgepress.progress)
