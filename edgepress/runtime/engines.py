"""The inference engines behind Session, one class each (BACKENDS): onnxruntime for .onnx,
LiteRT (tflite-runtime as the fallback on 32-bit Arm) for .tflite, and the engine options a
user may set. Never imports torch."""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime import enginelog
from edgepress.runtime.artifact import TensorSpec

# LiteRT's TensorFlow-style logger (absl/TF_CPP) stays at warnings and above; read when the
# library loads, so set before any engine import. Its other logger, which prints "INFO: Created
# TensorFlow Lite XNNPACK delegate for CPU." on every load, ignores this: see enginelog.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# Engine options a user may set (recorded in bench reports). Anything else is an error.
# The first choice of each is what the engine does when the option is not given: reports
# record it as the value in force (report.effective_options).
OPTIONS = {
    "onnxruntime": {"graph_optimization": ("all", "extended", "basic", "disabled"),
                    "execution_mode": ("sequential", "parallel"),
                    "cpu_arena": (True, False)},
    "litert": {"xnnpack": (True, False)},
}
OPTIONS["tflite-runtime"] = OPTIONS["litert"]


class _OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int, options: dict):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[options.get("graph_optimization", "all")]
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL
                             if options.get("execution_mode") == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
        so.enable_cpu_mem_arena = bool(options.get("cpu_arena", True))
        # Fatal only: warnings about unused initializers are noise, and every error also comes
        # back as the exception we turn into one line; at level 3 a corrupt model printed
        # onnxruntime's own multi-line log to stderr before edgepress's message (tests/bad_inputs).
        so.log_severity_level = 4
        self.version = ort.__version__
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inputs = [_ort_spec(a) for a in self.sess.get_inputs()]
        self.outputs = [_ort_spec(a) for a in self.sess.get_outputs()]
        self._out_names = [o.name for o in self.outputs]
        # Session checks names, shapes and dtypes before every call, so InferenceSession.run's
        # Python-level re-check (~1.5 us, 3-4% of a small CNN; benchmarks/overhead.py) is
        # skipped by calling its compiled session, where this onnxruntime has one. `_sess` is
        # private: its run(names, feeds, options) may change in any release, so the first call
        # is checked and any failure of it hands over to the public run (see run below).
        self._compiled = getattr(self.sess, "_sess", None)
        self._compiled_ok = False

    def run(self, feeds: dict) -> dict:
        if self._compiled is not None:
            try:
                outs = self._compiled.run(self._out_names, feeds, None)
                if self._compiled_ok or self._compiled_works(outs):
                    return dict(zip(self._out_names, outs))
            except Exception:  # noqa: BLE001 - the public run below decides what is wrong
                pass
            # A changed private API (or a model that fails): from now on the public path alone,
            # so an error the user sees is the model's, never our call's.
            self._compiled = None
        return dict(zip(self._out_names, self.sess.run(self._out_names, feeds)))

    def _compiled_works(self, outs) -> bool:
        self._compiled_ok = isinstance(outs, list) and len(outs) == len(self._out_names) and \
            all(isinstance(o, np.ndarray) for o in outs)
        return self._compiled_ok


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
               "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def _ort_spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))


class _LiteRT:
    """The TFLite interpreter from ai-edge-litert (or tflite-runtime: the same API).

    The interpreter is not thread-safe (its tensors are shared state): calls on one instance are
    serialised by a lock, so a Session can be shared by threads. onnxruntime's run() is
    thread-safe and needs none.
    """

    name = "litert"
    module = "ai_edge_litert.interpreter"

    def __init__(self, path: Path, threads: int, options: dict):
        mod = importlib.import_module(self.module)
        kwargs = {"model_path": str(path), "num_threads": threads}
        if not options.get("xnnpack", True):
            kwargs["experimental_op_resolver_type"] = \
                mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.version = _package_version(self.module.split(".")[0])
        with enginelog.filtered():  # its INFO lines, at creation and when delegates apply
            self.it = mod.Interpreter(**kwargs)  # verifies the flatbuffer's structure
            _check_written_tensors(path)
            self.it.allocate_tensors()
        self._lock = threading.Lock()
        ins, outs = self._io_details()
        self._in = [(n, d["index"], d["dtype"], _qparams(d)) for n, d in ins.items()]
        self._out = [(n, d["index"], _qparams(d)) for n, d in outs.items()]
        self.inputs = [_tfl_spec(n, d) for n, d in ins.items()]
        self.outputs = [_tfl_spec(n, d) for n, d in outs.items()]

    def _io_details(self):
        # Signature names are the ones we exported (our input names); tensor names carry a
        # "serving_default_" prefix, so prefer the signature when the model has one.
        if self.it.get_signature_list():
            runner = self.it.get_signature_runner()
            return runner.get_input_details(), runner.get_output_details()
        return ({d["name"]: d for d in self.it.get_input_details()},
                {d["name"]: d for d in self.it.get_output_details()})

    def run(self, feeds: dict) -> dict:
        it = self.it
        with self._lock:
            for name, index, _dtype, _q in self._in:
                it.set_tensor(index, feeds[name])
            it.invoke()
            return {name: it.get_tensor(index) for name, index, _q in self._out}


