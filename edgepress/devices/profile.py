"""Device profiles: what a class of device offers (cores, clocks, ISA, caches, bandwidth, RAM),
read from `profiles/NAME.toml`, one file per device, each figure sourced in a comment there.

`load("rpi4")` finds a shipped profile by name; a path to a .toml file loads a user's own board.
Keys are checked strictly, so a typo in a custom profile is an error rather than a silent default.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgepress.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

PROFILES = Path(__file__).with_name("profiles")
OPS_PER_MAC = 2  # the usual convention: a multiply-accumulate is two operations
INT8_PRECISIONS = ("int8", "dynamic")  # precisions whose matrix products run in int8


@dataclass(frozen=True)
class Cores:
    """One kind of core (big, little...) and how many multiply-accumulates it retires per cycle."""

    model: str
    count: int
    clock_ghz: float
    fp32_macs_per_cycle: int
    int8_macs_per_cycle: int

    def gmacs(self, precision: str, n: int) -> float:
        per_cycle = self.int8_macs_per_cycle if precision in INT8_PRECISIONS \
            else self.fp32_macs_per_cycle
        return n * self.clock_ghz * per_cycle


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    arch: str
    python: str  # "" where no CPython wheels exist for the engines: estimates only
    glibc: str
    ram_mb: int
    isa: tuple
    board_model: str
    cores: tuple  # of Cores, fastest kind first
    caches: dict
    bandwidth_gbs: float
    peak_fp32_gops: float
    peak_int8_gops: float
    engines: dict  # format -> engine name
    threads: int
    system_packages: tuple = ()  # packages the device brings itself (no wheel on PyPI)
    soc: str = ""  # the SoC a phone profile stands for (its checks were measured on it)
    termux: dict = field(default_factory=dict)  # Termux's own Python and engines (phones)
    checks: tuple = ()  # published measurements on the SoC that `estimate` is checked against

    @property
    def ram_bytes(self) -> int:
        return self.ram_mb * 2**20

    @property
    def total_cores(self) -> int:
        return sum(c.count for c in self.cores)

    def peak_gops(self, precision: str, threads: int | None = None) -> float:
        """Peak ops/s (in G) of the `threads` fastest cores; all cores when threads is None."""
        left, gmacs = self.total_cores if threads is None else threads, 0.0
        for kind in self.cores:  # an engine's threads land on the big cores first
            n = min(kind.count, left)
            gmacs += kind.gmacs(precision, n)
            left -= n
        return OPS_PER_MAC * gmacs

    def formula(self, precision: str) -> str:
        """The peak's arithmetic, as `devices show` prints it."""
        kind = "int8" if precision in INT8_PRECISIONS else "fp32"
        terms = " + ".join(
            f"{c.count} x {c.clock_ghz:g} GHz x "
            f"{c.int8_macs_per_cycle if kind == 'int8' else c.fp32_macs_per_cycle}"
            for c in self.cores)
        return (f"peak {kind} = {OPS_PER_MAC} ops/MAC x ({terms}) MACs/cycle = "
                f"{self.peak_gops(precision):g} GOPS")

    def platform_tags(self) -> list[str]:
        """pip --platform tags a device with this glibc and arch accepts, newest first (pip
        only takes old manylinux2014 wheels when the newer tags are not listed)."""
        if not self.glibc or not self.python:
            return []
        major, minor = (int(v) for v in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 16, -1)]
        return tags + [f"manylinux2014_{self.arch}", f"linux_{self.arch}"]

    def deployable_reason(self) -> str | None:
        """Why this device cannot take a deployment package, or None when it can."""
        if not self.python:
            return (f"device {self.name!r} has no CPython wheels for the engines: use `estimate`, "
                    f"and ship the bundle with the engines' own libraries for that platform")
        return None


def names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def load(name_or_path: str) -> Profile:
    """A shipped profile by name, or a profile .toml file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILES / f"{name_or_path}.toml"
        if not path.is_file():
            raise UserError(f"unknown device {name_or_path!r}; known devices: "
                            f"{', '.join(names())} (or give a profile .toml file)")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"device profile {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"device profile {str(path)!r} is not valid TOML: {e}") from None
    return _build(data, str(path))


_TOP = {"name", "description", "arch", "python", "glibc", "ram_mb", "isa", "board_model",
        "cores", "caches", "memory", "peak_fp32_gops", "peak_int8_gops", "engine",
        "system_packages", "soc", "termux", "checks"}
_CORE = {"model", "count", "clock_ghz", "fp32_macs_per_cycle", "int8_macs_per_cycle"}
_ENGINE = {"onnx", "tflite", "threads"}
_TERMUX = {"python", "onnx", "tflite"}
_CHECK = {"model", "precision", "threads", "published_ms", "engine", "source"}


def _build(d: dict, where: str) -> Profile:
    _check_keys(d, _TOP, where)
    _check_keys(d.get("engine", {}), _ENGINE, f"{where} [engine]")
    _check_keys(d.get("termux", {}), _TERMUX, f"{where} [termux]")
    for c in d.get("checks", ()):
        _check_keys(c, _CHECK, f"{where} [[checks]]")
    try:
        cores = []
        for c in d["cores"]:
            _check_keys(c, _CORE, f"{where} [[cores]]")
            cores.append(Cores(str(c["model"]), int(c["count"]), float(c["clock_ghz"]),
                               int(c["fp32_macs_per_cycle"]), int(c["int8_macs_per_cycle"])))
        engine = d["engine"]
        profile = Profile(
            name=str(d["name"]), description=str(d["description"]), arch=str(d["arch"]),
            python=str(d["python"]), glibc=str(d["glibc"]), ram_mb=int(d["ram_mb"]),
            isa=tuple(d["isa"]), board_model=str(d.get("board_model", "")), cores=tuple(cores),
            caches=dict(d.get("caches", {})), bandwidth_gbs=float(d["memory"]["bandwidth_gbs"]),
            peak_fp32_gops=float(d["peak_fp32_gops"]), peak_int8_gops=float(d["peak_int8_gops"]),
            engines={"onnx": engine["onnx"], "tflite": engine["tflite"]},
            threads=int(engine["threads"]), system_packages=tuple(d.get("system_packages", ())),
            soc=str(d.get("soc", "")), termux=dict(d.get("termux", {})),
            checks=tuple(_check(c) for c in d.get("checks", ())))
    except KeyError as e:
        raise UserError(f"device profile {where!r}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"device profile {where!r}: bad value ({e})") from None
    if not cores or profile.threads < 1 or profile.ram_mb < 1 or profile.bandwidth_gbs <= 0:
        raise UserError(f"device profile {where!r}: needs cores, threads >= 1, ram_mb >= 1 and "
                        f"bandwidth_gbs > 0")
    return profile


def _check(c: dict) -> dict:
    return {"model": str(c["model"]), "precision": str(c["precision"]),
            "threads": int(c["threads"]), "published_ms": float(c["published_ms"]),
            "engine": str(c["engine"]), "source": str(c["source"])}


def _check_keys(d: dict, valid: set, where: str) -> None:
    unknown = sorted(set(d) - valid)
    if unknown:
        raise UserError(f"device profile {where!r}: unknown key {unknown[0]!r}; valid keys: "
                        f"{', '.join(sorted(valid))}")
