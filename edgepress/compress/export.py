"""export: write a loaded model as an ONNX or TFLite file (fp32), and say how.

ONNX goes through torch.onnx (the dynamo exporter, falling back to the TorchScript-based one for
modules torch.export cannot trace); TFLite goes through litert-torch. An ONNX source is checked,
its dynamic dimensions fixed to the declared shapes, and copied.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from edgepress.compress import compact, guard
from edgepress.options import Export
from edgepress.errors import UserError, choices, first_line
from edgepress.runtime.layout import to_nchw, to_nhwc

LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class ExportOptions:
    tflite_layout: str = Export.tflite_layout  # TFLite I/O layout (the option's default)
    opset: int = 18


@dataclass
class Exported:
    path: Path
    figures: dict = field(default_factory=dict)  # exporter, opset, layout, notes -> manifest


def write(loaded, fmt: str, out_dir: Path, opts: ExportOptions, sample: dict,
          n_outputs: int) -> Exported:
    """Writes `loaded` as `out_dir/model.<fmt>`, tracing with `sample` (name -> tensor)."""
    if fmt not in METHODS:
        raise choices("format", fmt, METHODS)
    if opts.tflite_layout not in LAYOUTS:
        raise choices("--tflite-layout", opts.tflite_layout, LAYOUTS)
    if loaded.model is None and fmt != "onnx":
        raise UserError(f"an ONNX source can only be bundled as onnx, not {fmt} (there is no "
                        f"torch model to convert)")
    return METHODS[fmt](loaded, out_dir / f"model.{fmt}", opts, sample, n_outputs)


def output_names(n: int) -> list[str]:
    # litert-torch names signature outputs output_0..; ONNX uses the same names so one set of
    # golden outputs serves every format.
    return [f"output_{i}" for i in range(n)]


def _onnx(loaded, path: Path, opts: ExportOptions, sample: dict, n_outputs: int) -> Exported:
    if loaded.onnx_path is not None:
        return _copy_onnx(loaded, path)
    names = dict(input_names=[s.name for s in loaded.inputs], output_names=output_names(n_outputs))
    try:
        with quiet():
            torch.onnx.export(loaded.model, (), str(path), kwargs=sample, dynamo=True,
                              opset_version=opts.opset, external_data=False, verbose=False,
                              **names)
        exporter = "torch.onnx (dynamo)"
    except Exception as first:
        # Some modules (data-dependent control flow, old custom ops) defeat torch.export; the
        # TorchScript-based exporter still handles many of them.
        try:
            with quiet():
                args = tuple(sample[s.name] for s in loaded.inputs)
                # On a copy: under torch.jit tracing some models rewrite their own attributes
                # (transformers' Swin sets window_size to a tensor when is_tracing()), which
                # then broke the TFLite export that follows ("data-dependent expression").
                torch.onnx.export(copy.deepcopy(loaded.model), args, str(path), dynamo=False,
                                  opset_version=17, **names)
        except Exception:
            raise first from None  # the dynamo exporter's error says more; guard records it
        exporter = "torch.onnx (TorchScript-based; the dynamo exporter failed)"
    stripped = _strip_debug_metadata(path)
    return Exported(path, {"exporter": exporter, "torch": torch.__version__,
                           "stripped_debug_metadata_bytes": stripped,
                           "opset": _opset(path)})


def _strip_debug_metadata(path: Path) -> int:
    """Removes the per-node debug metadata the dynamo exporter writes (module paths, class
    hierarchies, rewrite rules): on a small CNN it is ~20% of the file, which an edge artifact
    should not carry. Node names, the graph and the weights are untouched. Returns bytes saved."""
    import onnx

    before = path.stat().st_size
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(path))
    return before - path.stat().st_size


def _copy_onnx(loaded, path: Path) -> Exported:
    """Checks an ONNX source, fixes dynamic dims to the declared shapes, and writes it."""
    import onnx

    model = onnx.load(str(loaded.onnx_path))
    notes = _fix_dims(model, {s.name: s for s in loaded.inputs})
    if notes:
        model = onnx.shape_inference.infer_shapes(model)
        notes.append("ran ONNX shape inference")
    onnx.save(model, str(path))
    if notes and (refused := _refused(path)):
        # silero-vad: its If branches squeeze the time axis when it is 1, and onnxruntime's
        # load-time inference then gives the LSTM a rank-2 input in the branch not taken
        # ("First input tensor must have rank 3"). It loads with the source's dynamic dims.
        path.write_bytes(Path(loaded.onnx_path).read_bytes())
        notes = [f"kept the source's dynamic dims: with them fixed to the declared shapes "
                 f"{refused}"]
    return Exported(path, {"exporter": "copied from the ONNX source",
                           "opset": _opset(path), "normalisation": notes})


def _fix_dims(model, specs: dict) -> list[str]:
    """Sets the graph inputs' dynamic dims to the declared shapes; what was fixed."""
    notes = []
    for inp in model.graph.input:
        spec = specs.get(inp.name)
        dims = inp.type.tensor_type.shape.dim
        if spec is None or all(d.HasField("dim_value") for d in dims):
            continue
        for d, value in zip(dims, spec.shape):
            d.Clear()
            d.dim_value = value
        notes.append(f"fixed dynamic dims of {inp.name!r} to {list(spec.shape)}")
    return notes


