"""One `Session` over the inference engines: onnxruntime for .onnx, LiteRT for .tflite.

`run(dict name -> ndarray) -> dict name -> ndarray`, float in and out for every artifact: a fully
int8 TFLite model is quantized/dequantized at its boundary with the tensors' scale and zero point
unless `raw_io=True`. Threads are always explicit. Never imports torch.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime.artifact import TensorSpec, format_of

# LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to stderr on every load;
# with it, a user mistake was no longer one line (tests/bad_inputs). Read when the library
# loads, so set before any engine import; warnings and errors still print.
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
        # skipped by calling its compiled session, where this onnxruntime has one.
        self._compiled = getattr(self.sess, "_sess", None)

    def run(self, feeds: dict) -> dict:
        if self._compiled is not None:
            return dict(zip(self._out_names, self._compiled.run(self._out_names, feeds, None)))
        return dict(zip(self._out_names, self.sess.run(self._out_names, feeds)))


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


class Session:
    """A loaded model ready to run. Inputs are checked (names, shapes, dtypes) on every call."""

    def __init__(self, model_path, threads: int = 1, backend: str | None = None,
                 options: dict | None = None, raw_io: bool = False):
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"model file {str(path)!r} does not exist")
        if not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads {threads!r} must be a whole number >= 1")
        self.format = format_of(path)
        self.backend = pick_backend(self.format, backend)
        self.options = _check_options(self.backend, options or {})
        self.threads = threads
        self.raw_io = raw_io
        self.path = path
        try:
            self._engine = BACKENDS[self.backend](path, threads, self.options)
        except Exception as e:  # engines raise assorted types for corrupt files
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserError(f"{str(path)!r} cannot be loaded by {self.backend}: {first}") from None
        self.version = self._engine.version
        self._quant_in = self._boundary_params(getattr(self._engine, "_in", None), 3)
        self._quant_out = self._boundary_params(getattr(self._engine, "_out", None), 2)
        self.inputs = [self._logical(s, self._quant_in) for s in self._engine.inputs]
        self.outputs = [self._logical(s, self._quant_out) for s in self._engine.outputs]
        self._expect = {s.name: s for s in self._engine.inputs}
        self._fast = self._fast_specs()
        self._engine_run = self._engine.run  # bound once: run() is on the hot path

    @property
    def engine(self):
        """The backend object (for inspect, which reads LiteRT's interpreter details)."""
        return self._engine

    def _fast_specs(self):
        # (name, shape, dtype) per input when every input has a fixed shape and needs no
        # quantization: then a call with exactly those arrays can skip the general checks.
        specs = list(self._expect.values())
        if self._quant_in or any(s.dynamic_dims for s in specs):
            return None
        return [(s.name, tuple(s.shape), np.dtype(s.dtype)) for s in specs]

    def _boundary_params(self, io, qpos) -> dict:
        # name -> (scale, zero_point, integer dtype) for quantized float-boundary conversion.
        if self.raw_io or not io:
            return {}
        specs = {s.name: s for s in self._engine.inputs + self._engine.outputs}
        return {t[0]: (*t[qpos], specs[t[0]].dtype) for t in io
                if t[qpos] is not None and specs[t[0]].dtype in ("int8", "uint8", "int16")}

    @staticmethod
    def _logical(spec: TensorSpec, quant: dict) -> TensorSpec:
        return TensorSpec(spec.name, spec.shape, "float32") if spec.name in quant else spec

    def run(self, feeds: dict) -> dict:
        """Runs one inference. `feeds` maps every input name to an array of its declared shape."""
        if not self._matches(feeds):
            feeds = self._checked(feeds)
        try:
            outs = self._engine_run(feeds)
        except Exception as e:  # inputs are checked, so the model file is at fault (tests/fuzz)
            raise self._engine_failed(e) from None
        if self._quant_out:
            for name, (scale, zero, _dt) in self._quant_out.items():
                outs[name] = (outs[name].astype(np.float32) - zero) * np.float32(scale)
        return outs

    def _engine_failed(self, e: Exception) -> UserError:
        # A file that loads can still fail at invoke (LiteRT: "Input tensor 1 lacks data",
        # onnxruntime: a kernel refusing a shape the graph declares): one line naming the file.
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        return UserError(f"{str(self.path)!r} cannot be run by {self.backend}: {first}")

    def _matches(self, feeds: dict) -> bool:
        """The fast path (benchmarks/overhead.py holds it to <= 3% over the bare engine): exactly
        the model's inputs as ndarrays of the declared shape and dtype. Anything else takes
        `_checked`, which converts what it can and explains what it cannot."""
        fast = self._fast
        if fast is None or len(feeds) != len(fast):
            return False
        for name, shape, dtype in fast:
            arr = feeds.get(name)
            # `is` first: builtin dtypes are singletons, and == on dtypes is comparatively slow
            if type(arr) is not np.ndarray or arr.shape != shape or \
                    (arr.dtype is not dtype and arr.dtype != dtype):
                return False
        return True

    def _checked(self, feeds: dict) -> dict:
        prepared = {name: self._prepare(name, feeds) for name in self._expect}
        extra = set(feeds) - set(self._expect)
        if extra:
            raise UserError(f"unknown input {sorted(extra)[0]!r}; the model's inputs are: "
                            f"{', '.join(self._expect)}")
        return prepared

    def _prepare(self, name: str, feeds: dict) -> np.ndarray:
        if name not in feeds:
            raise UserError(f"missing input {name!r}; the model's inputs are: "
                            f"{', '.join(self._expect)}")
        spec, arr = self._expect[name], np.asarray(feeds[name])
        _check_shape(spec, arr)
        if name in self._quant_in:
            scale, zero, dtype = self._quant_in[name]
            info = np.iinfo(dtype)
            q = np.round(arr.astype(np.float32) / np.float32(scale)) + zero
            return np.clip(q, info.min, info.max).astype(dtype)
        return _cast(spec, arr)


def _check_shape(spec: TensorSpec, arr: np.ndarray) -> None:
    ok = len(arr.shape) == len(spec.shape) and all(
        not isinstance(d, int) or d < 0 or d == a for d, a in zip(spec.shape, arr.shape))
    if not ok:
        raise UserError(f"input {spec.name!r} has shape {list(arr.shape)}; the model expects "
                        f"{list(spec.shape)}")


def _cast(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return arr
    # Integer ids may arrive as int64 for a model that takes int32 (LiteRT narrows torch's
    # int64): cast when every value fits. Floats are never silently converted.
    if arr.dtype.kind in "iu" and want.kind in "iu":
        info = np.iinfo(want)
        if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
            return arr.astype(want)
    raise UserError(f"input {spec.name!r} has dtype {arr.dtype.name}; the model expects "
                    f"{want.name}")


def _check_options(backend: str, options: dict) -> dict:
    valid = OPTIONS[backend]
    for key, value in options.items():
        if key not in valid:
            raise UserError(f"engine option {key!r} is not one of: {', '.join(valid)} "
                            f"(for {backend})")
        if value not in valid[key]:
            raise UserError(f"engine option {key}={value!r} is not one of: "
                            f"{', '.join(map(str, valid[key]))}")
    return dict(options)
