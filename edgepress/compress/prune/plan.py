"""The pruning plan: `--prune SPEC` and the --prune-* options parsed and checked (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from edgepress.options import Prune
from edgepress.errors import UserError, choices

NAMES = ("channels", "magnitude", "nm", "auto")  # prune.METHODS keys
IMPORTANCES = ("l1", "l2", "taylor", "random")
SCOPES = ("uniform", "global")
AIMS = ("macs", "latency")  # auto:AIM=F: what F is a fraction of


@dataclass(frozen=True)
class PruneConfig:
    """What to prune, as parsed from `--prune SPEC` and the --prune-* options."""

    method: str
    ratio: float = 0.5  # channels/magnitude: fraction removed; auto: MACs or latency kept (F)
    aim: str = "macs"  # auto: macs=F (counted) or latency=F (measured on latency_on)
    n: int = 2  # nm: keep n of every m
    m: int = 4
    # the [prune] options' own defaults (options.Prune), so each is stated once
    importance: str = Prune.importance  # channels: how channels are ranked
    scope: str = Prune.scope  # uniform: each layer pruned by `ratio`; global: across layers
    round_to: int = Prune.round_to  # channels: remaining counts are multiples (odd widths run slowly)
    skip: tuple = ()  # module names left untouched, besides the defaults
    skip_defaults: bool = Prune.skip_defaults  # leave the first conv and the classifier alone
    layer_ratios: tuple = ()  # ((module name, ratio), ...): overrides `ratio` for those layers
    recalibrate_bn: bool = Prune.recalibrate_bn  # channels/auto: BatchNorm stats re-estimated
    latency_on: str = Prune.latency_on  # auto:latency: host, or ssh://user@host[:port]
    latency_threads: int = Prune.latency_threads
    latency_cache: str | None = Prune.latency_cache  # latency tables kept here (None: default)
    latency_format: str = "onnx"  # the bundle's format and precision the table is measured in
    latency_precision: str = "fp32"  # (prune.apply sets both from the recipe)
    permanent: bool = True  # magnitude/nm: fold masks into the weights (False: keep them for fine-tuning)

    def spec(self) -> str:
        if self.method == "nm":
            return f"nm:{self.n}:{self.m}"
        if self.method == "auto":
            return f"auto:{self.aim}={self.ratio:g}"
        return f"{self.method}:{self.ratio:g}"


def parse(spec: str, **options) -> PruneConfig:
    """`channels:0.5`, `magnitude:0.8`, `nm:2:4`, `auto:macs=0.5`, `auto:latency=0.5` (+
    PruneConfig fields)."""
    method, _, arg = spec.partition(":")
    if method not in NAMES:
        raise choices("--prune method", method, NAMES)
    if method == "nm":
        n, m = _nm_numbers(spec, arg or "2:4")
        return check(PruneConfig(method, n=n, m=m, **options))
    if method == "auto":
        aim, _, value = arg.partition("=")
        if aim not in AIMS or not value:
            raise UserError(f"--prune {spec!r}: auto takes a MACs or latency target "
                            f"(auto:macs=F or auto:latency=F, F between 0 and 1), e.g. "
                            f"auto:latency=0.5")
        return check(PruneConfig(method, ratio=_number(spec, value), aim=aim, **options))
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
        what = f"{'MACs' if cfg.aim == 'macs' else 'latency'} target" if cfg.method == "auto" \
            else "ratio"
        raise UserError(f"--prune {cfg.spec()}: {what} {cfg.ratio:g} must be between 0 and 1 "
                        f"(exclusive)")
    if cfg.importance not in IMPORTANCES:
        raise choices("--prune-importance", cfg.importance, IMPORTANCES)
    if cfg.scope not in SCOPES:
        raise choices("--prune-scope", cfg.scope, SCOPES)
    if cfg.aim not in AIMS:
        raise choices("--prune auto target", cfg.aim, AIMS)
    if cfg.latency_threads < 1:
        raise UserError(f"--latency-threads {cfg.latency_threads}: must be >= 1")
    if cfg.method == "auto" and cfg.aim == "latency" and cfg.latency_on != "host" \
            and not cfg.latency_on.startswith("ssh://"):
        raise UserError(f"--latency-on {cfg.latency_on!r}: expected host or "
                        f"ssh://user@host[:port] (a device with an edgepress deploy)")
    if cfg.round_to < 1:
        raise UserError(f"--prune-round-to {cfg.round_to}: must be >= 1 (1: no rounding)")
    for name, ratio in cfg.layer_ratios:
        if not 0.0 <= ratio < 1.0:
            raise UserError(f"--prune-layer {name}={ratio:g}: ratio must be >= 0 and < 1")
    return cfg

