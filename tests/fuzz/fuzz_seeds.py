"""The fuzz suite's seeds: valid small files of every kind the loaders read, made from the tiny
CNN (tests/tiny_models.py) and a one-layer BERT. Every mutation starts from one of these.

    python tests/fuzz/fuzz_seeds.py DIR     # for atheris_fuzz.py, outside pytest
"""

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

import tiny_models  # noqa: E402


def make(d: Path, bundles: Path | None = None) -> Path:
    """Writes the seeds into D; BUNDLES holds the CNN's onnx-fp32 and tflite-fp32 bundles
    (exported here when not given)."""
    import torch
    from safetensors.torch import save_file

    from edgepress.runtime import bench, report

    d.mkdir(parents=True, exist_ok=True)
    bundles = bundles or _export(d / ".bundles")
    shutil.copy(bundles / "onnx-fp32" / "model.onnx", d / "model.onnx")
    shutil.copy(bundles / "tflite-fp32" / "model.tflite", d / "model.tflite")
    shutil.copytree(bundles / "onnx-fp32", d / "bundle")
    model, x = tiny_models.cnn(), torch.randn(1, 3, 16, 16)
    torch.jit.save(torch.jit.trace(model, x), d / "model.pt")
    torch.export.save(torch.export.export(model, (x,)), d / "model.pt2")
    save_file(model.state_dict(), d / "weights.safetensors")
    torch.save(model.state_dict(), d / "weights.pt")
    protocol = bench.Protocol(warmup_runs=1, warmup_s=0, min_runs=20, min_s=0, memory=False)
    report.save(bench.apply(d / "model.onnx", protocol=protocol), d / "report.json")
    shutil.copy(tiny_models.ROOT / "examples" / "digits" / "recipe.toml", d / "recipe.toml")
    _hf(d / "hf")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((4, 3, 16, 16)).astype(np.float32),
             labels=np.arange(4))
    np.savez(d / "inputs.npz", x=rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return d


def _export(out: Path) -> Path:
    from edgepress.compress import pipeline

    pipeline.run(pipeline.Request(source=tiny_models.factory("cnn"), out=out,
                                  input_shapes=tuple(tiny_models.MODELS["cnn"][1]),
                                  summary=False, overwrite=True))
    return out


def _hf(directory: Path) -> None:
    """A one-layer BERT with 8-wide hidden states, saved as a Hugging Face directory."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(str(directory), safe_serialization=True)


if __name__ == "__main__":
    print(make(Path(sys.argv[1])))
