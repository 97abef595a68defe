"""bench: the protocol, the figures, the memory probe, engine options, and bad input."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgepress import cli
from edgepress.errors import UserError
from edgepress.runtime import artifact, bench, report
from edgepress.runtime.artifact import TensorSpec

FORMATS = ("onnx", "tflite")
QUICK = bench.Protocol(warmup_runs=2, warmup_s=0.0, min_runs=20, min_s=0.0, memory=False)


def _quiet(**changes) -> bench.Protocol:
    return bench.Protocol(**{**vars(QUICK), **changes})


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_of_a_bundle(fmt, cnn_bundles):
    jsonschema = pytest.importorskip("jsonschema")
    target = cnn_bundles / f"{fmt}-fp32"
    rep = bench.apply(target, threads=2, protocol=QUICK, command="edgepress bench x")
    jsonschema.validate(rep, report.schema(), cls=jsonschema.Draft202012Validator)
    manifest = artifact.open_bundle(target).manifest
    assert rep["model"]["sha256"] == manifest["model_sha256"]
    assert rep["model"]["size_bytes"] == (target / manifest["model_file"]).stat().st_size
    assert rep["engine"]["threads"] == 2 and rep["command"] == "edgepress bench x"
    samples = rep["results"]["samples_ms"]
    lat = rep["results"]["latency_ms"]
    assert len(samples) == lat["n"] == 20 and rep["protocol"]["timed_runs"] == 20
    assert lat["p50"] == pytest.approx(np.percentile(samples, 50))
    assert lat["min"] == min(samples) > 0 and rep["results"]["init_ms"] > 0
    assert rep["protocol"]["warmup_runs_done"] >= 2 and rep["protocol"]["gc_paused"]
    assert rep["inputs"] == {"source": "golden", "tensors": [
        {"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]}
    assert rep["fidelity"]["snr_db"] > 60 and rep["fidelity"]["samples"] == 8
    assert rep["memory"] is None  # probe skipped in QUICK


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_probe_runs_in_a_fresh_process(fmt, cnn_bundles):
    rep = bench.apply(cnn_bundles / f"{fmt}-fp32", protocol=_quiet(memory=True))
    mem = rep["memory"]
    assert mem["peak_rss_bytes"] >= mem["rss_before_load_bytes"] + mem["load_added_rss_bytes"]
    assert mem["load_added_rss_bytes"] > 0 and "fresh child process" in mem["method"]
    assert rep["results"]["init_fresh_process_ms"] > 0
    # A fresh process holds far less than this test process (torch is imported here).
    import resource
    assert mem["peak_rss_bytes"] < resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_memory_probe_failure_is_one_clear_line(tmp_path):
    from edgepress.runtime import probe

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"memory probe of .*bad.onnx' failed: .*cannot be "
                                        r"loaded by onnxruntime") as e:
        probe.measure(bad, "onnxruntime", 1, {}, {"x": np.zeros(1, np.float32)})
    assert "\n" not in str(e.value)


def test_timing_window_wraps_the_engine_call_only(monkeypatch):
    clock = {"ns": 0}
    monkeypatch.setattr(bench.time, "perf_counter_ns", lambda: clock["ns"])

    def run(feeds):  # the "engine": 1000 ns per call; nothing else advances the clock
        clock["ns"] += 1000

    ticks = []
    samples, starts, wall = bench._timed_runs(run, {}, _quiet(min_runs=5), ticks.append)
    assert samples == [1000] * 5 and wall == 5e-6
    assert starts == [0, 1000, 2000, 3000, 4000]
    assert ticks == starts  # the sensors are read between calls, outside each timed call


def test_timed_runs_need_both_count_and_duration():
    calls = []
    samples, _, wall = bench._timed_runs(calls.append, {}, _quiet(min_runs=3, min_s=0.02))
    assert len(samples) >= 3 and wall >= 0.02 and len(calls) == len(samples)
    samples, _, _ = bench._timed_runs(calls.append, {}, _quiet(min_runs=7, min_s=0.0))
    assert len(samples) == 7


def test_duration_mode_ignores_the_run_count():
    samples, _, wall = bench._timed_runs(lambda f: None, {},
                                         _quiet(min_runs=10**9, duration_s=0.02))
    assert wall >= 0.02 and 1 <= len(samples) < 10**9


def test_warm_up_needs_both_count_and_time():
    assert bench._warm_up(lambda f: None, {}, _quiet(warmup_runs=4, warmup_s=0.0)) == 4
    assert bench._warm_up(lambda f: None, {}, _quiet(warmup_runs=0, warmup_s=0.01)) >= 1


@pytest.mark.parametrize("fmt, options, recorded", [
    ("onnx", {}, {"graph_optimization": "all", "execution_mode": "sequential",
                  "cpu_arena": True}),
    ("onnx", {"graph_optimization": "basic", "cpu_arena": False},
     {"graph_optimization": "basic", "execution_mode": "sequential", "cpu_arena": False}),
    ("tflite", {"xnnpack": False}, {"xnnpack": False}),
])
def test_engine_options_are_applied_and_recorded(fmt, options, recorded, cnn_bundles):
    rep = bench.apply(cnn_bundles / f"{fmt}-fp32", protocol=QUICK, options=options)
    assert rep["engine"]["options"] == recorded


def test_recorded_defaults_are_what_onnxruntime_runs_with(cnn_bundles):
    ort = pytest.importorskip("onnxruntime")
    from edgepress.runtime.session import Session

    session = Session(cnn_bundles / "onnx-fp32" / "model.onnx")
    used = session._engine.sess.get_session_options()
    assert report.effective_options(session) == {
        "graph_optimization": "all", "execution_mode": "sequential", "cpu_arena": True}
    assert used.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert used.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL and used.enable_cpu_mem_arena


def test_option_for_the_wrong_engine_is_refused(cnn_bundles):
    with pytest.raises(UserError, match="engine option 'xnnpack' is not one of"):
        bench.apply(cnn_bundles / "onnx-fp32", protocol=QUICK, options={"xnnpack": False})


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    """A bare .onnx file whose batch dimension is dynamic: (N, 4) -> relu -> (N, 4)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    onnx.save(model, path)
    return path


