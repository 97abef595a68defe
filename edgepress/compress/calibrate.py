"""calibrate: the data behind --calib and --eval, streamed one sample at a time.

DATA is one of: an `.npz` of arrays named as the model's inputs (leading axis = samples, plus an
optional `labels`), a folder of images with declared preprocessing, `module:function` returning an
iterable of input dicts (a `labels` key is taken as the label), or the word `random` (explicit
only; it calibrates on noise and says so). A `Dataset` can be iterated several times (calibration,
then evaluation at every step of the accuracy-aware search); nothing holds the whole set in memory:
.npz rows are read straight from the zip member, images are decoded one by one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import tokenize
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepress.runtime import shapes
from edgepress.errors import ARCHIVE_ERRORS, UserError, choices

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")
LAYOUTS = ("nchw", "nhwc")
RANDOM_WARNING = ("calibrated on random noise (--calib random): int8 ranges do not reflect real "
                  "inputs, so accuracy on real data is unknown")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes an input tensor: pixels/255, resize, (x - mean) / std, layout."""

    resize: tuple | None = None  # (H, W); None: the model input's own H, W
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    layout: str = "nchw"

    def describe(self, hw) -> dict:
        return {"pixels": "RGB or L by channel count, scaled to [0, 1]",
                "resize": list(self.resize or hw), "resample": "bilinear",
                "mean": list(self.mean), "std": list(self.std), "layout": self.layout.upper()}


@dataclass
class Dataset:
    """A re-iterable stream of samples (name -> array shaped like the input spec) and labels."""

    kind: str
    source: str
    specs: list
    limit: int | None
    _reader: object  # callable() -> iterator of (sample dict, label or None)
    preprocessing: dict | None = None
    warning: str | None = None
    _record: dict = field(default_factory=dict)

    def samples(self) -> Iterator[dict]:
        for sample, _label in self.labelled():
            yield sample

    def labelled(self) -> Iterator[tuple]:
        """(sample, label or None) pairs, checked; hashes what it yields on a full pass."""
        digest, n = hashlib.sha256(), 0
        for sample, label in self._reader():
            if self.limit is not None and n >= self.limit:
                break
            checked = _check_sample(sample, self.specs, self.source, n)
            for spec in self.specs:
                digest.update(np.ascontiguousarray(checked[spec.name]).tobytes())
            n += 1
            yield checked, label
        if n == 0:
            raise UserError(f"data {self.source!r} holds no samples")
        self._record = {"samples": n, "sha256": digest.hexdigest()}

    def first(self, n: int) -> dict:
        """The first `n` samples stacked: name -> (n, *shape), for golden files."""
        taken = []
        for sample in self.samples():
            taken.append(sample)
            if len(taken) == n:
                break
        return {s.name: np.stack([t[s.name] for t in taken]) for s in self.specs}

    def record(self) -> dict:
        """What the manifest says about this data (complete after one full pass)."""
        if not self._record:
            for _ in self.labelled():
                pass
        out = {"kind": self.kind, "source": self.source, **self._record,
               "sha256_of": "the input arrays as fed to the model, in order (raw bytes)"}
        if self.preprocessing:
            out["preprocessing"] = self.preprocessing
        if self.warning:
            out["warning"] = self.warning
        return out


def open_data(source: str, specs, limit: int | None = None, pre: Preprocess | None = None,
              seed: int = 0, int_high: dict | None = None) -> Dataset:
    """A Dataset over SOURCE for a model with input `specs`."""
    if limit is not None and limit < 1:
        raise UserError(f"sample limit {limit}: must be >= 1")
    if source == "random":
        n = limit or 32
        reader = (lambda: ((s, None) for s in _random(specs, n, seed, int_high)))
        return Dataset("random", source, specs, n, reader, warning=RANDOM_WARNING)
    path = Path(source)
    if path.suffix.lower() == ".npz":
        return Dataset("npz", source, specs, limit, _npz_reader(path, specs))
    if path.is_dir():
        pre = pre or Preprocess()
        reader, described = _image_reader(path, specs, pre)
        return Dataset("images", source, specs, limit, reader, preprocessing=described)
    if ":" in source and not path.exists():
        return Dataset("function", source, specs, limit, _function_reader(source))
    raise UserError(f"data {source!r}: expected an .npz file, a folder of images, "
                    f"module:function, or 'random'")


