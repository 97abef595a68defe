"""tasks: the real models' task metrics (torch-free: they run where measure.py runs), each on the
eval split models/real.py wrote, for one artifact against its task's truth or reference:

- vad: frame accuracy of speech probability > 0.5 against the RTTM speaker turns, the recurrent
  state carried from chunk to chunk as the model's own output.
- pitch: share of voiced frames whose decoded pitch lies within 50 cents of crepe full's.
  Decoding (torchcrepe's weighted argmax, without its dither): cents = 20 b + 1997.379, b the
  activation-weighted mean bin over the 9 bins around the argmax. Voicing rule: a frame is
  voiced where crepe full's highest activation is at least 0.5 (VOICED).
- filetype: accuracy of the top type against the file's type (by extension).
- embedding: nearest-neighbour agreement with fp32 among the eval sentences (each sentence's
  closest other sentence by cosine, same as fp32's or not); worst and mean cosine to fp32 too.
- notes: F1 of note and onset activations > 0.5 against the fp32 model's, over all frames.

Every task also gives `cosine`: the mean over eval samples of the cosine between the artifact's
task output and the fp32 model's (for vad, over the whole probability track). An artifact whose
cosine is below BROKEN is broken: its latency does not count as a result.
"""

from __future__ import annotations

import functools

import numpy as np

from edgepress.runtime import artifact
from edgepress.runtime.session import Session

BROKEN = 0.9
PITCH_TOLERANCE_CENTS = 50
VOICED = 0.5
CENTS_PER_BIN, CENTS_OFFSET = 20, 1997.3794084376191


def evaluate(row: dict) -> dict:
    """Task metric, cosine and SNR of `row`'s artifact on its eval split."""
    out = _outputs(row["bundle"], row["task"], row["eval"])
    ref = _outputs(row["reference"], row["task"], row["eval"])
    with np.load(row["eval"], allow_pickle=False) as z:
        truth = {k: z[k] for k in z.files}
    value, detail = SCORES[row["task"]](out, ref, truth)
    cos = _mean_cosine(out, ref, row["task"])
    return {"metric": METRICS[row["task"]], "value": value, "cosine": cos,
            "broken": bool(cos < BROKEN), "snr_db": _snr(out, ref), "eval_samples": len(out),
            "task_detail": detail}


@functools.lru_cache(maxsize=4)
def _cached(bundle: str, task: str, npz: str) -> np.ndarray:
    session = Session(artifact.open_bundle(bundle).model_path)
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return RUNNERS[task](session, arrays)


def _outputs(bundle: str, task: str, npz: str) -> np.ndarray:
    return _cached(str(bundle), task, str(npz))


def _feed(session: Session, named: dict) -> dict:
    """Values for the session's inputs, cast to what each declares. Matched by name where the
    names agree, the rest by size (a .tflite's signature may order and name its inputs
    otherwise), else in order. Dims a model keeps dynamic (silero-vad's .onnx) take the value's."""
    specs = session.inputs
    if set(named) != {s.name for s in specs}:
        named = _matched(specs, named)
    return {s.name: _shaped(np.asarray(named[s.name]).astype(s.dtype), s) for s in specs}


def _matched(specs, named: dict) -> dict:
    out = {s.name: named[s.name] for s in specs if s.name in named}
    rest = [s for s in specs if s.name not in out]
    values = [v for k, v in named.items() if k not in out]
    sizes = [] if any(s.dynamic_dims for s in rest) else \
        [int(np.prod(s.shape)) if s.shape else 1 for s in rest]
    if sizes and len(set(sizes)) == len(sizes):
        by_size = {int(np.asarray(v).size): v for v in values}
        values = [by_size[n] for n in sizes]
    return {**out, **dict(zip([s.name for s in rest], values))}


def _shaped(value: np.ndarray, spec) -> np.ndarray:
    return value if spec.dynamic_dims else value.reshape(spec.shape)


def _run_each(session: Session, arrays: dict, pick) -> np.ndarray:
    """One inference per sample of the model-input arrays (labels and references left out)."""
    inputs = {k: v for k, v in arrays.items() if k not in ("labels", "ref_cents")}
    n = len(next(iter(inputs.values())))
    return np.stack([pick(session.run(_feed(session, {k: v[i] for k, v in inputs.items()})))
                     for i in range(n)])


