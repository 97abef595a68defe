"""The latency table's timing: each module written as the bundle's model file would be (format,
precision), and the files timed with edgepress's runtime on the target (this host, or a device
over SSH: ondevice.py). latency.py builds the table from these times."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgepress.compress.prune.measure import PRUNABLE
from edgepress.options import Prune


@dataclass(frozen=True)
class Where:
    """What a table is measured in and on: the bundle's format and precision, the target."""

    fmt: str = "onnx"
    precision: str = "fp32"  # fp32 or int8
    on: str = Prune.latency_on  # host or ssh://user@host[:port]
    threads: int = Prune.latency_threads
    cache: str | None = Prune.latency_cache  # table files' directory (None: ~/.cache/...)


class Timer:
    """{key: (module, example)} -> {key: p50 ms}: each module written as a bundle file would be
    (format, precision; a module already written is reused) and the files timed on the target."""

    def __init__(self, where: Where):
        from edgepress.compress.prune import ondevice

        self.where = where
        self.run = ondevice.time_files if where.on.startswith("ssh://") else _time_here
        self.tmp = tempfile.TemporaryDirectory(prefix="edgepress-latency-")
        self.files = {}  # id(module) -> (module, file): the module held so its id stays its own

    def __call__(self, models: dict, **timing) -> dict:
        return self.run({key: self._file(m, ex) for key, (m, ex) in models.items()}, self.where,
                        **timing)

    def _file(self, module, example) -> Path:
        if id(module) not in self.files:
            folder = Path(self.tmp.name) / f"m{len(self.files)}"
            self.files[id(module)] = (module, _model_file(module, example, self.where, folder))
        return self.files[id(module)][1]

    def close(self) -> None:
        self.tmp.cleanup()


def timer_for(where: Where) -> Timer:
    return Timer(where)


def _time_here(files: dict, where: Where, **timing) -> dict:
    from edgepress.runtime import layer_times

    times = layer_times.measure(list(files.values()), where.threads, **timing)
    return {key: times[str(path)] for key, path in files.items()}


def _model_file(module: nn.Module, example: dict, where: Where, folder: Path) -> Path:
    """module written as the bundle's model file: exported, then quantized for int8."""
    from edgepress.compress import calibrate, export, quantize
    from edgepress.compress.load.loaded import Loaded
    from edgepress.runtime.artifact import TensorSpec

    folder.mkdir(parents=True)
    specs = [TensorSpec(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in
             example.items()]
    loaded = Loaded("factory", "latency table", specs, model=module.eval())
    with torch.no_grad():
        n_out = len(_outputs(module(**example)))
    if where.fmt == "onnx" and isinstance(module, PRUNABLE):
        fp32 = _onnx_cell(module, example["input"], folder / "model.onnx")
    else:
        fp32 = export.write(loaded, where.fmt, folder, export.ExportOptions(), example,
                            n_out).path
    if where.precision == "fp32":
        return fp32
    job = quantize.Job(loaded, where.fmt, fp32, folder / f"int8.{where.fmt}",
                       calibrate.open_data("random", specs, 8), example, work=folder / "work")
    return quantize.run(job, quantize.QuantizeConfig(where.precision, speed_check=False)).path


def _onnx_cell(module, x, path: Path) -> Path:
    """One Conv/Linear layer as ONNX through the TorchScript-based exporter: the same single
    Conv/Gemm node the dynamo exporter writes for it, in 0.2 s instead of 6 (measured here on a
    3x3 conv), which matters at hundreds of cells per table."""
    from edgepress.compress import export

    with export.quiet():
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output_0"])
    return path


def _outputs(out):
    from edgepress.compress import load

    return load.outputs(out)
