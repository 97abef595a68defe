"""`edgepress bench`: latency, init and memory of a bundle or model file (device side: no torch)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from edgepress.cli.output import mib, table
from edgepress.cli.parser import csv
from edgepress.errors import UserError


def register(sub) -> None:
    _add_bench(sub)


def _add_bench(sub):
    p = sub.add_parser("bench", help="measure a bundle or model file: latency, init, memory")
    p.add_argument("target", type=Path, help="bundle directory, .onnx or .tflite")
    p.add_argument("--threads", default="1", help="threads, or a sweep like 1,2,4")
    p.add_argument("--out", type=Path, help="report JSON (with a sweep: one file per thread "
                                            "count, suffixed -tN)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    p.add_argument("--warmup", type=int, default=10, help="minimum warm-up runs (default 10)")
    p.add_argument("--warmup-seconds", type=float, default=0.2,
                   help="minimum warm-up time (default 0.2)")
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs (default 50)")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="minimum timed duration (default 1.0)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="time runs for S seconds, whatever their count (replaces --runs and "
                        "--min-seconds)")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]",
                   help="random inputs of this shape (needed for dynamic dimensions)")
    p.add_argument("--inputs", type=Path, metavar="FILE.npz",
                   help="inputs to time with: name -> array (default: the bundle's golden "
                        "inputs, else random)")
    p.add_argument("--engine", default=None, help="onnxruntime, litert or tflite-runtime")
    p.add_argument("--graph-optimization", help="onnxruntime: all, extended, basic, disabled")
    p.add_argument("--execution-mode", help="onnxruntime: sequential or parallel")
    p.add_argument("--cpu-arena", choices=("on", "off"), help="onnxruntime's CPU memory arena")
    p.add_argument("--xnnpack", choices=("on", "off"), help="LiteRT's XNNPACK delegate")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the memory probe (a fresh child process that loads the model)")
    p.add_argument("--cores", metavar="big|little|all|LIST",
                   help="CPUs to pin to (default: where the cores differ, the fastest, as many "
                        "as the threads; else unpinned)")
    p.add_argument("--sustained", type=float, metavar="S",
                   help="time runs for S seconds and report p50 per window, flagging throttling")
    p.set_defaults(func=_bench)


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in csv(text)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"--threads {text!r}: expected whole numbers >= 1, e.g. 1 or 1,2,4")
    return values


def _bench_options(args) -> dict:
    """Engine options given on the command line; the Session checks them against the engine."""
    given = {"graph_optimization": args.graph_optimization,
             "execution_mode": args.execution_mode,
             "cpu_arena": None if args.cpu_arena is None else args.cpu_arena == "on",
             "xnnpack": None if args.xnnpack is None else args.xnnpack == "on"}
    return {k: v for k, v in given.items() if v is not None}


def _bench(args) -> int:
    from edgepress import atomic
    from edgepress.runtime import bench, report, sensors

    protocol = bench.Protocol(warmup_runs=args.warmup, warmup_s=args.warmup_seconds,
                              min_runs=args.runs, min_s=args.min_seconds,
                              duration_s=args.duration, memory=not args.no_memory,
                              cores=args.cores, sustained_s=args.sustained)
    command = shlex.join(["edgepress", *getattr(args, "argv", sys.argv[1:])])
    sweep = _threads(args.threads)
    outs = {t: args.out if len(sweep) == 1 else
            args.out.with_name(f"{args.out.stem}-t{t}{args.out.suffix}")
            for t in sweep} if args.out else {}
    for out in outs.values():  # before minutes of measuring, not after
        atomic.refuse_existing(out, args.overwrite)
    rows, notes = [], []
    for threads in sweep:
        rep = bench.apply(args.target, threads, protocol, args.input_shape, args.engine,
                          options=_bench_options(args), command=command,
                          inputs_file=args.inputs)
        rows.append(_bench_row(rep))
        notes += sensors.describe(rep)
        if threads in outs:
            report.save(rep, outs[threads], overwrite=args.overwrite)
    table(("engine", "threads", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "std ms", "inf/s", "peak RSS MiB", "runs"), rows)
    print("\n".join(notes))
    for out in outs.values():
        print(f"wrote {out}")
    return 0


def _bench_row(rep: dict) -> tuple:
    res, lat, mem = rep["results"], rep["results"]["latency_ms"], rep["memory"]
    peak = mib((mem or {}).get("peak_rss_bytes"))
    return (rep["engine"]["name"], rep["engine"]["threads"], f"{res['init_ms']:.1f}",
            f"{res['first_inference_ms']:.3f}", f"{lat['p50']:.3f}", f"{lat['p90']:.3f}",
            f"{lat['p99']:.3f}", f"{lat['std']:.3f}", f"{lat['throughput_per_s']:.1f}", peak,
            lat["n"])
