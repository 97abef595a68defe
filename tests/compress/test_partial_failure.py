"""An engine or converter failing on one bundle costs that bundle only: the others are written
and verified, the failure is recorded (summary and manifests) and printed as one line, exit 1."""

import json

import pytest
from tiny_models import factory

from edgepress import cli
from edgepress.compress.quantize import paths
from edgepress.runtime import bench, engines
from edgepress.runtime.session import EngineError


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


class _RefusingLiteRT(engines._LiteRT):
    def __init__(self, path, threads, options):
        raise ValueError("Didn't find op for builtin opcode 'FROBNICATE' version '3'")


class _OrtFailingOn(engines._OnnxRuntime):
    """onnxruntime that loads every file but cannot run the one of bundle FAILING."""

    FAILING = "onnx-fp16"

    def __init__(self, path, threads, options):
        super().__init__(path, threads, options)
        self.refuses = path.parent.name == self.FAILING

    def run(self, feeds):
        if self.refuses:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned "
                               "while running Cast node")
        return super().run(feeds)


def _manifests_list(out, failure):
    for manifest in out.glob("*/manifest.json"):
        assert failure in json.loads(manifest.read_text())["failed_bundles"]


def test_engine_refusing_an_exported_file_costs_that_bundle(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(engines.BACKENDS, "litert", _RefusingLiteRT)
    out = tmp_path / "out"
    assert _compress(out) == 1  # was 2: the engine's refusal read as the user's bad input
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["onnx-fp32"]
    (failure,) = json.loads((out / "summary.json").read_text())["failed"]
    assert (failure["bundle"], failure["stage"], failure["library"]) == \
        ("tflite-fp32", "export", "ai-edge-litert")
    assert failure["error"] == ("litert cannot load it: ValueError: Didn't find op for builtin "
                                "opcode 'FROBNICATE' version '3'")
    assert failure["what_to_do"].startswith("leave tflite out of --format")
    _manifests_list(out, failure)


def test_engine_failing_at_verification_costs_that_bundle(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(engines.BACKENDS, "onnxruntime", _OrtFailingOn)
    out = tmp_path / "out"
    assert _compress(out, "--quantize", "fp16") == 1
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == \
        ["onnx-fp32", "tflite-fp16", "tflite-fp32"]
    assert "edgepress: onnx-fp16 failed (verify in onnxruntime): onnxruntime cannot run it: " \
           "RuntimeError: [ONNXRuntimeError]" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert [r["bundle"] for r in summary["rows"]] == ["onnx-fp32", "tflite-fp32", "tflite-fp16"]
    (failure,) = summary["failed"]
    assert failure["what_to_do"] == ("leave fp16 out of --quantize (or onnx out of --format), try "
                                     "another onnxruntime version, or report this error to "
                                     "onnxruntime")
    _manifests_list(out, failure)  # onnx-fp32's was written before onnx-fp16 failed


def test_engine_failing_in_the_summary_costs_that_bundle(tmp_path, capsys, monkeypatch):
    timed = bench.apply

    def bench_apply(path, **kwargs):
        if path.name == "tflite-fp32":
            raise EngineError(path / "model.tflite", "litert", "run", RuntimeError("boom"))
        return timed(path, **kwargs)

    monkeypatch.setattr(bench, "apply", bench_apply)
    out = tmp_path / "out"
    assert _compress(out, "--quantize", "fp16") == 1
    _no_traceback(capsys.readouterr())
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["bundle"]: r for r in summary["rows"]}
    assert sorted(rows) == ["onnx-fp16", "onnx-fp32", "tflite-fp16"]
    assert rows["tflite-fp16"]["value"] is None  # no fp32 bundle of its format to compare with
    (failure,) = summary["failed"]
    assert (failure["bundle"], failure["stage"]) == ("tflite-fp32", "summary")
    assert not (out / "tflite-fp32").exists()
    _manifests_list(out, failure)


def test_a_failure_in_edgepress_itself_names_edgepress(tmp_path, capsys, monkeypatch):
    broken = _raising("edgepress.compress.quantize.onnx", "fp16", "a bug of edgepress's own")
    monkeypatch.setitem(paths.METHODS, ("onnx", "fp16"), [broken])
    out = tmp_path / "out"
    assert _compress(out, "--format", "onnx", "--quantize", "fp16") == 1
    (failure,) = json.loads((out / "summary.json").read_text())["failed"]
    assert failure["library"] == "edgepress"  # was "unknown"
    assert "bug in edgepress: please report it" in failure["what_to_do"]


def test_the_error_keeps_its_first_line_whole(tmp_path, capsys, monkeypatch):
    long = "no kernel for op " + "x" * 400
    fails = _raising("onnxruntime.quantization.quantize", "dynamic", long + "\nsecond line")
    monkeypatch.setitem(paths.METHODS, ("onnx", "dynamic"), [fails])
    out = tmp_path / "out"
    assert _compress(out, "--format", "onnx", "--quantize", "dynamic") == 1
    (failure,) = json.loads((out / "summary.json").read_text())["failed"]
    assert failure["error"] == f"RuntimeError: {long}"
