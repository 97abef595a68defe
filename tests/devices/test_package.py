"""Deployment packages: contents, checksums, reproducibility, refusals, and safe unpacking."""

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from device_fixtures import no_wheels_profile, wheel_cache  # noqa: F401 (fixture)

from edgepress.cli import main
from edgepress.devices import package, profile, remote
from edgepress.errors import UserError

pytestmark = pytest.mark.usefixtures("wheel_cache")  # never download in these tests
REAL_EDGEPRESS_WHEEL = package.edgepress_wheel  # before the fixture stands it in


def _tiny_ram(tmp_path, mb: int) -> str:
    p = tmp_path / "tiny.toml"
    p.write_text((profile.PROFILES / "rpi4.toml").read_text()
                 .replace("ram_mb = 4096", f"ram_mb = {mb}").replace('"rpi4"', '"tiny"'))
    return str(p)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_package_holds_bundle_wheels_script_and_checksums(fmt, cnn_bundles, tmp_path):
    out = tmp_path / f"{fmt}.tar.gz"
    pkg = package.build(cnn_bundles / f"{fmt}-fp32", profile.load("rpi4"), out)
    assert pkg.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / f"{fmt}.tar.gz.sha256").read_text() == f"{pkg.sha256}  {out.name}\n"
    dest = tmp_path / "x"
    remote.unpack(str(out), pkg.sha256, str(dest))
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"package.json", "run.sh", "SHA256SUMS", f"bundle/model.{fmt}",
            "bundle/manifest.json", "bundle/golden.npz",
            "wheels/edgepress-0.1.0-py3-none-any.whl"} <= names
    manifest = json.loads((dest / "package.json").read_text())
    assert manifest["engine"] == {"onnx": "onnxruntime", "tflite": "litert"}[fmt]
    assert manifest["arch"] == "aarch64" and manifest["python"] == "3.11"
    assert manifest["install_bytes"] > sum((dest / "wheels" / w).stat().st_size
                                           for w in manifest["wheels"])
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=False)
    assert check.returncode == 0
    assert subprocess.run(["sh", "-n", str(dest / "run.sh")], check=False).returncode == 0


def test_same_bundle_same_device_same_sha256(cnn_bundles, tmp_path):
    a = package.build(cnn_bundles / "onnx-fp32", profile.load("rpi4"), tmp_path / "a.tar.gz")
    b = package.build(cnn_bundles / "onnx-fp32", profile.load("rpi4"), tmp_path / "b.tar.gz")
    assert a.sha256 == b.sha256  # a re-deploy of the same thing reuses the device's install


def test_run_script_checks_every_file_before_running(cnn_bundles, tmp_path):
    pkg = package.build(cnn_bundles / "onnx-fp32", profile.load("rpi4"), tmp_path / "p.tar.gz")
    dest = tmp_path / "x"
    remote.unpack(str(pkg.path), pkg.sha256, str(dest))
    (dest / "bundle" / "golden.npz").write_bytes(b"tampered")
    proc = subprocess.run(["sh", "run.sh", "install"], cwd=dest, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, check=False)
    assert proc.returncode != 0 and "golden.npz: FAILED" in proc.stdout + proc.stderr
    assert not (dest / "venv").exists()  # nothing installed from a tampered package


def test_model_larger_than_ram_is_refused_with_the_numbers(cnn_bundles, tmp_path):
    out = tmp_path / "p.tar.gz"
    with pytest.raises(UserError, match=r"does not fit in tiny's RAM: needs [0-9.]+ MiB "
                                        r"\(weights .* KiB \+ activations .* KiB \+ onnxruntime "
                                        r"64.0 MiB\) > 16.0 MiB RAM"):
        package.build(cnn_bundles / "onnx-fp32", profile.load(_tiny_ram(tmp_path, 16)), out)
    assert not out.exists()


