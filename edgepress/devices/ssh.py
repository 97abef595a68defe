"""ssh: one key-only SSH connection to a device (paramiko), and how an address becomes one.

ssh://user@host[:port] is used as given; adb://[user@]SERIAL[:port] holds an adb forward to the
phone for the length of the block (adb.py) and looks the host key up by the phone's serial. The
host key is always checked against known_hosts (paramiko's RejectPolicy): never a prompt, never a
trust-on-first-use; every way a connection fails is one line.
"""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from edgepress.errors import UserError

CONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Target:
    user: str
    host: str
    port: int = 22
    alias: str | None = None  # the name its host key is known by (adb-SERIAL), when not host

    def __str__(self) -> str:
        if self.alias:
            return f"{self.user}@{self.alias} (adb forward {self.host}:{self.port})"
        return f"{self.user}@{self.host}:{self.port}"


@contextlib.contextmanager
def reach(text: str):
    """The Target for an ssh:// or adb:// address, with adb's forward held for the block."""
    if not text.startswith("adb://"):
        yield parse_target(text)
        return
    from edgepress.devices import adb

    serial, user, phone_port = adb.parse(text)
    with adb.forward(serial, phone_port) as local:
        yield Target(user, "127.0.0.1", local, alias=adb.alias(serial))


def parse_target(text: str) -> Target:
    """ssh://user@host[:port] (IPv6 hosts in brackets)."""
    m = re.fullmatch(r"ssh://([^@/:\s]+)@(\[[0-9a-fA-F:]+\]|[^@/:\s\[\]]+)(?::(\d{1,5}))?/?", text)
    if not m or not 0 < int(m.group(3) or 22) < 65536:
        raise UserError(f"device address {text!r}: expected ssh://user@host[:port]")
    return Target(m.group(1), m.group(2).strip("[]"), int(m.group(3) or 22))


class Connection:
    """One SSH connection over paramiko: run a command, upload, download."""

    def __init__(self, target: Target, identity=None, known_hosts=None,
                 timeout: float = CONNECT_TIMEOUT_S):
        self.target = target
        self.client = _connect(target, identity, known_hosts, timeout)
        self._sftp = None

    def run(self, command: str) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of a command run by the login shell in the home dir."""
        try:
            _, out, err = self.client.exec_command(command)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
            status = out.channel.recv_exit_status()
        except (OSError, EOFError, _ssh_error()) as e:
            raise UserError(f"lost the SSH connection to {self.target}: {e}") from None
        if status == -1:  # the channel closed without an exit status: the connection went
            raise UserError(f"lost the SSH connection to {self.target} while running: "
                            f"{command[:80]}")
        return status, stdout, stderr

    def put(self, local: Path, remote: str) -> None:
        """Uploads to REMOTE.part, then renames: REMOTE is whole or absent."""
        try:
            sftp = self._sftp_client()
            sftp.put(str(local), remote + ".part")
            sftp.posix_rename(remote + ".part", remote)
        except (OSError, EOFError, _ssh_error()) as e:
            raise UserError(f"upload to {self.target}:{remote} failed: {e}") from None

    def get(self, remote: str, local: Path) -> None:
        try:
            self._sftp_client().get(remote, str(local))
        except (OSError, EOFError, _ssh_error()) as e:
            raise UserError(f"download of {self.target}:{remote} failed: {e}") from None

    def _sftp_client(self):
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def close(self) -> None:
        self.client.close()


def _ssh_error():
    import paramiko

    return paramiko.SSHException


def _connect(target: Target, identity, known_hosts, timeout: float):
    """A paramiko client, or one line saying why not (unreachable, host key, key rejected)."""
    try:
        import paramiko
    except ImportError:
        raise UserError("deploy needs paramiko: pip install 'edgepress[deploy]'") from None
    known = Path(known_hosts or "~/.ssh/known_hosts").expanduser()
    if not known.is_file():
        raise UserError(f"known_hosts file {str(known)!r} does not exist: add the device's host "
                        f"key to it (check its fingerprint) or pass --known-hosts FILE")
    if identity is not None and not Path(identity).expanduser().is_file():
        raise UserError(f"--identity {str(identity)!r} does not exist")
    client = paramiko.SSHClient()
    client.load_host_keys(str(known))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # never trust on first use
    where = str(target)
    try:
        # an adb forward's port changes every time: the host key is looked up by the phone's
        # alias instead (paramiko names a port-22 host by its bare name, as ssh's HostKeyAlias)
        sock = socket.create_connection((target.host, target.port), timeout) \
            if target.alias else None
        client.connect(target.alias or target.host, 22 if target.alias else target.port,
                       username=target.user, sock=sock,
                       key_filename=str(Path(identity).expanduser()) if identity else None,
                       look_for_keys=identity is None, allow_agent=identity is None,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    except paramiko.BadHostKeyException:
        raise UserError(f"host key of {where} does not match {str(known)!r}: refusing to "
                        f"connect (the device was reinstalled, or someone is in between)") from None
    except paramiko.PasswordRequiredException:
        raise UserError(f"the key for {where} is passphrase-protected: edgepress never prompts; "
                        f"use an unencrypted deploy key or load it in ssh-agent") from None
    except paramiko.AuthenticationException:
        raise UserError(f"{where} rejected the key ({identity or 'default keys and ssh-agent'}): "
                        f"add its public key to the device's ~/.ssh/authorized_keys") from None
    except paramiko.SSHException as e:
        if "known_hosts" in str(e):
            name = target.alias or (target.host if target.port == 22
                                    else f"[{target.host}]:{target.port}")
            how = (f"`ssh -o HostKeyAlias={target.alias}` files it" if target.alias
                   else "add it")
            raise UserError(f"host key of {where} is not in {str(known)!r} as {name!r}: refusing "
                            f"to connect ({how} after checking its fingerprint)") from None
        if "banner" in str(e):  # accepted, then closed or silent: adb's forward with no sshd
            raise _no_sshd(where) from None
        raise UserError(f"SSH to {where} failed: {e}") from None
    except EOFError:
        raise _no_sshd(where) from None
    except OSError as e:  # refused, unreachable, timed out (socket.timeout is an OSError)
        raise UserError(f"cannot reach {where}: {getattr(e, 'strerror', None) or e}") from None
    return client


def _no_sshd(where: str) -> UserError:
    return UserError(f"nothing answers SSH at {where}: start sshd on the device (in Termux: "
                     f"`pkg install openssh && sshd`, port 8022)")
