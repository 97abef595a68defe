"""The README's tour, run as written, in order, after `make demo` (the run is slow: the demo
distils a real model, and `package` downloads the device's wheels once).

Each command is taken from the README's tour block and run by bash in a fresh folder holding the
repository's examples/ (so out/ is the test's own), with the venv's `edgepress` and `python`
first on PATH. A command whose comment says "exit N" must exit N, every other one 0. `make demo`
runs what the Makefile's target runs after its install. The deploy commands need a device: the
ssh one runs against the emulated Raspberry Pi when the run has it (`-m "slow and arm"` as root,
tests/devices/pi_emu.sh), else they are skipped, saying why, after every other command passed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tour_commands(readme: str) -> list[str]:
    """The commands of the sh block under '## A ... tour', continuation lines joined."""
    section = readme.split("\n## ", 2)[1:]
    tour = next(s for s in section if s.startswith("A ") and "tour" in s.splitlines()[0])
    block = re.search(r"```sh\n(.*?)```", tour, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]


def expected_status(command: str) -> int:
    comment = command.partition(" #")[2]
    found = re.search(r"\bexits? (\d)\b", comment)
    return int(found.group(1)) if found else 0


def test_the_tour_reads_its_commands():
    commands = tour_commands((ROOT / "README.md").read_text())
    assert commands[0].startswith("make demo")
    assert any(c.startswith("edgepress compare") and expected_status(c) == 3 for c in commands)
    assert any(c.startswith("edgepress compare") and expected_status(c) == 0 for c in commands)


def _emulated_device(request):
    """(url, identity, known_hosts) of the emulated Pi, or why there is none."""
    if "arm" not in (request.config.getoption("markexpr") or ""):
        return None, "the emulated aarch64 device runs only in CI's Arm step (-m arm, as root)"
    if os.geteuid() != 0:
        return None, "the emulated device needs root"
    emu = ROOT / "tests" / "devices" / "pi_emu.sh"
    subprocess.run([str(emu), "up"], check=True, timeout=3600)
    ssh = Path(os.environ.get("EDGEPRESS_PI_CACHE", "/var/cache/edgepress-pi")) / "ssh"
    port, user = (ssh / "port").read_text().strip(), (ssh / "user").read_text().strip()
    return (f"ssh://{user}@127.0.0.1:{port}", ssh / "client", ssh / "known_hosts"), None


def _as_run(command: str, device) -> str | None:
    """The command as this run executes it; None for a deploy it cannot reach."""
    if command.startswith("make demo"):
        return "python examples/crepe/demo.py"
    if not command.startswith("edgepress deploy"):
        return command
    if device is None or "ssh://" not in command:
        return None
    url, identity, known = device
    command = re.sub(r"ssh://\S+", url, command.partition(" #")[0])
    command = re.sub(r"--identity \S+", f"--identity {identity}", command)
    return f"{command} --known-hosts {known} --runs 3 --min-seconds 0"


@pytest.mark.slow
def test_the_readme_tour_runs_in_order(tmp_path, request):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    device, why = _emulated_device(request)
    skipped = []
    for command in tour_commands((ROOT / "README.md").read_text()):
        run = _as_run(command, device)
        if run is None:
            skipped.append(command.partition(" #")[0].split()[:3])
            continue
        proc = subprocess.run(run, shell=True, executable="/bin/bash", cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == expected_status(command), \
            f"{run}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    if skipped:
        pytest.skip(f"every tour command passed except {len(skipped)} deploy step(s) not run: "
                    f"{why or 'an adb deploy needs a phone (no phone here)'}")
