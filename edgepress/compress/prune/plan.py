"""The pruning plan: `--prune SPEC` and the --prune-* options parsed and checked (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from edgepress.options import Prune
from edgepress.errors import UserError, choices

NAMES = ("channels", "magnitude", "nm", "auto")  # prune.METHODS keys
IMPORTANCES = ("l1", "l2", "taylor", "random")
SCOPES = ("uniform", "global")


@dataclass(frozen=True)
class PruneConfig:
    """What to prune, as parsed from `--prune SPEC` and the --prune-* options."""

    method: str
    ratio: float = 0.5  # channels/magnitude: fraction removed; auto: MACs kept (macs=F)
    n: int = 2  # nm: keep n of every m
    m: int = 4
    # the [prune] options' own defaults (options.Prune), so each is stated once
    importance: str = Prune.importance  # channels: how channels are ranked
    scope: str = Prune.scope  # uniform: each layer pruned by `ratio`; global: across layers
    round_to: int = Prune.round_to  # channels: remaining counts are multiples (odd widths run slowly)
    skip: tuple = ()  # module names left untouched, besides the defaults
    skip_defaults: bool = Prune.skip_defaults  # leave the first conv and the classifier alone
    layer_ratios: tuple = ()  # ((module name, ratio), ...): overrides `ratio` for those layers
    permanent: bool = True  # magnitude/nm: fold masks into the weights (False: keep them for fine-tuning)

    def spec(self) -> str:
        if self.method == "nm":
            return f"nm:{self.n}:{self.m}"
        return f"auto:macs={self.ratio:g}" if self.method == "auto" else f"{self.method}:{self.ratio:g}"


def parse(spec: str, **options) -> PruneConfig:
    """`channels:0.5`, `magnitude:0.8`, `nm:2:4`, `auto:macs=0.5` (+ PruneConfig fields)."""
    method, _, arg = spec.partition(":")
    if method not in NAMES:
        raise choices("--prune method", method, NAMES)
    if method == "nm":
        n, m = _nm_numbers(spec, arg or "2:4")
        return check(PruneConfig(method, n=n, m=m, **options))
    if method == "auto":
        key, _, value = arg.partition("=")
        if key != "macs":
            raise UserError(f"--prune {spec!r}: auto takes a MACs target, e.g. auto:macs=0.5")
        return check(PruneConfig(method, ratio=_number(spec, value), **options))
    if not arg:
        raise UserError(f"--prune {spec!r}: give a ratio, e.g. {method}:0.5")
    return check(PruneConfig(method, ratio=_number(spec, arg), **options))


def parse_layer_ratios(texts) -> tuple:
    """`--prune-layer NAME=RATIO` values -> ((name, ratio), ...)."""
    out = []
    for text in texts or ():
        name, _, value = text.rpartition("=")
        try:
            out.append((name, float(value)))
        except ValueError:
            name = ""
        if not name:
            raise UserError(f"--prune-layer {text!r}: expected NAME=RATIO, e.g. layer1.0.conv1=0.3")
    return tuple(out)


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--prune {spec!r}: {text!r} is not a number (expected a ratio like 0.5)") \
            from None


def _nm_numbers(spec: str, arg: str) -> tuple[int, int]:
    n_text, _, m_text = arg.partition(":")
    try:
        n, m = int(n_text), int(m_text)
    except ValueError:
        n, m = 0, 0
    if not 0 < n < m:
        raise UserError(f"--prune {spec!r}: expected nm:N:M with 0 < N < M, e.g. nm:2:4")
    return n, m


def check(cfg: PruneConfig) -> PruneConfig:
    """Refuses configurations that cannot mean anything, naming the bad value."""
    if cfg.method not in NAMES:
        raise choices("--prune method", cfg.method, NAMES)
    if cfg.method != "nm" and not 0.0 < cfg.ratio < 1.0:
        what = "MACs target" if cfg.method == "auto" else "ratio"
        raise UserError(f"--prune {cfg.spec()}: {what} {cfg.ratio:g} must be between 0 and 1 "
                        f"(exclusive)")
    if cfg.importance not in IMPORTANCES:
        raise choices("--prune-importance", cfg.importance, IMPORTANCES)
    if cfg.scope not in SCOPES:
        raise choices("--prune-scope", cfg.scope, SCOPES)
    if cfg.round_to < 1:
        raise UserError(f"--prune-round-to {cfg.round_to}: must be >= 1 (1: no rounding)")
    for name, ratio in cfg.layer_ratios:
        if not 0.0 <= ratio < 1.0:
            raise UserError(f"--prune-layer {name}={ratio:g}: ratio must be >= 0 and < 1")
    return cfg

