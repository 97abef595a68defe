"""phone_checks: edgepress's estimate against published CPU measurements on each phone profile's
SoC (the profiles' [[checks]]: ncnn's benchncnn figures, fp32, random weights).

For each model a check names (benchmarks/models, fp32 ONNX, 224x224, seeded random weights, as
benchncnn uses random weights too), `estimate` runs on every Android profile at the check's
thread count; the efficiency is calibrated once per model on this host, as `estimate` does by
default. Writes edgepress/devices/profiles/checks.json, which `estimate` reads to say how far off
it was, and prints the table.

    python benchmarks/phone_checks.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import MODELS  # noqa: E402
from edgepress import atomic  # noqa: E402
from edgepress.devices import estimate, profile  # noqa: E402
from edgepress.runtime import fingerprint  # noqa: E402


def phone_profiles() -> list[profile.Profile]:
    return [p for p in map(profile.load, profile.names()) if p.checks]


def build(model: str, work: Path) -> Path:
    """The model's fp32 ONNX bundle (built once into WORK)."""
    out = work / model
    if not (out / "onnx-fp32").is_dir():
        from edgepress.compress import pipeline

        source, shapes = MODELS[model]
        pipeline.run(pipeline.Request(source=source, out=out, formats=("onnx",),
                                      input_shapes=tuple(shapes), overwrite=True))
    return out / "onnx-fp32"


def run(work: Path) -> dict:
    profiles = phone_profiles()
    models = sorted({c["model"] for p in profiles for c in p.checks})
    bundles = {m: build(m, work) for m in models}
    efficiency = {}
    estimates: dict = {}
    for prof in profiles:
        for check in prof.checks:
            bundle = bundles[check["model"]]
            if check["model"] not in efficiency:  # calibrated once per model, on this host
                first = estimate.apply(bundle, prof, check["threads"])
                efficiency[check["model"]] = (first["efficiency"], first["efficiency_source"])
            eff, why = efficiency[check["model"]]
            est = estimate.apply(bundle, prof, check["threads"], eff)
            estimates.setdefault(prof.name, {})[estimate.check_key(check)] = {
                "estimated_ms": round(est["latency_ms"], 3), "roofline_ms": est["roofline_ms"],
                "efficiency": eff, "efficiency_source": why}
    host = fingerprint.fingerprint()
    return {"kind": "phone-checks", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime()),
            "command": "python benchmarks/phone_checks.py",
            "host": f"{host['cpu_model']} ({host['arch']}), load {host['load_avg_1m']}",
            "estimates": estimates}


def table(result: dict) -> list[str]:
    lines = [f"{'device':18} {'check':22} {'estimate ms':>11} {'published ms':>12} {'ratio':>6}"]
    for prof in phone_profiles():
        for c in estimate.checks(prof, result):
            lines.append(f"{prof.name:18} {estimate.check_key(c):22} {c['estimated_ms']:11.2f} "
                         f"{c['published_ms']:12.2f} {c['ratio']:6.2f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="where the bundles are built (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phone-checks-") as tmp:
        result = run(args.work or Path(tmp))
    atomic.write_bytes(estimate.CHECKS_FILE, (json.dumps(result, indent=1) + "\n").encode(),
                       overwrite=True)
    print("\n".join(table(result)))
    print(f"wrote {estimate.CHECKS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