def _refused(path: Path) -> str | None:
    """Why onnxruntime cannot load the file at `path`, or None when it can."""
    from edgepress.runtime.session import EngineError, Session

    try:
        Session(path)
    except EngineError as e:
        return f"{e.backend} cannot load it: {first_line(e.cause, None)}"
    return None


def _tflite(loaded, path: Path, opts: ExportOptions, sample: dict, n_outputs: int) -> Exported:
    with quiet():  # its import logs absl/oneDNN/torchao banners to stderr
        import litert_torch

    model, kwargs = loaded.model, dict(sample)
    if opts.tflite_layout == "nhwc":
        model = ChannelsLast(model)
        kwargs = {k: to_nhwc(v) for k, v in kwargs.items()}
    with quiet():  # a converter error reaches guard.build: this bundle fails, the run goes on
        litert_torch.convert(model.eval(), (), sample_kwargs=kwargs).export(str(path))
    return Exported(path, {"exporter": "litert-torch", "torch": torch.__version__,
                           "litert_torch": _version("litert-torch"),
                           "layout": opts.tflite_layout.upper(),
                           "compacted_bytes": compact.apply(path)})


class ChannelsLast(torch.nn.Module):
    """NHWC in and out around an NCHW module. litert-torch's to_channel_last_io does the same but
    only for positional inputs, which would lose our input names."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, **kwargs):
        out = self.inner(**{k: to_nchw(v) for k, v in kwargs.items()})
        return tuple(to_nhwc(o) for o in out) if isinstance(out, (tuple, list)) else to_nhwc(out)


@contextlib.contextmanager
def quiet():
    """Silences converters that print progress straight to fds 1 and 2 (litert-torch, the
    dynamo exporter). On failure, what they printed is attached to the exception's notes."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        except Exception as e:
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace")
            if hasattr(e, "add_note"):  # Python >= 3.11
                e.add_note(tail)
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


METHODS = {"onnx": _onnx, "tflite": _tflite}


# ---- the stage: one fp32 bundle per format ---------------------------------------------------

def apply(state, cfg: Export):
    """The stage: writes `<format>-fp32` under state.work for each [export] format, with the
    golden files (in the bundle's layout) and the source's extra files (tokenizer)."""
    for fmt in cfg.formats:
        where = state.work / f"{fmt}-fp32"
        bundle = guard.build(state, where, "export", lambda: _bundle(state, where, fmt, cfg))
        if bundle is not None:
            state.bundles.append(bundle)
    return state


def check(cfg: Export) -> Export:
    for fmt in cfg.formats:
        if fmt not in METHODS:
            raise choices("format", fmt, METHODS)
    if cfg.tflite_layout not in LAYOUTS:
        raise choices("--tflite-layout", cfg.tflite_layout, LAYOUTS)
    if cfg.out is None:
        raise UserError("no output folder: give --out DIR (or [export] out in the recipe)")
    return cfg


def _bundle(state, where: Path, fmt: str, cfg: Export):
    from edgepress.compress.state import Bundle
    from edgepress.runtime import artifact

    where.mkdir()
    sample = {k: torch.from_numpy(v[0, ...]) for k, v in state.golden_in.items()}
    exported = write(state.loaded, fmt, where, ExportOptions(cfg.tflite_layout), sample,
                     len(state.golden_out))
    nhwc = fmt == "tflite" and cfg.tflite_layout == "nhwc"
    golden = [{k: to_nhwc(v, lead=2) if nhwc else v for k, v in d.items()}
              for d in (state.golden_in, state.golden_out)]
    artifact.write_golden(where / artifact.GOLDEN, *golden)
    for rel, src in state.loaded.extra_files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(Path(src).read_bytes())
    inputs, outputs = _io(state.loaded, exported.path, "NHWC" if nhwc else "NCHW")
    bundle = Bundle(fmt, "fp32", where, exported.path, inputs, outputs,
                    stages={"export": exported.figures})
    if state.pruned is not None:  # prune's figures about this file (its gzip size)
        bundle.stages["prune"] = state.pruned.artifact_figures(exported.path)
    return bundle


def _io(loaded, model_file: Path, layout: str) -> tuple[list, list]:
    """The model file's inputs and outputs as manifest entries."""
    from edgepress.runtime import artifact
    from edgepress.runtime.session import Session

    session = Session(model_file)
    # LiteRT lists signature inputs alphabetically; the manifest keeps the model's own order.
    order = {s.name: i for i, s in enumerate(loaded.inputs)}
    inputs = sorted(session.inputs, key=lambda s: order.get(s.name, len(order)))
    # Dims an ONNX source keeps dynamic (_copy_onnx) are recorded as declared: the shapes the
    # golden samples and every reader of the manifest (calibration checks, bench) work with.
    declared = {s.name: s.shape for s in loaded.inputs if s.shape is not None}
    inputs = [replace(s, shape=declared[s.name]) if s.dynamic_dims and s.name in declared
              else s for s in inputs]
    return ([artifact.spec_record(s, layout) for s in inputs],
            [artifact.spec_record(s, layout) for s in session.outputs])
