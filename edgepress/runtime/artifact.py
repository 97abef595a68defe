"""The artifact bundle: model file + manifest.json + golden.npz, verifiable without torch.

A bundle is a directory (docs/architecture.md): `model.onnx` or `model.tflite`, a manifest saying what it
is and how it was made, and golden inputs with the fp32 reference outputs captured at export.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import tokenize
import zipfile
import zlib
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime import schema as _schema

SCHEMA_VERSION = "1.1"  # 1.1: failed_bundles at verify/summary, library_warnings
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
MODEL_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}
FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. `shape` holds ints, or strings for dynamic dimensions."""

    name: str
    shape: tuple
    dtype: str  # a numpy dtype name: float32, int64, int8...
    layout: str | None = None  # NCHW / NHWC for image tensors, when known

    @property
    def dynamic_dims(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0]

    def describe(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}=[{dims}]:{self.dtype}"

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d["dtype"], d.get("layout"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def format_of(path: Path) -> str:
    """'onnx' or 'tflite' from a model file's suffix, or a clear error."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"model file {str(path)!r}: unknown suffix {Path(path).suffix!r}; "
                        f"valid: {', '.join(FORMATS)}")
    return fmt


@dataclass(frozen=True)
class Bundle:
    """A bundle directory opened for reading; `manifest` is the parsed manifest.json."""

    path: Path
    manifest: dict

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model_file"]

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["outputs"]]

    def golden(self) -> tuple[dict, dict]:
        """(inputs, outputs): name -> array of shape (samples, *tensor shape)."""
        return read_golden(self.path / GOLDEN)


def open_bundle(path) -> Bundle:
    """Opens and checks a bundle: manifest readable and current, model file present and intact."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"bundle {str(path)!r} is not a directory (expected one written by "
                        f"`edgepress compress`)")
    manifest = _read_manifest(path / MANIFEST)
    model = path / manifest["model_file"]
    if Path(manifest["model_file"]).name != manifest["model_file"] or not model.is_file():
        raise UserError(f"bundle {str(path)!r}: model file {manifest['model_file']!r} is missing")
    if sha256_file(model) != manifest["model_sha256"]:
        raise UserError(f"bundle {str(path)!r}: {model.name} does not match the sha256 in its "
                        f"manifest (corrupt or modified)")
    return Bundle(path, manifest)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"bundle {str(path.parent)!r} has no {MANIFEST}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{str(path)!r}: expected a JSON object")
    spec = _schema.load("manifest")
    missing = [k for k in spec["required"] if k not in manifest]
    if missing:
        raise UserError(f"{str(path)!r}: missing fields {', '.join(missing)}")
    major = str(manifest["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise UserError(f"{str(path)!r}: schema_version {manifest['schema_version']!r} is not "
                        f"supported (this edgepress reads {SCHEMA_VERSION.split('.')[0]}.x)")
    # Types and values before use: a hand-edited manifest with "format": [] or "model_file":
    # null otherwise failed deep inside a reader (found by tests/fuzz), and a precision of
    # "FP32" silently got int8's loose verify thresholds.
    problem = _schema.check(manifest, spec)
    if problem:
        raise UserError(f"{str(path)!r}: {problem}")
    return manifest


def write_golden(path: Path, inputs: dict, outputs: dict) -> None:
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    arrays.update({f"output.{k}": v for k, v in outputs.items()})
    np.savez(path, **arrays)


def read_golden(path: Path) -> tuple[dict, dict]:
    """Reads golden.npz without ever unpickling (allow_pickle=False)."""
    try:
        arrays = read_npz(path, "")
    except FileNotFoundError:
        raise UserError(f"bundle {str(path.parent)!r} has no {GOLDEN}") from None
    ins = {k[6:]: v for k, v in arrays.items() if k.startswith("input.")}
    outs = {k[7:]: v for k, v in arrays.items() if k.startswith("output.")}
    counts = {v.shape[0] if v.ndim else 0 for v in arrays.values()}
    if not ins or not outs or len(counts) != 1 or 0 in counts:
        raise UserError(f"{str(path)!r} is not a golden file: expected input.NAME and "
                        f"output.NAME arrays with the same number (>= 1) of samples, got "
                        f"{ {k: list(v.shape) for k, v in arrays.items()} }")
    return ins, outs


def _check_npy_sizes(path: Path, what: str) -> None:
    """Refuses an array whose .npy header declares more data than its member holds: numpy
    allocates the declared size before reading, so a 3 KB file could ask for 20 GiB."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read(f)
                need, holds = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
            if need > holds:
                raise UserError(f"{what + ' ' if what else ''}{str(path)!r}: array "
                                f"{info.filename!r} declares {list(shape)} {dtype} ({need:,} "
                                f"bytes) but holds {holds:,} bytes (truncated or damaged)")


# What np.load raises on a damaged .npz (found by tests/fuzz): zip and deflate errors, and the
# .npy header, which numpy parses as Python literal text (SyntaxError, TokenError).
_NPZ_ERRORS = (ValueError, OSError, zipfile.BadZipFile, EOFError, SyntaxError,
               tokenize.TokenError, zlib.error, NotImplementedError, RuntimeError)


def read_npz(path: Path, what: str) -> dict:
    """Every array of an .npz, never unpickling: a damaged file is one UserError (`what` names
    it: e.g. "--inputs"); FileNotFoundError is left to the caller, who knows what was missing."""
    try:
        _check_npy_sizes(path, what)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except _NPZ_ERRORS as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{what + ' ' if what else ''}{str(path)!r} is not a readable .npz file "
                        f"({first})") from None
    # np.load hands back raw bytes for a member that is not an .npy array
    raw = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if raw:
        raise UserError(f"{what + ' ' if what else ''}{str(path)!r}: member {raw[0]!r} is not an "
                        f".npy array")
    return arrays


def manifest(fmt: str, precision: str, model_file: Path, inputs: list, outputs: list,
             **record) -> dict:
    """A bundle's manifest, written once from what the stages recorded. `record` holds source,
    recipe, stages, preprocessing, golden and, for quantized bundles, calibration, fidelity and
    warnings, in that order."""
    return {"schema_version": SCHEMA_VERSION, "format": fmt, "precision": precision,
            "model_file": model_file.name, "model_sha256": sha256_file(model_file),
            "model_size_bytes": model_file.stat().st_size, "source": record.pop("source"),
            "recipe": record.pop("recipe"), "stages": record.pop("stages"),
            "inputs": inputs, "outputs": outputs, "preprocessing": record.pop("preprocessing"),
            "golden": record.pop("golden"), "tools": tool_versions(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}


def spec_record(spec: TensorSpec, layout: str) -> dict:
    """A manifest inputs/outputs entry; `layout` applies to 4-D float tensors only."""
    d = asdict(spec)
    d["shape"] = list(spec.shape)
    d["layout"] = layout if len(spec.shape) == 4 and spec.dtype.startswith("float") else None
    return d


def tool_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("edgepress", "numpy", "torch", "onnx", "onnxruntime", "litert-torch",
                 "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, TensorSpec):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
