"""prune: remove weights before export, and say honestly what that buys.

Methods (`--prune SPEC`):
  channels:R     structured: removes a fraction R of the channels (and attention heads) of every
                 prunable layer, consistently across coupled layers (residual adds, concatenations,
                 depthwise convs, attention) through torch-pruning's dependency graph. The model
                 really gets smaller and faster on every engine.
  magnitude:R    unstructured: zeroes the fraction R of smallest-magnitude weights. The tensors keep
                 their shape, so dense engines run exactly as fast as before; the gain is in the
                 compressed (gzip) artifact size.
  nm:N:M         semi-structured N:M (2:4): keeps the N largest of every M consecutive input weights.
                 Dense ONNX/TFLite engines do not exploit it either; again a compressed-size gain.
  auto:macs=F    channel pruning to F x the original MACs, per-layer ratios chosen from the
                 sensitivity scan (auto.py) on --calib data.
  auto:latency=F the same to F x the unpruned latency, measured with edgepress's runtime on
                 --latency-on (this host, or a device over SSH) in the bundle's format and
                 precision: a per-layer latency table (latency.py), then the plan timed whole.

The first conv and the classifier are left alone by default (the stem is cheap and sensitive; the
classifier's outputs are the model's outputs). Recurrent cells and GRU/RNN layers are left alone
too, and the manifest and the CLI say so (measure.UNPRUNED): torch-pruning prunes nn.LSTM, not
LSTMCell, GRUCell, RNNCell, GRU or RNN, so their widths stay as they are.
"""

from __future__ import annotations

import copy
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgepress.compress import calibrate, load
from edgepress.options import Prune
from edgepress.compress.prune import auto, channels, choice, recalibrate, sparse
from edgepress.compress.prune.measure import PRUNABLE, UNPRUNED, execution_order, macs, \
    measure, skipped_layers
from edgepress.compress.prune.plan import IMPORTANCES, NAMES, SCOPES, PruneConfig, check, \
    parse, parse_layer_ratios
from edgepress.compress.prune.sparse import finalize
from edgepress.errors import UserError, first_line

__all__ = ["IMPORTANCES", "SCOPES", "PruneConfig", "check", "parse", "parse_layer_ratios",
           "finalize", "execution_order", "macs", "measure", "skipped_layers",
           "apply", "run", "describe", "METHODS", "SAVED", "PruneResult", "artifact_figures", "save"]

DENSE_ENGINE_NOTE = ("unstructured and N:M sparsity do not speed up dense engines (onnxruntime, "
                     "LiteRT/XNNPACK run every zero): the gain is the compressed artifact size; "
                     "use channels:R for a faster model")

SAVED = "pruned.pt2"  # the pruned model, beside the bundles, as an ExportedProgram


@dataclass
class PruneResult:
    model: nn.Module
    figures: dict = field(default_factory=dict)  # for the manifest's stages.prune
    example: dict = field(default_factory=dict)  # name -> tensor the model was traced with

    @property
    def sparse(self) -> bool:
        """True where the gain is zeros in dense tensors (worth a gzip figure), not smaller ones."""
        return self.figures.get("method") in ("magnitude", "nm")

    def artifact_figures(self, model_file: Path) -> dict:
        """export calls this for each bundle it writes (a method, so export imports nothing of
        prune, whose latency tables export models)."""
        return artifact_figures(self, model_file)


def apply(state, cfg: Prune):
    """The stage: prunes the loaded model in place as [prune] says, before the golden outputs
    are taken (bundles verify against the pruned model)."""
    if not cfg.method:
        return state
    loaded, recipe = state.loaded, state.recipe
    if loaded.model is None:
        raise UserError(f"--prune {cfg.method!r} needs a torch model; {loaded.source!r} is ONNX")
    plan = parse(cfg.method, importance=cfg.importance, scope=cfg.scope,
                 round_to=cfg.round_to, skip=tuple(cfg.skip), skip_defaults=cfg.skip_defaults,
                 layer_ratios=parse_layer_ratios(cfg.layers), recalibrate_bn=cfg.recalibrate_bn,
                 latency_on=cfg.latency_on,
                 latency_threads=cfg.latency_threads, latency_cache=cfg.latency_cache,
                 **bundle_kind(recipe))
    data = (calibrate.open_option(recipe.data.calib, loaded, recipe.data,
                                  recipe.data.calib_samples, recipe.verify.seed)
            if recipe.data.calib else None)
    state.pruned = run(loaded.model, plan, load.example(loaded, recipe.verify.seed), data)
    state.stages["prune"] = state.pruned.figures
    return state


