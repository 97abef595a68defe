"""`edgepress compress` and `edgepress distill`: the host pipeline. Every flag here is generated
from the option dataclasses (edgepress/options.py); what is printed comes from the stages'
describe()."""

from __future__ import annotations

import sys
from pathlib import Path

from edgepress.cli.output import table
from edgepress.cli.parser import add_options, given

# table -> the help group its flags are listed under (None: the command's own options)
GROUPS = {"model": None, "export": None, "verify": None,
          "prune": "pruning (before export; bundles verify against the pruned model)",
          "distill": "distillation (after pruning; the teacher is the model as loaded)",
          "quantize": "quantization (each precision adds <format>-<precision> bundles)",
          "data": "data (--calib, --eval, --train, --val and image-folder preprocessing)"}


def register(sub) -> None:
    p = sub.add_parser("compress", help="load a model, prune/distill, export ONNX/TFLite bundles, "
                                        "quantize, verify, summarize")
    _flags(p)
    p.set_defaults(func=run)
    p = sub.add_parser("distill", help="compress with knowledge distillation (--distill logits "
                                       "by default): teacher -> (pruned) student -> bundles")
    _flags(p)
    p.set_defaults(func=run, distill_command=True)


def _flags(p) -> None:
    p.add_argument("--recipe", type=Path, help="a TOML recipe; flags given here override it")
    for name, title in GROUPS.items():
        add_options(p, name, title)


def run(args) -> int:
    from edgepress import options
    from edgepress.compress import pipeline, recipe

    tables = recipe.load(args.recipe) if args.recipe else {}
    for name, values in given(args).items():
        tables.setdefault(name, {}).update(values)
    if getattr(args, "distill_command", False) and not tables.get("distill", {}).get("method"):
        tables.setdefault("distill", {})["method"] = "logits"  # the recipe's method, else logits
    chosen = options.Recipe.build(tables)
    run_ = pipeline.outcome(chosen)
    report(run_.results, Path(chosen.export.out) if run_.results else None)
    print_failures(run_.failures, bool(run_.results))
    return 0 if all(r.verdict.passed for r in run_.results) and not run_.failures else 1


def print_failures(failures, written: bool) -> None:
    """One line per bundle an engine or converter could not build (compress/guard.py)."""
    for f in failures:
        where = f" in {f['library']}" if f["library"] else ""
        print(f"edgepress: {f['bundle']} failed ({f['stage']}{where}): {f['error']}; "
              f"{f['what_to_do']}", file=sys.stderr)
    if failures and not written:
        print("edgepress: no bundle could be built: nothing was written", file=sys.stderr)


def report(results, out: Path | None) -> None:
    """The bundles table, then what each stage says about them."""
    rows = [(r.bundle.name, f"{r.size_bytes / 1024:.1f}", _snr(r.verdict),
             "PASS" if r.verdict.passed else "FAIL") for r in results]
    table(("bundle", "size KiB", "SNR dB", "verify"), rows)
    for r in results:
        print_quantized(r)
        for f in r.verdict.failures:
            print(f"{r.bundle.name}: {f}", file=sys.stderr)
    if results:
        print_pruned(out, results)
        print_distilled(results)
        _print_summary(out)
        print(f"wrote {len(results)} bundle(s) to {out}")


def print_quantized(r) -> None:
    from edgepress.compress import quantize

    if "quantize" not in r.figures:
        return
    lines, warnings = quantize.describe(r.bundle.name, r.figures["quantize"], r.figures)
    for line in lines:
        print(line)
    for w in warnings:
        print(w, file=sys.stderr)


def print_pruned(out: Path, results) -> None:
    """What pruning did, once (every bundle holds the same model)."""
    from edgepress.compress import prune

    if "prune" not in results[0].figures:
        return
    for r in results:
        for line in prune.describe_bundle(r.bundle.name, r.figures["prune"]):
            print(line)
    for line in prune.describe(results[0].figures["prune"], out / prune.SAVED):
        print(line)


def print_distilled(results) -> None:
    from edgepress.compress import distill

    if "distill" in results[0].figures:
        print("\n".join(distill.describe(results[0].figures["distill"])))


def _print_summary(out: Path) -> None:
    summary = out / "summary.md"
    if summary.is_file():
        print(f"\nsummary ({summary}):")
        print(summary.read_text().rstrip())


def _snr(verdict) -> str:
    return f"{min(m['snr_db'] for m in verdict.metrics.values()):.1f}"
