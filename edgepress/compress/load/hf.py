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
    declared, int_high = _declared(model.inner.main_input_name, config)
    specs = shapes.resolve(list(declared), given, declared, what=source)
    extra = {f"tokenizer/{n}": directory / n for n in _TOKENIZER_FILES if (directory / n).is_file()}
    return Loaded("hf", source, specs, model=model, extra_files=extra, int_high=int_high,
                  provenance={"path": source,
                              "sha256": sha256_file(directory / ("model.safetensors"
                                                                 if safetensors else
                                                                 "pytorch_model.bin")),
                              "architecture": (config.get("architectures") or ["AutoModel"])[0]})


def _declared(main_input: str, config: dict) -> tuple[dict, dict]:
    """The inputs a model of this kind takes, by transformers' own `main_input_name`: name ->
    (shape, dtype), and the exclusive bound of each integer input."""
    if main_input == "pixel_values":  # ViT, ResNet, ConvNeXt, MobileNetV2, Swin...
        side = config.get("image_size", 224)  # checked by _check_hf_config
        h, w = (side[0], side[-1]) if isinstance(side, list) else (side, side)
        return {"pixel_values": ((1, config.get("num_channels", 3), h, w),
                                 "float32")}, {}
    if main_input == "input_values":  # wav2vec2: raw audio, one second at its 16 kHz rate
        return {"input_values": ((1, 16000), "float32")}, {}
    seq = min(128, int(config.get("max_position_embeddings", 128)))
    return ({"input_ids": ((1, seq), "int64"), "attention_mask": ((1, seq), "int64")},
            {"input_ids": int(config.get("vocab_size", 2)), "attention_mask": 2})


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
    side = config.get("image_size", 1)  # an int, or [height, width]
    sides = [("image_size", v) for v in (side if isinstance(side, list) and side else [side])]
    for key, value in [(k, config.get(k, 1)) for k in
                       ("max_position_embeddings", "vocab_size", "num_channels")] + sides:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{source}/config.json: {key} {value!r:.40} should be a whole "
                            f"number >= 1")


def _hf_model(transformers, directory: Path, config: dict, use_safetensors: bool = True):
    arch = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModel
    try:
        inner = cls.from_pretrained(str(directory), local_files_only=True,
                                    use_safetensors=use_safetensors)
    except Exception as e:
        raise UserError(f"model directory {str(directory)!r} cannot be loaded by transformers "
                        f"({first_line(e)})") from None

    return _wrap(inner.eval()).eval()


def _wrap(inner):
    """Named tensor inputs in, the model's first output (logits / hidden states) out. forward
    names its parameters, one class per input kind, so the positional TorchScript-based ONNX
    export (export.py's fallback) calls it as well as the keyword paths do."""
    import inspect

    import torch

    # A decoder (GPT-2) with use_cache on also builds and returns its key/value cache (a
    # transformers Cache object) beside the logits; one forward pass of an export needs none.
    no_cache = ({"use_cache": False} if "use_cache" in inspect.signature(inner.forward).parameters
                else {})

    class FirstOutput(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def first(self, **inputs):
            return self.inner(**inputs, **no_cache, return_dict=False)[0]

    class Text(FirstOutput):
        def forward(self, input_ids, attention_mask):
            return self.first(input_ids=input_ids, attention_mask=attention_mask)

    class Pixels(FirstOutput):
        def forward(self, pixel_values):
            return self.first(pixel_values=pixel_values)

    class Audio(FirstOutput):
        def forward(self, input_values):
            return self.first(input_values=input_values)

    kinds = {"pixel_values": Pixels, "input_values": Audio}
    return kinds.get(inner.main_input_name, Text)(inner)