def bundle_kind(recipe) -> dict:
    """The format and precision auto:latency times layers in: the first format asked for, int8
    when an int8 bundle is asked for (the one pruning for speed matters most to), else fp32."""
    return {"latency_format": recipe.export.formats[0] if recipe.export.formats else "onnx",
            "latency_precision": "int8" if "int8" in recipe.quantize.precisions else "fp32"}


def run(model: nn.Module, cfg: PruneConfig, example: dict, data=None) -> PruneResult:
    """Prunes `model` in place as `cfg` says; `example` maps input names to tensors (the shapes to
    trace), `data` is a calibrate.Dataset (taylor importance and auto need one; channel pruning
    re-estimates BatchNorm statistics on it, recalibrate.py)."""
    check(cfg)
    if not any(isinstance(m, PRUNABLE) for m in model.modules()):
        raise UserError(f"--prune {cfg.spec()}: the model has no Conv/Linear modules (an "
                        f"ExportedProgram or TorchScript source is a flat graph of ops): prune "
                        f"the factory source (module:function) instead")
    skipped = skipped_layers(model, cfg, example)
    before = measure(model, example)
    try:  # auto:latency runs its pruned copies inside the method: the same failure, earlier
        extra = METHODS[cfg.method](model, cfg, example, skipped, data) or {}  # its own figures
        after = measure(model, example)
    except RuntimeError as e:  # e.g. a layer pruned to nothing, or a shape the model hard-codes
        kept = [n for n, m in model.named_modules() if isinstance(m, UNPRUNED)]
        beside = (f" (or the layers next to {', '.join(kept)}, which stay whole)" if kept
                  else "")
        raise UserError(f"--prune {cfg.spec()}: the pruned model no longer runs "
                        f"({first_line(e, 200)}); try a smaller ratio, "
                        f"--prune-scope uniform, or --prune-skip the layer named there"
                        f"{beside}") from None
    if after["output_shapes"] != before["output_shapes"]:
        raise UserError(f"--prune {cfg.spec()} changed the model's output shapes "
                        f"{before['output_shapes']} -> {after['output_shapes']}: add the layer "
                        f"that produces that output to --prune-skip")
    if after["widths"] == before["widths"] and after["nonzero_params"] == before["nonzero_params"]:
        raise UserError(f"--prune {cfg.spec()} removed nothing: every prunable layer is skipped "
                        f"({', '.join(skipped) or 'none'}), coupled to a skipped one, or too "
                        f"narrow for --prune-round-to {cfg.round_to}")
    figures = {**_figures(cfg, skipped, before, after), **extra}
    if data is not None and cfg.recalibrate_bn and cfg.method in ("channels", "auto"):
        figures["bn_recalibrated"] = recalibrate.batchnorms(model, data)
    if data is not None and (cfg.method == "auto" or cfg.importance == "taylor"
                             or figures.get("bn_recalibrated")):
        figures["data"] = {"kind": data.kind, "source": data.source, "warning": data.warning}
    return PruneResult(model.eval(), figures, example)



def _figures(cfg, skipped, before, after) -> dict:
    fig = {"method": cfg.method, "spec": cfg.spec(), "scope": cfg.scope,
           "skipped": skipped, "layer_ratios": dict(cfg.layer_ratios),
           "params": {"before": before["params"], "after": after["params"]},
           "nonzero_params": {"before": before["nonzero_params"], "after": after["nonzero_params"]},
           "macs": {"before": before["macs"], "after": after["macs"],
                    "ratio": round(after["macs"] / max(before["macs"], 1), 4)},
           "sparsity": after["sparsity"]}
    if cfg.method in ("channels", "auto"):
        fig.update(importance=cfg.importance, round_to=cfg.round_to,
                   widths={n: {"before": before["widths"][n], "after": w}
                           for n, w in after["widths"].items() if w != before["widths"].get(n)})
    else:
        fig["note"] = DENSE_ENGINE_NOTE
    return fig


