"""The bad-input corpus (cases.toml + files/): every case exits with its exact status and one
line on stderr that names the problem, without a traceback, and leaves nothing behind.

Cases run in this process through `cli.main` (what `edgepress` calls), with stderr captured at
the file-descriptor level, so an engine's own C++ log line counts against "one line" too; one
case per command also runs as a real `python -m edgepress.cli` process.
"""

import os
import pickle
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from tiny_models import ROOT, TINY

from edgepress import cli

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
CASES = {c["id"]: c for c in tomllib.loads((HERE / "cases.toml").read_text())["case"]}


class _Evil:
    """Unpickling this would create a file: a loader must refuse, not execute it."""

    def __reduce__(self):
        return (open, (str(Path(os.environ.get("TMPDIR", "/tmp")) / "edgepress-bad-inputs-pwned"),
                       "w"))


@pytest.fixture(scope="module")
def valid_report(tmp_path_factory, cnn_bundles):
    from edgepress.runtime import bench, report

    path = tmp_path_factory.mktemp("report") / "report.json"
    protocol = bench.Protocol(warmup_runs=1, warmup_s=0, min_runs=5, min_s=0, memory=False)
    report.save(bench.apply(cnn_bundles / "onnx-fp32", protocol=protocol), path)
    return path


def _prepare(case: dict, tmp: Path, cnn_bundles: Path, valid_report: Path) -> dict:
    """The case's folder: a valid bundle (with the case's overlay), a report, existing outputs
    and pickles; returns the placeholder values."""
    shutil.copytree(cnn_bundles / "onnx-fp32", tmp / "bundle")
    for name, source in case.get("overlay", {}).items():
        (tmp / "bundle" / name).unlink()
        if source:
            shutil.copy(FILES / source, tmp / "bundle" / name)
    shutil.copy(valid_report, tmp / "report.json")
    (tmp / "existing").mkdir()
    (tmp / "existing" / "keep.txt").write_text("user data")
    (tmp / "existing.json").write_text("{}")
    with open(tmp / "evil.pt", "wb") as f:
        pickle.dump(_Evil(), f)
    with open(tmp / "evil_weights.pt", "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    (tmp / "syntax_error.py").write_text("def build(:\n")
    return {"files": str(FILES), "tiny": str(TINY), "tmp": str(tmp), "out": str(tmp / "out"),
            "bundle": str(tmp / "bundle"), "tflite_bundle": str(cnn_bundles / "tflite-fp32"),
            "report": str(tmp / "report.json"), "existing": str(tmp / "existing"),
            "existing_file": str(tmp / "existing.json"), "evil": str(tmp / "evil.pt"),
            "evil_weights": str(tmp / "evil_weights.pt"),
            "syntax_error": str(tmp / "syntax_error.py")}


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_size if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, tmp_path, cnn_bundles, valid_report, capfd, monkeypatch):
    case = CASES[case_id]
    values = _prepare(case, tmp_path, cnn_bundles, valid_report)
    argv = [_fill(a, values) for a in case["argv"]]
    before = _listing(tmp_path)
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd lands here too
    capfd.readouterr()
    status = cli.main(argv)
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert status == case.get("status", 2), f"{case_id}: exit {status}\n{out}\n{err}"
    assert len(lines) == 1, f"{case_id}: stderr is not one line:\n{err}"
    assert lines[0].startswith("edgepress: error: "), lines[0]
    assert _fill(case["message"], values) in lines[0], f"{case_id}: {lines[0]}"
    assert "Traceback" not in err
    assert _listing(tmp_path) == before, f"{case_id}: output left behind or inputs changed"
    assert not (Path(values["tmp"]).parent / "edgepress-bad-inputs-pwned").exists()


# One case per command as a real process: the exit status is the process's, and nothing
# printed before main() (an import, an engine initialising) can hide from the check.
REAL_PROCESS = ["compress: truncated onnx", "compress: weights do not match the model",
                "compress: calibration npz with NaN", "verify: manifest not JSON",
                "bench: truncated tflite", "compare: report not JSON",
                "inspect: truncated model file", "estimate: not a bundle", "unknown command"]


@pytest.mark.parametrize("case_id", REAL_PROCESS)
def test_bad_input_real_process(case_id, tmp_path, cnn_bundles, valid_report):
    case = CASES[case_id]
    values = _prepare(case, tmp_path, cnn_bundles, valid_report)
    argv = [_fill(a, values) for a in case["argv"]]
    before = _listing(tmp_path)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "edgepress.cli", *argv], capture_output=True,
                          text=True, cwd=tmp_path, env=env)
    assert proc.returncode == case.get("status", 2), proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("edgepress: error: ") and \
        _fill(case["message"], values) in proc.stderr
    assert _listing(tmp_path) == before


def test_every_corpus_file_is_used():
    used = " ".join(" ".join(c["argv"]) + " " + " ".join(c.get("overlay", {}).values())
                    for c in CASES.values())
    unused = [p.name for p in FILES.iterdir() if p.name not in used]
    assert not unused, f"corpus files no case uses: {unused}"


def test_pickles_are_made_here_not_committed():
    """The code-carrying pickles are written per test (torch is only needed to keep the
    imports honest: loading them would go through torch.load)."""
    assert torch.__version__ and not list(FILES.glob("*evil*"))
