"""One `Session` over the inference engines: onnxruntime for .onnx, LiteRT for .tflite.

`run(dict name -> ndarray) -> dict name -> ndarray`, float in and out for every artifact: a fully
int8 TFLite model is quantized/dequantized at its boundary with the tensors' scale and zero point
unless `raw_io=True`. Threads are always explicit. Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepress.errors import UserError, first_line
from edgepress.runtime.artifact import TensorSpec, format_of
from edgepress.runtime.engines import BACKENDS, OPTIONS, import_engine, pick_backend

__all__ = ["BACKENDS", "OPTIONS", "EngineError", "Session", "import_engine", "pick_backend"]


class EngineError(UserError):
    """An engine refusing to load or run a model file. Given a file, that is the file's fault
    (exit 2, as any UserError); for a bundle `compress` built itself it is the engine's limit,
    which compress/guard records for that bundle alone."""

    def __init__(self, path: Path, backend: str, action: str, cause: Exception):
        done = {"load": "loaded", "run": "run"}[action]
        super().__init__(f"{str(path)!r} cannot be {done} by {backend}: {first_line(cause, 200)}")
        self.backend, self.action, self.cause = backend, action, cause  # action: load / run


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
            raise EngineError(path, self.backend, "load", e) from None
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

    def _engine_failed(self, e: Exception) -> EngineError:
        # A file that loads can still fail at invoke (LiteRT: "Input tensor 1 lacks data",
        # onnxruntime: a kernel refusing a shape the graph declares): one line naming the file.
        return EngineError(self.path, self.backend, "run", e)

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
