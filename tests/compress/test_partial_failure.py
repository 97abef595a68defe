"""An engine or converter failing on one bundle costs that bundle only: the others are written
and verified, the failure is recorded (summary and manifests) and printed as one line, exit 1."""

import json

import pytest
from tiny_models import factory

from edgepress import cli
from edgepress.compress.quantize import paths


def _raising(module: str, name: str, message: str):
    """A function that raises RuntimeError from a frame of `module`, as the library's own code
    would (the guard names the library from the first frame outside edgepress)."""
    ns = {"__name__": module}
    exec(f"def {name}(*args, **kwargs):\n    raise RuntimeError({message!r})", ns)
    return ns[name]


@pytest.fixture
def tflite_fails(monkeypatch):
    import litert_torch

    monkeypatch.setattr(litert_torch, "convert", _raising(
        "litert_torch._convert.converter", "convert",
        "Could not legalize op aten.frobnicate\nsecond line of detail"))


def _compress(out, *flags):
    return cli.main(["compress", factory("cnn"), "--input-shape", "1,3,16,16", "--out", str(out),
                     *flags])


def _no_traceback(captured):
    assert "Traceback" not in captured.out + captured.err


def test_tflite_converter_failure_keeps_the_onnx_bundles(tmp_path, capsys, tflite_fails):
    out = tmp_path / "out"
    assert _compress(out, "--quantize", "fp16") == 1
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["onnx-fp16", "onnx-fp32"]
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("onnx-")]
    assert [(r[0], r[-1]) for r in rows] == [("onnx-fp32", "PASS"), ("onnx-fp16", "PASS")]
    failed = [line for line in captured.err.splitlines() if " failed (" in line]
    assert len(failed) == 2 and failed[0].startswith("edgepress: tflite-fp32 failed (export in "
                                                     "litert-torch): RuntimeError: Could not")
    assert "second line" not in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert [r["bundle"] for r in summary["rows"]] == ["onnx-fp32", "onnx-fp16"]
    fp32, fp16 = summary["failed"]
    assert (fp32["bundle"], fp32["stage"], fp32["library"]) == ("tflite-fp32", "export",
                                                                "litert-torch")
    assert "--format" in fp32["what_to_do"]
    assert fp16["bundle"] == "tflite-fp16" and "tflite-fp32 failed" in fp16["error"]
    assert "FAILED tflite-fp32 (export, litert-torch)" in (out / "summary.md").read_text()
    manifest = json.loads((out / "onnx-fp32" / "manifest.json").read_text())
    assert manifest["failed_bundles"] == summary["failed"]


def test_quantizer_failure_keeps_the_other_precisions(tmp_path, capsys, monkeypatch):
    fails = _raising("onnxruntime.quantization.quantize", "dynamic", "no kernel for op")
    monkeypatch.setitem(paths.METHODS, ("onnx", "dynamic"), [fails])
    out = tmp_path / "out"
    assert _compress(out, "--format", "onnx", "--quantize", "dynamic,fp16") == 1
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["onnx-fp16", "onnx-fp32"]
    (failure,) = json.loads((out / "summary.json").read_text())["failed"]
    assert (failure["bundle"], failure["stage"], failure["library"]) == \
        ("onnx-dynamic", "quantize", "onnxruntime")
    assert "leave dynamic out of --quantize" in failure["what_to_do"]


def test_every_bundle_failing_writes_nothing(tmp_path, capsys, tflite_fails):
    out = tmp_path / "out"
    assert _compress(out, "--format", "tflite") == 1
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "tflite-fp32 failed (export in litert-torch)" in captured.err
    assert "nothing was written" in captured.err
    assert not out.exists() and not list(tmp_path.iterdir())  # no temp dir left either


def test_bad_input_still_exits_2_before_any_converter_runs(tmp_path, capsys, tflite_fails):
    out = tmp_path / "out"
    assert _compress(out, "--quantize", "int4") == 2
    assert not out.exists()
    assert capsys.readouterr().err.startswith("edgepress: error:")
