"""adb: reach a phone's Termux sshd over USB, for `deploy adb://[USER@]SERIAL[:PORT]`.

`adb forward tcp:0 tcp:PORT` asks the adb server for a free local port that tunnels to PORT on
the phone (8022: Termux's sshd); the forward is removed when the deploy ends, however it ends.
Every way this can fail before SSH starts (no adb client, no such phone, a phone that has not
authorised this computer, one that is offline) is one line, checked before anything is sent to
the phone. The SSH host key is remembered per phone serial (known_hosts name `adb-serial`, lower
case, as `ssh -o HostKeyAlias=adb-SERIAL` files it), since the local port changes on every forward.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess

from edgepress.errors import UserError

TERMUX_SSHD_PORT = 8022
DEFAULT_USER = "termux"  # Termux's sshd accepts any user name: the app has one Linux user
TIMEOUT_S = 30.0

_ADDRESS = re.compile(r"adb://(?:([^@/:\s]+)@)?([^@/:\s]+)(?::(\d{1,5}))?/?")


def parse(text: str) -> tuple[str, str, int]:
    """(serial, user, port on the phone) of adb://[USER@]SERIAL[:PORT]."""
    m = _ADDRESS.fullmatch(text)
    if not m or not 0 < int(m.group(3) or TERMUX_SSHD_PORT) < 65536:
        raise UserError(f"device address {text!r}: expected adb://[user@]SERIAL[:port] (SERIAL "
                        f"as `adb devices` lists it; port default {TERMUX_SSHD_PORT}, Termux's "
                        f"sshd)")
    return m.group(2), m.group(1) or DEFAULT_USER, int(m.group(3) or TERMUX_SSHD_PORT)


def alias(serial: str) -> str:
    # lower case: OpenSSH lower-cases a HostKeyAlias before filing or hashing it, and paramiko
    # matches known_hosts names exactly
    return f"adb-{serial}".lower()


@contextlib.contextmanager
def forward(serial: str, phone_port: int = TERMUX_SSHD_PORT):
    """A local port forwarded to `phone_port` on the phone, removed afterwards."""
    check_device(serial)
    out = _adb("-s", serial, "forward", "tcp:0", f"tcp:{phone_port}").strip()
    if not out.isdigit():
        raise UserError(f"adb forward to phone {serial!r} gave no local port: {out[:200]!r}")
    local = int(out)
    try:
        yield local
    finally:
        with contextlib.suppress(UserError):  # the phone may be gone: nothing left to remove
            _adb("-s", serial, "forward", "--remove", f"tcp:{local}")


def check_device(serial: str) -> None:
    """One line unless adb sees `serial` ready for use."""
    states = devices(_adb("devices"))
    state = states.get(serial)
    if state == "device":
        return
    if state is None:
        seen = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
        raise UserError(f"no phone with serial {serial!r} is connected over adb (adb sees: "
                        f"{seen}): plug it in with USB debugging on, or pick one from "
                        f"`adb devices`")
    if state == "unauthorized":
        raise UserError(f"phone {serial!r} has not authorised this computer for USB debugging: "
                        f"unlock it, accept the 'Allow USB debugging?' prompt, then retry")
    raise UserError(f"phone {serial!r} is {state} to adb: reconnect the cable, or run "
                    f"`adb reconnect`")


def devices(listing: str) -> dict[str, str]:
    """serial -> state (device, unauthorized, offline, ...) from `adb devices` output."""
    out = {}
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            out[parts[0].strip()] = parts[1].split()[0] if parts[1].split() else ""
    return out


def _adb(*args: str) -> str:
    tool = shutil.which("adb")
    if tool is None:
        raise UserError("deploy to adb://SERIAL needs the adb client (Android platform-tools) on "
                        "PATH: apt install adb, or deploy over Wi-Fi to ssh://user@PHONE-IP:8022")
    try:
        proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"adb {' '.join(args)} did not answer in {TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("*")]
        raise UserError(f"adb {' '.join(args)} failed: "
                        f"{(lines or ['exit status ' + str(proc.returncode)])[-1].strip()}")
    return proc.stdout