def _by_size(outputs: dict, size: int) -> np.ndarray:
    """The output with `size` values per sample (outputs may be named differently per format)."""
    return next(np.asarray(v, np.float64).ravel() for v in outputs.values()
                if np.asarray(v).size == size)


def _run_vad(session: Session, arrays: dict) -> np.ndarray:
    state, probs = np.zeros((2, 1, 128), np.float32), []
    for x in arrays["chunks"]:  # (1, 576) each, in order
        values = {"x": x, "state": state, **({"sr": np.int64(16000)}
                                             if len(session.inputs) > 2 else {})}
        res = session.run(_feed(session, values))
        probs.append(float(_by_size(res, 1)[0]))
        state = _by_size(res, 256).reshape(2, 1, 128).astype(np.float32)
    return np.array(probs)


RUNNERS = {
    "vad": _run_vad,
    "pitch": lambda s, a: _run_each(s, a, lambda r: _by_size(r, 360)),
    "filetype": lambda s, a: _run_each(s, a, lambda r: _by_size(r, 214)),
    "embedding": lambda s, a: _run_each(s, a, lambda r: _by_size(r, 384)),
    "notes": lambda s, a: _run_each(s, a, lambda r: np.concatenate(
        [np.asarray(v, np.float64).ravel() for v in r.values() if np.asarray(v).size == 172 * 88])),
}


def _vad(out, ref, truth):
    return float(np.mean((out > 0.5) == truth["labels"].astype(bool))), {
        "fp32": float(np.mean((ref > 0.5) == truth["labels"].astype(bool)))}


def cents(activations: np.ndarray) -> np.ndarray:
    """(n, 360) activations -> (n,) cents, by weighted argmax over 9 bins around the peak."""
    peak = activations.argmax(axis=1)
    bins = np.arange(activations.shape[1])
    window = (bins >= (peak - 4)[:, None]) & (bins < (peak + 5)[:, None])
    weights = np.where(window, activations, 0.0)
    mean_bin = (weights * bins).sum(1) / np.maximum(weights.sum(1), 1e-12)
    return CENTS_PER_BIN * mean_bin + CENTS_OFFSET


def pitch_agreement(outputs, reference) -> float:
    """edgepress distill's metric for crepe (--distill-metric benchmarks.tasks:pitch_agreement):
    the share of the frames the reference (the teacher's activations) calls voiced whose pitch
    the outputs decode within 50 cents of the reference's. Takes CPU tensors or arrays."""
    out, ref = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    voiced = ref.max(axis=1) >= VOICED
    if not voiced.any():
        return 0.0
    err = np.abs(cents(out[voiced]) - cents(ref[voiced]))
    return float(np.mean(err < PITCH_TOLERANCE_CENTS))


def _pitch(out, ref, truth):
    err = np.abs(cents(out) - truth["ref_cents"])
    return float(np.mean(err < PITCH_TOLERANCE_CENTS)), {"median_error_cents": float(
        np.median(err))}


def _filetype(out, ref, truth):
    return float(np.mean(out.argmax(1) == truth["labels"])), {
        "fp32": float(np.mean(ref.argmax(1) == truth["labels"]))}


def _embedding(out, ref, truth):
    cos = _rowwise_cosine(out, ref)
    agree = np.mean(_nearest(out) == _nearest(ref))
    return float(agree), {"worst_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def _notes(out, ref, truth):
    a, b = out > 0.5, ref > 0.5
    tp = np.sum(a & b)
    f1 = 2 * tp / max(a.sum() + b.sum(), 1) if (a.sum() + b.sum()) else 1.0
    return float(f1), {"active_fp32": int(b.sum())}


def _nearest(emb: np.ndarray) -> np.ndarray:
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(axis=-1)
    return num / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def _mean_cosine(out, ref, task) -> float:
    if task == "vad":  # one probability per chunk: the track as a whole
        return float(_rowwise_cosine(out[None], ref[None])[0])
    return float(_rowwise_cosine(out, ref).mean())


def _snr(out, ref) -> float:
    noise = float(np.sum((out - ref) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref ** 2)) / noise)


SCORES = {"vad": _vad, "pitch": _pitch, "filetype": _filetype, "embedding": _embedding,
          "notes": _notes}
METRICS = {"vad": "frame accuracy", "pitch": "within 50 cents", "filetype": "accuracy",
           "embedding": "NN agreement", "notes": "note F1 vs fp32"}
