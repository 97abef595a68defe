"""verify: run a bundle on its golden inputs and compare with the fp32 reference from torch.

Metrics: max abs error, SNR (dB), cosine similarity, and top-1 agreement for classification-shaped
outputs (one score vector per sample). Thresholds depend on the artifact's precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepress.runtime.artifact import Bundle
from edgepress.runtime.session import Session

# Minimum SNR (dB), minimum cosine, minimum top-1 agreement, max abs error relative to the
# reference's peak magnitude. fp32 differs from torch only by operator order and fusion; fp16 keeps
# ~3 decimal digits; int8 keeps ~8 bits, so its gates check "the same model", not bit-closeness.
THRESHOLDS = {
    "fp32": {"snr_db": 60.0, "cosine": 0.99999, "top1_agreement": 0.99, "max_abs_rel": 1e-3},
    "fp16": {"snr_db": 35.0, "cosine": 0.999, "top1_agreement": 0.95, "max_abs_rel": 5e-2},
    "dynamic": {"snr_db": 20.0, "cosine": 0.99, "top1_agreement": 0.9, "max_abs_rel": None},
    "weight-int8": {"snr_db": 20.0, "cosine": 0.99, "top1_agreement": 0.9, "max_abs_rel": None},
    "int8": {"snr_db": 12.0, "cosine": 0.95, "top1_agreement": 0.85, "max_abs_rel": None},
}
SNR_CAP_DB = 200.0  # identical outputs have infinite SNR; JSON has no infinity


@dataclass
class Verdict:
    bundle: str
    precision: str
    samples: int
    metrics: dict  # output name -> {max_abs, snr_db, cosine, top1_agreement?}
    thresholds: dict
    failures: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def apply(bundle: Bundle, threads: int = 1, backend: str | None = None) -> Verdict:
    """Runs `bundle` on its golden inputs and checks every output against the thresholds."""
    golden_in, golden_out = bundle.golden()
    session = Session(bundle.model_path, threads=threads, backend=backend)
    got = run_samples(session, golden_in)
    limits = THRESHOLDS.get(bundle.precision, THRESHOLDS["int8"])
    metrics = {name: compare(golden_out[name], got[name]) for name in golden_out}
    failures = [f"{name}: {msg}" for name, m in metrics.items() for msg in _failures(m, limits)]
    n = next(iter(golden_in.values())).shape[0]
    return Verdict(str(bundle.path), bundle.precision, n, metrics, limits, failures)


def run_samples(session: Session, inputs: dict) -> dict:
    """Runs each sample (leading axis of every array) and stacks the outputs the same way."""
    n = next(iter(inputs.values())).shape[0]
    runs = [session.run({k: v[i] for k, v in inputs.items()}) for i in range(n)]
    return {name: np.stack([r[name] for r in runs]) for name in runs[0]}


def compare(ref: np.ndarray, out: np.ndarray) -> dict:
    """Fidelity of `out` against `ref` (both shaped (samples, *tensor shape))."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    err = out64 - ref64
    noise, signal = float(np.sum(err**2)), float(np.sum(ref64**2))
    snr = SNR_CAP_DB if noise == 0 else min(SNR_CAP_DB, 10 * np.log10(max(signal, 1e-30) / noise))
    norms = np.linalg.norm(ref64) * np.linalg.norm(out64)
    cosine = 1.0 if norms == 0 and noise == 0 else float(np.sum(ref64 * out64) / max(norms, 1e-30))
    m = {"max_abs": float(np.max(np.abs(err))) if err.size else 0.0,
         "ref_peak": float(np.max(np.abs(ref64))) if ref64.size else 0.0,
         "snr_db": float(snr), "cosine": cosine}
    scores = _class_scores(ref64)
    if scores is not None:
        m["top1_agreement"] = float(np.mean(scores.argmax(-1) ==
                                            out64.reshape(scores.shape).argmax(-1)))
    return m


def _class_scores(ref: np.ndarray):
    # "Classification-shaped": one vector of >1 scores per sample, e.g. (N, 1, classes).
    squeezed = ref.reshape(ref.shape[0], -1)
    non_unit = [d for d in ref.shape[1:] if d != 1]
    return squeezed if len(non_unit) == 1 and non_unit[0] > 1 else None


def _failures(m: dict, limits: dict) -> list[str]:
    out = []
    if m["snr_db"] < limits["snr_db"]:
        out.append(f"SNR {m['snr_db']:.1f} dB < {limits['snr_db']} dB")
    if m["cosine"] < limits["cosine"]:
        out.append(f"cosine {m['cosine']:.6f} < {limits['cosine']}")
    if "top1_agreement" in m and m["top1_agreement"] < limits["top1_agreement"]:
        out.append(f"top-1 agreement {m['top1_agreement']:.3f} < {limits['top1_agreement']}")
    rel = limits.get("max_abs_rel")
    if rel is not None and m["max_abs"] > rel * max(1.0, m["ref_peak"]):
        out.append(f"max abs error {m['max_abs']:.3g} > {rel * max(1.0, m['ref_peak']):.3g}")
    return out
