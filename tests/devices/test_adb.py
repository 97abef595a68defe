"""deploy to adb://SERIAL up to where a phone is needed: the real adb client (no phone is
connected to this machine), and a stand-in `adb` on PATH for the states only a phone can be in
(unauthorised, offline, forwarded to a port where no sshd answers)."""

import os
import shutil
import socket
import subprocess
import threading

import pytest
from device_fixtures import fake_adb

from edgepress.cli import main
from edgepress.devices import adb, ssh
from edgepress.errors import UserError


@pytest.mark.parametrize("text, parsed", [
    ("adb://R58M123ABC", ("R58M123ABC", "termux", 8022)),
    ("adb://u0_a187@emulator-5554:8023", ("emulator-5554", "u0_a187", 8023)),
])
def test_adb_addresses(text, parsed):
    assert adb.parse(text) == parsed


@pytest.mark.parametrize("bad", ["adb://", "adb://a b", "adb://x:0", "adb://x:99999"])
def test_bad_adb_address_is_one_line(bad):
    with pytest.raises(UserError, match=r"expected adb://\[user@\]SERIAL\[:port\]"):
        adb.parse(bad)


def test_devices_listing_as_adb_prints_it():
    listing = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
               "List of devices attached\nR58M123ABC\tdevice\nemulator-5554\tunauthorized\n"
               "0123456789\toffline\n\n")
    assert adb.devices(listing) == {"R58M123ABC": "device", "emulator-5554": "unauthorized",
                                    "0123456789": "offline"}


@pytest.fixture
def real_adb(monkeypatch):
    """The real adb client on a private server port, killed afterwards."""
    if shutil.which("adb") is None:
        pytest.skip("no adb client: `make test` installs Debian's adb package")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    yield
    subprocess.run(["adb", "kill-server"], capture_output=True, timeout=30, check=False,
                   env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})


def test_real_adb_without_a_phone_is_one_line_and_exit_2(real_adb, cnn_bundles, capsys):
    argv = ["deploy", str(cnn_bundles / "onnx-fp32"), "adb://NOPHONE1", "--device",
            "android-mid"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == ("edgepress: error: no phone with serial 'NOPHONE1' is connected over adb "
                   "(adb sees: none): plug it in with USB debugging on, or pick one from "
                   "`adb devices`\n")


def test_missing_adb_client_is_one_line(monkeypatch, cnn_bundles, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH, adb included
    assert main(["deploy", str(cnn_bundles / "onnx-fp32"), "adb://R58M", "--device",
                 "android-mid"]) == 2
    err = capsys.readouterr().err
    assert "needs the adb client (Android platform-tools) on PATH: apt install adb" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("state, message", [
    ("unauthorized", "phone 'R58M' has not authorised this computer for USB debugging: unlock "
                     "it, accept the 'Allow USB debugging?' prompt, then retry"),
    ("offline", "phone 'R58M' is offline to adb: reconnect the cable, or run `adb reconnect`"),
])
def test_a_phone_adb_cannot_use_is_named_before_any_forward(state, message, tmp_path,
                                                            monkeypatch, cnn_bundles, capsys):
    log = fake_adb(tmp_path, monkeypatch, "R58M", state)
    assert main(["deploy", str(cnn_bundles / "onnx-fp32"), "adb://R58M", "--device",
                 "android-mid"]) == 2
    assert capsys.readouterr().err == f"edgepress: error: {message}\n"
    assert log.read_text() == "devices\n"  # no forward was made


@pytest.fixture
def closing_port():
    """A port that accepts and closes at once, as adb's forward does when no sshd listens on
    the phone."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_no_sshd_on_the_phone_is_one_line_and_the_forward_is_removed(
        closing_port, tmp_path, monkeypatch, cnn_bundles, capsys):
    pytest.importorskip("paramiko")
    log = fake_adb(tmp_path, monkeypatch, "R58M", "device", closing_port)
    known = tmp_path / "known_hosts"
    known.write_text("")
    assert main(["deploy", str(cnn_bundles / "onnx-fp32"), "adb://R58M", "--device",
                 "android-mid", "--known-hosts", str(known)]) == 2
    err = capsys.readouterr().err
    assert err == (f"edgepress: error: nothing answers SSH at termux@adb-r58m (adb forward "
                   f"127.0.0.1:{closing_port}): start sshd on the device (in Termux: `pkg "
                   f"install openssh && sshd`, port 8022)\n")
    assert log.read_text().splitlines() == [
        "devices", "-s R58M forward tcp:0 tcp:8022", f"-s R58M forward --remove tcp:{closing_port}"]


def test_a_forwarded_phone_is_named_by_its_serial_not_its_local_port():
    # the host key is looked up by that name too: tests/devices/test_emulated.py deploys
    # through a forward to a real sshd with the key filed under adb-SERIAL only
    assert adb.alias("R58M") == "adb-r58m"  # as OpenSSH files a HostKeyAlias: lower case
    target = ssh.Target("termux", "127.0.0.1", 40123, alias=adb.alias("R58M"))
    assert str(target) == "termux@adb-r58m (adb forward 127.0.0.1:40123)"
    assert str(ssh.Target("pi", "10.0.0.2", 22)) == "pi@10.0.0.2:22"
