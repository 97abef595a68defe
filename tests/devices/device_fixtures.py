"""A fixture for device tests: a wheel cache seeded with stand-in wheels, so packaging is tested
without downloading anything (the `arm` tests download the real ones). Imported by the test
modules: a conftest.py here would shadow tests/conftest.py, which other tests import by name."""

import os
import zipfile

import pytest

from edgepress.devices import package, profile


def fake_wheel(folder, filename: str):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / filename, "w") as z:
        z.writestr("stand_in/__init__.py", "# a stand-in wheel for tests\n" * 100)
    return folder / filename


@pytest.fixture
def wheel_cache(tmp_path, monkeypatch):
    """A cache that already holds 'downloaded' wheels for rpi4 (cp311, both engines) and
    edgepress's own, so package.build never reaches PyPI or builds a wheel."""
    cache = tmp_path / "wheels"
    for engine, name in (("onnxruntime", "onnxruntime"), ("litert", "ai_edge_litert")):
        folder = cache / f"aarch64-glibc2.36-cp311-{engine}"
        fake_wheel(folder, "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl")
        fake_wheel(folder, f"{name}-1.0.0-cp311-cp311-manylinux_2_28_aarch64.whl")
        reqs = package.requirements(profile.load("rpi4"), engine, "3.11")
        (folder / "COMPLETE").write_text("\n".join(reqs) + "\n")  # as _download writes it
    own = fake_wheel(cache / "own", "edgepress-0.1.0-py3-none-any.whl")
    monkeypatch.setattr(package, "edgepress_wheel", lambda cache=None: own)
    monkeypatch.setenv("EDGEPRESS_WHEEL_CACHE", str(cache))
    return cache



def no_wheels_profile(folder) -> str:
    """A custom board with no CPython for the engines (python = ""): estimates only."""
    path = folder / "nowheels.toml"
    path.write_text((profile.PROFILES / "rpi4.toml").read_text()
                    .replace('python = "3.11"', 'python = ""').replace('"rpi4"', '"nowheels"'))
    return str(path)


def fake_adb(folder, monkeypatch, serial: str, state: str, port: int = 0):
    """An `adb` on PATH that lists `serial` in `state` (device, unauthorized, offline...),
    answers a forward with `port` and logs every call: the states only a phone can be in."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    log = folder / "adb.log"
    script = bin_dir / "adb"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in
  devices) printf 'List of devices attached\\n{serial}\\t{state}\\n\\n' ;;
  *"forward tcp:0"*) echo {port} ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log
