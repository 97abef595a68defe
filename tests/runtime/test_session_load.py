"""Session under load: one Session shared by 8 threads gives each caller its own correct
outputs (onnxruntime's run is thread-safe; the LiteRT interpreter is serialised by the
Session's lock), and a long run does not grow memory (benchmarks/soak.py, short form)."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from tiny_models import ROOT

from edgepress.runtime import artifact
from edgepress.runtime.session import Session

THREADS = 8
CALLS_PER_THREAD = 60


@pytest.mark.parametrize("fmt", ("onnx", "tflite"))
def test_one_session_eight_threads_correct_outputs(fmt, cnn_bundles):
    bundle = artifact.open_bundle(cnn_bundles / f"{fmt}-fp32")
    session = Session(bundle.model_path, threads=1)
    golden_in, _ = bundle.golden()
    # 8 different inputs, each thread starting at another one: a mixed-up tensor between
    # callers shows as a wrong answer, not as the same answer twice.
    rng = np.random.default_rng(0)
    x = golden_in["x"][0]
    inputs = [rng.standard_normal(x.shape).astype(x.dtype) for _ in range(THREADS)]
    expected = [session.run({"x": a})["output_0"].copy() for a in inputs]
    assert all(not np.allclose(expected[0], e) for e in expected[1:])  # distinguishable
    start, errors = threading.Barrier(THREADS), []

    def worker(t: int):
        start.wait()
        for i in range(CALLS_PER_THREAD):
            k = (t + i) % THREADS
            try:  # an exception in a thread would otherwise only be printed
                got = session.run({"x": inputs[k]})["output_0"]
            except Exception as e:  # e.g. LiteRT unguarded: "at least 1 reference to internal data"
                errors.append((t, i, k, repr(e)))
                continue
            if not np.allclose(got, expected[k], rtol=1e-5, atol=1e-6):
                errors.append((t, i, k, float(np.max(np.abs(got - expected[k])))))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, f"{len(errors)} wrong outputs, first (thread, call, input, diff): " \
                       f"{errors[0]}"


def test_soak_short_form_memory_stays_flat(cnn_bundles):
    """5,000 inferences per engine after warm-up, each in a fresh torch-free process: RSS
    grows < 1% (the release figure is benchmarks/soak.py's 100,000)."""
    models = [str(cnn_bundles / "onnx-fp32"), str(cnn_bundles / "tflite-fp32")]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), *models,
                           "--runs", "5000", "--warmup", "500"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["engine"] for r in reports) == ["litert", "onnxruntime"]
    for r in reports:
        assert r["runs"] == 5000
        assert r["growth_pct"] < 1.0, r
