"""`edgepress compare` and `edgepress report`: structured bench reports side by side (no torch)."""

from __future__ import annotations

from pathlib import Path

from edgepress.cli.output import mib, table
from edgepress.errors import UserError


def register(sub) -> None:
    _add_compare(sub)
    _add_report(sub)


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
    p.add_argument("--summary", action="append", default=[], type=Path, metavar="SUMMARY.json",
                   help="task metrics of the bundles from a summary.json (edgepress compress "
                        "writes one beside its bundles); repeat for several")
    p.add_argument("--title", default="edgepress benchmark report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --html file")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from edgepress.runtime import compare, provenance, report

    reps = [report.load(p) for p in args.reports]
    labels = compare.labels_for(args.reports)
    metrics = provenance.task_metrics(reps, args.summary)
    rows = [(label, r["model"]["format"], r["model"].get("precision") or "-",
             r["engine"]["name"], r["engine"]["threads"],
             f"{r['results']['latency_ms']['p50']:.3f}",
             f"{r['results']['latency_ms']['p99']:.3f}",
             mib((r.get("memory") or {}).get("peak_rss_bytes")),
             f"{r['model']['size_bytes'] / 2**10:.1f}",
             f"{r['fidelity']['snr_db']:.1f}" if r.get("fidelity") else "-",
             f"{100 * m['value']:.2f}%" if m else "-")
            for label, r, m in zip(labels, reps, metrics)]
    table(("report", "format", "precision", "engine", "threads", "p50 ms", "p99 ms",
            "peak RSS MiB", "size KiB", "SNR dB", "task metric"), rows)
    if args.html:
        from edgepress.runtime import html

        html.write(args.html, reps, labels, title=args.title, overwrite=args.overwrite,
                   metrics=metrics)
        print(f"wrote {args.html}")
    return 0
