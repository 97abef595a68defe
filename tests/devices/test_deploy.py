"""deploy's orchestration against a stand-in device (a temp home, commands run by sh), so the
staged install, the checks before any write and a connection lost midway are tested in seconds.
The real thing, over SSH to an emulated aarch64 device, is test_emulated.py (marker `arm`)."""

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from device_fixtures import no_wheels_profile, wheel_cache  # noqa: F401 (fixture)

from edgepress.cli import main
from edgepress.devices import deploy
from edgepress.errors import UserError
from edgepress.runtime import bench, report

GOOD_FACTS = {"python": "3.11", "machine": "aarch64", "free_bytes": 10 * 2**30, "venv": True,
              "sha256sum": True}

pytestmark = pytest.mark.usefixtures("wheel_cache")  # never download in these tests


class StandInDevice:
    """Answers like a device would. The deploy's own remote commands (mkdir, remote.py unpack,
    activate, prune) really run here; only the venv install, verify and bench are answered
    without installing aarch64 wheels."""

    target = "pi@stand-in:22"

    def __init__(self, home: Path, report_file: Path, facts=None, drop_on=None, verdict=True):
        self.home, self.report_file = home, report_file
        self.facts = {**GOOD_FACTS, **(facts or {})}
        self.drop_on, self.verdict = drop_on, verdict
        self.commands, self.puts = [], []

    def run(self, command):
        self.commands.append(command)
        self._maybe_drop(command)
        if command.startswith("python3 -c"):
            return 0, json.dumps(self.facts) + "\n", ""
        release = self._release(command)
        if "run.sh install" in command:
            (release / "venv").mkdir(exist_ok=True)
            (release / "venv" / ".complete").touch()
            return 0, "", ""
        if "run.sh verify" in command:
            return (0 if self.verdict else 1), json.dumps(self._verdict()), ""
        if "run.sh bench" in command:
            (release / "reports").mkdir(exist_ok=True)
            shutil.copy(self.report_file, release / "reports" / "bench.json")
            return 0, "", ""
        proc = subprocess.run(["sh", "-c", command], cwd=self.home, capture_output=True,
                              text=True, env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
                              check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def put(self, local, remote):
        self._maybe_drop(f"put {remote}")
        self.puts.append(remote)
        shutil.copy(local, self.home / remote)

    def get(self, remote, local):
        shutil.copy(self.home / remote, local)

    def close(self):
        pass

    def _maybe_drop(self, what):
        if self.drop_on and self.drop_on in what:
            raise UserError(f"lost the SSH connection to {self.target}: Socket is closed")

    def _release(self, command) -> Path:
        parts = command.split()
        script = next((p for p in parts if p.endswith("run.sh")), None)
        return (self.home / script).parent if script else self.home

    def _verdict(self):
        snr = 40.0 if self.verdict else 3.0
        return {"passed": self.verdict, "bundle": "bundle", "precision": "fp32", "samples": 8,
                "metrics": {"output_0": {"max_abs": 0.1, "snr_db": snr, "cosine": 0.99}},
                "thresholds": {}, "failures": [] if self.verdict else ["output_0: SNR 3.0 dB"]}


@pytest.fixture(scope="module")
def device_report(cnn_bundles, tmp_path_factory):
    rep = bench.apply(cnn_bundles / "onnx-fp32", 1, bench.Protocol(
        warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, memory=False))
    path = tmp_path_factory.mktemp("rep") / "bench.json"
    report.save(rep, path)
    return path


def _deploy(bundle, dev, out=None):
    return deploy.apply(bundle, "ssh://pi@stand-in", "rpi4", connect=lambda *a: dev, out=out,
                        overwrite=True)


def _current(home: Path) -> str:
    return (home / "edgepress" / "current").resolve().name


def test_deploy_installs_verifies_switches_and_brings_the_report_back(
        cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = _deploy(cnn_bundles / "onnx-fp32", StandInDevice(home, device_report))
    assert _current(home) == first.release and first.verdict["passed"]
    out = tmp_path / "report.json"
    second = _deploy(cnn_bundles / "tflite-fp32", StandInDevice(home, device_report), out)
    assert _current(home) == second.release != first.release
    assert (home / "edgepress" / "previous").read_text() == first.release
    assert report.load(out)["model"]["sha256"] == second.report["model"]["sha256"]
    assert not list((home / "edgepress" / "incoming").iterdir())  # the archive is removed


@pytest.mark.parametrize("drop_on", ["put edgepress/incoming", "remote.py unpack",
                                     "run.sh install", "run.sh verify", "remote.py activate"])
def test_connection_lost_midway_leaves_the_previous_install_current(
        drop_on, cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    old = _deploy(cnn_bundles / "onnx-fp32", StandInDevice(home, device_report)).release
    dev = StandInDevice(home, device_report, drop_on=drop_on)
    with pytest.raises(UserError, match="lost the SSH connection"):
        _deploy(cnn_bundles / "tflite-fp32", dev)
    assert _current(home) == old
    release = home / "edgepress" / "releases" / old
    assert (release / "venv" / ".complete").is_file() and (release / "run.sh").is_file()
    # and the next deploy, with the connection up, completes and cleans up
    new = _deploy(cnn_bundles / "tflite-fp32", StandInDevice(home, device_report)).release
    assert _current(home) == new
    assert sorted(p.name for p in (home / "edgepress" / "releases").iterdir()) == \
        sorted([old, new])


@pytest.mark.parametrize("facts, message", [
    ({"python": "3.8"}, "has Python 3.8; edgepress needs >= 3.10"),
    ({"venv": False}, r"cannot create venvs \(no ensurepip\): install python3-venv"),
    ({"machine": "x86_64"}, "is x86_64, but device profile 'rpi4' is aarch64"),
    ({"free_bytes": 2048}, r"has 2 KiB free under ~/edgepress; the install needs \d+ KiB"),
])
def test_checks_fail_before_anything_is_written(facts, message, cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    dev = StandInDevice(home, device_report, facts=facts)
    with pytest.raises(UserError, match=message):
        _deploy(cnn_bundles / "onnx-fp32", dev)
    assert len(dev.commands) == 1 and dev.commands[0].startswith("python3 -c")
    assert dev.puts == [] and list(home.iterdir()) == []


def test_a_bundle_failing_verification_never_becomes_current(cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    old = _deploy(cnn_bundles / "onnx-fp32", StandInDevice(home, device_report)).release
    res = _deploy(cnn_bundles / "tflite-fp32", StandInDevice(home, device_report, verdict=False))
    assert not res.verdict["passed"] and res.report is None
    assert _current(home) == old


def test_parse_target():
    assert deploy.parse_target("ssh://pi@raspberrypi.local:2222") == \
        deploy.Target("pi", "raspberrypi.local", 2222)
    assert deploy.parse_target("ssh://root@[::1]").port == 22
    for bad in ("pi@host", "ssh://host", "ssh://pi@host:99999", "http://pi@host"):
        with pytest.raises(UserError, match="expected ssh://user@host"):
            deploy.parse_target(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--device", "rpi9"], "unknown device 'rpi9'; known devices:"),
    (["--device", "NOWHEELS"], "no CPython wheels"),
    (["--device", "rpi4", "--known-hosts", "/nonexistent/known_hosts"],
     "known_hosts file '/nonexistent/known_hosts' does not exist"),
    (["--device", "rpi4", "--identity", "/nonexistent/key"],
     "--identity '/nonexistent/key' does not exist"),
    (["--device", "rpi4"], "cannot reach pi@127.0.0.1:"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, cnn_bundles, tmp_path, capsys):
    known = tmp_path / "known_hosts"
    known.write_text("")
    args = [no_wheels_profile(tmp_path) if a == "NOWHEELS" else a for a in args]
    argv = ["deploy", str(cnn_bundles / "onnx-fp32"), f"ssh://pi@127.0.0.1:{_closed_port()}",
            "--known-hosts", str(known), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_32bit_arm_device_without_its_own_numpy_is_refused_first(cnn_bundles, device_report,
                                                                 tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    dev = StandInDevice(home, device_report, facts={"machine": "armv7l", "system_numpy": False})
    with pytest.raises(UserError, match="apt install python3-numpy"):
        deploy.apply(cnn_bundles / "tflite-fp32", "ssh://pi@zero", "rpi-zero2w",
                     connect=lambda *a: dev)
    assert dev.puts == [] and list(home.iterdir()) == []


def test_devices_modules_import_without_torch():
    """The devices side runs where torch is not installed (a CI box deploying to a Pi)."""
    code = ("import sys\n"
            "for name in ('torch', 'edgepress.compress'):\n"
            "    sys.modules[name] = None\n"
            "from edgepress.devices import deploy, estimate, package, profile, remote\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


TERMUX_FACTS = {"python": "3.12", "android_api": 34, "system_numpy": True, "onnxruntime": True,
                "glibc": None}


def _phone(bundle, dev):
    return deploy.apply(bundle, "ssh://u0_a187@phone:8022", "android-mid",
                        connect=lambda *a: dev, overwrite=True)


def test_termux_own_python_gets_termux_packages_not_wheels(cnn_bundles, device_report,
                                                           tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    res = _phone(cnn_bundles / "onnx-fp32", StandInDevice(home, device_report, TERMUX_FACTS))
    assert res.environment == ("Termux's own Python 3.12 (Android API 34) with its python-numpy "
                               "and python-onnxruntime packages: ONNX only")
    m = res.package.manifest
    assert m["python"] == "3.12" and m["engine"] == "onnxruntime"
    assert m["system_packages"] == ["numpy", "onnxruntime"]
    assert [w.split("-")[0] for w in m["wheels"]] == ["edgepress"]  # no manylinux wheel
    run_sh = (home / "edgepress" / "current" / "run.sh").read_text()
    assert "-m venv --system-site-packages venv" in run_sh


@pytest.mark.parametrize("facts, fmt, message", [
    ({"onnxruntime": False}, "onnx", "runs Termux's own Python without numpy and onnxruntime: "
                                     "run `pkg install python-onnxruntime` in Termux"),
    ({}, "tflite", "runs Termux's own Python, which has no LiteRT: deploy an ONNX bundle, or run "
                   "sshd inside a proot Debian"),
])
def test_termux_without_what_it_needs_is_refused_before_anything_is_written(
        facts, fmt, message, cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    dev = StandInDevice(home, device_report, {**TERMUX_FACTS, **facts})
    with pytest.raises(UserError, match=re.escape(message)):
        _phone(cnn_bundles / f"{fmt}-fp32", dev)
    assert len(dev.commands) == 1 and not dev.puts and not list(home.iterdir())


def test_proot_debian_on_a_phone_takes_the_offline_package(cnn_bundles, device_report, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    res = _phone(cnn_bundles / "onnx-fp32", StandInDevice(
        home, device_report, {"tracer": "proot", "glibc": "2.36"}))
    assert res.environment == ("Debian-style Linux in proot on Android (glibc 2.36, Python "
                               "3.11): offline package")
    assert any(w.startswith("onnxruntime-") for w in res.package.manifest["wheels"])
    assert res.package.manifest["system_packages"] == []
