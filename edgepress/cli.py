"""The `edgepress` command: a thin argparse layer over the public functions.

User mistakes (edgepress.errors.UserError) print one line and exit 2; `--debug` shows tracebacks.
Host-side modules (torch) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path

from edgepress import __version__
from edgepress.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message}")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise UserError(f"expected yes or no, got {text!r}")
    return text == "yes"


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"--threads {text!r}: expected whole numbers >= 1, e.g. 1 or 1,2,4")
    return values


def _add_compress(sub):
    p = sub.add_parser("compress", help="load a model, prune/distill, export ONNX/TFLite bundles, "
                                        "quantize, verify, summarize")
    _add_compress_flags(p)
    p.set_defaults(func=_compress)


def _add_distill(sub):
    p = sub.add_parser("distill", help="compress with knowledge distillation (--distill logits "
                                       "by default): teacher -> (pruned) student -> bundles")
    _add_compress_flags(p)
    p.set_defaults(func=_compress, distill_command=True)


# Flag defaults are None ("not given"): the recipe file's value, else the pipeline's default,
# applies. The defaults shown in help are pipeline.Request's.
def _add_compress_flags(p):
    p.add_argument("source", nargs="?", help="module:function, file.py:function, .pt "
                   "(TorchScript), .pt2, a Hugging Face-style directory, or .onnx")
    p.add_argument("--recipe", type=Path, help="a TOML recipe; flags given here override it")
    p.add_argument("--weights", help=".safetensors or state-dict .pt for a factory source")
    p.add_argument("--trust-pickle", action="store_true", default=None,
                   help="allow pickled weights or models: unpickling runs any code the file "
                        "carries, so only for files you made or fully trust")
    p.add_argument("--input-shape", action="append", metavar="[NAME=]DIMS[:DTYPE]",
                   help="e.g. 1,3,224,224 or input_ids=1,128:int64 (repeat for several inputs)")
    p.add_argument("--format", help="comma-separated: onnx,tflite (default both)")
    p.add_argument("--out", type=Path, help="output directory (one bundle each)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace an existing --out")
    p.add_argument("--tflite-layout", help="nchw (PyTorch's, default) or nhwc")
    p.add_argument("--golden-samples", type=int, help="reference samples per bundle (default 8)")
    p.add_argument("--seed", type=int, help="seed for sample inputs, pruning and training (0)")
    _add_prune_flags(p)
    _add_distill_flags(p)
    _add_quantize_flags(p)


def _add_distill_flags(p):
    g = p.add_argument_group("distillation (after pruning; the teacher is the model as loaded)")
    g.add_argument("--distill", metavar="METHOD", help="logits (KD on softened logits) or "
                   "features (plus --distill-feature layer pairs)")
    g.add_argument("--teacher", metavar="SOURCE", help="another teacher (default: SOURCE itself)")
    g.add_argument("--student", metavar="SOURCE", help="another student architecture (factory); "
                   "default: the (pruned) model")
    g.add_argument("--train", metavar="DATA", help="training data (.npz with optional `labels`, "
                   "image folder, module:function)")
    g.add_argument("--val", metavar="DATA", help="validation data for early stopping "
                   "(default: --eval, else --train)")
    g.add_argument("--distill-epochs", type=int, help="default 10")
    g.add_argument("--distill-batch-size", type=int, help="default 64")
    g.add_argument("--distill-lr", type=float, help="default 3e-3")
    g.add_argument("--distill-optimizer", help="adamw (default) or sgd")
    g.add_argument("--distill-schedule", help="cosine (default), onecycle or constant")
    g.add_argument("--distill-temperature", type=float, help="default 4")
    g.add_argument("--distill-alpha", type=float, help="weight of the KD term; the task loss "
                   "gets 1 - alpha (default 0.7)")
    g.add_argument("--distill-feature", action="append", metavar="STUDENT=TEACHER",
                   help="a layer pair for feature KD (repeat)")
    g.add_argument("--distill-patience", type=int, help="early stopping: epochs without a "
                   "better validation metric (default 0: off)")
    g.add_argument("--distill-checkpoint", metavar="DIR", help="checkpoint every epoch; a rerun "
                   "resumes from it")


def _add_prune_flags(p):
    g = p.add_argument_group("pruning (before export; bundles verify against the pruned model)")
    g.add_argument("--prune", metavar="SPEC", help="channels:R (structured, faster), "
                   "magnitude:R (unstructured), nm:2:4, or auto:macs=F (needs --calib)")
    g.add_argument("--prune-importance", help="channels: l1 (default), l2, taylor "
                   "(needs --calib), random")
    g.add_argument("--prune-scope", help="uniform (default: every layer by R) or "
                   "global (ranked across layers)")
    g.add_argument("--prune-round-to", type=int, help="channels: keep channel counts "
                   "multiples of this (default 8; 1: no rounding)")
    g.add_argument("--prune-skip", metavar="NAMES", help="comma-separated layers to "
                   "leave alone (the first conv and the classifier always are)")
    g.add_argument("--prune-skip-defaults", type=_yes_no, metavar="yes|no",
                   help="leave the first conv and the classifier alone (default yes; with no, "
                        "name the classifier in --prune-skip)")
    g.add_argument("--prune-layer", action="append", metavar="NAME=RATIO",
                   help="a layer's own ratio (repeat)")


def _print_pruned(out: Path, results) -> None:
    """What pruning did, once (every bundle holds the same model), and the honest caveat."""
    from edgepress.compress import prune

    if not results or not (out / prune.SAVED).is_file():
        return
    manifest = json.loads((results[0].bundle / "manifest.json").read_text())
    fig = manifest["stages"]["prune"]
    if "auto" in fig:
        print(f"auto: per-layer ratios {fig['auto']['chosen_ratios']} (from the sensitivity scan, "
              f"{fig['auto']['metric']} on {fig['auto']['samples']} samples)")
    print(f"pruned {fig['spec']}: params {fig['params']['before']:,} -> {fig['params']['after']:,}"
          f" (non-zero {fig['nonzero_params']['after']:,}), MACs x{fig['macs']['ratio']:.3f}")
    for r in results:
        m = json.loads((r.bundle / "manifest.json").read_text())["stages"].get("prune", {})
        if "gzip_size_bytes" in m:
            print(f"{r.bundle.name}: gzip-compressed {m['gzip_size_bytes'] / 1024:.1f} KiB")
    if "note" in fig:
        print(f"note: {fig['note']}")
    why = ("the original factory's state dict no longer fits its layers" if "widths" in fig
           else "the zeros are in it; the original factory with its weights is the dense model")
    print(f"saved the pruned model as {out / prune.SAVED} (an ExportedProgram: pass it as SOURCE "
          f"to reload it; {why})")


def _add_quantize_flags(p):
    q = p.add_argument_group("quantization (each precision adds <format>-<precision> bundles)")
    q.add_argument("--quantize", metavar="PRECISIONS",
                   help="comma-separated: int8, dynamic, weight-int8, fp16")
    q.add_argument("--calib", metavar="DATA", help=".npz named as the inputs, an image folder, "
                   "module:function returning input dicts, or 'random' (smoke tests only)")
    q.add_argument("--calib-method", help="ONNX int8: minmax (default), entropy, "
                   "percentile")
    q.add_argument("--calib-samples", type=int, help="use at most N samples")
    q.add_argument("--eval", metavar="DATA", help="held-out data (same forms; optional `labels`)")
    q.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="keep sensitive layers in float until accuracy (or top-1 agreement) "
                        "drops at most this many points")
    q.add_argument("--max-float-layers", type=int, help="cap for --max-drop (default 8)")
    q.add_argument("--quant-target", help="CPU the int8 bundle is for: host (default), "
                   "x86-vnni, x86, arm (picks ONNX activation/weight types)")
    q.add_argument("--image-size", help="image-folder DATA: resize to H,W (default: the input's)")
    q.add_argument("--image-mean", help="image-folder DATA: per-channel mean on [0,1]")
    q.add_argument("--image-std", help="image-folder DATA: per-channel std on [0,1]")
    q.add_argument("--image-layout", help="image-folder DATA: nchw (default) or nhwc")


def _floats(flag: str, text: str) -> tuple:
    try:
        return tuple(float(t) for t in _csv(text))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated numbers") from None


def _request_fields(args) -> dict:
    """pipeline.Request fields from the compress flags the user gave (None: not given)."""
    from edgepress.compress import recipe

    fields = {}
    for table in recipe.KEYS.values():
        for field, flag, kind in table.values():
            dest = "source" if flag == "SOURCE" else flag.lstrip("-").replace("-", "_")
            value = getattr(args, dest, None)
            if value is not None:
                fields[field] = _flag_value(flag, value, kind)
    return fields


def _flag_value(flag: str, value, kind: str):
    if not kind.startswith("["):
        return value
    items = value if isinstance(value, list) else _csv(value)  # repeated flag, or a,b,c
    if kind == "[int]":
        return tuple(int(v) for v in _floats(flag, ",".join(items)))
    if kind == "[float]":
        return _floats(flag, ",".join(items))
    return tuple(items)


def _check_fields(fields: dict) -> None:
    size = fields.get("image_size")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise UserError(f"--image-size {list(size)}: expected H,W e.g. 224,224")
    if fields.get("max_drop") is not None and fields["max_drop"] < 0:
        raise UserError(f"--max-drop {fields['max_drop']}: must be >= 0 points")
    if fields.get("golden_samples") is not None and fields["golden_samples"] < 1:
        raise UserError(f"--golden-samples {fields['golden_samples']}: must be >= 1")
    if fields.get("seed") is not None and not 0 <= fields["seed"] < 2**32:
        # numpy's generators refuse negative seeds with a traceback (found by tests/bad_inputs)
        raise UserError(f"--seed {fields['seed']}: must be a whole number from 0 to {2**32 - 1}")


def _compress(args) -> int:
    from edgepress.compress import pipeline, recipe

    fields = recipe.load(args.recipe) if args.recipe else {}
    fields.update(_request_fields(args))
    if getattr(args, "distill_command", False) and not fields.get("distill"):
        fields["distill"] = "logits"  # `edgepress distill`: the recipe's method, else logits
    _check_fields(fields)
    if fields.get("out") is not None:
        fields["out"] = Path(fields["out"])
    req = pipeline.Request(**fields)
    results = pipeline.run(req)
    rows = [(r.bundle.name, f"{r.size_bytes / 1024:.1f}", _snr(r.verdict),
             "PASS" if r.verdict.passed else "FAIL") for r in results]
    _table(("bundle", "size KiB", "SNR dB", "verify"), rows)
    for r in results:
        _print_quantized(r)
        for f in r.verdict.failures:
            print(f"{r.bundle.name}: {f}", file=sys.stderr)
    if results:
        _print_pruned(req.out, results)
        _print_summary(req.out)
        print(f"wrote {len(results)} bundle(s) to {req.out}")
    return 0 if all(r.verdict.passed for r in results) else 1


def _print_summary(out: Path) -> None:
    summary = out / "summary.md"
    if summary.is_file():
        print(f"\nsummary ({summary}):")
        print(summary.read_text().rstrip())


def _print_quantized(r) -> None:
    """What quantization did to one bundle: held-out fidelity, float layers, speed, warnings."""
    q = r.figures.get("quantize")
    if not q:
        return
    fid, name = r.figures.get("fidelity"), r.bundle.name
    if fid:
        line = (f"{name}: eval {fid['samples']} samples: SNR {fid['snr_db']:.1f} dB, cosine "
                f"{fid['cosine']:.5f}")
        if "top1_agreement" in fid:
            line += f", top-1 agreement {100 * fid['top1_agreement']:.2f}%"
        if "accuracy" in fid:
            a = fid["accuracy"]
            line += (f", accuracy fp32 {100 * a['fp32']:.2f}% -> {100 * a['quantized']:.2f}% "
                     f"(drop {a['drop_points']:.2f} pts)")
        print(line)
    search = r.figures.get("search")
    if search:
        steps = ", ".join(f"{len(s['float_layers'])}: {s['drop_points']:.2f}" for s in search["steps"])
        print(f"{name}: --max-drop {search['max_drop_points']}: kept in float "
              f"{search['float_layers']} (drop per float-layer count: {steps})")
    if "speed" in q:
        print(f"{name}: p50 {q['speed']['quantized_p50_ms']:.3f} ms vs fp32 "
              f"{q['speed']['fp32_p50_ms']:.3f} ms here (x{q['speed']['ratio']:.2f}, 1 thread)")
    for w in r.figures.get("warnings", ()):
        print(f"{name}: WARNING: {w}", file=sys.stderr)


def _snr(verdict) -> str:
    return f"{min(m['snr_db'] for m in verdict.metrics.values()):.1f}"


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
    rows = [(name, f"{m['max_abs']:.3g}", f"{m['snr_db']:.1f}", f"{m['cosine']:.6f}",
             f"{m['top1_agreement']:.3f}" if "top1_agreement" in m else "-")
            for name, m in verdict.metrics.items()]
    _table(("output", "max abs", "SNR dB", "cosine", "top-1 agree"), rows)
    lim = verdict.thresholds
    print(f"thresholds ({verdict.precision}): SNR >= {lim['snr_db']} dB, cosine >= "
          f"{lim['cosine']}, top-1 >= {lim['top1_agreement']}; {verdict.samples} samples")
    for f in verdict.failures:
        print(f"FAIL {f}")
    print("PASS" if verdict.passed else "FAIL")
    return 0 if verdict.passed else 1


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
    p.set_defaults(func=_bench)


def _bench_options(args) -> dict:
    """Engine options given on the command line; the Session checks them against the engine."""
    given = {"graph_optimization": args.graph_optimization,
             "execution_mode": args.execution_mode,
             "cpu_arena": None if args.cpu_arena is None else args.cpu_arena == "on",
             "xnnpack": None if args.xnnpack is None else args.xnnpack == "on"}
    return {k: v for k, v in given.items() if v is not None}


def _bench(args) -> int:
    from edgepress import atomic
    from edgepress.runtime import bench, report

    protocol = bench.Protocol(warmup_runs=args.warmup, warmup_s=args.warmup_seconds,
                              min_runs=args.runs, min_s=args.min_seconds,
                              duration_s=args.duration, memory=not args.no_memory)
    command = shlex.join(["edgepress", *getattr(args, "argv", sys.argv[1:])])
    sweep = _threads(args.threads)
    outs = {t: args.out if len(sweep) == 1 else
            args.out.with_name(f"{args.out.stem}-t{t}{args.out.suffix}")
            for t in sweep} if args.out else {}
    for out in outs.values():  # before minutes of measuring, not after
        atomic.refuse_existing(out, args.overwrite)
    rows = []
    for threads in sweep:
        rep = bench.apply(args.target, threads, protocol, args.input_shape, args.engine,
                          options=_bench_options(args), command=command,
                          inputs_file=args.inputs)
        rows.append(_bench_row(rep))
        if threads in outs:
            report.save(rep, outs[threads], overwrite=args.overwrite)
    _table(("engine", "threads", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "std ms", "inf/s", "peak RSS MiB", "runs"), rows)
    for out in outs.values():
        print(f"wrote {out}")
    return 0


def _bench_row(rep: dict) -> tuple:
    res, lat, mem = rep["results"], rep["results"]["latency_ms"], rep["memory"]
    peak = _mib((mem or {}).get("peak_rss_bytes"))
    return (rep["engine"]["name"], rep["engine"]["threads"], f"{res['init_ms']:.1f}",
            f"{res['first_inference_ms']:.3f}", f"{lat['p50']:.3f}", f"{lat['p90']:.3f}",
            f"{lat['p99']:.3f}", f"{lat['std']:.3f}", f"{lat['throughput_per_s']:.1f}", peak,
            lat["n"])


def _mib(n_bytes) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:.1f}"


def _add_compare(sub):
    p = sub.add_parser("compare", help="bench reports side by side, with ratios to the first "
                                       "and a significance test on latency")
    p.add_argument("reports", nargs="+", type=Path, help="two or more report JSON files; the "
                                                         "first is the base")
    p.add_argument("--format", default="table", help="table (default), markdown or json")
    p.add_argument("--fail-if-slower", metavar="PCT",
                   help="exit 3 when a report is significantly slower than the base by more "
                        "than PCT percent, e.g. 5%%")
    p.set_defaults(func=_compare)


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = -1.0
    if not 0 <= value < 1000:
        raise UserError(f"--fail-if-slower {text!r}: expected a percentage like 5% or 2.5")
    return value / 100.0


def _compare(args) -> int:
    from edgepress.runtime import compare

    if len(args.reports) < 2:
        raise UserError("compare needs at least two reports (the first is the base)")
    limit = None if args.fail_if_slower is None else _percent(args.fail_if_slower)
    result = compare.apply(args.reports, fail_if_slower=limit)
    print(compare.render(result, args.format))
    return 3 if result["regressions"] else 0


def _add_report(sub):
    p = sub.add_parser("report", help="summarise bench reports; --html writes one "
                                      "self-contained page with plots")
    p.add_argument("reports", nargs="+", type=Path, help="report JSON files")
    p.add_argument("--html", type=Path, metavar="OUT.html", help="write the HTML report here")
    p.add_argument("--title", default="edgepress benchmark report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --html file")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from edgepress.runtime import compare, report

    reps = [report.load(p) for p in args.reports]
    labels = compare.labels_for(args.reports)
    rows = [(label, r["model"]["format"], r["model"].get("precision") or "-",
             r["engine"]["name"], r["engine"]["threads"],
             f"{r['results']['latency_ms']['p50']:.3f}",
             f"{r['results']['latency_ms']['p99']:.3f}",
             _mib((r.get("memory") or {}).get("peak_rss_bytes")),
             f"{r['model']['size_bytes'] / 2**10:.1f}",
             f"{r['fidelity']['snr_db']:.1f}" if r.get("fidelity") else "-")
            for label, r in zip(labels, reps)]
    _table(("report", "format", "precision", "engine", "threads", "p50 ms", "p99 ms",
            "peak RSS MiB", "size KiB", "SNR dB"), rows)
    if args.html:
        from edgepress.runtime import html

        html.write(args.html, reps, labels, title=args.title, overwrite=args.overwrite)
        print(f"wrote {args.html}")
    return 0


def _add_inspect(sub):
    p = sub.add_parser("inspect", help="inputs/outputs, params, MACs, size, op histogram")
    p.add_argument("target", help="a SOURCE (as for compress), a bundle, or a model file")
    p.add_argument("--weights")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prune-sensitivity", action="store_true", help="prune each layer alone at "
                   "--prune-ratios and report the metric drop on --eval data")
    p.add_argument("--eval", metavar="DATA", help="--prune-sensitivity: .npz named as the "
                   "inputs (optional `labels`), image folder or module:function")
    p.add_argument("--prune-ratios", default="0.25,0.5,0.75", help="--prune-sensitivity ratios")
    p.add_argument("--prune-round-to", type=int, default=8)
    p.add_argument("--sensitivity", action="store_true", help="quantization sensitivity: output "
                   "SNR with only each layer quantized, worst first (needs --calib)")
    p.add_argument("--calib", metavar="DATA", help="--sensitivity: calibration data (as for "
                   "compress); also the measurement data without --eval")
    p.add_argument("--calib-method", default="minmax", help="--sensitivity: minmax, entropy, "
                   "percentile")
    p.add_argument("--quantize", default="int8", help="--sensitivity: int8 or dynamic")
    p.add_argument("--format", default="onnx", help="--sensitivity: onnx or tflite")
    p.set_defaults(func=_inspect)


def _quant_sensitivity(args) -> int:
    from edgepress.compress.quantize import search

    if not args.calib:
        raise UserError("inspect --sensitivity needs calibration data: --calib DATA")
    rows = search.inspect(args.target, args.weights, tuple(args.input_shape), args.format,
                            args.quantize, args.calib, args.eval, args.calib_method)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    _table(("layer", "module", "SNR dB (only this layer quantized)", "cosine"),
           [(r["layer"], r["module"] or "-", f"{r['snr_db']:.1f}", f"{r['cosine']:.5f}")
            for r in rows])
    return 0


def _inspect(args) -> int:
    from edgepress.runtime import artifact, inspect

    if args.prune_sensitivity:
        return _sensitivity(args)
    if args.sensitivity:
        return _quant_sensitivity(args)
    target = Path(args.target)
    if target.is_dir() and (target / artifact.MANIFEST).is_file():
        info = inspect.apply(artifact.open_bundle(target).model_path)
    elif target.suffix.lower() in artifact.FORMATS and target.is_file() and not args.input_shape:
        info = inspect.apply(target)
    else:
        info = _inspect_source(args)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"model    {info['model']} ({info['format']}, {info['size_bytes']:,} bytes)")
    print(f"inputs   {'  '.join(info['inputs'])}")
    print(f"outputs  {'  '.join(info['outputs'])}")
    print(f"params   {info['params']:,}")
    print(f"MACs     {info['macs']:,}")
    print("ops      " + ", ".join(f"{op} x{n}" for op, n in info["ops"].items()))
    return 0


def _sensitivity(args) -> int:
    """A table: per prunable layer (one per group of coupled layers), the metric drop when it
    alone loses each ratio of its channels, and the MACs that saves."""
    import torch

    from edgepress import shapes
    from edgepress.compress import calibrate, load, prune
    from edgepress.compress.prune import auto

    if not args.eval:
        raise UserError("--prune-sensitivity measures on data: pass --eval DATA (.npz named as "
                        "the model's inputs, optional `labels`)")
    loaded = load.apply(args.target, args.weights, args.input_shape)
    if loaded.model is None:
        raise UserError(f"--prune-sensitivity needs a torch model; {args.target!r} is ONNX")
    data = calibrate.open_data(args.eval, loaded.inputs, None, None, 0, loaded.int_high)
    one = shapes.random_inputs(loaded.inputs, 1, 0, loaded.int_high)
    example = {k: torch.from_numpy(v[0]) for k, v in one.items()}
    cfg = prune.check(prune.PruneConfig("channels", round_to=args.prune_round_to))
    ratios = _floats("--prune-ratios", args.prune_ratios)
    scan = auto.scan(loaded.model, example, data, cfg, ratios)
    if args.json:
        print(json.dumps(scan, indent=1))
        return 0
    print(f"{scan['metric']}: {scan['baseline']:.2f} unpruned, {scan['samples']} samples; "
          f"skipped: {', '.join(f'{n} ({why})' for n, why in scan['skipped'].items())}")
    header = ("layer", *[f"drop@{r:g}" for r in ratios], *[f"SNR dB@{r:g}" for r in ratios],
              *[f"MACs saved@{r:g}" for r in ratios])
    rows = [(layer["name"], *[f"{t['drop']:.2f}" for t in layer["trials"]],
             *[f"{t['snr_db']:.1f}" for t in layer["trials"]],
             *[f"{100 * t['macs_saved']:.1f}%" for t in layer["trials"]])
            for layer in scan["layers"]]
    _table(header, rows)
    print("drop: points lost with only that layer (and the layers coupled to it) pruned; SNR: "
          "its outputs against the unpruned model's; choose per-layer ratios with --prune-layer "
          "NAME=RATIO, or --prune auto:macs=F")
    return 0


def _inspect_source(args) -> dict:
    """A torch source is exported to a temporary ONNX file and inspected there, so every
    source kind is counted by the same code."""
    import tempfile

    from edgepress.compress import pipeline
    from edgepress.runtime import inspect

    with tempfile.TemporaryDirectory() as tmp:
        req = pipeline.Request(source=args.target, out=Path(tmp) / "b", formats=("onnx",),
                               weights=args.weights, input_shapes=tuple(args.input_shape),
                               golden_samples=1, summary=False)
        result = pipeline.run(req)[0]
        info = inspect.apply(result.bundle / "model.onnx")
    info["model"] = args.target
    return info


def _add_devices(sub):
    p = sub.add_parser("devices", help="device profiles: `devices list`, `devices show NAME`")
    dsub = p.add_subparsers(dest="devices_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="the known devices").set_defaults(func=_devices)
    show = dsub.add_parser("show", help="one device's figures, with the peak ops formulas")
    show.add_argument("name", help="a known device, or a profile .toml file")
    show.set_defaults(func=_devices)


def _devices(args) -> int:
    from edgepress.devices import profile

    if args.devices_command == "list":
        rows = [(p.name, p.arch, " + ".join(f"{c.count}x {c.model} {c.clock_ghz:g} GHz"
                                            for c in p.cores),
                 f"{p.ram_mb / 1024:g}", f"{p.peak_gops('fp32'):g}", f"{p.peak_gops('int8'):g}",
                 p.python or "-") for p in map(profile.load, profile.names())]
        _table(("device", "arch", "cores", "RAM GB", "fp32 GOPS", "int8 GOPS", "python"), rows)
        return 0
    p = profile.load(args.name)
    print(f"{p.name}: {p.description}")
    print(f"arch     {p.arch}, Python {p.python or '- (no wheels: estimates only)'}, "
          f"glibc {p.glibc or '-'}; wheels tagged {', '.join(p.platform_tags()[:1]) or '-'}")
    for c in p.cores:
        print(f"cores    {c.count}x {c.model} at {c.clock_ghz:g} GHz: {c.fp32_macs_per_cycle} fp32 "
              f"/ {c.int8_macs_per_cycle} int8 MACs per cycle")
    print(f"ISA      {', '.join(p.isa)}")
    print("caches   " + ", ".join(f"{k.removesuffix('_kb')} {v} KiB" for k, v in p.caches.items()))
    print(f"memory   {p.ram_mb:,} MiB RAM, {p.bandwidth_gbs:g} GB/s sustained")
    print(f"         {p.formula('fp32')}")
    print(f"         {p.formula('int8')}")
    print(f"engine   onnx: {p.engines['onnx']}, tflite: {p.engines['tflite']}, "
          f"threads {p.threads}")
    return 0


def _add_estimate(sub):
    p = sub.add_parser("estimate", help="roofline latency estimate and RAM fit of a bundle on "
                                        "a device")
    p.add_argument("bundle", type=Path)
    p.add_argument("--device", required=True, help="a known device (see `devices list`) or a "
                                                   "profile .toml file")
    p.add_argument("--threads", type=int, help="default: the device's recommended threads")
    p.add_argument("--efficiency", type=float, help="fraction of the roofline the engine "
                   "reaches (default: measured on this host with the bundle)")
    p.add_argument("--report", action="append", default=[], type=Path,
                   help="a bench report from the device, shown beside the estimate (repeat)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_estimate)


def _estimate(args) -> int:
    from edgepress.devices import estimate, profile
    from edgepress.runtime import report

    est = estimate.apply(args.bundle, profile.load(args.device), args.threads, args.efficiency)
    reps = [report.load(r) for r in args.report]
    if args.json:
        print(json.dumps({**est, "reports": [{"path": str(p), "device": r["device"],
                                              "latency_ms": r["results"]["latency_ms"]}
                                             for p, r in zip(args.report, reps)]}, indent=1))
        return 0
    mem = est["memory"]
    print(f"ESTIMATE {est['bundle']} on {est['device']} ({est['precision']}, {est['threads']} "
          f"threads): {est['latency_ms']:.3f} ms per inference")
    print(f"  roofline {est['roofline_ms']:.4f} ms ({est['compute_bound_layers']} layers "
          f"compute-bound, {est['memory_bound_layers']} memory-bound) / efficiency "
          f"{est['efficiency']:.3f}")
    print(f"  memory: needs {mem['needed_bytes'] / 2**20:.1f} MiB of {mem['ram_bytes'] / 2**20:,.0f}"
          f" MiB RAM{' (tight)' if mem['tight'] else ''}: weights "
          f"{mem['weights_bytes'] / 2**20:.2f} + activations "
          f"{mem['peak_activations_bytes'] / 2**20:.2f} + {mem['engine']} "
          f"{mem['engine_overhead_bytes'] / 2**20:.0f} MiB")
    for a in est["assumptions"]:
        print(f"  assumes: {a}")
    for path, r in zip(args.report, reps):
        d = r["device"]
        flag = " EMULATED: latency means nothing" if d.get("emulated") else ""
        print(f"MEASURED {path}: p50 {r['results']['latency_ms']['p50']:.3f} ms on "
              f"{d.get('board_model') or d.get('cpu_model')} ({d['arch']}), "
              f"{r['engine']['name']} {r['engine']['threads']} threads{flag}")
    return 0


def _add_package(sub):
    p = sub.add_parser("package", help="an offline deployment package for a device: bundle, "
                                       "wheels, run script")
    p.add_argument("bundle", type=Path)
    p.add_argument("--device", required=True, help="a known device or a profile .toml file")
    p.add_argument("--out", required=True, type=Path, help="PKG.tar.gz")
    p.add_argument("--python", help="the device's Python as X.Y (default: the profile's)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_package)


def _package(args) -> int:
    from edgepress.devices import package, profile

    pkg = package.build(args.bundle, profile.load(args.device), args.out, args.python,
                        args.overwrite)
    m = pkg.manifest
    print(f"wrote {pkg.path} ({pkg.size_bytes / 2**20:.1f} MiB, sha256 {pkg.sha256}) for "
          f"{m['device']} ({m['arch']}, Python {m['python']}, {m['engine']})")
    print(f"wheels: {', '.join(m['wheels'])}")
    print(f"on the device: mkdir pkg && tar xzf {pkg.path.name} -C pkg && sh pkg/run.sh")
    return 0


def _add_deploy(sub):
    p = sub.add_parser("deploy", help="install a bundle on a device over SSH, verify and bench "
                                      "it there, bring the report back")
    p.add_argument("bundle", type=Path)
    p.add_argument("target", help="ssh://user@host[:port]")
    p.add_argument("--device", required=True, help="a known device or a profile .toml file")
    p.add_argument("--identity", type=Path, help="private key (default: ~/.ssh's keys and "
                                                 "ssh-agent); never a password")
    p.add_argument("--known-hosts", type=Path, help="default ~/.ssh/known_hosts: the device's "
                                                    "host key must be there")
    p.add_argument("--out", type=Path, help="where to write the device's bench report")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--runs", type=int, default=50, help="bench: minimum timed runs")
    p.add_argument("--min-seconds", type=float, default=1.0, help="bench: minimum timed time")
    p.set_defaults(func=_deploy)


def _deploy(args) -> int:
    from edgepress.devices import deploy

    flags = ["--runs", str(args.runs), "--min-seconds", str(args.min_seconds)]
    res = deploy.apply(args.bundle, args.target, args.device, args.identity, args.known_hosts,
                       args.out, flags, overwrite=args.overwrite)
    v = res.verdict
    print(f"installed release {res.release} on {res.target} ({res.facts['machine']}, Python "
          f"{res.facts['python']}); package sha256 {res.package.sha256}")
    worst = min((m["snr_db"] for m in v["metrics"].values()), default=float("nan"))
    print(f"verify on the device: {'PASS' if v['passed'] else 'FAIL'} ({v['precision']}, "
          f"{v['samples']} samples, SNR {worst:.1f} dB)")
    for f in v["failures"]:
        print(f"FAIL {f}")
    if res.report is None:
        print("the device keeps its previous install (the new one failed verification)")
        return 1
    d, lat = res.report["device"], res.report["results"]["latency_ms"]
    flag = f"; EMULATED ({d['emulated']}): latency means nothing" if d.get("emulated") else ""
    print(f"bench on the device: p50 {lat['p50']:.3f} ms, {res.report['engine']['name']} "
          f"{res.report['engine']['threads']} threads, {d['arch']}, "
          f"{d.get('board_model') or d.get('cpu_model')}{flag}")
    if res.report_path:
        print(f"wrote {res.report_path}")
    return 0


def _table(header, rows) -> None:
    cells = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgepress", description="Make trained PyTorch models small and fast "
                     "for edge devices: export, verify and measure them.")
    parser.add_argument("--version", action="version", version=f"edgepress {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_compress, _add_distill, _add_verify, _add_bench, _add_compare, _add_report,
                _add_inspect, _add_devices, _add_estimate, _add_package, _add_deploy):
        add(sub)
    return parser


def _terminate(signum, frame):
    # SIGTERM (a service manager, `timeout`, CI) unwinds like Ctrl-C, so temp outputs are
    # removed and nothing half-written remains; SIGKILL cannot be caught (see atomic.recover).
    raise KeyboardInterrupt


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv)  # recorded verbatim in reports
        return args.func(args)
    except UserError as e:
        if debug:
            raise
        print(f"edgepress: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepress: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
