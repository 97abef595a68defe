"""A latency table's model files timed on a device over SSH (`--latency-on ssh://user@host`):
uploaded as one archive to ~/edgepress/latency/, timed there by the runtime of the release
`edgepress deploy` installed (edgepress.runtime.layer_times), the folder removed afterwards.
The connection is deploy's (devices/ssh.py): key-only, the host key checked against
~/.ssh/known_hosts. Under emulation the figures mean nothing; the path itself is the same."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

from edgepress.errors import UserError

PYTHON = "edgepress/current/venv/bin/python"  # the deployed release's venv (devices/package.py)
FOLDER = "edgepress/latency"
CONNECT = None  # tests put a stand-in connection class here; None: devices.ssh.Connection


def time_files(files: dict, where, rounds: int | None = None, block_s: float | None = None) -> dict:
    """{key: p50 ms} of each file, timed on where.on."""
    from edgepress.devices import ssh

    names = {key: f"f{i:04d}{Path(p).suffix}" for i, (key, p) in enumerate(files.items())}
    with tempfile.TemporaryDirectory(prefix="edgepress-latency-up-") as tmp:
        archive = Path(tmp) / "cells.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for key, path in files.items():
                tar.add(path, arcname=names[key])
        with ssh.reach(where.on) as target:
            conn = (CONNECT or ssh.Connection)(target)
            try:
                times = _run(conn, archive, where.threads, rounds, block_s)
            finally:
                conn.close()
    return {key: times[name] for key, name in names.items()}


def _run(conn, archive: Path, threads: int, rounds, block_s) -> dict:
    rc, _, _ = conn.run(f"test -x {PYTHON}")
    if rc != 0:
        raise UserError(f"--latency-on {conn.target}: no edgepress runtime there ({PYTHON}): "
                        f"run `edgepress deploy` to it once, then time layers on it")
    folder = f"{FOLDER}/{archive.stat().st_size:x}-{id(archive):x}"
    _check(conn, f"mkdir -p {folder}")
    conn.put(archive, f"{folder}.tar.gz")
    _check(conn, f"tar -xzf {folder}.tar.gz -C {folder} && rm -f {folder}.tar.gz")
    timing = "" if rounds is None else f" {rounds} {block_s}"
    out = _check(conn, f"{PYTHON} -m edgepress.runtime.layer_times {folder} {threads}{timing}; "
                       f"status=$?; rm -rf {folder}; exit $status")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise UserError(f"--latency-on {conn.target}: the device's timing printed no table: "
                        f"{out.strip()[-200:] or 'nothing'}") from None


def _check(conn, command: str) -> str:
    rc, out, err = conn.run(command)
    if rc != 0:
        last = (err or out).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"timing layers on {conn.target} failed (exit {rc}): {last[0][:300]}")
    return out