def artifact_figures(result: PruneResult, model_file: Path) -> dict:
    """stages.prune for one bundle: the model's figures plus, for zeros in dense tensors, the
    gzip-compressed size of the artifact (the honest measure of what they buy)."""
    fig = dict(result.figures)
    if result.sparse:
        fig["gzip_size_bytes"] = gzip_size(model_file)
        # Later stages (quantize) copy this manifest: say which file the figure is about.
        fig["gzip_of"] = {"file": Path(model_file).name, "size_bytes": Path(model_file).stat().st_size,
                          "precision": "fp32"}
    return fig


def describe(figures: dict, saved: Path) -> list[str]:
    """What pruning did, for the CLI: the model's figures, each bundle's compressed size where
    zeros are the gain, the honest caveat, and where the pruned model was saved."""
    fig, lines = figures, []
    if "auto" in fig:
        lines.append(f"auto: per-layer ratios {fig['auto']['chosen_ratios']} (from the sensitivity "
                     f"scan, {fig['auto']['metric']} on {fig['auto']['samples']} samples)")
    if "latency" in fig.get("auto", {}):
        lat = fig["auto"]["latency"]
        last = choice.chosen_round(lat)
        lines.append(f"auto: measured p50 {last['pruned_ms']:.3f} ms vs {last['unpruned_ms']:.3f} "
                     f"ms unpruned (x{last['ratio']:.3f}; {lat['fmt']} {lat['precision']}, "
                     f"{lat['threads']} thread(s) on {lat['on']}); latency table "
                     f"{lat['table_file']}")
    for name, why in fig["skipped"].items():
        if why.startswith(tuple(t.__name__ + ":" for t in UNPRUNED)):
            lines.append(f"left alone: {name} ({why})")
    if fig.get("bn_recalibrated"):
        bn = fig["bn_recalibrated"]
        lines.append(f"BatchNorm statistics re-estimated on {bn['samples']} calibration samples "
                     f"({bn['layers']} layers; --prune-recalibrate-bn no to keep them)")
    lines.append(f"pruned {fig['spec']}: params {fig['params']['before']:,} -> "
                 f"{fig['params']['after']:,} (non-zero {fig['nonzero_params']['after']:,}), MACs "
                 f"x{fig['macs']['ratio']:.3f}")
    if "note" in fig:
        lines.append(f"note: {fig['note']}")
    why = ("the original factory's state dict no longer fits its layers" if "widths" in fig
           else "the zeros are in it; the original factory with its weights is the dense model")
    lines.append(f"saved the pruned model as {saved} (an ExportedProgram: pass it as SOURCE to "
                 f"reload it; {why})")
    return lines


def describe_bundle(name: str, figures: dict) -> list[str]:
    if "gzip_size_bytes" not in figures:
        return []
    return [f"{name}: gzip-compressed {figures['gzip_size_bytes'] / 1024:.1f} KiB"]


def gzip_size(path: Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=6))


def save(model: nn.Module, example: dict, path: Path) -> Path:
    """Writes the pruned model as an ExportedProgram (.pt2): its layers no longer match the
    original factory, so a state dict would not load back into it, but a .pt2 is a SOURCE."""
    try:
        # Positional, in input order: the .pt2 loader calls the program's inputs by position.
        program = torch.export.export(copy.deepcopy(model).eval(), tuple(example.values()))
    except Exception as e:
        raise UserError(f"the pruned model cannot be saved as an ExportedProgram "
                        f"({first_line(e, 200)})") from None
    torch.export.save(program, str(path))
    return Path(path)



METHODS = {"channels": channels.apply, "magnitude": sparse.magnitude, "nm": sparse.n_of_m,
           "auto": auto.apply}
assert tuple(METHODS) == NAMES  # plan.py checks names without importing torch