def _check_written_tensors(path: Path) -> None:
    """LiteRT writes op outputs and subgraph inputs in place, and does not check that they are
    not constants: a damaged file whose activation points at a weight buffer makes invoke write
    into the read-only mapped model and segfault (found by tests/fuzz). Refuse such a file.
    Needs the schema LiteRT ships; tflite-runtime has none, and there the check is skipped."""
    import mmap

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        model = schema.Model.GetRootAs(buf, 0)
        for g in (model.Subgraphs(i) for i in range(model.SubgraphsLength())):
            written = set(g.InputsAsNumpy().tolist() if g.InputsLength() else ())
            for op in (g.Operators(j) for j in range(g.OperatorsLength())):
                written.update(op.OutputsAsNumpy().tolist() if op.OutputsLength() else ())
            for t in sorted(i for i in written if 0 <= i < g.TensorsLength()):
                tensor = g.Tensors(t)
                b = tensor.Buffer()
                if 0 < b < model.BuffersLength() and not tensor.IsVariable() and (
                        model.Buffers(b).DataLength() or model.Buffers(b).Size()):
                    raise ValueError(f"tensor {t} ({tensor.Name().decode(errors='replace')}) is "
                                     f"computed by the model but also holds constant data")


class _TfliteRuntime(_LiteRT):
    """The fallback on devices where only tflite-runtime (2.14, numpy<2) exists, e.g. 32-bit Arm."""

    name = "tflite-runtime"
    module = "tflite_runtime.interpreter"


def _qparams(detail) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


def _tfl_spec(name: str, d: dict) -> TensorSpec:
    sig = d.get("shape_signature", d["shape"])
    shape = tuple(int(s) if s >= 0 else "?" for s in sig)
    return TensorSpec(name, shape, np.dtype(d["dtype"]).name)


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"


BACKENDS = {"onnxruntime": _OnnxRuntime, "litert": _LiteRT, "tflite-runtime": _TfliteRuntime}
_ENGINES_FOR = {"onnx": ("onnxruntime",), "tflite": ("litert", "tflite-runtime")}
_IMPORTS = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert.interpreter",
            "tflite-runtime": "tflite_runtime.interpreter"}
_EXTRAS = {"onnx": "edgepress[onnx]", "tflite": "edgepress[tflite]"}


def module_of(name: str) -> str:
    """The module an engine is imported from (which names the library that failed)."""
    return _IMPORTS[name]


def import_engine(name: str) -> None:
    """Imports an engine's library, so a timing or memory baseline taken after it excludes it."""
    importlib.import_module(_IMPORTS[name])


def pick_backend(fmt: str, backend: str | None = None) -> str:
    """The engine for a format: the one asked for, else the first installed."""
    if backend is not None:
        if backend not in _ENGINES_FOR[fmt]:
            raise UserError(f"engine {backend!r} cannot run {fmt} models; valid: "
                            f"{', '.join(_ENGINES_FOR[fmt])}")
        return backend
    for name in _ENGINES_FOR[fmt]:
        if importlib.util.find_spec(_IMPORTS[name].split(".")[0]) is not None:
            return name
    raise UserError(f"no engine for {fmt} models is installed: pip install '{_EXTRAS[fmt]}'")
