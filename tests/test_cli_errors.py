"""Bad input: one clear line on stderr, exit status 2, no traceback, no output left behind."""

import pickle
import subprocess
import sys

import pytest
import torch
from tiny_models import ROOT, TINY, factory

from edgepress import cli


class _Evil:
    """Unpickling this would run a shell command: a loader must refuse, not execute it."""

    def __reduce__(self):
        return (__import__("os").system, ("touch /tmp/edgepress-pwned",))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, cnn_bundles):
    d = tmp_path_factory.mktemp("bad")
    onnx_bytes = (cnn_bundles / "onnx-fp32" / "model.onnx").read_bytes()
    tfl_bytes = (cnn_bundles / "tflite-fp32" / "model.tflite").read_bytes()
    (d / "trunc.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 3])
    (d / "trunc.tflite").write_bytes(tfl_bytes[: len(tfl_bytes) // 3])
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2)), d / "ok.pt")
    (d / "trunc.pt").write_bytes((d / "ok.pt").read_bytes()[:200])
    with open(d / "evil.pt", "wb") as f:
        pickle.dump(_Evil(), f)
    with open(d / "evil_weights.pt", "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    torch.save({"not_a_key": torch.zeros(1)}, d / "wrong_keys.pt")
    return d


CNN = ["--input-shape", "1,3,16,16"]

CASES = {
    "missing file": (["compress", "nope/missing.onnx"], "does not exist"),
    "truncated onnx": (["compress", "{d}/trunc.onnx", "--format", "onnx"],
                       "not a valid ONNX model"),
    "truncated tflite bench": (["bench", "{d}/trunc.tflite"], "cannot be loaded by"),
    "truncated onnx bench": (["bench", "{d}/trunc.onnx"], "cannot be loaded by"),
    "truncated pt": (["compress", "{d}/trunc.pt", *CNN], "not a TorchScript archive"),
    "pickle that executes code": (["compress", "{d}/evil.pt", *CNN], "could execute code"),
    "pickled weights that execute code": (
        ["compress", factory("cnn"), "--weights", "{d}/evil_weights.pt", *CNN],
        "could execute code"),
    "unknown format": (["compress", factory("cnn"), *CNN, "--format", "onnx,coreml"],
                       "format 'coreml' is not one of: onnx, tflite"),
    "factory attr missing": (["compress", f"{TINY}:nope", *CNN], "has no callable 'nope'"),
    "factory module missing": (["compress", "no_such_pkg.models:net", *CNN],
                               "cannot be imported"),
    "factory returns non-module": (["compress", f"{TINY}:not_a_module", *CNN],
                                   "not a torch.nn.Module"),
    "input shape not numbers": (["compress", factory("cnn"), "--input-shape", "1,3,x"],
                                "expected positive integers"),
    "input shape wrong rank": (["compress", factory("cnn"), "--input-shape", "1,3,16"],
                               "the model cannot run on inputs x=[1,3,16]"),
    "input shape missing": (["compress", factory("cnn")], "pass --input-shape"),
    "input shape unknown name": (["compress", factory("cnn"), "--input-shape", "y=1,3,16,16"],
                                 "has inputs: x"),
    "weights keys mismatch": (["compress", factory("cnn"), "--weights", "{d}/wrong_keys.pt",
                               *CNN], "do not match the model: missing conv1.weight"),
    "unknown layout": (["compress", factory("cnn"), *CNN, "--tflite-layout", "nchwc"],
                       "--tflite-layout 'nchwc' is not one of"),
    "unknown flag": (["compress", factory("cnn"), "--formt", "onnx"], "unrecognized arguments"),
    "verify not a bundle": (["verify", "{d}/trunc.onnx"], "is not a directory"),
    "bench bad threads": (["bench", "{d}/trunc.onnx", "--threads", "0"], "--threads '0'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2(case, bad_files, tmp_path, capsys):
    argv, expected = CASES[case]
    argv = [a.format(d=bad_files) for a in argv]
    out = tmp_path / "out"
    if argv[0] == "compress":
        argv += ["--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgepress: error: ") and expected in err, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*")), "output left behind"


def test_evil_pickle_never_ran(bad_files, tmp_path):
    import os

    assert not os.path.exists("/tmp/edgepress-pwned")


def test_existing_out_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    argv = ["compress", factory("cnn"), *CNN, "--format", "onnx", "--out", str(out)]
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    assert cli.main(argv + ["--overwrite"]) == 0
    assert (out / "onnx-fp32" / "model.onnx").is_file() and not (out / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or backup dirs remain


def test_real_process_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgepress.cli", "verify", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"edgepress: error: bundle {str(tmp_path / 'x')!r} is not a directory "
        f"(expected one written by `edgepress compress`)"]
