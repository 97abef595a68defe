"""Fuzzing every loader: a malformed model, bundle, manifest, report, recipe or data file ends in
edgepress's own one-line error (UserError: exit 2 from the CLI), never a traceback, hang or crash.

CI runs a few cases per target (deterministic); a release run explores more, with fresh random
cases each time:

    EDGEPRESS_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q tests/fuzz

Loaders that hand bytes to a native engine (onnxruntime, LiteRT, torch) are fuzzed in a child
process (fuzz_worker.py): a segfault there fails the test with the case that caused it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_seeds as fuzz_seeds_module
import fuzz_targets
from fuzz_worker import fuzz

HERE = Path(__file__).resolve().parent
# Cases per target in the default run: enough to walk every mutation kind a few times; fewer
# where each case costs a torch load or conversion.
EXAMPLES = {"report": 60, "recipe": 60, "calib-npz": 60, "torchscript": 25,
            "exported-program": 25, "safetensors": 25, "state-dict": 25, "hf-config": 25,
            "hf-weights": 25}
OTHERS = 60
# Only stops a wedged child, not a timing gate (each case has its own hang detector in the
# worker); a release run takes as long as it takes.
CHILD_LIMIT_S = None if "EDGEPRESS_FUZZ_EXAMPLES" in os.environ else 900


@pytest.fixture(scope="session")
def fuzz_seeds(tmp_path_factory, cnn_bundles):
    """Valid small files of every kind (fuzz_seeds.py): what the mutations start from."""
    return fuzz_seeds_module.make(tmp_path_factory.mktemp("fuzz-seeds"), cnn_bundles)


def test_seeds_are_accepted(fuzz_seeds, tmp_path):
    """Unmutated, every seed loads: the fuzz cases start from good files."""
    for name in fuzz_targets.TARGETS:
        seed = (fuzz_seeds / fuzz_targets.TARGETS[name].seed).read_bytes()
        fuzz_targets.run_case(name, fuzz_seeds, tmp_path, fuzz_targets.Case("none", seed))


@pytest.mark.parametrize("name", sorted(n for n, t in fuzz_targets.TARGETS.items() if not t.native))
def test_fuzz_in_process(name, fuzz_seeds, tmp_path):
    fuzz(name, fuzz_seeds, tmp_path, fuzz_targets.examples(EXAMPLES.get(name, OTHERS)))


def _in_child(name, seeds, work, n, env=None) -> str | None:
    """Runs fuzz_worker.py; None when every case passed, else what went wrong, naming the
    case that was running when the process died."""
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_worker.py"), name, str(seeds),
                           str(work), str(n)], capture_output=True, text=True,
                          timeout=CHILD_LIMIT_S, env=env)
    case = work / "current-case.txt"
    last = case.read_text().strip() if case.is_file() else "(none started)"
    if proc.returncode < 0:
        return (f"{name}: the process died with signal {-proc.returncode} on case {last} "
                f"(file left in {work})\n{proc.stderr[-4000:]}")
    return None if proc.returncode == 0 else f"{name}: {proc.stderr[-6000:]}"


@pytest.mark.parametrize("name", sorted(n for n, t in fuzz_targets.TARGETS.items() if t.native))
def test_fuzz_native_in_child(name, fuzz_seeds, tmp_path):
    problem = _in_child(name, fuzz_seeds, tmp_path, fuzz_targets.examples(EXAMPLES.get(name,
                                                                                       OTHERS)))
    assert problem is None, problem


def test_a_crash_in_the_child_is_reported_with_its_case(fuzz_seeds, tmp_path):
    env = {**os.environ, "EDGEPRESS_FUZZ_SELFTEST": "segfault"}
    problem = _in_child("report", fuzz_seeds, tmp_path, 3, env=env)
    assert problem is not None and "died with signal 11 on case report:" in problem
    assert (tmp_path / "case.json").is_file()  # the input that crashed it, kept


@pytest.mark.parametrize("name", ["calib-npz", "bundle-golden"])
def test_atheris_short_run(name, fuzz_seeds, tmp_path):
    """A short coverage-guided pass with atheris (libFuzzer) where it is installed; the long
    run for a release is `python tests/fuzz/atheris_fuzz.py TARGET SEEDS -max_total_time=600`."""
    pytest.importorskip("atheris", reason="atheris is optional: pip install atheris")
    runs = fuzz_targets.examples(300)
    proc = subprocess.run([sys.executable, str(HERE / "atheris_fuzz.py"), name, str(fuzz_seeds),
                           f"-runs={runs}"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=CHILD_LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert f"Done {runs} runs" in proc.stderr

