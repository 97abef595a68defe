"""verify: run a bundle on its golden inputs and compare with the fp32 reference from torch.

Metrics: max abs error, SNR (dB), cosine similarity, and top-1 agreement for classification-shaped
outputs (one score vector per sample). Thresholds depend on the artifact's precision. Top-1 is a
criterion only for outputs that are class scores (see `top1_applies`): an embedding or regression
output has an argmax too, but its agreement says nothing, so those are judged by SNR and cosine.
Where the scores are ordered bins of one quantity (crepe's 360 pitch bins, 20 cents apart), the
recipe may declare a tolerance (`[verify] top1_tolerance`, recorded in the manifest's golden
record): an argmax within that many bins of the reference's then agrees. It is never guessed from
the values, so a multi-label head whose int8 argmax moves to another label still fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepress.errors import UserError, choices
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
    criteria: dict = field(default_factory=dict)  # output -> {criteria, top1_why}

    @property
    def passed(self) -> bool:
        return not self.failures


def apply(bundle: Bundle, threads: int = 1, backend: str | None = None) -> Verdict:
    """Runs `bundle` on its golden inputs and checks every output against the thresholds."""
    limits = thresholds(bundle.precision)
    golden_in, golden_out = bundle.golden()
    session = Session(bundle.model_path, threads=threads, backend=backend)
    got = run_samples(session, golden_in)
    check_outputs(bundle, golden_out, got)
    tolerance = top1_tolerance(bundle.manifest)
    metrics = {name: compare(golden_out[name], got[name], tolerance) for name in golden_out}
    criteria = {name: _criteria(bundle.manifest, ref, tolerance)
                for name, ref in golden_out.items()}
    failures = [f"{name}: {msg}" for name, m in metrics.items()
                for msg in _failures(m, limits, criteria[name]["top1"], tolerance)]
    n = next(iter(golden_in.values())).shape[0]
    return Verdict(str(bundle.path), bundle.precision, n, metrics, limits, failures,
                   {name: {"criteria": c["criteria"], "top1_why": c["why"]}
                    for name, c in criteria.items()})


def _criteria(manifest: dict, ref: np.ndarray, tolerance: int = 0) -> dict:
    top1, why = top1_applies(manifest, ref)
    names = ["snr_db", "cosine"] + (["top1_agreement"] if top1 else [])
    if top1 and tolerance:
        why += (f"; an argmax within {tolerance} position(s) of the reference's agrees "
                f"(declared: top1_tolerance)")
    return {"top1": top1, "why": why, "criteria": names}


def top1_tolerance(manifest: dict) -> int:
    """The neighbouring-bin tolerance the recipe declared (0: none), from the golden record."""
    value = (manifest.get("golden") or {}).get("top1_tolerance", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"manifest golden.top1_tolerance {value!r}: must be a whole number "
                        f">= 0 (0: the same class only)")
    return value


def top1_applies(manifest: dict, ref: np.ndarray) -> tuple[bool, str]:
    """Whether top-1 agreement judges the output whose reference is `ref` (samples first), and
    why, from what the bundle holds: the output's shape, the source's declared architecture, the
    labels given with --eval, and the reference values themselves."""
    if _class_scores(ref) is None:
        return False, f"shape {list(ref.shape[1:])} is not one score vector per sample"
    arch = (manifest.get("source") or {}).get("architecture")
    if arch and arch.endswith("Model"):  # transformers' bare encoders: BertModel, ViTModel
        return False, f"source architecture {arch} has no task head (hidden states)"
    accuracy = (manifest.get("fidelity") or {}).get("accuracy")
    if accuracy:
        return True, (f"scored as a classifier against {accuracy['labelled']} --eval labels "
                      f"(accuracy {accuracy['fp32']:.4f})")
    return _by_values(_class_scores(ref))


def _by_values(scores: np.ndarray) -> tuple[bool, str]:
    # Probabilities (softmax or sigmoid ranges) are class scores; unit-norm vectors are
    # embeddings; anything else unbounded is read as logits, the only other kind of score vector.
    lo, hi = float(scores.min()), float(scores.max())
    sums = scores.sum(-1)
    norms = np.linalg.norm(scores, axis=-1)
    k = scores.shape[-1]
    if lo >= 0 and hi <= 1:
        # Sigmoid (multi-label) probabilities are class scores too: a quantized head whose most
        # probable label changes has changed its answer. Ordered bins whose neighbours are the
        # same answer (pitch bins) declare a tolerance instead (top1_tolerance).
        kind = "softmax" if np.allclose(sums, 1, atol=1e-3) else "sigmoid"
        return True, f"{k} values in [{lo:.3g}, {hi:.3g}] per sample: {kind} probabilities"
    if np.allclose(norms, 1, atol=1e-3):
        return False, (f"{k} values of L2 norm {norms.min():.4f}..{norms.max():.4f} per sample: "
                       f"a normalized embedding")
    return True, f"{k} unbounded values per sample ([{lo:.3g}, {hi:.3g}]), no head declared: logits"


def thresholds(precision: str) -> dict:
    """The gates for `precision`: never another precision's, so an unknown or mis-cased one
    ("FP32") is an error, not int8's loose limits (open_bundle refuses it first)."""
    if precision not in THRESHOLDS:
        raise choices("precision", precision, THRESHOLDS)
    return THRESHOLDS[precision]


def check_outputs(bundle: Bundle, golden: dict, got: dict) -> None:
    """The golden outputs name and shape what the model produced (a damaged or foreign
    golden.npz would otherwise fail inside numpy, or broadcast silently)."""
    for name, ref in golden.items():
        if name not in got or got[name].shape != ref.shape:
            found = list(got[name].shape) if name in got else "no such output"
            raise UserError(f"bundle {str(bundle.path)!r}: golden output {name!r} "
                            f"{list(ref.shape)} does not match the model ({found}; its outputs: "
                            f"{', '.join(got)})")