@pytest.mark.parametrize("device, fmt, message", [
    ("NOWHEELS", "onnx", "no CPython wheels for the engines"),
    ("rpi-zero2w", "onnx", "onnxruntime publishes no armv7l wheels"),
])
def test_devices_without_wheels_are_refused(device, fmt, message, cnn_bundles, tmp_path, capsys):
    out = tmp_path / "p.tar.gz"
    device = no_wheels_profile(tmp_path) if device == "NOWHEELS" else device
    assert main(["package", str(cnn_bundles / f"{fmt}-fp32"), "--device", device,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_existing_output_needs_overwrite(cnn_bundles, tmp_path):
    out = tmp_path / "p.tar.gz"
    out.write_bytes(b"keep me")
    with pytest.raises(UserError, match="already exists"):
        package.build(cnn_bundles / "onnx-fp32", profile.load("rpi4"), out)
    assert out.read_bytes() == b"keep me"


def test_armv7l_device_brings_its_own_numpy():
    reqs = package.requirements(profile.load("rpi-zero2w"), "tflite-runtime", "3.11")
    assert "tflite-runtime==2.14.0" in reqs and not any(r.startswith("numpy") for r in reqs)
    assert "numpy" in package.requirements(profile.load("rpi4"), "litert", "3.11")


def test_requirements_follow_the_devices_python_not_ours():
    jetson = profile.load("jetson-orin-nano")  # Ubuntu 22.04: Python 3.10 needs tomli
    assert "tomli" in package.requirements(jetson, "onnxruntime", "3.10")
    assert "tomli" not in package.requirements(jetson, "onnxruntime", "3.11")


def test_edgepress_wheel_is_built_from_the_source_tree(tmp_path):
    wheel = REAL_EDGEPRESS_WHEEL(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"edgepress/devices/remote.py", "edgepress/devices/profiles/rpi4.toml",
            "edgepress/runtime/session.py"} <= names
    assert REAL_EDGEPRESS_WHEEL(tmp_path) == wheel  # cached by the sources' hash
    assert not (package.ROOT / "build").exists()  # built from a copy, the checkout untouched


# ---- unpacking on the device: sha256 first, then only safe members ---------------------------

def _tar(tmp_path, add) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("ok.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        add(tar)
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(buf.getvalue())
    return path


def _file(name):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    return add


def _link(name, target, kind):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


@pytest.mark.parametrize("add", [
    _file("/tmp/edgepress-evil-abs"),
    _file("../escaped.txt"),
    _file("a/../../escaped.txt"),
    _link("link", "/etc/passwd", tarfile.SYMTYPE),
    _link("up", "../..", tarfile.SYMTYPE),
    _link("hard", "/etc/passwd", tarfile.LNKTYPE),
], ids=["absolute", "dotdot", "nested-dotdot", "symlink-out", "symlink-up", "hardlink"])
def test_unsafe_members_are_refused_before_anything_is_written(add, tmp_path):
    archive = _tar(tmp_path, add)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "dest" / "release"
    assert remote.main(["unpack", str(archive), sha, str(dest)]) == remote.BAD_PACKAGE
    assert not dest.exists() and not list((tmp_path).glob("dest/*"))
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/edgepress-evil-abs").exists()


def test_sha256_mismatch_is_refused(tmp_path, capsys):
    archive = _tar(tmp_path, lambda tar: None)
    dest = tmp_path / "release"
    assert remote.main(["unpack", str(archive), "0" * 64, str(dest)]) == remote.BAD_PACKAGE
    assert "does not match" in capsys.readouterr().err and not dest.exists()


def test_activate_switches_current_in_one_rename_and_prune_keeps_previous(tmp_path):
    root = tmp_path / "edgepress"
    for r in ("a", "b", "c"):
        (root / "releases" / r).mkdir(parents=True)
    for r in ("a", "b", "c"):
        remote.activate(str(root), r)
    assert (root / "current").resolve() == (root / "releases" / "c").resolve()
    assert (root / "previous").read_text() == "b"
    remote.prune(str(root))
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["b", "c"]
