"""inspect: the figures of a model file, on the device side (no torch, no onnx package), and
without trusting private engine APIs to stay as they are."""

import json
import subprocess
import sys
import textwrap

import pytest
from tiny_models import ROOT

from edgepress.runtime import inspect

# The tiny CNN (tests/tiny_models.py): conv 3->8 3x3 on 16x16 (55,296 MACs), depthwise 8 3x3
# (18,432), linear 8->5 (40).
CNN_MACS = 55_296 + 18_432 + 40


MAC_OPS = {"onnx": {"Conv", "Gemm"}, "tflite": {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_figures_of_the_tiny_cnn(cnn_bundles, fmt):
    info = inspect.apply(cnn_bundles / f"{fmt}-fp32" / f"model.{fmt}")
    assert info["macs"] == CNN_MACS and len(info["layers"]) == 3
    assert info["inputs"] == ["x=[1,3,16,16]:float32"]
    assert info["outputs"] == ["output_0=[1,5]:float32"]
    assert MAC_OPS[fmt] <= set(info["ops"]), info["ops"]
    # conv1 (8*27 + 8) + depthwise (8*9 + 8) + fc (5*8 + 5), BatchNorm folded, plus a few
    # constants (axes, permutations)
    assert 349 <= info["params"] < 370


def _without_ops_details(monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.delattr(Interpreter, "_get_ops_details")


def _changed_signature(monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    def _get_ops_details(self, subgraph_index):  # a release that needs an argument
        raise AssertionError("not reached: calling it without one is a TypeError")

    monkeypatch.setattr(Interpreter, "_get_ops_details", _get_ops_details)


def _changed_result(monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.setattr(Interpreter, "_get_ops_details",
                        lambda self: [{"name": "CONV_2D", "operands": [0]}])


@pytest.mark.parametrize("change", [_without_ops_details, _changed_signature, _changed_result])
def test_tflite_ops_without_the_private_listing(cnn_bundles, monkeypatch, change):
    """Interpreter._get_ops_details is private: a LiteRT without it (or with another signature
    or result) must give the same summary, not a traceback or a 'damaged file' error."""
    path = cnn_bundles / "tflite-fp32" / "model.tflite"
    want = inspect.apply(path)
    change(monkeypatch)
    assert inspect.apply(path) == want


def test_inspect_on_the_device_install(cnn_bundles, tmp_path):
    """`edgepress inspect BUNDLE --json` with numpy + the engines only: torch, the onnx package
    (and protobuf, which it needs) blocked in a fresh interpreter. Same figures as here."""
    want = {fmt: inspect.apply(cnn_bundles / f"{fmt}-fp32" / f"model.{fmt}")
            for fmt in ("onnx", "tflite")}
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        for name in ("torch", "onnx", "google.protobuf", "edgepress.compress", "litert_torch"):
            sys.modules[name] = None  # any import of these now raises ImportError
        from edgepress.cli import main
        out = {{}}
        for fmt in ("onnx", "tflite"):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                assert main(["inspect", {str(cnn_bundles)!r} + f"/{{fmt}}-fp32", "--json"]) == 0
            out[fmt] = json.loads(buf.getvalue())
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    for fmt in ("onnx", "tflite"):
        assert got[fmt] == json.loads(json.dumps(want[fmt])), fmt
        assert got[fmt]["macs"] == CNN_MACS
