"""`edgepress verify`: a bundle against its golden fp32 outputs (device side: no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from edgepress.cli.output import table


def register(sub) -> None:
    _add_verify(sub)


def _add_verify(sub):
    p = sub.add_parser("verify", help="check a bundle against its golden fp32 outputs")
    p.add_argument("bundle", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--engine", default=None, help="onnxruntime, litert or tflite-runtime")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(func=_verify)


def _verify(args) -> int:
    from edgepress.runtime import artifact, verify

    verdict = verify.apply(artifact.open_bundle(args.bundle), args.threads, args.engine)
    if args.json:
        print(json.dumps({"passed": verdict.passed, **vars(verdict)}, indent=1))
        return 0 if verdict.passed else 1
    rows = [(name, f"{m['max_abs']:.3g}", f"{m['snr_db']:.1f}", f"{m['cosine']:.6f}", _top1(m))
            for name, m in verdict.metrics.items()]
    table(("output", "max abs", "SNR dB", "cosine", "top-1 agree"), rows)
    lim = verdict.thresholds
    print(f"thresholds ({verdict.precision}): SNR >= {lim['snr_db']} dB, cosine >= "
          f"{lim['cosine']}, top-1 >= {lim['top1_agreement']} where it applies; "
          f"{verdict.samples} samples")
    for name, c in verdict.criteria.items():  # top-1 only judges class scores: say which
        print(f"{name}: judged by {', '.join(c['criteria'])} ({c['top1_why']})")
    for f in verdict.failures:
        print(f"FAIL {f}")
    print("PASS" if verdict.passed else "FAIL")
    return 0 if verdict.passed else 1


def _top1(m: dict) -> str:
    if "top1_agreement" not in m:
        return "-"
    exact = f" (exact {m['top1_exact']:.3f})" if "top1_exact" in m else ""  # with a tolerance
    return f"{m['top1_agreement']:.3f}{exact}"
