"""The `edgepress` command: a thin argparse layer over the public functions.

User mistakes (edgepress.errors.UserError) print one line and exit 2; `--debug` shows tracebacks.
Host-side modules (torch) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edgepress import __version__
from edgepress.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message}")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"--threads {text!r}: expected whole numbers >= 1, e.g. 1 or 1,2,4")
    return values


def _add_compress(sub):
    p = sub.add_parser("compress", help="load a model, export ONNX/TFLite bundles, verify them")
    p.add_argument("source", help="module:function, file.py:function, .pt (TorchScript), .pt2, "
                                  "a Hugging Face-style directory, or .onnx")
    p.add_argument("--weights", help=".safetensors or state-dict .pt for a factory source")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]",
                   help="e.g. 1,3,224,224 or input_ids=1,128:int64 (repeat for several inputs)")
    p.add_argument("--format", default="onnx,tflite", help="comma-separated: onnx,tflite")
    p.add_argument("--out", required=True, type=Path, help="output directory (one bundle each)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--tflite-layout", default="nchw", help="nchw (PyTorch's, default) or nhwc")
    p.add_argument("--golden-samples", type=int, default=8, help="reference samples per bundle")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_compress)


def _compress(args) -> int:
    from edgepress.compress import pipeline

    if args.golden_samples < 1:
        raise UserError(f"--golden-samples {args.golden_samples}: must be >= 1")
    req = pipeline.Request(source=args.source, out=args.out, formats=tuple(_csv(args.format)),
                           weights=args.weights, input_shapes=tuple(args.input_shape),
                           tflite_layout=args.tflite_layout, golden_samples=args.golden_samples,
                           seed=args.seed, overwrite=args.overwrite)
    results = pipeline.run(req)
    rows = [(r.bundle.name, f"{r.size_bytes / 1024:.1f}", _snr(r.verdict),
             "PASS" if r.verdict.passed else "FAIL") for r in results]
    _table(("bundle", "size KiB", "SNR dB", "verify"), rows)
    for r in results:
        for f in r.verdict.failures:
            print(f"{r.bundle.name}: {f}", file=sys.stderr)
    print(f"wrote {len(results)} bundle(s) to {args.out}")
    return 0 if all(r.verdict.passed for r in results) else 1


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
    p = sub.add_parser("bench", help="measure latency of a bundle or model file")
    p.add_argument("target", type=Path, help="bundle directory, .onnx or .tflite")
    p.add_argument("--threads", default="1", help="threads, or a sweep like 1,2,4")
    p.add_argument("--out", type=Path, help="report JSON (with a sweep: one file per thread "
                                            "count, suffixed -tN)")
    p.add_argument("--warmup", type=int, default=10, help="minimum warm-up runs")
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs")
    p.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed duration")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]")
    p.add_argument("--engine", default=None, help="onnxruntime, litert or tflite-runtime")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    from edgepress.runtime import bench, report

    protocol = bench.Protocol(warmup_runs=args.warmup, min_runs=args.runs, min_s=args.min_seconds)
    command = shlex.join(["edgepress", *sys.argv[1:]])
    sweep = _threads(args.threads)
    rows = []
    for threads in sweep:
        rep = bench.apply(args.target, threads, protocol, args.input_shape, args.engine,
                          command=command)
        lat = rep["results"]["latency_ms"]
        rows.append((rep["engine"]["name"], threads, f"{rep['results']['init_ms']:.1f}",
                     f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['mean']:.3f}", lat["n"]))
        if args.out:
            out = args.out if len(sweep) == 1 else \
                args.out.with_name(f"{args.out.stem}-t{threads}{args.out.suffix}")
            report.save(rep, out)
    _table(("engine", "threads", "init ms", "p50 ms", "p90 ms", "mean ms", "runs"), rows)
    return 0


def _add_inspect(sub):
    p = sub.add_parser("inspect", help="inputs/outputs, params, MACs, size, op histogram")
    p.add_argument("target", help="a SOURCE (as for compress), a bundle, or a model file")
    p.add_argument("--weights")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]DIMS[:DTYPE]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_inspect)


def _inspect(args) -> int:
    from edgepress.runtime import artifact, inspect

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


def _inspect_source(args) -> dict:
    """A torch source is exported to a temporary ONNX file and inspected there, so every
    source kind is counted by the same code."""
    import tempfile

    from edgepress.compress import pipeline
    from edgepress.runtime import inspect

    with tempfile.TemporaryDirectory() as tmp:
        req = pipeline.Request(source=args.target, out=Path(tmp) / "b", formats=("onnx",),
                               weights=args.weights, input_shapes=tuple(args.input_shape),
                               golden_samples=1)
        result = pipeline.run(req)[0]
        info = inspect.apply(result.bundle / "model.onnx")
    info["model"] = args.target
    return info


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
    for add in (_add_compress, _add_verify, _add_bench, _add_inspect):
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
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
