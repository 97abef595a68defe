"""magika 1.0.3 (Apache-2.0): Google's file-type classifier, ONNX only (converted from JAX), with
an integer input: `bytes` int32 (B, 2048) = the first and last 1,024 bytes of a file (whitespace
stripped, padded with token 256), -> `target_label` (B, 214) probabilities.

Its data: real files of the packages installed beside the suite (site-packages of the running
Python), listed with their type in magika_files.tsv (committed, so the list is pinned; up to 12
files per type, 33 types, labelled by extension). magika_files_eval.tsv (issue 15) adds 422
more files of the same extensions, evaluation only: 203 eval files left one file = 0.49 points
(made once: per label, up to 40 with the listed ones, evenly spread over the sorted candidate
paths; .pyc left out, the local Python writes them). Features follow magika's own
_extract_features_from_seekable (beg_size = end_size = 1024, block_size 4096, mid_size 0).
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np

from benchmarks.models import fetch

ONNX = "magika/models/standard_v3_3/model.onnx"
CONFIG = "magika/models/standard_v3_3/config.min.json"
LIST = Path(__file__).with_name("magika_files.tsv")
EVAL_LIST = Path(__file__).with_name("magika_files_eval.tsv")
BEG = END = 1024
BLOCK, PAD = 4096, 256


def model_path() -> Path:
    return fetch.member("magika", ONNX)


def labels_space() -> list[str]:
    return json.loads(fetch.member("magika", CONFIG).read_text())["target_labels_space"]


def features(data: bytes) -> np.ndarray:
    """(2048,) int32: magika's beg + end features of a file's bytes."""
    small = len(data) <= BLOCK
    beg = data[:BLOCK].strip() if small else data[:BLOCK].lstrip()
    end = data[-BLOCK:].strip() if small else data[-BLOCK:].rstrip()
    beg_ids = list(beg[:BEG]) + [PAD] * max(0, BEG - len(beg))
    end_ids = [PAD] * max(0, END - len(end)) + list(end[-END:] if end else b"")
    return np.array(beg_ids + end_ids, dtype=np.int32)


def files(listing: Path = LIST) -> list[tuple[str, Path]]:
    """(label, path) of the listed files present here (a package upgrade may drop a few)."""
    root = Path(sysconfig.get_paths()["purelib"])
    rows = [ln.split("\t") for ln in listing.read_text().splitlines() if ln.strip()]
    return [(label, root / rel) for label, rel in rows if (root / rel).is_file()]


def dataset(listing: Path = LIST, seen: set | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2048) int32 features and (n,) int64 label indices of the listed files; `seen` (the
    features already taken, updated): a second list adds only files not in the first."""
    space = labels_space()
    seen, xs, ys = set() if seen is None else seen, [], []
    for label, path in files(listing):
        x = features(_head_and_tail(path))
        if x.tobytes() not in seen:  # identical files (or features) once: splits stay disjoint
            seen.add(x.tobytes())
            xs.append(x)
            ys.append(space.index(label))
    return np.stack(xs), np.array(ys, dtype=np.int64)


def _head_and_tail(path: Path) -> bytes:
    """The file's bytes, or for a long file its first and last block (all the features see)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= 2 * BLOCK:
            return f.read()
        head = f.read(BLOCK)
        f.seek(size - BLOCK)
        return head + f.read(BLOCK)
