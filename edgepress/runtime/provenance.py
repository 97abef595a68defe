"""provenance: what made each benchmarked bundle, for the HTML report (device side: no torch).

A bench report names its bundle; the bundle's manifest holds the recipe as applied and what each
stage recorded (load, prune, distill, export, quantize). The task metric is not in either: it
comes from a summary.json that lists the bundle (`edgepress compress` writes one beside its
bundles; any file with rows of {bundle, metric, value}, bundle relative to the file, will do),
matched to a report by the model file's sha256, so a moved or renamed folder still matches.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgepress import options
from edgepress.errors import UserError
from edgepress.runtime import artifact

# Figures too long for a table cell, or restated elsewhere on the page (the recipe).
SKIPPED = {"config", "history", "sparsity", "widths"}


def bundle_of(report: dict):
    """The report's bundle, when it still exists and is intact; else None."""
    path = (report.get("model") or {}).get("bundle")
    if not path or not Path(path).is_dir():
        return None
    try:
        return artifact.open_bundle(path)
    except UserError:
        return None


def task_metrics(reports: list[dict], summaries: list[Path]) -> list[dict | None]:
    """Per report, {metric, value, samples} from the summaries, or None where none lists it."""
    by_sha = {}
    for path in summaries:
        for row in _rows(Path(path)):
            manifest = Path(path).parent / row["bundle"] / artifact.MANIFEST
            try:
                sha = json.loads(manifest.read_text())["model_sha256"]
            except (OSError, ValueError, KeyError):
                continue  # a row whose bundle is not beside the summary: nothing to match
            if row.get("value") is not None:
                by_sha[sha] = {k: row.get(k) for k in ("metric", "value", "samples")}
    return [by_sha.get(r["model"]["sha256"]) for r in reports]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"--summary {str(path)!r} does not exist")
    try:
        summary = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--summary {str(path)!r} is not valid JSON ({e})") from None
    rows = summary.get("rows") if isinstance(summary, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "bundle" in r
                                             for r in rows):
        raise UserError(f"--summary {str(path)!r}: expected {{\"rows\": [{{\"bundle\": ..., "
                        f"\"metric\": ..., \"value\": ...}}]}} (edgepress compress's "
                        f"summary.json)")
    return rows


def recipe_changes(manifest: dict) -> dict:
    """The options the recipe set away from their defaults (what a rerun must repeat)."""
    defaults = options.Recipe().flat()
    given = manifest.get("recipe") or {}
    return {k: v for k, v in given.items() if k not in defaults or defaults[k] != v}


def stage_lines(manifest: dict) -> dict[str, list[str]]:
    """stage -> 'key: value' lines of its figures, nested ones one level deep."""
    out = {}
    for stage, figures in (manifest.get("stages") or {}).items():
        if isinstance(figures, dict):
            out[stage] = [line for key, value in figures.items() if key not in SKIPPED
                          for line in _lines(key, value)]
    return out


def _lines(key: str, value) -> list[str]:
    if isinstance(value, dict):
        return [f"{key}.{k}: {_short(v)}" for k, v in value.items()
                if not isinstance(v, (dict, list)) or len(v) <= 6]
    if value in (None, [], {}):
        return []
    return [f"{key}: {_short(value)}"]


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(_short, value[:6])) + (f" ... ({len(value)})" if len(value) > 6
                                                    else "")
    return str(value)
