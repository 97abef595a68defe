"""deploy: package a bundle for a device, install it there over SSH, verify and bench it there,
and bring the report back. The device is ssh://user@host[:port] (a Pi, or a phone's Termux sshd
on port 8022 over Wi-Fi) or adb://[user@]SERIAL[:port] (a phone over USB: adb.py forwards a local
port to its sshd for the length of the deploy). termux.py decides, from what the device's Python
says about itself, whether the offline package's wheels or Termux's own packages are used.

On the device everything lives under ~/edgepress:

    remote.py                 the device's half (stdlib only): unpack, activate, prune
    incoming/SHA.tar.gz       the uploaded package (removed once installed)
    releases/ID/              an unpacked package with its own venv (ID: the first 16 hex digits
                              of the package's sha256)
    current -> releases/ID    the working install, switched in one rename after verify passes
    previous                  the release before it (kept, so a rollback is one `activate`)

Checks run before anything is written (Python version, venv support, arch, free disk), and each
later step writes beside its target and renames, so a deploy cut off anywhere, the SSH connection
included, leaves `current` as it was. SSH is key-only with the host key checked against
known_hosts (paramiko's RejectPolicy): never a prompt, never a trust-on-first-use.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgepress.devices import package, profile, termux
from edgepress.devices.ssh import Connection, Target, parse_target, reach  # noqa: F401 (API)
from edgepress.errors import UserError
from edgepress.runtime import artifact

REMOTE_ROOT = "edgepress"  # relative to the login's home directory
MIN_PYTHON = (3, 10)  # pyproject's requires-python: edgepress's wheel installs on nothing older
REMOTE_SCRIPT = Path(__file__).with_name("remote.py")

# What the device says about itself; runs on its python3 before anything is written there.
_FACTS = termux.FACTS + """
import importlib.util, json, os, platform, shutil, sys
p = os.path.expanduser("~/ROOT")
while not os.path.isdir(p):
    p = os.path.dirname(p)
try:
    import ensurepip, venv
    has_venv = True
except ImportError:
    has_venv = False
print(json.dumps({"python": "{}.{}".format(*sys.version_info[:2]),
                  "machine": platform.machine(),
                  "free_bytes": shutil.disk_usage(p).free, "venv": has_venv,
                  "sha256sum": shutil.which("sha256sum") is not None,
                  "system_numpy": importlib.util.find_spec("numpy") is not None,
                  **_env_facts()}))
""".replace("ROOT", REMOTE_ROOT)


@dataclass
class Result:
    target: str
    package: package.Package
    release: str
    facts: dict
    environment: str  # the install path taken (termux.describe)
    verdict: dict
    report: dict | None
    report_path: Path | None


def apply(bundle_dir, target: str, device: str, identity=None, known_hosts=None, out=None,
          bench_flags=(), connect=Connection, cache=None, overwrite: bool = False) -> Result:
    """Deploys `bundle_dir` to `target`, verifies and benches it there; returns what it saw."""
    prof = profile.load(device)
    if prof.deployable_reason():
        raise UserError(prof.deployable_reason())
    fmt = artifact.open_bundle(bundle_dir).format  # a broken bundle fails before any connection
    if out is not None:
        from edgepress import atomic

        atomic.refuse_existing(Path(out), overwrite)
    with reach(target) as where:
        conn = connect(where, identity, known_hosts)
        try:
            facts = preflight(conn, prof)
            prof = termux.adapt(prof, facts, fmt, where)
            env = termux.describe(facts)
            with tempfile.TemporaryDirectory(prefix="edgepress-deploy-") as tmp:
                pkg = package.build(bundle_dir, prof, Path(tmp) / "package.tar.gz",
                                    python=facts["python"], cache=cache)
                check_disk(facts, pkg, where)
                release = install(conn, pkg)
                verdict = verify(conn, release)
                if not verdict["passed"]:  # a failing package never becomes `current`
                    return Result(str(where), pkg, release, facts, env, verdict, None, None)
                activate(conn, release)
                rep, path = bench(conn, bench_flags, out)
                return Result(str(where), pkg, release, facts, env, verdict, rep, path)
        finally:
            conn.close()


def preflight(conn, prof: profile.Profile) -> dict:
    """The device's Python, arch, venv support and free disk, checked against what we need."""
    rc, out, err = conn.run(f"python3 -c {shlex.quote(_FACTS)}")
    if rc == 127:
        raise UserError(f"{conn.target} has no python3: install Python "
                        f">= {'.'.join(map(str, MIN_PYTHON))}")
    try:
        facts = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise UserError(f"{conn.target}: python3 could not describe the device: "
                        f"{_last_line(err)}") from None
    version = tuple(int(v) for v in facts["python"].split("."))
    if version < MIN_PYTHON:
        raise UserError(f"{conn.target} has Python {facts['python']}; edgepress needs >= "
                        f"{'.'.join(map(str, MIN_PYTHON))}")
    if not facts["venv"]:
        raise UserError(f"{conn.target}: python3 cannot create venvs (no ensurepip): install "
                        f"python3-venv")
    if not facts["sha256sum"]:
        raise UserError(f"{conn.target} has no sha256sum (coreutils): packages are checked with it")
    if "numpy" in prof.system_packages and not facts.get("system_numpy"):
        raise UserError(f"{conn.target} has no numpy of its own, which {prof.name!r} needs (PyPI "
                        f"has no {prof.arch} wheel): apt install python3-numpy")
    if facts["machine"] != prof.arch:
        raise UserError(f"{conn.target} is {facts['machine']}, but device profile {prof.name!r} "
                        f"is {prof.arch}: pick the matching --device")
    return facts