def test_dynamic_dims_need_an_input_shape(dynamic_onnx):
    with pytest.raises(UserError, match=r"input 'x' .* has dynamic dims \['N', 4\]: pass "
                                        r"--input-shape"):
        bench.apply(dynamic_onnx, protocol=QUICK)
    rep = bench.apply(dynamic_onnx, protocol=QUICK, input_shapes=["3,4"])
    assert rep["inputs"]["tensors"] == [{"name": "x", "shape": [3, 4], "dtype": "float32"}]
    assert rep["inputs"]["source"] == "random (seed 0)" and rep["fidelity"] is None
    assert rep["model"]["bundle"] is None and rep["model"]["precision"] is None


def test_inputs_file(dynamic_onnx, tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.ones((5, 2, 4), np.float32))  # samples axis: first used
    rep = bench.apply(dynamic_onnx, protocol=QUICK, inputs_file=tmp_path / "ok.npz")
    assert rep["inputs"]["tensors"][0]["shape"] == [2, 4]
    np.savez(tmp_path / "bad.npz", x=np.ones((2, 5), np.float32))
    with pytest.raises(UserError, match=r"array 'x' has shape \[2, 5\]; the model expects "
                                        r"\['N', 4\]"):
        bench.apply(dynamic_onnx, protocol=QUICK, inputs_file=tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", y=np.ones((2, 4), np.float32))
    with pytest.raises(UserError, match="has no array 'x'; it has: y"):
        bench.apply(dynamic_onnx, protocol=QUICK, inputs_file=tmp_path / "other.npz")


def test_integer_inputs_are_narrowed_once_before_timing():
    session = SimpleNamespace(inputs=[TensorSpec("ids", (1, 4), "int32"),
                                      TensorSpec("x", (1, 2), "float32")])
    feeds = {"ids": np.array([[1, 2, 3, 4]], np.int64), "x": np.zeros((1, 2), np.float64)}
    got = bench.as_declared(session, feeds)
    assert got["ids"].dtype == np.int32 and got["ids"].tolist() == [[1, 2, 3, 4]]
    assert got["x"].dtype == np.float64  # floats are never converted silently
    too_big = {"ids": np.array([[2**40, 0, 0, 0]], np.int64)}
    assert bench.as_declared(session, too_big)["ids"].dtype == np.int64  # Session will explain


@pytest.mark.parametrize("kwargs, message", [
    ({"min_runs": 0}, "timed runs >= 1"),
    ({"warmup_s": -1.0}, "must be >= 0"),
    ({"duration_s": 0.0}, "--duration 0.0: must be > 0"),
])
def test_bad_protocol(kwargs, message):
    with pytest.raises(UserError, match=message):
        _quiet(**kwargs)


_FAST = ["--runs", "5", "--min-seconds", "0", "--warmup", "1", "--warmup-seconds", "0"]


def test_cli_thread_sweep_writes_one_report_per_count(cnn_bundles, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["bench", str(cnn_bundles / "onnx-fp32"), "--threads", "1,2", "--no-memory",
            "--graph-optimization", "extended", "--cpu-arena", "off", *_FAST, "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for threads in (1, 2):
        rep = report.load(tmp_path / f"r-t{threads}.json")
        assert rep["engine"]["threads"] == threads
        assert rep["engine"]["options"]["graph_optimization"] == "extended"
        assert rep["engine"]["options"]["cpu_arena"] is False
        assert rep["command"] == "edgepress " + " ".join(argv)
        assert f"wrote {tmp_path / f'r-t{threads}.json'}" in printed
    # The same command again would replace them: refused, before any measuring.
    assert cli.main(argv) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 0


def test_cli_bench_prints_memory(cnn_bundles, tmp_path, capsys):
    assert cli.main(["bench", str(cnn_bundles / "tflite-fp32"), "--xnnpack", "off", *_FAST,
                     "--out", str(tmp_path / "r.json")]) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert "peak RSS MiB" in header and "litert" in row
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["memory"]["peak_rss_bytes"] > 0 and rep["engine"]["options"] == {"xnnpack": False}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(rep, report.schema(), cls=jsonschema.Draft202012Validator)


def test_report_records_the_cpu_mask_in_force_and_the_sensors(cnn_bundles):
    from edgepress.runtime import cores

    before = cores.affinity()
    rep = bench.apply(cnn_bundles / "onnx-fp32", protocol=_quiet(cores=str(before[-1])))
    assert rep["cpu"]["requested"] == str(before[-1]) and rep["cpu"]["why"] == "as asked"
    assert rep["cpu"]["mask"] == rep["cpu"]["chosen"] == [before[-1]]
    assert cores.affinity() == before  # restored after the measurement
    sens = rep["sensors"]
    assert sens["cpus"] == [before[-1]] and sens["samples"][0]["t_s"] == 0.0
    assert sens["freq_exposed"] == any(f is not None for s in sens["samples"]
                                       for f in s["freq_mhz"])
    default = bench.apply(cnn_bundles / "onnx-fp32", protocol=QUICK)
    assert default["cpu"]["mask"] == before and default["cpu"]["requested"] == "auto"


def test_sustained_run_reports_windows_covering_every_run(cnn_bundles):
    rep = bench.apply(cnn_bundles / "onnx-fp32", protocol=_quiet(sustained_s=0.3))
    sustained = rep["results"]["sustained"]
    assert len(sustained["windows"]) == 10 and sustained["seconds"] == 0.3
    assert sum(w["n"] for w in sustained["windows"]) == rep["results"]["latency_ms"]["n"]
    assert sustained["throttled"] == (sustained["last_over_first"] > 1.10)


def test_sustained_and_duration_are_one_or_the_other():
    with pytest.raises(UserError, match=r"--sustained 5.0: must be > 0 seconds, and replaces "
                                        r"--duration"):
        bench.Protocol(sustained_s=5.0, duration_s=2.0)
    with pytest.raises(UserError, match="--sustained -1"):
        bench.Protocol(sustained_s=-1)


def test_bench_cli_prints_where_it_ran_and_rejects_bad_cores(cnn_bundles, capsys):
    target = str(cnn_bundles / "onnx-fp32")
    assert cli.main(["bench", target, "--runs", "3", "--min-seconds", "0", "--no-memory",
                     "--cores", "all"]) == 0
    assert "t1: cores " in capsys.readouterr().out
    assert cli.main(["bench", target, "--cores", "99"]) == 2
    err = capsys.readouterr().err
    assert "--cores '99': CPU 99 is not available to this process" in err
    assert err.count("\n") == 1


def test_on_unlike_cores_bench_pins_to_the_fastest_by_default(cnn_bundles, monkeypatch):
    # this host's cores are alike; here its kernel says the last one is twice as fast
    from edgepress.runtime import cores

    before = cores.affinity()
    if len(before) < 2:
        pytest.skip("needs two CPUs available to this process")
    fast = before[-1]
    monkeypatch.setattr(cores, "topology", lambda root="/": [
        cores.Core(n, 1024 if n == fast else 512, None) for n in before])
    rep = bench.apply(cnn_bundles / "onnx-fp32", threads=1, protocol=QUICK)
    assert rep["cpu"]["heterogeneous"] and rep["cpu"]["chosen"] == [fast]
    assert rep["cpu"]["mask"] == [fast] and rep["cpu"]["why"] == \
        f"the fastest 1 of {len(before)} cores, which differ"
    assert cores.affinity() == before
