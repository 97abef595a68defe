"""A Hugging Face-style model directory (config.json + model.safetensors), through transformers."""

from __future__ import annotations

from pathlib import Path

from edgepress.compress.load.loaded import Loaded
from edgepress.errors import UserError, first_line
from edgepress.runtime import shapes
from edgepress.runtime.artifact import sha256_file


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                    "merges.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def load(source, weights, given, trust_pickle) -> Loaded:
    import json

    directory = Path(source)
    safetensors = (directory / "model.safetensors").is_file()
    pickled = trust_pickle and (directory / "pytorch_model.bin").is_file()
    if not safetensors and not pickled:
        raise UserError(f"model directory {source!r} has no model.safetensors (pickled "
                        f"pytorch_model.bin is refused: loading it could execute code; "
                        f"--trust-pickle allows it)")
    try:
        import transformers
    except ImportError:
        raise UserError("a Hugging Face-style directory needs transformers: "
                        "pip install 'edgepress[hf]'") from None
    try:
        config = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{source}/config.json is not valid JSON ({e})") from None
    _check_hf_config(config, source)
    model = _hf_model(transformers, directory, config, use_safetensors=safetensors)
    seq = min(128, int(config.get("max_position_embeddings", 128)))
    declared = {"input_ids": ((1, seq), "int64"), "attention_mask": ((1, seq), "int64")}
    specs = shapes.resolve(["input_ids", "attention_mask"], given, declared, what=source)
    extra = {f"tokenizer/{n}": directory / n for n in _TOKENIZER_FILES if (directory / n).is_file()}
    vocab = int(config.get("vocab_size", 2))
    return Loaded("hf", source, specs, model=model, extra_files=extra,
                  int_high={"input_ids": vocab, "attention_mask": 2},
                  provenance={"path": source,
                              "sha256": sha256_file(directory / ("model.safetensors"
                                                                 if safetensors else
                                                                 "pytorch_model.bin")),
                              "architecture": (config.get("architectures") or ["AutoModel"])[0]})


def _check_hf_config(config, source: str) -> None:
    """The keys edgepress reads itself, typed (found by tests/fuzz: "architectures": [null]
    reached getattr(transformers, None))."""
    if not isinstance(config, dict):
        raise UserError(f"{source}/config.json should be a JSON object, got "
                        f"{type(config).__name__}")
    archs = config.get("architectures")
    if archs is not None and not (isinstance(archs, list) and
                                  all(isinstance(a, str) for a in archs)):
        raise UserError(f"{source}/config.json: architectures {archs!r:.80} should be a list of "
                        f"class names")
    for key in ("max_position_embeddings", "vocab_size"):
        value = config.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{source}/config.json: {key} {value!r:.40} should be a whole "
                            f"number >= 1")


def _hf_model(transformers, directory: Path, config: dict, use_safetensors: bool = True):
    import torch

    arch = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModel
    try:
        inner = cls.from_pretrained(str(directory), local_files_only=True,
                                    use_safetensors=use_safetensors)
    except Exception as e:
        raise UserError(f"model directory {str(directory)!r} cannot be loaded by transformers "
                        f"({first_line(e)})") from None

    class FirstOutput(torch.nn.Module):
        """Named tensor inputs in, the model's first output (logits / hidden states) out."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=False)[0]

    return FirstOutput(inner.eval()).eval()
