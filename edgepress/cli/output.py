"""What every command prints with: aligned plain-text tables and sizes in MiB."""

from __future__ import annotations


def table(header, rows) -> None:
    cells = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def mib(n_bytes) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:.1f}"
