"""The shared vocabulary of the quantize package: what a method gets (Job), what it returns
(Quantized), and the per-candidate settings (QuantizeConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepress.options import Quantize

PRECISIONS = ("int8", "dynamic", "weight-int8", "fp16")
CALIBRATED = ("int8",)  # the precisions whose methods read --calib; the others use no data
CALIB_METHODS = ("auto", "minmax", "entropy", "percentile")
# "auto": the calibrators measured as ONNX int8 candidates (onnx.CALIBRATORS_AUTO); a named one
# is the only one tried
TARGETS = ("host", "x86-vnni", "x86", "arm")
CALIB_CAP = 1024  # calibration samples used at most; ranges settle long before this


@dataclass(frozen=True)
class QuantizeConfig:
    precision: str
    calib_method: str = Quantize.calib_method
    target: str = Quantize.target  # the CPU the bundle is for; "host" reads this machine's ISA
    exclude: tuple = ()  # layers kept in float: ONNX node names / torch module names
    only: tuple = ()  # quantize just these layers (per-layer sensitivity); () = all
    activations: str = "auto"  # ONNX int8 activation type: auto (by target), uint8, int8
    per_channel: bool = True  # ONNX int8 weights: per output channel, else per tensor
    speed_check: bool = True  # time int8 against fp32 here and act when int8 is slower
    path: str = ""  # the candidate path to run (its `key`); "" = choose by measurement


@dataclass
class Job:
    """What every method may need; each uses only its part."""

    loaded: object  # compress.load.Loaded
    fmt: str
    fp32_path: Path  # the exported fp32 model file
    out_path: Path  # where the quantized model goes
    calib: object = None  # calibrate.Dataset, or None for methods that need no data
    sample: dict = field(default_factory=dict)  # name -> torch tensor (export's trace sample)
    layout: str = "nchw"  # TFLite I/O layout
    work: Path | None = None  # scratch dir kept across calls (normalised model, range cache)
    select: object = None  # calibrate.Dataset the candidate paths are measured on (held out)


@dataclass
class Quantized:
    path: Path
    figures: dict  # method, library, choices and why, notes -> manifest stages.quantize


def work_dir(job: Job) -> Path:
    work = job.work or job.out_path.parent / ".quantize-work"
    work.mkdir(parents=True, exist_ok=True)
    return work