def apply(state, cfg):
    """The data step before export: [data] calib and eval opened for quantization and the
    summary, checked in full (every sample read and hashed) before any bundle is made."""
    quantizing = bool(state.recipe.quantize.precisions)
    seed = state.recipe.verify.seed
    if quantizing and cfg.calib:
        state.calib = open_option(cfg.calib, state.loaded, cfg, cfg.calib_samples, seed)
    if cfg.eval:
        state.held_out = open_option(cfg.eval, state.loaded, cfg)
    for data in (state.calib, state.held_out) if quantizing else ():
        if data is not None:
            data.record()  # one full pass: every sample checked and hashed up front
    return state


def open_option(source: str, loaded, cfg, limit: int | None = None, seed: int = 0) -> Dataset:
    """A Dataset over a DATA option (--calib, --eval, --train, --val) for the loaded model, with
    the [data] table's image preprocessing."""
    return open_data(source, loaded.inputs, limit, preprocess(cfg), seed, loaded.int_high)


def preprocess(cfg) -> Preprocess:
    """The [data] table's image options as a Preprocess, checked."""
    size = cfg.image_size
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise UserError(f"--image-size {list(size)}: expected H,W e.g. 224,224")
    return Preprocess(size, tuple(cfg.image_mean), tuple(cfg.image_std), cfg.image_layout)


def _random(specs, n, seed, int_high):
    arrays = shapes.random_inputs(specs, n, seed, int_high)
    for i in range(n):
        yield {k: v[i] for k, v in arrays.items()}


# ---- checks ---------------------------------------------------------------------------------

def _check_sample(sample, specs, source: str, index: int) -> dict:
    if not isinstance(sample, dict):
        raise UserError(f"data {source!r}: sample {index} is a {type(sample).__name__}, expected "
                        f"a dict of input name -> array")
    names = [s.name for s in specs]
    missing = [n for n in names if n not in sample]
    unknown = [k for k in sample if k not in names]
    if missing or unknown:
        bad = f"missing {missing}" if missing else f"unknown {unknown}"
        raise UserError(f"data {source!r}: sample {index} has {bad} inputs; the model's inputs "
                        f"are: {', '.join(names)}")
    return {s.name: _check_array(s, np.asarray(sample[s.name]), source, index) for s in specs}


def _check_array(spec, arr, source: str, index: int) -> np.ndarray:
    if tuple(arr.shape) == tuple(spec.shape[1:]) and spec.shape[:1] == (1,):
        arr = arr[None]  # a sample without the batch axis of a batch-1 model
    if tuple(arr.shape) != tuple(spec.shape):
        raise UserError(f"data {source!r}: input {spec.name!r} of sample {index} has shape "
                        f"{list(arr.shape)}; the model expects {list(spec.shape)}")
    want = np.dtype(spec.dtype)
    if want.kind == "f":
        if arr.dtype.kind not in "fiu":
            raise UserError(f"data {source!r}: input {spec.name!r} has dtype {arr.dtype.name}; "
                            f"expected numbers ({want.name})")
        arr = arr.astype(want, copy=False)
        if not np.all(np.isfinite(arr)):
            raise UserError(f"data {source!r}: input {spec.name!r} of sample {index} holds "
                            f"NaN or inf values")
    elif arr.dtype.kind not in "iub":
        raise UserError(f"data {source!r}: input {spec.name!r} has dtype {arr.dtype.name}; "
                        f"expected integers ({want.name})")
    else:
        arr = arr.astype(want, copy=False)
    return arr


# ---- .npz -----------------------------------------------------------------------------------

