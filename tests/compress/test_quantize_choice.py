"""The quantization path chosen by measurement (issue 15, item 3) and fidelity on held-out data
(item 4), on tiny models.

Two tiny ONNX models where different paths win on fidelity: the tiny CNN (quantizing every op
type costs little: the all-ops path, first in order, is kept) and a model whose activation after
an additive -1e30 mask int8 cannot hold (only the weight-ops path keeps it). `--quant-target
x86-vnni` makes the choice by fidelity alone (deterministic); the host-timing rule is tested on
injected timings.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from tiny_models import factory

from edgepress import cli
from edgepress.compress.quantize import Quantized, choose
from edgepress.runtime import artifact


def _masked(path: Path) -> Path:
    """Relu(x @ W), then + a constant holding -1e30 in one column, then Softmax (an attention
    mask's shape, without attention; the Relu keeps onnxruntime from fusing the Add into a Gemm
    bias): quantizing the Add's output gives it a 1e30-wide int8 grid that zeroes every other
    value, so the softmax turns uniform."""
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 8), np.float32)
    mask[0, 7] = -1e30
    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "W"], ["y0"]), h.make_node("Relu", ["y0"], ["y"]),
         h.make_node("Add", ["y", "m"], ["z"]),
         h.make_node("Softmax", ["z"], ["out"])], "masked",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [h.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])],
        [nh.from_array(3 * rng.standard_normal((16, 8)).astype(np.float32), "W"),
         nh.from_array(mask, "m")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _compress(tmp_path: Path, source: str, shape: str, name: str, calib: str, *extra):
    out = tmp_path / "out"
    rc = cli.main(["compress", source, "--input-shape", shape, "--format", "onnx",
                   "--quantize", "int8", "--calib", calib, "--out", str(out), *extra])
    assert rc == 0
    return json.loads((out / "onnx-int8" / artifact.MANIFEST).read_text()), out


def _npz(path: Path, name: str, shape: tuple, n: int = 24) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, **{name: rng.standard_normal((n, *shape)).astype(np.float32)})
    return str(path)


@pytest.mark.parametrize("model,kept", [("cnn", "onnx-static-all-ops"),
                                        ("masked", "onnx-static-weight-ops")])
def test_the_path_kept_is_the_one_measured_best(model, kept, tmp_path):
    if model == "cnn":
        source, name, shape = factory("cnn"), "x", (1, 3, 16, 16)
    else:
        source, name, shape = str(_masked(tmp_path / "masked.onnx")), "x", (1, 16)
    calib = _npz(tmp_path / "c.npz", name, shape)
    m, _ = _compress(tmp_path, source, ",".join(map(str, shape)), name, calib,
                     "--quant-target", "x86-vnni")
    q = m["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    families = ("onnx-static-all-ops", "onnx-static-weight-ops")
    # each recipe x the cheap calibrators (auto) x per-channel / per-tensor weights
    assert set(rows) == {f + v for f in families
                         for v in ("", "-per-tensor", "-percentile", "-percentile-per-tensor")}
    assert q["path"] == q["choice"]["kept"] and rows[q["path"]]["family"] == kept
    family = [r for r in rows.values() if r["family"] == kept]
    assert rows[q["path"]]["snr_db"] == max(r["snr_db"] for r in family if r["eligible"])
    assert q["calib_method"] in ("minmax", "percentile") and isinstance(q["per_channel"], bool)
    for r in rows.values():  # every candidate's fidelity and p50 recorded
        assert r["p50_ms"] > 0 and r["timed_calls"] >= 2 * choose.ROUNDS
        assert r["samples"] == 3 and np.isfinite(r["snr_db"]) and r["size_bytes"] > 0
    assert "by fidelity only: --quant-target x86-vnni" in q["choice"]["by"]
    if model == "masked":
        for r in rows.values():
            if r["family"] == "onnx-static-all-ops":
                assert r["snr_db"] < rows[q["path"]]["snr_db"] - choose.MARGIN_DB
                assert not r["eligible"]


def _rows(*specs):
    """Made-up candidate rows: (path, snr_db, median call seconds)."""
    rng = np.random.default_rng(0)
    return [{"path": p, "snr_db": snr, "p50_ms": 1e3 * t,
             "_times": t * (1 + 0.01 * rng.standard_normal(70))} for p, snr, t in specs]


def test_host_keeps_a_faster_eligible_path_only_when_its_interval_is_below_one():
    faster = _rows(("a", 30.0, 2e-3), ("b", 28.5, 1e-3), ("c", 10.0, 0.5e-3))
    kept, why = choose.decide(faster, "host")
    assert kept == "b" and "faster here" in why  # c is faster still, but not eligible
    assert faster[1]["p50_ratio_to_preferred_ci95"][1] < 1.0
    assert all("_times" not in r for r in faster)
    tie = _rows(("a", 30.0, 1.000e-3), ("b", 29.0, 0.999e-3))
    kept, why = choose.decide(tie, "host")
    assert kept == "a" and "tie" in why
    kept, why = choose.decide(_rows(("a", 30.0, 2e-3), ("b", 28.5, 1e-3)), "arm")
    assert kept == "a" and "by fidelity only: --quant-target arm" in why


def test_a_family_keeps_its_best_member_and_families_keep_their_order():
    rows = _rows(("a", 29.0, 1e-3), ("a-percentile", 30.5, 1e-3), ("b", 31.0, 1e-3))
    for r, family in zip(rows, ("a", "a", "b")):
        r["family"] = family
    kept, why = choose.decide(rows, "arm")
    assert kept == "a-percentile" and "its family best by SNR" in why


def test_a_failing_candidate_is_recorded_and_skipped(tmp_path, monkeypatch):
    from edgepress.compress.quantize import onnx as onnx_paths
    from edgepress.compress.quantize import paths

    def broken(job, cfg):
        raise RuntimeError("the library gave up")

    def unloadable(job, cfg):  # written, but the engine refuses the file
        job.out_path.write_bytes(b"not an onnx model")
        return Quantized(job.out_path, {"method": "garbage"})

    broken.key, unloadable.key = "onnx-static-all-ops", "unloadable"
    monkeypatch.setitem(paths.METHODS, ("onnx", "int8"),
                        [broken, unloadable, onnx_paths.static_int8_weight_ops])
    calib = _npz(tmp_path / "c.npz", "x", (1, 3, 16, 16))
    m, _ = _compress(tmp_path, factory("cnn"), "1,3,16,16", "x", calib, "--calib-method",
                     "minmax")
    rows = {r["path"]: r for r in m["stages"]["quantize"]["choice"]["candidates"]}
    assert "the library gave up" in rows["onnx-static-all-ops"]["error"]
    assert rows["unloadable"]["error"].startswith("does not run")
    assert rows["unloadable-per-tensor"]["error"].startswith("does not run")
    assert rows[m["stages"]["quantize"]["path"]]["family"] == "onnx-static-weight-ops"


def _spiky(path: Path, width: int = 4096) -> Path:
    """x @ W -> Relu -> @ W2, reshaped to (1, 2, 4) (not score-shaped: judged by SNR)."""
    rng = np.random.default_rng(1)
    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "W"], ["y0"]), h.make_node("Relu", ["y0"], ["y"]),
         h.make_node("MatMul", ["y", "W2"], ["z"]), h.make_node("Reshape", ["z", "s"], ["out"])],
        "spiky", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [h.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4])],
        [nh.from_array(rng.standard_normal((width, 16)).astype(np.float32) / 64, "W"),
         nh.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W2"),
         nh.from_array(np.array([1, 2, 4], np.int64), "s")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_a_calibrator_that_clips_a_rare_spike_is_chosen(tmp_path):
    """Calibration data with one spiked value (1e3 among 131k standard normal ones, a sensor
    glitch): MinMax stretches the input's grid to it, so typical inputs round to a few steps;
    Percentile (99.999) clips it. Held-out data has no spike: the percentile member wins."""
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 1, 4096)).astype(np.float32)
    calib[3, 0, 7] = 1e3
    np.savez(tmp_path / "c.npz", x=calib)
    np.savez(tmp_path / "e.npz", x=rng.standard_normal((8, 1, 4096)).astype(np.float32))
    m, _ = _compress(tmp_path, str(_spiky(tmp_path / "spiky.onnx")), "1,4096", "x",
                     str(tmp_path / "c.npz"), "--eval", str(tmp_path / "e.npz"),
                     "--quant-target", "x86-vnni")
    q = m["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    assert q["calib_method"] == "percentile" and "percentile" in q["path"]
    assert rows[q["path"]]["snr_db"] > rows["onnx-static-all-ops"]["snr_db"] + 10
    assert not rows["onnx-static-all-ops"]["eligible"]


# ---- item 4: held-out data never calibrates --------------------------------------------------

def test_without_eval_the_calibration_set_is_split(tmp_path):
    calib = _npz(tmp_path / "c.npz", "x", (1, 3, 16, 16), n=24)
    m, out = _compress(tmp_path, factory("cnn"), "1,3,16,16", "x", calib)
    assert m["calibration"]["samples"] == 18 and "held out" in m["calibration"]["split"]
    assert m["fidelity"]["data"]["samples"] == 3  # every 4th of 24, then its even half
    assert "no --eval given" in m["fidelity"]["data"]["split"]
    assert "never used to select" in m["fidelity"]["data"]["split"]
    assert m["stages"]["quantize"]["choice"]["selection"]["samples"] == 3
    with np.load(calib) as z:
        rows = z["x"]
    with np.load(out / "onnx-int8" / artifact.GOLDEN) as z:
        golden = z["input.x"]
    calibrated = [rows[i] for i in range(24) if i % 4 != 3]
    for g in golden:
        assert not any(np.array_equal(g, c) for c in calibrated), "a golden input calibrated"
        assert any(np.array_equal(g, rows[i]) for i in range(3, 24, 4))
    assert m["golden"]["samples"] == len(golden) == 6
