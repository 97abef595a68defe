"""Warnings and calibration records attach only to the bundles they concern."""

import json

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
