"""package: an offline deployment package for one device: PKG.tar.gz holding

    package.json   what it is: bundle, device, engine, Python, wheels, bytes needed installed
    bundle/        the artifact bundle (model, manifest.json, golden.npz)
    wheels/        edgepress, numpy and the engine, built for the device's arch and Python
    run.sh         installs offline into ./venv, then runs verify and bench, writing reports/
    SHA256SUMS     every file above, checked by run.sh before anything runs

and PKG.tar.gz.sha256 beside it. The archive is reproducible (sorted members, fixed times and
owners), so the same bundle for the same device gives the same sha256 and a re-deploy reuses the
install. Wheels for a target come from pip's cross-platform download, once, into a cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgepress import __version__, atomic
from edgepress.devices import estimate
from edgepress.devices.profile import Profile
from edgepress.errors import UserError
from edgepress.runtime import artifact, inspect

# What pip installs on the device for each engine, besides edgepress itself.
ENGINE_REQUIREMENTS = {
    "onnxruntime": ["onnxruntime"],
    "litert": ["ai-edge-litert"],
    # tflite-runtime's last release (2.14) does not import with numpy 2
    "tflite-runtime": ["tflite-runtime==2.14.0", "numpy<2"],
}
# edgepress's own dependencies (pyproject), with their markers evaluated for the device's Python
# here: pip download evaluates markers against the Python running it, not --python-version
def _core_requirements(python: str) -> list[str]:
    old = tuple(int(v) for v in python.split(".")) < (3, 11)
    return ["numpy", "tomli"] if old else ["numpy"]

ROOT = Path(__file__).resolve().parents[2]  # the source tree edgepress's wheel is built from
INSTALL_SLACK = 1.2  # pip's temporary copies and bytecode, on top of the unpacked wheels


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size_bytes: int
    manifest: dict


def build(bundle_dir, device: Profile, out, python: str | None = None, overwrite: bool = False,
          cache: Path | None = None) -> Package:
    """Writes the package for `bundle_dir` on `device` to `out` (a .tar.gz), atomically."""
    out = Path(out)
    atomic.refuse_existing(out, overwrite)
    bundle = artifact.open_bundle(bundle_dir)
    engine = _engine(bundle, device)
    fit = estimate.memory_fit(bundle, inspect.apply(bundle.model_path), device)
    estimate.check_fits(fit, device, f"bundle {str(bundle.path)!r}")
    python = python or device.python
    wheels = fetch_wheels(device, python, engine, cache) + [edgepress_wheel(cache)]
    with tempfile.TemporaryDirectory(prefix="edgepress-package-") as tmp:
        files = _layout(Path(tmp), bundle, wheels)
        manifest = _manifest(bundle, device, engine, python, files, wheels)
        (Path(tmp) / "package.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (Path(tmp) / "run.sh").write_text(run_script(manifest))
        (Path(tmp) / "SHA256SUMS").write_text(_sums(Path(tmp)))
        data = _tar_gz(Path(tmp))
    atomic.write_bytes(out, data, overwrite)
    sha = hashlib.sha256(data).hexdigest()
    atomic.write_bytes(out.with_name(out.name + ".sha256"), f"{sha}  {out.name}\n".encode())
    return Package(out, sha, len(data), manifest)


def _engine(bundle, device: Profile) -> str:
    reason = device.deployable_reason()
    if reason:
        raise UserError(reason)
    engine = device.engines[bundle.format]
    if engine == "onnxruntime" and device.arch not in ("aarch64", "x86_64"):
        raise UserError(f"device {device.name!r} ({device.arch}): onnxruntime publishes no "
                        f"{device.arch} wheels; package a tflite bundle for it instead")
    return engine


def _layout(tmp: Path, bundle, wheels: list[Path]) -> list[Path]:
    shutil.copytree(bundle.path, tmp / "bundle")
    (tmp / "wheels").mkdir()
    for w in wheels:
        shutil.copy2(w, tmp / "wheels" / w.name)
    return sorted(p for p in tmp.rglob("*") if p.is_file())


def _manifest(bundle, device: Profile, engine: str, python: str, files, wheels) -> dict:
    unpacked = sum(_unzipped_size(w) for w in wheels)
    packed = sum(p.stat().st_size for p in files)
    return {
        "kind": "edgepress-package", "schema_version": "1.0", "edgepress_version": __version__,
        "device": device.name, "arch": device.arch, "python": python, "engine": engine,
        "threads": device.threads, "format": bundle.format, "precision": bundle.precision,
        "model_sha256": bundle.manifest["model_sha256"],
        "system_packages": list(device.system_packages),
        "wheels": sorted(w.name for w in wheels),
        # what the device must have free: the archive, its files, and the venv it installs
        "install_bytes": int(2 * packed + INSTALL_SLACK * unpacked),
    }


def _unzipped_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as z:
        return sum(i.file_size for i in z.infolist())


def _sums(tmp: Path) -> str:
    lines = [f"{artifact.sha256_file(p)}  {p.relative_to(tmp).as_posix()}"
             for p in sorted(tmp.rglob("*")) if p.is_file()]
    return "\n".join(lines) + "\n"


def _tar_gz(tmp: Path) -> bytes:
    """A reproducible .tar.gz: sorted names, no owners, fixed times, only files and dirs."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(tmp.rglob("*")):
            info = tar.gettarinfo(str(p), arcname=p.relative_to(tmp).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if p.is_dir() or p.name == "run.sh" else 0o644
            if p.is_file():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


# ---- wheels --------------------------------------------------------------------------------

def cache_dir(cache: Path | None = None) -> Path:
    if cache is not None:
        return Path(cache)
    env = os.environ.get("EDGEPRESS_WHEEL_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base if env else base / "edgepress" / "wheels"


def requirements(device: Profile, engine: str, python: str) -> list[str]:
    reqs = _core_requirements(python) + ENGINE_REQUIREMENTS[engine]
    # numpy the device brings itself (Debian's, on 32-bit Arm) is not downloaded
    return [r for r in reqs if _name(r) not in device.system_packages]


def _name(req: str) -> str:
    return req.split(";")[0].split("<")[0].split("=")[0].split(">")[0].strip()


def fetch_wheels(device: Profile, python: str, engine: str,
                 cache: Path | None = None) -> list[Path]:
    """The wheels for (arch, glibc, Python, engine), downloaded once into the cache."""
    key = f"{device.arch}-glibc{device.glibc}-cp{python.replace('.', '')}-{engine}"
    if device.system_packages:
        key += "-system-" + "-".join(device.system_packages)
    target = cache_dir(cache) / key
    reqs = requirements(device, engine, python)
    if not reqs:  # the device brings them all (Termux's own packages): only edgepress's wheel
        return []
    done = target / "COMPLETE"  # lists what was asked for: a changed list is fetched again
    if not done.is_file() or done.read_text().split("\n")[:-1] != reqs:
        _download(device, python, reqs, target)
    return sorted(target.glob("*.whl"))


def _download(device: Profile, python: str, reqs: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    platforms = [a for tag in device.platform_tags() for a in ("--platform", tag)]
    # a device that brings packages itself (Debian's numpy on 32-bit Arm, which PyPI lacks) gets
    # exactly the listed wheels: their dependencies on those packages are met on the device
    no_deps = ["--no-deps"] if device.system_packages else []
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *no_deps,
           *platforms, "--python-version", python, "--implementation", "cp", "--dest", str(tmp),
           *reqs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.strip().splitlines() if "ERROR" in ln] or \
                   proc.stderr.strip().splitlines() or ["no output"]
            raise UserError(f"cannot fetch wheels for {device.name} ({device.arch}, Python "
                            f"{python}): {last[-1].strip()}")
        (tmp / "COMPLETE").write_text("\n".join(reqs) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def edgepress_wheel(cache: Path | None = None) -> Path:
    """edgepress's own wheel, built from this source tree (copied, so the build leaves nothing
    in the checkout) and cached by the sources' hash."""
    sources = [ROOT / "pyproject.toml", ROOT / "README.md",
               *sorted(p for p in (ROOT / "edgepress").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)]
    if not (ROOT / "pyproject.toml").is_file():
        raise UserError("edgepress's wheel is built from its source tree, and this edgepress was "
                        "not installed from one (pip install -e .)")
    digest = hashlib.sha256()
    for p in sources:
        digest.update(p.relative_to(ROOT).as_posix().encode() + p.read_bytes())
    target = cache_dir(cache) / f"edgepress-{__version__}-{digest.hexdigest()[:16]}"
    if not (target / "COMPLETE").is_file():
        _build_wheel(sources, target)
    return next(target.glob("edgepress-*.whl"))


def _build_wheel(sources: list[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgepress-src-") as src:
        for p in sources:
            dest = Path(src) / p.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                               "--no-build-isolation", "--wheel-dir", str(tmp), src],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"cannot build edgepress's wheel: "
                            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        (tmp / "COMPLETE").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
    for old in target.parent.glob("edgepress-*"):  # wheels of earlier sources: never used again
        if old != target and (old / "COMPLETE").is_file():
            shutil.rmtree(old, ignore_errors=True)


# ---- the script that runs on the device ----------------------------------------------------

def run_script(manifest: dict) -> str:
    """run.sh: POSIX sh, so it needs nothing on the device but python3 (>= 3.9) and coreutils."""
    system = "--system-site-packages" if manifest["system_packages"] else ""
    return _RUN_SH.format(engine=manifest["engine"], threads=manifest["threads"],
                          system=system, device=manifest["device"])


_RUN_SH = """#!/bin/sh
# edgepress deployment package for {device}: installs offline into ./venv, then
#   sh run.sh install            only install (idempotent)
#   sh run.sh verify             verify the bundle against its golden outputs (JSON on stdout)
#   sh run.sh bench [FLAGS...]   measure it, writing reports/bench.json (FLAGS go to `bench`)
#   sh run.sh                    all three
set -eu
cd "$(dirname "$0")"
PY=${{PYTHON:-python3}}
# A phone's Termux has no writable /tmp (home is the only writable place): pip and venv get a
# temporary directory beside the package when the one they would use cannot be written.
if ! [ -w "${{TMPDIR:-/tmp}}" ]; then mkdir -p tmp; export TMPDIR="$PWD/tmp"; fi
ENGINE={engine}
THREADS=${{THREADS:-{threads}}}

install() {{
  sha256sum -c --quiet SHA256SUMS  # every file as packaged, before anything runs
  [ -f venv/.complete ] && return 0
  rm -rf venv  # an install cut off midway is redone from scratch
  "$PY" -m venv {system} venv
  venv/bin/python -m pip install --quiet --no-index --find-links wheels \\
    --disable-pip-version-check wheels/*.whl
  touch venv/.complete
}}

ep() {{ venv/bin/python -m edgepress.cli "$@"; }}

bench() {{
  mkdir -p reports
  ep bench bundle --engine "$ENGINE" --threads "$THREADS" --out reports/bench.json --overwrite "$@"
}}

cmd=${{1:-all}}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install ;;
  verify) install; ep verify bundle --engine "$ENGINE" --threads "$THREADS" --json ;;
  bench) install; bench "$@" ;;
  all) install; ep verify bundle --engine "$ENGINE" --threads "$THREADS"; bench ;;
  *) echo "usage: sh run.sh [install|verify|bench|all]" >&2; exit 2 ;;
esac
"""
