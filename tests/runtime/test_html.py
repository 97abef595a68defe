"""The HTML report: self-contained, every plot present, and rendered by a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from fake_reports import lognormal, make, write

from edgepress import cli

pytest.importorskip("matplotlib")
from edgepress.runtime import html  # noqa: E402  (needs matplotlib: the `report` extra)

PLOTS = ("latency-box", "latency-cdf", "size-memory", "latency-fidelity", "latency-threads",
         "task-metric")


def _of(bundle) -> dict:
    """A report's model section for a real bundle (the page reads its manifest)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {"bundle": str(bundle), "sha256": manifest["model_sha256"]}


@pytest.fixture
def reports(tmp_path, cnn_bundles):
    return [write(tmp_path, "fp32", lognormal(300, 2.0, 1), model=_of(cnn_bundles / "onnx-fp32")),
            write(tmp_path, "int8", lognormal(300, 0.9, 2), fidelity={"snr_db": 24.0},
                  model={"size_bytes": 26_000, "precision": "int8",
                         **_of(cnn_bundles / "tflite-fp32")}),
            write(tmp_path, "t4", lognormal(300, 0.7, 3), engine={"threads": 4}, fidelity=None,
                  model=_of(cnn_bundles / "onnx-fp32"))]  # fp32's model at 4 threads: a sweep


@pytest.fixture
def summary(tmp_path, cnn_bundles):
    """A summary.json as compress writes one, bundle names relative to it, in a copy of the
    bundles: rows match reports by the model's sha256, not by the folder."""
    shutil.copytree(cnn_bundles, tmp_path / "run")
    rows = [{"bundle": "onnx-fp32", "metric": "accuracy", "value": 0.9812},
            {"bundle": "tflite-fp32", "metric": "accuracy", "value": 0.9734},
            {"bundle": "gone", "metric": "accuracy", "value": 0.5}]  # no such bundle: no match
    path = tmp_path / "run" / "summary.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_page_is_self_contained_with_every_plot(reports, summary, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli.main(["report", *map(str, reports), "--summary", str(summary),
                     "--html", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    for pid in PLOTS:
        assert re.search(rf'<figure id="plot-{pid}"><img class="plot" alt="[^"]+" '
                         r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}">', page), pid
    # Nothing fetched from elsewhere: no external src/href, no @import.
    assert not re.search(r'(src|href)="(?!data:)', page) and "@import" not in page
    assert "t4: engine.threads is 4, fp32 has 1" in page  # the condition warning is shown


def test_page_shows_the_task_metric_recipe_and_stages_of_each_bundle(reports, summary, tmp_path,
                                                                      capsys):
    out = tmp_path / "r.html"
    assert cli.main(["report", *map(str, reports), "--summary", str(summary),
                     "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "98.12%" in printed and "97.34%" in printed  # the terminal table's task metric column
    page = out.read_text()
    figures = page.split('<table id="figures">')[1].split("</table>")[0]
    assert "<td>accuracy</td><td>98.12%</td><td>97.34%</td><td>98.12%</td>" in figures
    made = page.split('<div id="provenance">')[1]
    assert made.count("<details>") == 3
    assert "<td>input_shapes</td>" in made  # set by the run, unlike the defaults (not listed)
    assert "<td>prune_round_to</td>" not in made
    assert "<td>load</td>" in made and "<td>export</td>" in made and "opset: 18" in made


def test_a_summary_that_is_not_one_is_refused_in_one_line(reports, tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"bundles": []}))
    assert cli.main(["report", str(reports[0]), "--summary", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s.json" in err and "rows" in err


def test_fidelity_and_threads_plots_only_when_the_reports_allow():
    # No fidelity anywhere, and two different models (not a thread sweep of one).
    reps = [make(lognormal(50, 1.0, 1), fidelity=None),
            make(lognormal(50, 2.0, 2), fidelity=None, memory=None, model={"sha256": "1" * 64},
                 engine={"threads": 2})]
    page = html.render(reps, ["a", "b"], "t")
    assert page.count('<img class="plot"') == 3
    assert "plot-latency-fidelity" not in page and "plot-latency-threads" not in page
    assert "plot-task-metric" not in page and 'id="provenance"' not in page


def test_text_from_reports_is_escaped():
    rep = make([1.0, 2.0], command="edgepress bench '<script>alert(1)</script>'")
    page = html.render([rep], ["<b>"], "t")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "&lt;b&gt;" in page


def test_existing_html_needs_overwrite(reports, tmp_path, capsys):
    out = tmp_path / "r.html"
    out.write_text("keep me")
    assert cli.main(["report", str(reports[0]), "--html", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert cli.main(["report", str(reports[0]), "--html", str(out), "--overwrite"]) == 0


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, timeout=120):
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_chromium_renders_every_plot(reports, summary, tmp_path):
    out = tmp_path / "r.html"
    assert cli.main(["report", *map(str, reports), "--summary", str(summary),
                     "--html", str(out)]) == 0
    # A virtual-time budget: the DOM is dumped only after the load handlers have run.
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", out.as_uri()).stdout
    # The page's own script counts the <img> plots the browser actually decoded.
    assert re.search(rf'<body data-plots-decoded="{len(PLOTS)}"', dom), dom[:500]
    assert all(f'id="plot-{pid}"' in dom for pid in PLOTS)
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,3600", out.as_uri())
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    # Coloured pixels (boxes, curves, bars) exist only where plots were drawn: text and table
    # borders are grey. Every plot contributes thousands of them.
    colourful = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25
    assert colourful.mean() > 0.01, f"only {colourful.mean():.4f} of the page is coloured"
    rows = np.flatnonzero(colourful.any(axis=1))
    assert rows.size and rows.max() - rows.min() > 1000  # colour spread down the page