def _npz_reader(path: Path, specs):
    if not path.is_file():
        raise UserError(f"data file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            members = {Path(n).stem: n for n in z.namelist() if n.endswith(".npy")}
    except ARCHIVE_ERRORS as e:
        raise UserError(f"data {str(path)!r} is not a readable .npz file ({e})") from None
    names = [s.name for s in specs]
    missing = [n for n in names if n not in members]
    if missing:
        raise UserError(f"data {str(path)!r} has no array named {missing[0]!r}; it has "
                        f"{sorted(members) or 'none'}; the model's inputs are: {', '.join(names)}")
    counts = {n: _npy_rows(path, members[n])[0] for n in names + (["labels"] if "labels" in members
                                                                   else [])}
    if len(set(counts.values())) > 1:
        raise UserError(f"data {str(path)!r}: arrays have different sample counts {counts}")

    def read():
        streams = {n: _iter_rows(path, members[n]) for n in names}
        labels = _iter_rows(path, members["labels"]) if "labels" in members else None
        for i in range(next(iter(counts.values()))):
            label = next(labels) if labels is not None else None
            yield {n: next(streams[n]) for n in names}, label
    return read


def _npy_rows(path: Path, member: str):
    """(rows, row shape, dtype) from an .npy header inside the zip, without reading the data."""
    try:
        with zipfile.ZipFile(path) as z, z.open(member) as f:
            return _npy_header(f, path, member)
    except ARCHIVE_ERRORS as e:
        raise UserError(f"data {str(path)!r}: array {member!r} cannot be read ({e})") from None


def _npy_header(f, path, member):
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
    except (ValueError, SyntaxError, tokenize.TokenError) as e:  # numpy parses the header text
        raise UserError(f"data {str(path)!r}: array {member!r} is not a valid .npy ({e})") \
            from None
    if dtype.hasobject or fortran or not shape:
        raise UserError(f"data {str(path)!r}: array {member!r} must be a C-ordered numeric "
                        f"array with a leading sample axis (object arrays are refused: "
                        f"unpickling could execute code)")
    return shape[0], tuple(shape[1:]), dtype


def _iter_rows(path: Path, member: str):
    """One row (sample) at a time straight from the zip member: memory stays one row."""
    try:
        with zipfile.ZipFile(path) as z, z.open(member) as f:
            rows, row_shape, dtype = _npy_header(f, path, member)
            size = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
            for i in range(rows):
                row = f.read(size)
                if len(row) != size:
                    raise UserError(f"data {str(path)!r}: array {member!r} ends after {i} of "
                                    f"the {rows} samples its header declares (truncated)")
                # bytearray: a writable row (torch.from_numpy warns on read-only memory)
                yield np.frombuffer(bytearray(row), dtype=dtype).reshape(row_shape)
    except ARCHIVE_ERRORS as e:
        raise UserError(f"data {str(path)!r}: array {member!r} cannot be read ({e})") from None


# ---- image folder ---------------------------------------------------------------------------

def _image_reader(folder: Path, specs, pre: Preprocess):
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise UserError(f"an image folder ({str(folder)!r}) feeds a model with one 4-D image "
                        f"input; this model's inputs are: {', '.join(s.describe() for s in specs)}")
    if pre.layout not in LAYOUTS:
        raise choices("image layout", pre.layout, LAYOUTS)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"image folder {str(folder)!r} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    spec = specs[0]
    _, c, h, w = spec.shape if pre.layout == "nchw" else (spec.shape[0], spec.shape[3],
                                                          *spec.shape[1:3])
    if c not in (1, 3):
        raise UserError(f"image input {spec.name!r} {list(spec.shape)} ({pre.layout.upper()}) has "
                        f"{c} channels; images give 1 (grayscale) or 3 (RGB)")
    for what, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) not in (1, c):
            raise UserError(f"image {what} {list(values)}: give 1 or {c} values")
    if any(v == 0 for v in pre.std):
        raise UserError(f"image std {list(pre.std)}: values must be non-zero")

    def read():
        for p in files:
            yield {spec.name: _load_image(p, c, pre.resize or (h, w), pre)}, None
    return read, pre.describe((h, w))


def _load_image(path: Path, channels: int, hw, pre: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((hw[1], hw[0]),
                                                                     Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"image {str(path)!r} cannot be read ({type(e).__name__}: {e})") from None
    x = x.reshape(hw[0], hw[1], channels)  # (H, W, C)
    x = (x - np.float32(pre.mean)) / np.float32(pre.std)
    return (x.transpose(2, 0, 1) if pre.layout == "nchw" else x)[None].astype(np.float32)


# ---- module:function ------------------------------------------------------------------------

def _function_reader(source: str):
    fn = _resolve(source)

    def read():
        try:
            items = fn()
        except Exception as e:  # noqa: BLE001 - user code: report it as the user's mistake
            raise UserError(f"data function {source!r} raised {type(e).__name__}: {e}") from None
        try:
            iterator = iter(items)
        except TypeError:
            raise UserError(f"data function {source!r} must return an iterable of input dicts, "
                            f"not {type(items).__name__}") from None
        for item in iterator:
            if isinstance(item, dict) and "labels" in item:
                item = dict(item)  # the caller's dict stays as it was
                yield item, item.pop("labels")
            else:
                yield item, None
    return read


def _resolve(source: str):
    target, _, attr = source.rpartition(":")
    try:
        if target.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"_edgepress_data_{Path(target).stem}",
                                                          target)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except Exception as e:  # noqa: BLE001 - user code: any failure is the user's to fix
        raise UserError(f"data function {source!r}: cannot import {target!r} "
                        f"({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"data function {source!r}: {target} has no callable {attr!r}")
    return fn
