"""The README's main job: the digits example through every stage, from one recipe.

Each step is the `edgepress` command a user would type (printed before it runs): train the fp32
teacher on real data, then `compress --recipe` (50% channel pruning + distillation -> int8 ONNX
and int8 TFLite, verified, summary table), then `verify` each bundle again as a device would.
"""

import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path("out/digits")


def sh(*argv) -> None:
    print(f"\n$ {shlex.join(map(str, argv))}", flush=True)
    subprocess.run(list(map(str, argv)), check=True)


def main() -> None:
    edgepress = [sys.executable, "-m", "edgepress.cli"]
    if not (HERE / "data" / "train.npz").is_file():
        sh(sys.executable, HERE / "train.py")
    sh(*edgepress, "compress", "--recipe", HERE / "recipe.toml", "--out", OUT, "--overwrite")
    for bundle in sorted(p for p in OUT.iterdir() if p.is_dir()):
        sh(*edgepress, "verify", bundle)
    print(f"\nSummary ({OUT / 'summary.md'}):\n")
    print((OUT / "summary.md").read_text())


if __name__ == "__main__":
    main()
