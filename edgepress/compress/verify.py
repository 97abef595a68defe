"""verify (host side): the golden reference before export, and after the last stage each bundle's
manifest, written once from the state (runtime/artifact.manifest), then checked as a device would
check it (runtime/verify)."""

from __future__ import annotations

import numpy as np
import torch

from edgepress.compress import export, guard, load
from edgepress.options import Verify
from edgepress.errors import UserError, first_line
from edgepress.runtime import artifact, shapes
from edgepress.runtime import verify as runtime_verify
from edgepress.runtime.session import Session


def check(cfg: Verify) -> Verify:
    if cfg.golden_samples < 1:
        raise UserError(f"--golden-samples {cfg.golden_samples}: must be >= 1")
    if not 0 <= cfg.seed < 2**32:
        # numpy's generators refuse negative seeds with a traceback (found by tests/bad_inputs)
        raise UserError(f"--seed {cfg.seed}: must be a whole number from 0 to {2**32 - 1}")
    if cfg.top1_tolerance < 0:
        raise UserError(f"--top1-tolerance {cfg.top1_tolerance}: must be a whole number of "
                        f"positions >= 0 (0: the same class only)")
    return cfg


def capture(state, cfg: Verify):
    """Golden inputs (held-out data, else random: never calibration samples, issue 15 item 4)
    and the reference model's outputs on them, taken after prune and distill."""
    data = state.held_out
    state.golden_in = (shapes.random_inputs(state.loaded.inputs, cfg.golden_samples, cfg.seed,
                                            state.loaded.int_high)
                       if data is None else data.first(cfg.golden_samples))
    state.golden_out = reference_outputs(state.loaded, state.golden_in)
    return state


def apply(state, cfg: Verify):
    """The stage: writes every bundle's manifest, then verifies the bundle against its golden
    outputs (what `edgepress verify` does on the device). A bundle its engine cannot load or
    run is removed and recorded (compress/guard.py)."""
    guard.each(state, "verify", "verifying", lambda bundle: _verify(state, bundle, cfg))
    return state


def _verify(state, bundle, cfg: Verify) -> None:
    write_manifest(state, bundle, cfg)
    bundle.verdict = runtime_verify.apply(artifact.open_bundle(bundle.path))


def write_manifest(state, bundle, cfg: Verify) -> None:
    artifact.write_manifest(bundle.path / artifact.MANIFEST, _manifest(state, bundle, cfg))


def finish(state, cfg: Verify):
    """The manifests again when a bundle failed after they were written (in verification or the
    summary's timing): every manifest lists every failed bundle of the run."""
    if any(f["stage"] in ("verify", "summary") for f in state.failures):
        for bundle in state.bundles:
            write_manifest(state, bundle, cfg)
    return state


def _manifest(state, bundle, cfg: Verify) -> dict:
    loaded = state.loaded
    stages = {**state.stages, **bundle.stages}
    stages.pop("prune", None)  # the bundle's own prune figures (its file's gzip size) come last
    if "prune" in bundle.stages:
        stages["prune"] = bundle.stages["prune"]
    if "quantize" in bundle.stages:
        stages["quantize"] = stages.pop("quantize")
    samples = next(iter(state.golden_in.values())).shape[0]  # held-out data may hold fewer
    golden = {"file": artifact.GOLDEN, "samples": samples, "seed": cfg.seed,
              "reference": "onnxruntime (ONNX source)" if loaded.model is None else "torch"}
    if cfg.top1_tolerance:  # read back by runtime/verify on the device: declared, not guessed
        golden["top1_tolerance"] = cfg.top1_tolerance
    return artifact.manifest(
        bundle.fmt, bundle.precision, bundle.model_file, bundle.inputs, bundle.outputs,
        source=loaded.provenance, recipe={**state.recipe.flat(), **bundle.recipe},
        stages=stages, preprocessing=({"tokenizer": sorted(loaded.extra_files)}
                                      if loaded.extra_files else None),
        golden=golden, **bundle.extra,
        **({"failed_bundles": state.failures} if state.failures else {}))


def reference_outputs(loaded, golden_in: dict) -> dict:
    """fp32 reference outputs, one sample at a time: from torch, or onnxruntime for ONNX
    (which keeps the source's output names; torch outputs are named output_0..)."""
    n = next(iter(golden_in.values())).shape[0]
    if loaded.model is None:
        session = Session(loaded.onnx_path)
        runs = [session.run({k: v[i] for k, v in golden_in.items()}) for i in range(n)]
        return {name: np.stack([r[name] for r in runs]) for name in runs[0]}
    try:
        with torch.no_grad():
            runs = [[t.detach().numpy() for t in load.outputs(loaded.model(
                **{k: torch.from_numpy(v[i, ...]) for k, v in golden_in.items()}))] for i in range(n)]
    except UserError:
        raise
    except Exception as e:  # a wrong --input-shape usually surfaces here, as a torch error
        shapes_given = " ".join(s.describe() for s in loaded.inputs)
        raise UserError(f"the model cannot run on inputs {shapes_given} ({first_line(e, 200)}); "
                        f"check --input-shape") from None
    names = export.output_names(len(runs[0]))
    return {name: np.stack([r[j] for r in runs]) for j, name in enumerate(names)}