def run_samples(session: Session, inputs: dict) -> dict:
    """Runs each sample (leading axis of every array) and stacks the outputs the same way."""
    n = next(iter(inputs.values())).shape[0]
    runs = [session.run({k: v[i] for k, v in inputs.items()}) for i in range(n)]
    return {name: np.stack([r[name] for r in runs]) for name in runs[0]}


def compare(ref: np.ndarray, out: np.ndarray, tolerance: int = 0) -> dict:
    """Fidelity of `out` against `ref` (both shaped (samples, *tensor shape)). Top-1 agreement
    counts argmaxes at most `tolerance` positions apart (the exact share beside it then)."""
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
        moved = np.abs(scores.argmax(-1) - out64.reshape(scores.shape).argmax(-1))
        m["top1_agreement"] = float(np.mean(moved <= tolerance))
        if tolerance:
            m["top1_exact"] = float(np.mean(moved == 0))
    return m


def _class_scores(ref: np.ndarray):
    # "Classification-shaped": one vector of >1 scores per sample, e.g. (N, 1, classes).
    squeezed = ref.reshape(ref.shape[0], -1)
    non_unit = [d for d in ref.shape[1:] if d != 1]
    return squeezed if len(non_unit) == 1 and non_unit[0] > 1 else None


def _failures(m: dict, limits: dict, top1: bool, tolerance: int = 0) -> list[str]:
    out = []
    if m["snr_db"] < limits["snr_db"]:
        out.append(f"SNR {m['snr_db']:.1f} dB < {limits['snr_db']} dB")
    if m["cosine"] < limits["cosine"]:
        out.append(f"cosine {m['cosine']:.6f} < {limits['cosine']}")
    if top1 and "top1_agreement" in m and m["top1_agreement"] < limits["top1_agreement"]:
        within = f" (argmax within {tolerance})" if tolerance else ""
        out.append(f"top-1 agreement{within} {m['top1_agreement']:.3f} < "
                   f"{limits['top1_agreement']}")
    rel = limits.get("max_abs_rel")
    if rel is not None and m["max_abs"] > rel * max(1.0, m["ref_peak"]):
        out.append(f"max abs error {m['max_abs']:.3g} > {rel * max(1.0, m['ref_peak']):.3g}")
    return out


# ---- fidelity on held-out data (--eval) -----------------------------------------------------

class Fidelity:
    """Streamed fidelity of a model against its fp32 reference over held-out samples.

    Sums are kept instead of outputs, so memory does not grow with the data set. Top-1 agreement
    (and, with labels, accuracy of both models) uses the first classification-shaped output.
    """

    def __init__(self):
        self.n = 0
        self.sums: dict = {}  # output -> [signal, noise, ref.out, |ref|^2, |out|^2]
        self.agree = 0
        self.classified = None  # the output used for top-1, once seen
        self.labelled = self.correct_ref = self.correct_out = 0

    def add(self, ref: dict, out: dict, label=None) -> None:
        self.n += 1
        for name, r in ref.items():
            r64, o64 = r.astype(np.float64).ravel(), out[name].astype(np.float64).ravel()
            s = self.sums.setdefault(name, [0.0] * 5)
            for i, v in enumerate((r64 @ r64, (o64 - r64) @ (o64 - r64), r64 @ o64, r64 @ r64,
                                   o64 @ o64)):
                s[i] += float(v)
        if self.classified is None:
            self.classified = next((k for k, v in ref.items()
                                    if _class_scores(v[None]) is not None), False)
        if self.classified:
            top_ref = int(np.argmax(ref[self.classified]))
            top_out = int(np.argmax(out[self.classified]))
            self.agree += top_ref == top_out
            if label is not None:
                truth = int(np.asarray(label).ravel()[0])
                self.labelled += 1
                self.correct_ref += top_ref == truth
                self.correct_out += top_out == truth

    def result(self) -> dict:
        outputs = {name: {"snr_db": _snr(s[0], s[1]),
                          "cosine": s[2] / max(np.sqrt(s[3] * s[4]), 1e-30) if s[1] else 1.0}
                   for name, s in self.sums.items()}
        res = {"samples": self.n, "outputs": outputs,
               "snr_db": min(o["snr_db"] for o in outputs.values()),
               "cosine": min(o["cosine"] for o in outputs.values())}
        if self.classified:
            res["top1_agreement"] = self.agree / self.n
        if self.labelled:
            fp32, quant = self.correct_ref / self.labelled, self.correct_out / self.labelled
            res["accuracy"] = {"fp32": fp32, "quantized": quant,
                               "drop_points": round(100 * (fp32 - quant), 4),
                               "labelled": self.labelled}
        return res

    def drop_points(self) -> float | None:
        """Accuracy drop in points with labels, else top-1 disagreement in points."""
        res = self.result()
        if "accuracy" in res:
            return res["accuracy"]["drop_points"]
        return 100 * (1 - res["top1_agreement"]) if "top1_agreement" in res else None


def _snr(signal: float, noise: float) -> float:
    if noise == 0:
        return SNR_CAP_DB
    return float(min(SNR_CAP_DB, 10 * np.log10(max(signal, 1e-30) / noise)))


def evaluate(session: Session, reference: Session, pairs) -> dict:
    """Fidelity of `session` against `reference` over (sample dict, label or None) pairs."""
    fid = Fidelity()
    for sample, label in pairs:
        fid.add(reference.run(sample), session.run(sample), label)
    return fid.result()