def check_disk(facts: dict, pkg: package.Package, where) -> None:
    need = pkg.manifest["install_bytes"]
    if facts["free_bytes"] < need:
        raise UserError(f"{where} has {_human(facts['free_bytes'])} free under "
                        f"~/{REMOTE_ROOT}; the install needs {_human(need)}")


def _human(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def install(conn, pkg: package.Package) -> str:
    """Uploads and unpacks the package into releases/ID and installs its venv; returns ID.
    Nothing here touches `current`."""
    release = pkg.sha256[:16]
    root = REMOTE_ROOT
    _check(conn, f"mkdir -p {root}/incoming {root}/releases", "preparing ~/edgepress")
    conn.put(REMOTE_SCRIPT, f"{root}/remote.py")
    archive = f"{root}/incoming/{pkg.sha256}.tar.gz"
    conn.put(pkg.path, archive)
    _check(conn, f"python3 {root}/remote.py unpack {archive} {pkg.sha256} "
                 f"{root}/releases/{release} && rm -f {archive}", "unpacking the package")
    _check(conn, f"sh {root}/releases/{release}/run.sh install", "installing the package")
    return release


def verify(conn, release: str) -> dict:
    rc, out, err = conn.run(f"sh {REMOTE_ROOT}/releases/{release}/run.sh verify")
    start = out.find("{")
    if rc not in (0, 1) or start < 0:
        raise UserError(f"verify on {conn.target} failed to run: {_last_line(err)}")
    return json.loads(out[start:])


def activate(conn, release: str) -> None:
    _check(conn, f"python3 {REMOTE_ROOT}/remote.py activate {REMOTE_ROOT} {release} && "
                 f"python3 {REMOTE_ROOT}/remote.py prune {REMOTE_ROOT}", "switching to it")


def bench(conn, flags, out) -> tuple[dict, Path | None]:
    """Runs bench on the device (the new `current`) and brings its report back."""
    from edgepress.runtime import report

    args = " ".join(shlex.quote(f) for f in flags)
    _check(conn, f"sh {REMOTE_ROOT}/current/run.sh bench {args}", "bench on the device")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "bench.json"
        conn.get(f"{REMOTE_ROOT}/current/reports/bench.json", local)
        rep = report.load(local)
        if out is not None:
            report.save(rep, Path(out), overwrite=True)
    return rep, (Path(out) if out is not None else None)


def _check(conn, command: str, what: str) -> str:
    rc, out, err = conn.run(command)
    if rc != 0:
        raise UserError(f"{what} on {conn.target} failed (exit {rc}): {_last_line(err or out)}")
    return out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"
