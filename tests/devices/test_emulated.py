"""Proof on Arm: `edgepress deploy` to an emulated aarch64 Debian device (qemu-user, see
pi_emu.sh) over real SSH on 127.0.0.1, with tiny int8 bundles in both formats.

Marked `arm`: not in the default run (the first device build takes minutes, each install under
emulation a few more); CI runs it as its own step: `pytest -m arm tests/devices`. Needs root
(chroot, mounts) and Debian's apt for the first build; the rootfs is cached in
/var/cache/edgepress-pi ($EDGEPRESS_PI_CACHE)."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from device_fixtures import fake_adb

from edgepress.cli import main
from edgepress.devices import deploy
from edgepress.runtime import cores

pytestmark = pytest.mark.arm
EMU = Path(__file__).with_name("pi_emu.sh")
CACHE = Path(os.environ.get("EDGEPRESS_PI_CACHE", "/var/cache/edgepress-pi"))
TINY_CNN = f"{Path(__file__).resolve().parents[1] / 'tiny_models.py'}:cnn"


@pytest.fixture(scope="module")
def device(request):
    if "arm" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("emulated aarch64 device: run with `pytest -m arm tests/devices` (CI's step)")
    if os.geteuid() != 0:
        pytest.fail("the emulated device needs root (debootstrap, chroot, mounts)")
    subprocess.run([str(EMU), "up"], check=True, timeout=3600)
    ssh = CACHE / "ssh"
    port, user = (ssh / "port").read_text().strip(), (ssh / "user").read_text().strip()
    yield {"url": f"ssh://{user}@127.0.0.1:{port}", "target": deploy.Target(user, "127.0.0.1",
                                                                             int(port)),
           "key": ssh / "client", "known_hosts": ssh / "known_hosts"}
    subprocess.run([str(EMU), "down"], check=False)


@pytest.fixture(scope="module")
def int8_bundles(tmp_path_factory):
    from edgepress.compress import pipeline

    out = tmp_path_factory.mktemp("int8") / "bundles"
    pipeline.run(pipeline.Request(source=TINY_CNN, out=out, input_shapes=("1,3,16,16",),
                                  quantize=("int8",), calib="random"))
    return out


def _deploy(device, bundle, *extra, identity=None, known_hosts=None):
    return main(["deploy", str(bundle), device["url"], "--device", "rpi4",
                 "--identity", str(identity or device["key"]),
                 "--known-hosts", str(known_hosts or device["known_hosts"]),
                 "--runs", "3", "--min-seconds", "0", *extra])


def _on_device(device, command: str) -> tuple[int, str]:
    conn = deploy.Connection(device["target"], device["key"], device["known_hosts"])
    try:
        rc, out, _ = conn.run(command)
        return rc, out
    finally:
        conn.close()


# AT_HWCAP (auxv type 16) bits of Linux arm64 (asm/hwcap.h)
HWCAP_ASIMDDP, HWCAP_SVE = 1 << 20, 1 << 22
AUXV_HWCAP = ('python3 -c "import struct; print(dict(struct.iter_unpack(\\"QQ\\", '
              'open(\\"/proc/self/auxv\\", \\"rb\\").read()))[16])"')


def test_the_device_runs_a_pi_4s_cpu_not_qemus_max(device):
    """Engines pick kernels from the HWCAPs (XNNPACK, onnxruntime's cpuinfo): under qemu's
    default `max` CPU (SVE, SME, i8mm: no Pi has them) crepe tiny's int8 .tflite gave all-zero
    outputs, so the emulated device must show a Cortex-A72's (pi_emu.sh: QEMU_CPU)."""
    rc, out = _on_device(device, AUXV_HWCAP)
    assert rc == 0, out
    hwcap = int(out.split()[-1])
    assert hwcap & HWCAP_SVE == 0 and hwcap & HWCAP_ASIMDDP == 0, hex(hwcap)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_bundle_verifies_on_aarch64_and_the_report_says_so(fmt, device, int8_bundles,
                                                                tmp_path, capsys):
    out = tmp_path / f"{fmt}.json"
    assert _deploy(device, int8_bundles / f"{fmt}-int8", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "verify on the device: PASS (int8" in printed
    rep = json.loads(out.read_text())
    dev = rep["device"]
    assert dev["arch"] == "aarch64" and dev["emulated"] == "qemu-user"
    assert "Raspberry Pi 4" in dev["board_model"] and "asimd" in dev["isa"]
    assert rep["engine"]["name"] == {"onnx": "onnxruntime", "tflite": "litert"}[fmt]
    assert rep["model"]["precision"] == "int8" and rep["fidelity"]["snr_db"] >= 12.0
    print(f"{fmt}-int8 on the emulated device: SNR {rep['fidelity']['snr_db']:.1f} dB, "
          f"arch {dev['arch']}, emulated {dev['emulated']}")


def test_rejected_key_and_unknown_host_key_change_nothing(device, int8_bundles, tmp_path,
                                                          capsys):
    before = _on_device(device, "readlink edgepress/current")
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    assert _deploy(device, int8_bundles / "onnx-int8", identity=stranger) == 2
    assert "rejected the key" in capsys.readouterr().err
    port = device["target"].port
    other_host_key = (stranger.with_suffix(".pub").read_text().split()[:2])
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {' '.join(other_host_key)}\n")
    assert _deploy(device, int8_bundles / "onnx-int8", known_hosts=wrong) == 2
    assert "does not match" in capsys.readouterr().err
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    assert _deploy(device, int8_bundles / "onnx-int8", known_hosts=empty) == 2
    err = capsys.readouterr().err
    assert "is not in" in err and err.count("\n") == 1
    assert _on_device(device, "readlink edgepress/current") == before


def test_wrong_device_profile_is_refused_before_anything_is_written(device, int8_bundles,
                                                                    capsys):
    before = _on_device(device, "ls -R edgepress | md5sum")
    argv = ["deploy", str(int8_bundles / "onnx-int8"), device["url"], "--device", "x86-64",
            "--identity", str(device["key"]), "--known-hosts", str(device["known_hosts"])]
    assert main(argv) == 2
    assert "is aarch64, but device profile 'x86-64' is x86_64" in capsys.readouterr().err
    assert _on_device(device, "ls -R edgepress | md5sum") == before


class _DroppingConnection(deploy.Connection):
    """Closes its own SSH connection a few seconds into the venv install, like a cable pulled
    while pip runs on the device."""

    def run(self, command):
        if "run.sh install" in command:
            threading.Timer(3.0, self.client.close).start()
        return super().run(command)


def test_connection_lost_midway_leaves_the_previous_install_working(device, int8_bundles,
                                                                    cnn_bundles):
    rc, current = _on_device(device, "readlink edgepress/current")
    assert rc == 0 and current.startswith("releases/")  # left by the deploys above
    with pytest.raises(Exception, match="lost the SSH connection"):
        deploy.apply(cnn_bundles / "onnx-fp32", device["url"], "rpi4", device["key"],
                     device["known_hosts"], connect=_DroppingConnection)
    assert _on_device(device, "readlink edgepress/current") == (0, current)
    rc, out = _on_device(device, "sh edgepress/current/run.sh verify")
    assert rc == 0 and json.loads(out[out.index("{"):])["passed"]


# ---- the Termux-like phone target (issue 19): u0_a187@127.0.0.1:8022, home-only -------------

@pytest.fixture(scope="module")
def phone(device):
    ssh = CACHE / "ssh"
    read = lambda name: (ssh / name).read_text().strip()  # noqa: E731
    return {"url": f"ssh://{read('termux_user')}@127.0.0.1:{read('termux_port')}",
            "user": read("termux_user"), "port": int(read("termux_port")),
            "uid": int(read("termux_uid")), "home": read("termux_home"),
            "key": device["key"], "known_hosts": ssh / "termux_known_hosts"}


def _written_outside_home(phone) -> list[str]:
    """Files the phone user owns anywhere in the device but its home (read on the host)."""
    rootfs = CACHE / "rootfs"
    out = subprocess.run(["find", str(rootfs), "-xdev", "-uid", str(phone["uid"]),
                          "-not", "-path", f"{rootfs}{phone['home']}*"],
                         capture_output=True, text=True, check=False).stdout
    return out.split()


def test_termux_like_phone_deploys_verifies_and_benches_phone_aware(phone, int8_bundles,
                                                                    tmp_path):
    out = tmp_path / "phone.json"
    res = deploy.apply(int8_bundles / "onnx-int8", phone["url"], "android-mid", phone["key"],
                       phone["known_hosts"], out=out, overwrite=True,
                       bench_flags=["--no-memory", "--sustained", "2", "--cores", "all"])
    assert res.verdict["passed"] and res.report is not None
    # not Android, not proot (neither runs here): a glibc Linux, as a proot Debian would be
    assert res.environment == "Linux (glibc 2.36, Python 3.11): offline package"
    rep = json.loads(out.read_text())
    assert rep["device"]["emulated"] == "qemu-user" and rep["device"]["arch"] == "aarch64"
    # the device read its /sys (the host's, bound into the rootfs) through the same code path
    assert rep["device"]["cpu_clusters"] == cores.clusters(cores.topology())
    assert rep["cpu"]["requested"] == "all" and rep["cpu"]["mask"] == [
        c.cpu for c in cores.topology()]
    assert rep["sensors"]["samples"] and rep["sensors"]["cpus"] == rep["cpu"]["mask"]
    windows = rep["results"]["sustained"]["windows"]
    assert len(windows) == 10 and sum(w["n"] for w in windows) == rep["results"]["latency_ms"]["n"]
    assert _written_outside_home(phone) == []
    rc, current = _on_device({**phone, "target": deploy.Target(phone["user"], "127.0.0.1",
                                                               phone["port"])},
                             "readlink -f edgepress/current")
    assert rc == 0 and current.startswith(phone["home"] + "/edgepress/releases/")


def test_adb_path_reaches_the_phone_and_knows_its_key_by_serial(phone, int8_bundles, tmp_path,
                                                                monkeypatch, capsys):
    # a stand-in adb whose forward is the phone target's own port: the host key is filed only
    # under the serial, so connecting proves the lookup is by serial, not by local port
    log = fake_adb(tmp_path, monkeypatch, "EMULATED0", "device", phone["port"])
    by_serial, by_port = tmp_path / "by_serial", tmp_path / "by_port"
    # filed the way a user would, by OpenSSH itself (hashed, the alias lower-cased)
    subprocess.run(["ssh", "-q", "-i", str(phone["key"]), "-p", str(phone["port"]),
                    "-o", "HostKeyAlias=adb-EMULATED0", "-o", "HashKnownHosts=yes",
                    "-o", f"UserKnownHostsFile={by_serial}", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=accept-new", f"{phone['user']}@127.0.0.1",
                    "true"], check=True, timeout=120)
    assert by_serial.read_text().startswith("|1|")
    by_port.write_text("".join(ln + "\n" for ln in phone["known_hosts"].read_text().splitlines()
                               if ln.startswith("[127.0.0.1]")))
    argv = ["deploy", str(int8_bundles / "onnx-int8"), f"adb://{phone['user']}@EMULATED0",
            "--device", "android-mid", "--identity", str(phone["key"]), "--runs", "3",
            "--min-seconds", "0"]
    assert main([*argv, "--known-hosts", str(by_serial)]) == 0
    printed = capsys.readouterr().out
    assert f"on {phone['user']}@adb-emulated0 (adb forward 127.0.0.1:{phone['port']})" in printed
    assert "verify on the device: PASS (int8" in printed
    assert main([*argv, "--known-hosts", str(by_port)]) == 2
    err = capsys.readouterr().err
    assert f"is not in {str(by_port)!r} as 'adb-emulated0'" in err
    assert "(`ssh -o HostKeyAlias=adb-emulated0` files it after checking its fingerprint)" in err
    forwards = [ln for ln in log.read_text().splitlines() if "forward" in ln]
    assert forwards == ["-s EMULATED0 forward tcp:0 tcp:8022",
                        f"-s EMULATED0 forward --remove tcp:{phone['port']}"] * 2
    assert _written_outside_home(phone) == []
