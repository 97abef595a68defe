"""quantize, calibrate and the accuracy-aware search, on tiny models.

Every (format, precision) in quantize.METHODS is run on the tiny CNN and checked for what it must
store (int8 or fp16 tensors) and for fidelity to fp32 within verify's thresholds. A model built with
one fragile layer checks that --max-drop finds it and keeps it in float.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import factory

from edgepress import cli
from edgepress.compress import calibrate, load, quantize
from edgepress.compress.quantize import onnx as onnx_paths
from edgepress.compress.quantize import search, speed
from edgepress.errors import UserError
from edgepress.runtime import verify
from edgepress.runtime.session import Session

CNN_SHAPE = ("1,3,16,16",)
FRAGILE = f"{Path(__file__).parent / 'fragile_model.py'}:fragile"


def _cnn_npz(path: Path, n=24, seed=0, **extra) -> str:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.standard_normal((n, 1, 3, 16, 16)).astype(np.float32), **extra)
    return str(path)


# ---- every method x format --------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_loaded():
    return load.open_source(factory("cnn"), None, CNN_SHAPE)


STORED = {"int8": {"int8", "uint8"}, "dynamic": {"int8", "uint8"}, "weight-int8": {"int8"},
          "fp16": {"float16"}}


@pytest.mark.parametrize("fmt,precision", sorted(quantize.METHODS))
def test_method(fmt, precision, cnn_bundles, cnn_loaded, tmp_path):
    fp32 = cnn_bundles / f"{fmt}-fp32" / f"model.{fmt}"
    calib = calibrate.open_data(_cnn_npz(tmp_path / "c.npz"), cnn_loaded.inputs)
    held_out = calibrate.open_data(_cnn_npz(tmp_path / "e.npz", seed=1), cnn_loaded.inputs)
    sample = {"x": torch.from_numpy(calib.first(1)["x"][0])}
    job = quantize.Job(cnn_loaded, fmt, fp32, tmp_path / f"q.{fmt}", calib, sample,
                       work=tmp_path / "work")
    q = quantize.run(job, quantize.QuantizeConfig(precision, speed_check=False))
    assert STORED[precision] & _stored_dtypes(q.path), f"{fmt} {precision} stores no such tensors"
    fid = search.measure(job, q.path, held_out)
    limits = verify.THRESHOLDS[precision]
    assert fid["samples"] == 24
    assert fid["snr_db"] >= limits["snr_db"] and fid["cosine"] >= limits["cosine"], fid
    assert q.figures["library"] and q.figures["method"]


def _stored_dtypes(path: Path) -> set:
    if path.suffix == ".onnx":
        import onnx

        m = onnx.load(str(path))
        return {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in m.graph.initializer}
    it = Session(path, raw_io=True)._engine.it
    return {np.dtype(t["dtype"]).name for t in it.get_tensor_details()}


def test_unknown_precision_and_missing_calibration(cnn_bundles, cnn_loaded, tmp_path):
    job = quantize.Job(cnn_loaded, "onnx", cnn_bundles / "onnx-fp32" / "model.onnx",
                       tmp_path / "q.onnx")
    with pytest.raises(UserError, match="int4.*int8"):
        quantize.run(job, quantize.QuantizeConfig("int4"))
    with pytest.raises(UserError, match="weight-int8 is not available for onnx"):
        quantize.run(job, quantize.QuantizeConfig("weight-int8"))
    with pytest.raises(UserError, match="needs calibration data"):
        quantize.run(job, quantize.QuantizeConfig("int8"))
    with pytest.raises(UserError, match="--calib-method 'kl'"):
        quantize.run(job, quantize.QuantizeConfig("int8", calib_method="kl"))


def _fake_speed(monkeypatch, ratios):
    it = iter(ratios)
    monkeypatch.setattr(speed, "latency_ratio", lambda *a, **k: {
        "ratio": next(it), "fp32_p50_ms": 1.0, "quantized_p50_ms": 1.0, "threads": 1})


@pytest.mark.parametrize("ratios,keep_second", [((1.5, 0.8), True), ((1.5, 1.7), False)])
def test_int8_slower_than_fp32_tries_other_activations(ratios, keep_second, monkeypatch,
                                                       cnn_bundles, cnn_loaded, tmp_path):
    _fake_speed(monkeypatch, ratios)  # timing is faked: what is tested is the decision
    calib = calibrate.open_data(_cnn_npz(tmp_path / "c.npz"), cnn_loaded.inputs)
    job = quantize.Job(cnn_loaded, "onnx", cnn_bundles / "onnx-fp32" / "model.onnx",
                       tmp_path / "q.onnx", calib, {"x": torch.zeros(1, 3, 16, 16)},
                       work=tmp_path / "w")
    q = quantize.run(job, quantize.QuantizeConfig("int8"))
    first = onnx_paths.int8_types("host")["activations"]
    other = "int8" if first == "uint8" else "uint8"
    assert q.figures["speed"]["tried"] == {first: ratios[0], other: ratios[1]}
    assert q.figures["types"]["activations"] == (other if keep_second else first)
    assert ("warning" in q.figures) == (not keep_second)
    import onnx

    graph = onnx.load(str(q.path)).graph
    act_zero_points = {n.input[2] for n in graph.node if n.op_type == "QuantizeLinear"}
    stored = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in graph.initializer
              if t.name in act_zero_points}
    assert q.figures["types"]["activations"] in stored  # the file holds what figures say


def test_target_isa_choice_is_explained():
    vnni, arm = onnx_paths.int8_types("x86-vnni"), onnx_paths.int8_types("arm")
    assert (vnni["activations"], vnni["weights"], vnni["reduce_range"]) == ("uint8", "int8", False)
    assert onnx_paths.int8_types("x86")["reduce_range"] is True
    assert arm["activations"] == "int8"
    assert all(t["why"] for t in (vnni, arm))


@pytest.mark.parametrize("target,top", [("x86", 64), ("x86-vnni", 127)])  # ORT's 7 bits: [-64, 64]
def test_dynamic_weights_take_7_bits_where_u8s8_saturates(target, top, cnn_bundles, cnn_loaded,
                                                          tmp_path):
    import onnx

    job = quantize.Job(cnn_loaded, "onnx", cnn_bundles / "onnx-fp32" / "model.onnx",
                       tmp_path / "q.onnx", work=tmp_path / "work")
    q = quantize.run(job, quantize.QuantizeConfig("dynamic", target=target, speed_check=False))
    assert q.figures["reduce_range"] is (top == 64) and q.figures["isa"] == target
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(q.path)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    # symmetric per-channel: each channel's largest weight lands on the range's top
    assert weights and max(int(np.abs(w.astype(int)).max()) for w in weights) == top


# ---- the CLI end to end (ONNX: fast) ----------------------------------------------------------

def _compress(tmp_path, *extra, source=None, shape=CNN_SHAPE[0]):
    out = tmp_path / "out"
    argv = ["compress", source or factory("cnn"), "--input-shape", shape, "--format", "onnx",
            "--out", str(out), *extra]
    return cli.main(argv), out


def test_cli_int8_bundle_records_calibration_and_fidelity(tmp_path, capsys):
    labels = np.arange(24) % 5
    calib, held = _cnn_npz(tmp_path / "c.npz"), _cnn_npz(tmp_path / "e.npz", seed=1, labels=labels)
    rc, out = _compress(tmp_path, "--quantize", "int8,dynamic", "--calib", calib,
                        "--calib-method", "percentile", "--eval", held)
    assert rc == 0
    bundles = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert bundles == ["onnx-dynamic", "onnx-fp32", "onnx-int8"]
    m = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["stages"]["quantize"]["calib_method"] == "percentile"
    assert m["stages"]["quantize"]["types"]["why"]
    assert m["stages"]["quantize"]["normalisation"]
    assert m["calibration"]["samples"] == 24 and len(m["calibration"]["sha256"]) == 64
    acc = m["fidelity"]["accuracy"]
    assert acc["labelled"] == 12 and acc["drop_points"] == pytest.approx(
        100 * (acc["fp32"] - acc["quantized"]), abs=1e-3)
    assert "speed" in m["stages"]["quantize"]
    printed = capsys.readouterr().out
    # int8 has candidate paths: the odd samples of --eval chose one, the even ones report
    assert "onnx-int8: eval 12 samples" in printed and "accuracy fp32" in printed
    assert "onnx-dynamic: eval 24 samples" in printed


def test_cli_random_calibration_warns(tmp_path, capsys):
    rc, out = _compress(tmp_path, "--quantize", "int8", "--calib", "random")
    assert rc == 0
    m = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    assert "random" in m["calibration"]["warning"] and m["warnings"]
    assert "WARNING" in capsys.readouterr().err


def _bad_data(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    nan = rng.standard_normal((4, 1, 3, 16, 16)).astype(np.float32)
    nan[2, 0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "names.npz", image=nan[:, 0])
    np.savez(tmp_path / "shape.npz", x=rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "nan.npz", x=nan)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    return {"names.npz": "no array named 'x'", "shape.npz": "has shape \\[3, 8, 8\\]",
            "nan.npz": "sample 2 holds NaN", "empty": "holds no images",
            "broken": "cannot be read"}


def test_cli_bad_calibration_data_exit_2_nothing_written(tmp_path, capsys):
    for name, message in _bad_data(tmp_path).items():
        rc, out = _compress(tmp_path, "--quantize", "int8", "--calib", str(tmp_path / name))
        err = capsys.readouterr().err.strip()
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert __import__("re").search(message, err), (name, err)
        assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_cli_quantize_flags_need_quantize(tmp_path, capsys):
    rc, out = _compress(tmp_path, "--calib", "random")
    assert rc == 2 and "--quantize" in capsys.readouterr().err and not out.exists()


# ---- calibration data forms -------------------------------------------------------------------

def test_image_folder_with_declared_preprocessing(cnn_loaded, tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (20 + i, 24), (40 * i, 100, 200)).save(tmp_path / f"{i}.png")
    pre = calibrate.Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    data = calibrate.open_data(str(tmp_path), cnn_loaded.inputs, pre=pre)
    first = data.first(3)["x"]
    assert first.shape == (3, 1, 3, 16, 16)
    assert first[0, 0, 2].mean() == pytest.approx((200 / 255 - 0.5) / 0.25, abs=1e-3)
    rec = data.record()
    assert rec["samples"] == 3 and rec["preprocessing"]["resize"] == [16, 16]
    assert rec["preprocessing"]["layout"] == "NCHW"


def samples():
    """A data function for the module:function form."""
    rng = np.random.default_rng(3)
    return ({"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32), "labels": i % 5}
            for i in range(5))


def not_iterable():
    return 42


def test_function_source_and_limit(cnn_loaded):
    with pytest.raises(UserError, match="must return an iterable of input dicts, not int"):
        calibrate.open_data(f"{__file__}:not_iterable", cnn_loaded.inputs).record()
    with pytest.raises(UserError, match="has no callable 'nope'"):
        calibrate.open_data(f"{__file__}:nope", cnn_loaded.inputs)
    data = calibrate.open_data(f"{__file__}:samples", cnn_loaded.inputs, limit=4)
    pairs = list(data.labelled())
    assert len(pairs) == 4 and [label for _, label in pairs] == [0, 1, 2, 3]
    assert data.record()["samples"] == 4
    again = calibrate.open_data(f"{__file__}:samples", cnn_loaded.inputs, limit=4).record()
    assert again["sha256"] == data.record()["sha256"]  # the hash names exactly what was fed


def test_npz_rows_are_streamed_not_loaded(cnn_loaded, tmp_path):
    path = _cnn_npz(tmp_path / "c.npz", n=10)
    data = calibrate.open_data(path, cnn_loaded.inputs)
    with np.load(path) as z:
        np.testing.assert_array_equal(data.first(10)["x"], z["x"])
    rows = calibrate.npz.iter_rows(Path(path), "x.npy")
    assert next(rows).shape == (1, 3, 16, 16)  # one sample per read


# ---- accuracy-aware fallback ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fragile_job(tmp_path_factory):
    from edgepress.compress import export

    tmp = tmp_path_factory.mktemp("fragile")
    loaded = load.open_source(FRAGILE, None, ("1,8",))
    rng = np.random.default_rng(0)
    np.savez(tmp / "c.npz", x=rng.standard_normal((64, 1, 8)).astype(np.float32))
    np.savez(tmp / "e.npz", x=rng.standard_normal((64, 1, 8)).astype(np.float32))
    calib = calibrate.open_data(str(tmp / "c.npz"), loaded.inputs)
    held_out = calibrate.open_data(str(tmp / "e.npz"), loaded.inputs)
    sample = {"x": torch.from_numpy(calib.first(1)["x"][0])}
    fp32 = export.write(loaded, "onnx", tmp, export.ExportOptions(), sample, 1).path
    job = quantize.Job(loaded, "onnx", fp32, tmp / "q.onnx", calib, sample, work=tmp / "w")
    return job, held_out


def test_sensitivity_ranks_the_fragile_layer_worst(fragile_job):
    job, held_out = fragile_job
    rows = search.sensitivity(job, quantize.QuantizeConfig("int8"), held_out)
    assert len(rows) == 3
    assert rows[-1]["snr_db"] > rows[0]["snr_db"] + 10
    assert rows[0]["module"] in ("fragile", "head") and rows[-1]["module"] == "body"


def test_max_drop_keeps_fragile_layers_in_float(fragile_job):
    job, held_out = fragile_job
    cfg = quantize.QuantizeConfig("int8", speed_check=False)
    plain = search.apply(job, cfg, held_out)
    assert search._drop(plain.fidelity) > 5
    out = search.apply(job, cfg, held_out, max_drop=1.0)
    steps = out.search["steps"]
    assert steps[0]["drop_points"] > 1.0 and steps[-1]["drop_points"] <= 1.0
    modules = search.torch_modules(job)
    assert out.search["float_layers"]
    assert {modules[n] for n in out.search["float_layers"]} <= {"fragile", "head"}
    assert out.quantized.figures["excluded_layers"] == out.search["float_layers"]
    assert out.search["final_drop_points"] <= 1.0


def test_max_drop_fails_clearly_when_the_cap_is_too_low(fragile_job):
    job, held_out = fragile_job
    cfg = quantize.QuantizeConfig("int8", speed_check=False)
    with pytest.raises(UserError, match="--max-drop 0.0: not met with up to 1 layer"):
        search.apply(job, cfg, held_out, max_drop=0.0, max_float_layers=1)


def test_min_snr_keeps_fragile_layers_in_float_or_fails_clearly(fragile_job):
    job, held_out = fragile_job
    cfg = quantize.QuantizeConfig("int8", speed_check=False)
    target = search.apply(job, cfg, held_out).fidelity["snr_db"] + 5
    out = search.apply(job, cfg, held_out, min_snr=target)
    steps = out.search["steps"]
    assert steps[0]["snr_db"] < target <= steps[-1]["snr_db"] and "drop_points" not in steps[0]
    assert out.fidelity["snr_db"] >= target and out.search["min_snr_db"] == target
    modules = search.torch_modules(job)
    assert {modules[n] for n in out.search["float_layers"]} <= {"fragile", "head"}
    with pytest.raises(UserError, match="--min-snr 500.0: not met with up to 1 layer"):
        search.apply(job, cfg, held_out, min_snr=500.0, max_float_layers=1)


def test_onnx_source_quantizes_the_same_way(cnn_bundles, tmp_path):
    calib = _cnn_npz(tmp_path / "c.npz")
    source = str(cnn_bundles / "onnx-fp32" / "model.onnx")
    rc, out = _compress(tmp_path, "--quantize", "int8", "--calib", calib, source=source)
    assert rc == 0
    m = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    assert m["source"]["kind"] == "onnx" and m["stages"]["quantize"]["library"] == "onnxruntime"


def test_cli_inspect_sensitivity_sorted_worst_first(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((32, 1, 8)).astype(np.float32))
    rc = cli.main(["inspect", FRAGILE, "--input-shape", "1,8", "--sensitivity", "--calib",
                   str(tmp_path / "c.npz"), "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    snrs = [r["snr_db"] for r in rows]
    assert snrs == sorted(snrs) and rows[-1]["module"] == "body"
    rc = cli.main(["inspect", FRAGILE, "--input-shape", "1,8", "--sensitivity"])
    assert rc == 2 and "--calib" in capsys.readouterr().err


@pytest.mark.slow
def test_max_drop_tflite_int8_searches_in_torch_and_converts_once(tmp_path):
    from edgepress.compress import export

    loaded = load.open_source(FRAGILE, None, ("1,8",))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((64, 1, 8)).astype(np.float32))
    np.savez(tmp_path / "e.npz", x=rng.standard_normal((64, 1, 8)).astype(np.float32))
    calib = calibrate.open_data(str(tmp_path / "c.npz"), loaded.inputs)
    held_out = calibrate.open_data(str(tmp_path / "e.npz"), loaded.inputs)
    sample = {"x": torch.from_numpy(calib.first(1)["x"][0])}
    fp32 = export.write(loaded, "tflite", tmp_path, export.ExportOptions(), sample, 1).path
    job = quantize.Job(loaded, "tflite", fp32, tmp_path / "q.tflite", calib, sample,
                       work=tmp_path / "w")
    out = search.apply(job, quantize.QuantizeConfig("int8", speed_check=False), held_out,
                         max_drop=1.0)
    assert out.search["steps"][0]["drop_points"] > 1.0
    assert set(out.search["float_layers"]) <= {"fragile", "head"}
    assert out.search["final_drop_points"] <= 1.0
    assert Session(out.quantized.path, raw_io=True).inputs[0].dtype == "int8"  # still full int8


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_transformer_dynamic_int8(fmt, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "e.npz", tokens=rng.standard_normal((16, 1, 8, 16)).astype(np.float32))
    rc, out = _compress(tmp_path, "--format", fmt, "--quantize", "dynamic", "--eval",
                        str(tmp_path / "e.npz"), source=factory("encoder"), shape="1,8,16")
    assert rc == 0
    m = json.loads((out / f"{fmt}-dynamic" / "manifest.json").read_text())
    assert m["fidelity"]["snr_db"] >= verify.THRESHOLDS["dynamic"]["snr_db"]
