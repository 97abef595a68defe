"""An .npz of arrays named as the inputs, read one row at a time straight from the zip."""

from __future__ import annotations

import tokenize
import zipfile
from pathlib import Path

import numpy as np

from edgepress.errors import ARCHIVE_ERRORS, UserError


def reader(path: Path, specs):
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
        streams = {n: iter_rows(path, members[n]) for n in names}
        labels = iter_rows(path, members["labels"]) if "labels" in members else None
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


def iter_rows(path: Path, member: str):
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
