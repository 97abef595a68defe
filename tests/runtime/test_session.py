"""Session: one API over both engines, inputs checked, and no torch on the device side."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tiny_models import ROOT

from edgepress.errors import UserError
from edgepress.runtime import artifact, verify
from edgepress.runtime.session import BACKENDS, Session

FORMATS = ("onnx", "tflite")


@pytest.mark.parametrize("fmt", FORMATS)
def test_runs_golden_inputs_with_explicit_threads(fmt, cnn_bundles):
    bundle = artifact.open_bundle(cnn_bundles / f"{fmt}-fp32")
    ins, outs = bundle.golden()
    for threads in (1, 2):
        s = Session(bundle.model_path, threads=threads)
        assert s.threads == threads and s.backend in BACKENDS
        got = verify.run_samples(s, ins)
        np.testing.assert_allclose(got["output_0"], outs["output_0"], atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("feeds, message", [
    ({"x": np.zeros((1, 3, 16, 8), np.float32)}, "has shape [1, 3, 16, 8]; the model expects "
                                                 "[1, 3, 16, 16]"),
    ({"x": np.zeros((1, 3, 16, 16), np.float64)}, "has dtype float64; the model expects float32"),
    ({}, "missing input 'x'"),
    ({"x": np.zeros((1, 3, 16, 16), np.float32), "y": np.zeros(1)}, "unknown input 'y'"),
])
def test_input_checks(fmt, feeds, message, cnn_bundles):
    s = Session(cnn_bundles / f"{fmt}-fp32" / f"model.{fmt}")
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        s.run(feeds)


def test_bad_threads_engine_and_options(cnn_bundles):
    path = cnn_bundles / "onnx-fp32" / "model.onnx"
    with pytest.raises(UserError, match="threads 0"):
        Session(path, threads=0)
    with pytest.raises(UserError, match="engine 'litert' cannot run onnx models"):
        Session(path, backend="litert")
    with pytest.raises(UserError, match="engine option 'xnnpack' is not one of"):
        Session(path, options={"xnnpack": False})


def test_bundle_tamper_is_detected(cnn_bundles, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(cnn_bundles / "onnx-fp32", b)
    data = bytearray((b / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the sha256"):
        artifact.open_bundle(b)


def test_device_side_imports_without_torch(cnn_bundles):
    """The runtime runs on a device with numpy + one engine: torch and edgepress.compress
    must not be imported, even indirectly. Blocked in a fresh interpreter to prove it."""
    code = textwrap.dedent(f"""
        import sys
        for name in ("torch", "edgepress.compress", "litert_torch", "onnx"):
            sys.modules[name] = None  # any import of these now raises ImportError
        from edgepress.runtime import artifact, bench, inspect, report, session, verify
        import edgepress.devices, edgepress.runtime.shapes, edgepress.cli
        for fmt in ("onnx", "tflite"):
            b = artifact.open_bundle({str(cnn_bundles)!r} + f"/{{fmt}}-fp32")
            assert verify.apply(b).passed
            assert inspect.apply(b.model_path)["macs"] > 0
            rep = bench.apply(b.path, 1, bench.Protocol(warmup_runs=1, warmup_s=0, min_runs=3,
                                                        min_s=0))
            assert rep["results"]["latency_ms"]["n"] >= 3
        loaded = [m for m, mod in sys.modules.items()
                  if mod is not None and m.startswith(("torch", "edgepress.compress"))]
        assert not loaded, loaded
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_cli_verify_and_bench_without_torch(cnn_bundles, tmp_path):
    """The console commands used on a device work with torch blocked."""
    code = ("import sys; sys.modules['torch'] = None; from edgepress.cli import main; "
            f"sys.exit(main(['verify', {str(cnn_bundles / 'tflite-fp32')!r}]) or "
            f"main(['bench', {str(cnn_bundles / 'onnx-fp32')!r}, '--runs', '3', "
            f"'--min-seconds', '0', '--out', {str(tmp_path / 'r.json')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PASS" in proc.stdout and (tmp_path / "r.json").is_file()


class _ChangedRun:
    """onnxruntime's private compiled session as a future release might have it."""

    def __init__(self, real, mode):
        self.real, self.mode = real, mode

    def run(self, names, feeds, options, *more):
        if self.mode == "new argument":
            raise TypeError("run(): incompatible function arguments")  # what pybind11 raises
        if self.mode == "returns OrtValues":
            return [object() for _ in names]
        return self.real.run(names, feeds, options, *more)


@pytest.mark.parametrize("mode", ["new argument", "returns OrtValues"])
def test_changed_private_onnxruntime_api_falls_back_to_the_public_run(cnn_bundles, mode):
    """Session calls InferenceSession._sess (private) to skip a re-check; a release that changes
    it must not be blamed on the user's model file: the public run takes over."""
    path = cnn_bundles / "onnx-fp32" / "model.onnx"
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    want = Session(path).run(x)
    s = Session(path)
    s._engine._compiled = _ChangedRun(s._engine.sess._sess, mode)
    for _ in range(2):
        got = s.run(x)
        assert np.array_equal(got["output_0"], want["output_0"])
    assert s._engine._compiled is None  # checked once, then the public path only


def test_onnxruntime_without_the_private_session(cnn_bundles, monkeypatch):
    import onnxruntime as ort

    real = ort.InferenceSession

    class PublicOnly:  # an InferenceSession with no `_sess` attribute
        def __init__(self, *args, **kwargs):
            self._inner = real(*args, **kwargs)
            self.get_inputs, self.get_outputs = self._inner.get_inputs, self._inner.get_outputs
            self.run = self._inner.run

    want = Session(cnn_bundles / "onnx-fp32" / "model.onnx")
    monkeypatch.setattr(ort, "InferenceSession", PublicOnly)
    s = Session(cnn_bundles / "onnx-fp32" / "model.onnx")
    x = {"x": np.ones((1, 3, 16, 16), np.float32)}
    assert s._engine._compiled is None
    assert np.array_equal(s.run(x)["output_0"], want.run(x)["output_0"])
