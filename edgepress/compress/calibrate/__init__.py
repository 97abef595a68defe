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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgepress.compress.calibrate import function, images, npz
from edgepress.compress.calibrate.images import IMAGE_SUFFIXES, LAYOUTS, Preprocess
from edgepress.errors import UserError
from edgepress.runtime import shapes

__all__ = ["IMAGE_SUFFIXES", "LAYOUTS", "Preprocess", "Dataset", "apply", "open_data",
           "open_option", "preprocess"]

RANDOM_WARNING = ("calibrated on random noise (--calib random): int8 ranges do not reflect real "
                  "inputs, so accuracy on real data is unknown")


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
    split: str | None = None  # which samples of SOURCE these are, when a part of it
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

    def part(self, keep, split: str) -> "Dataset":
        """The samples whose index `keep(i)` holds (streamed, as this one is); `split` says
        which, for the manifest."""
        def reader():
            return ((s, y) for i, (s, y) in enumerate(self.labelled()) if keep(i))
        return Dataset(self.kind, self.source, self.specs, None, reader, self.preprocessing,
                       self.warning, f"{self.split}; of those, {split}" if self.split else split)

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
        if self.split:
            out["split"] = self.split
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
        return Dataset("npz", source, specs, limit, npz.reader(path, specs))
    if path.is_dir():
        pre = pre or Preprocess()
        reader, described = images.reader(path, specs, pre)
        return Dataset("images", source, specs, limit, reader, preprocessing=described)
    if ":" in source and not path.exists():
        return Dataset("function", source, specs, limit, function.reader(source))
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
    elif state.calib is not None:
        state.calib, state.held_out = hold_out(state.calib, state.loaded, seed)
    for data in (state.calib, state.held_out) if quantizing else ():
        if data is not None:
            data.record()  # one full pass: every sample checked and hashed up front
    return state


HOLD_OUT_EVERY = 4  # without --eval, every 4th calibration sample is held out instead


def hold_out(calib: Dataset, loaded, seed: int) -> tuple:
    """(calibration, held-out) without --eval: fidelity and golden inputs must not come from
    the samples the ranges were fitted on. Every HOLD_OUT_EVERY-th sample is held out (random
    calibration: fresh random inputs of the next seed); with too few samples, none (None)."""
    if calib.kind == "random":
        held = open_data("random", calib.specs, min(calib.limit, 32), seed=seed + 1,
                         int_high=loaded.int_high)
        return calib, replace(held, warning=None, split=(
            f"random inputs of seed {seed + 1} (calibration: seed {seed}); no --eval given"))
    n, k = calib.record()["samples"], HOLD_OUT_EVERY
    if n < k:
        return calib, None
    return (calib.part(lambda i: i % k != k - 1, f"--calib samples except every {k}th (those "
                                                 f"are held out: no --eval given)"),
            calib.part(lambda i: i % k == k - 1, f"every {k}th --calib sample ({n // k} of "
                                                 f"{n}), held out of calibration: no --eval "
                                                 f"given"))


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
        yield {k: v[i, ...] for k, v in arrays.items()}


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
