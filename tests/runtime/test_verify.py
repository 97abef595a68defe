"""verify through the CLI: a bundle that does not match its golden outputs exits 1, saying why."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tiny_models import ROOT

from edgepress.runtime import artifact


def _cli(*argv):
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgepress.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env)


@pytest.fixture
def failing_bundle(cnn_bundles, tmp_path):
    """The fp32 ONNX bundle with its golden outputs altered (negated): the model no longer
    reproduces them, though the bundle itself is intact (manifest, sha256, shapes)."""
    b = tmp_path / "onnx-fp32"
    shutil.copytree(cnn_bundles / "onnx-fp32", b)
    ins, outs = artifact.read_golden(b / artifact.GOLDEN)
    artifact.write_golden(b / artifact.GOLDEN, ins, {k: -v for k, v in outs.items()})
    return b


def test_failed_verification_exits_1_with_the_reasons(failing_bundle):
    proc = _cli("verify", str(failing_bundle))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "FAIL"
    reasons = [line for line in lines if line.startswith("FAIL output_0: ")]
    assert any("SNR" in r and "< 60.0 dB" in r for r in reasons), lines
    assert any("cosine" in r for r in reasons), lines
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


def test_failed_verification_as_json_exits_1(failing_bundle):
    proc = _cli("verify", str(failing_bundle), "--json")
    assert proc.returncode == 1, proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["passed"] is False and verdict["precision"] == "fp32"
    assert verdict["failures"] and all(f.startswith("output_0: ") for f in verdict["failures"])


def test_intact_bundle_exits_0(cnn_bundles):
    proc = _cli("verify", str(cnn_bundles / "onnx-fp32"))
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "PASS", proc.stdout
