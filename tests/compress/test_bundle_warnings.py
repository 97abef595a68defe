"""Warnings and calibration records attach only to the bundles they concern."""

import json
import logging

from tiny_models import factory

from edgepress import cli


def test_random_calibration_warns_only_on_the_calibrated_bundle(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compress", factory("cnn"), "--input-shape", "1,3,16,16", "--format", "onnx",
            "--quantize", "int8,fp16,dynamic", "--calib", "random", "--out", str(out)]
    assert cli.main(argv) == 0
    manifests = {p: json.loads((out / f"onnx-{p}" / "manifest.json").read_text())
                 for p in ("int8", "fp16", "dynamic")}
    assert "random" in manifests["int8"]["calibration"]["warning"]
    assert any("random noise" in w for w in manifests["int8"]["warnings"])
    for precision in ("fp16", "dynamic"):  # they read no calibration data
        assert manifests[precision]["calibration"] is None
        assert not any("random noise" in w for w in manifests[precision]["warnings"])
    warned = [line for line in capsys.readouterr().err.splitlines() if "random noise" in line]
    assert warned and all(line.startswith("onnx-int8:") for line in warned)


def _warning_from(module: str, message: str, then):
    """A quantization method that warns from a frame of `module` (as that library would), then
    runs `then`."""
    ns = {"__name__": module, "then": then}
    exec("import warnings\ndef method(*args, **kwargs):\n"
         f"    warnings.warn({message!r}, UserWarning)\n    return then(*args, **kwargs)", ns)
    return ns["method"]


def test_a_library_warning_is_recorded_on_its_bundle_only(tmp_path, capsys, caplog,
                                                          monkeypatch):
    from edgepress.compress.quantize import paths

    message = "the float16 converter kept 3 Cast nodes"
    (fp16,) = paths.METHODS[("onnx", "fp16")]
    monkeypatch.setitem(paths.METHODS, ("onnx", "fp16"),
                        [_warning_from("onnxruntime.transformers.float16", message, fp16)])
    out = tmp_path / "out"
    argv = ["compress", factory("cnn"), "--input-shape", "1,3,16,16", "--format", "onnx",
            "--quantize", "fp16,dynamic", "--out", str(out)]
    with caplog.at_level(logging.INFO, logger="edgepress.compress.guard"):
        assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert message not in captured.out + captured.err  # quiet: recorded, not printed
    manifests = {p: json.loads((out / f"onnx-{p}" / "manifest.json").read_text())
                 for p in ("fp32", "fp16", "dynamic")}
    expected = {"library": "onnxruntime", "category": "UserWarning", "message": message}
    assert expected in manifests["fp16"]["library_warnings"]
    for other in ("fp32", "dynamic"):
        assert expected not in manifests[other].get("library_warnings", [])
    rows = {r["bundle"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert expected in rows["onnx-fp16"]["library_warnings"]
    assert "onnx-fp16 " in (out / "summary.md").read_text().split("warnings while building:")[1]
    # --verbose shows it, through logging: the record the guard logs at INFO
    assert [r.getMessage() for r in caplog.records if message in r.getMessage()] == \
        [f"onnx-fp16: onnxruntime UserWarning: {message}"]


def test_the_summary_keeps_each_bundles_own_warnings(tmp_path):
    out = tmp_path / "out"
    argv = ["compress", factory("cnn"), "--input-shape", "1,3,16,16", "--format", "onnx",
            "--quantize", "int8,fp16", "--calib", "random", "--out", str(out)]
    assert cli.main(argv) == 0
    fp32 = json.loads((out / "onnx-fp32" / "manifest.json").read_text())
    assert not fp32.get("warnings")
    rows = {r["bundle"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert any("random noise" in w for w in rows["onnx-int8"]["warnings"])
    assert not any("random noise" in w for r in ("onnx-fp32", "onnx-fp16")
                   for w in rows[r].get("warnings", ()))
    md = (out / "summary.md").read_text()
    assert "warning, onnx-int8: calibrated on random noise" in md
    assert "Agreement with fp32 on random." in md  # unlabelled data: it said "Accuracy on"
