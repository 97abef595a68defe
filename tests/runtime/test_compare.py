"""compare: ratios to the first report, significance on raw samples, warnings, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from fake_reports import lognormal, make, write

from edgepress import cli
from edgepress.runtime import compare, report


def test_mann_whitney_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.05, 0.3):
        a = np.round(rng.lognormal(0, 0.2, 300), 2)  # rounding makes many ties
        b = np.round(rng.lognormal(shift, 0.2, 200), 2)
        want = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
        assert compare.mann_whitney_p(a, b) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_identical_samples_are_no_change():
    a = np.full(100, 2.0)
    assert compare.mann_whitney_p(a, a.copy()) == 1.0
    c = compare.latency_change("b", a, a.copy())
    assert c.verdict == "no significant change" and c.median_ratio == 1.0


def test_bootstrap_interval_covers_the_true_ratio():
    a = lognormal(2000, 1.0, 0)
    c = compare.latency_change("b", a, a * 1.2)
    lo, hi = c.ci95
    assert lo < 1.2 < hi and hi - lo < 0.1
    assert c.verdict == "slower" and c.p_value < 1e-6


def test_drift_within_a_run_widens_the_interval():
    # The same values in time order (a steady drift) and shuffled (independent): only the
    # drifting run should be uncertain about its median.
    rng = np.random.default_rng(3)
    drifting = np.linspace(1.0, 1.3, 2000) + rng.normal(0, 0.01, 2000)
    shuffled = rng.permutation(drifting)
    base = lognormal(2000, 1.15, 4)
    width = {name: np.subtract(*compare.median_ratio_ci(base, b, np.random.default_rng(0))[::-1])
             for name, b in (("drifting", drifting), ("shuffled", shuffled))}
    assert width["drifting"] > 3 * width["shuffled"]


def test_noise_is_not_called_a_change(tmp_path, capsys):
    a = write(tmp_path, "a", lognormal(400, 1.0, seed=1))
    b = write(tmp_path, "b", lognormal(400, 1.0, seed=2))  # same distribution, other draw
    assert cli.main(["compare", str(a), str(b), "--fail-if-slower", "5%"]) == 0
    out = capsys.readouterr().out
    assert "no significant change" in out and "no significant regression beyond 5%" in out


@pytest.mark.parametrize("factor, limit, code, verdict", [
    (1.2, "5%", 3, "slower"),   # significant and bigger than the limit: the CI gate trips
    (1.2, "50", 0, "slower"),   # significant but within the limit
    (1.2, None, 0, "slower"),   # no gate asked for
    (0.8, "5%", 0, "faster"),
])
def test_fail_if_slower(tmp_path, capsys, factor, limit, code, verdict):
    a = write(tmp_path, "a", lognormal(300, 1.0, seed=1))
    b = write(tmp_path, "b", lognormal(300, factor, seed=2))
    argv = ["compare", str(a), str(b)] + (["--fail-if-slower", limit] if limit else [])
    assert cli.main(argv) == code
    out = capsys.readouterr().out
    assert f"{verdict}: median x" in out
    change = compare.apply([a, b])["latency_changes"][0]
    assert change["median_ratio"] == pytest.approx(factor, rel=0.05)
    if code == 3:
        assert "REGRESSION" in out and "b" in out.splitlines()[-1]


def test_ratios_side_by_side_and_json(tmp_path, capsys):
    a = write(tmp_path, "a", [1.0, 2.0, 3.0], model={"size_bytes": 1000})
    b = write(tmp_path, "b", [2.0, 4.0, 6.0], model={"size_bytes": 250})
    c = write(tmp_path, "c", [0.5, 1.0, 1.5], memory=None, fidelity=None)
    assert cli.main(["compare", str(a), str(b), str(c), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["metric"]: r for r in result["metrics"]}
    assert rows["p50 ms"]["values"] == [2.0, 4.0, 1.0]
    assert rows["p50 ms"]["ratios"] == [1.0, 2.0, 0.5]
    assert rows["model size KiB"]["ratios"][1] == 0.25
    assert rows["peak RSS MiB"]["values"][2] is None  # c skipped the memory probe
    assert [c["label"] for c in result["latency_changes"]] == ["b", "c"]
    assert result["latency_changes"][0]["p_value"] is None  # 3 samples: no test, no verdict
    assert result["latency_changes"][0]["verdict"] == "no significant change"


def test_table_and_markdown(tmp_path, capsys):
    a = write(tmp_path, "base", lognormal(100, 1.0, 1))
    b = write(tmp_path, "new", lognormal(100, 1.0, 2))
    assert cli.main(["compare", str(a), str(b)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["metric", "base", "(base)"] and set(table[1]) <= {"-", " "}
    assert cli.main(["compare", str(a), str(b), "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| metric | base (base) | new |" and md[1] == "|---|---|---|"
    assert any(line.startswith("| p50 ms | ") for line in md)


def test_warns_when_conditions_differ(tmp_path, capsys):
    a = write(tmp_path, "a", lognormal(50, 1.0, 1))
    b = write(tmp_path, "b", lognormal(50, 1.0, 2), engine={"threads": 4, "version": "1.21.0"},
              device={"governor": "powersave"})
    same = write(tmp_path, "same", lognormal(50, 1.0, 3))
    assert cli.main(["compare", str(a), str(b), str(same)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("warning:")]
    assert len(warnings) == 3 and all(w.startswith("warning: b: ") for w in warnings)
    text = "\n".join(warnings)
    assert "engine.threads is 4, a has 1" in text and "engine.version" in text
    assert "device.governor is 'powersave', a has 'performance'" in text


def _phone(tmp_path, name, mask, temp_max, throttled_ratio=None):
    rep = make(lognormal(50, 1.0, len(name)), cpu={"requested": "auto", "mask": mask},
               sensors={"interval_s": 0.5, "freq_exposed": False, "thermal_exposed": True,
                        "samples": [], "temp_c": {"start": temp_max, "end": temp_max,
                                                  "max": temp_max}})
    if throttled_ratio is not None:
        rep["results"]["sustained"] = {"seconds": 60.0, "windows": [], "threshold": 1.1,
                                       "last_over_first": throttled_ratio,
                                       "throttled": throttled_ratio > 1.1}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(rep))
    return path


def test_warns_about_cpu_mask_throttling_and_temperature(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    a = _phone(tmp_path, "cool", [7], 41.0, throttled_ratio=1.04)
    b = _phone(tmp_path, "hot", [3, 4, 7], 55.5, throttled_ratio=1.31)
    c = _phone(tmp_path, "warm", [7], 50.0)
    for path in (a, b, c):
        jsonschema.validate(json.loads(path.read_text()), report.schema(),
                            cls=jsonschema.Draft202012Validator)
    assert cli.main(["compare", str(a), str(b), str(c)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("warning:")]
    assert warnings == [
        "warning: hot: throttled during its sustained run (last window's p50 1.31x the "
        "first's): its latency is a hot device's",
        "warning: hot: hottest thermal zone reached 55.5 C, cool 41.0 C (more than 10 C apart): "
        "a hot phone runs slower clocks",
        "warning: hot: cpu.mask is [3, 4, 7], cool has [7]: latency may differ for that reason "
        "alone"]  # warm: same mask, 9 C apart, not throttled: nothing to say


def test_warns_about_a_busy_machine(tmp_path, capsys):
    a = write(tmp_path, "a", [1.0], device={"load_avg_1m": 0.3})
    b = write(tmp_path, "b", [1.0], device={"load_avg_1m": 3.5})  # 4 cores available
    assert cli.main(["compare", str(a), str(b)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "busy" in line]
    assert warnings == ["warning: b: measured on a busy machine (load average 3.5 on 4 cores): "
                        "expect noise"]


def test_colliding_stems_are_labelled_by_path(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = write(tmp_path / "x", "r", [1.0])
    b = write(tmp_path / "y", "r", [1.0])
    assert compare.labels_for([a, b]) == [str(a), str(b)]


@pytest.mark.parametrize("extra, message", [
    ([], "at least two reports"),
    (["{b}", "--format", "html"], "--format 'html' is not one of: json, markdown, table"),
    (["{b}", "--fail-if-slower", "fast"], "--fail-if-slower 'fast'"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    a = write(tmp_path, "a", [1.0])
    b = write(tmp_path, "b", [1.0])
    argv = ["compare", str(a)] + [x.format(b=b) for x in extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_compare_needs_neither_scipy_nor_torch(tmp_path):
    """compare runs where reports are gathered (a device, a CI box): numpy only."""
    a = write(tmp_path, "a", lognormal(100, 1.0, 1))
    b = write(tmp_path, "b", lognormal(100, 1.3, 2))
    code = ("import sys\n"
            "for m in ('scipy', 'torch', 'matplotlib'): sys.modules[m] = None\n"
            "from edgepress.cli import main\n"
            f"sys.exit(main(['compare', {str(a)!r}, {str(b)!r}, '--fail-if-slower', '5']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "REGRESSION" in proc.stdout
