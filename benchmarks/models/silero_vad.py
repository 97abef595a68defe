"""silero-vad 6.2.3 (MIT), 16 kHz: a plain-PyTorch port carrying the weights of the package's
silero_vad.onnx, plus the .onnx and .jit files themselves as sources.

The shipped ONNX graph takes `input` (1, 64 + 512: the last 64 samples of the previous chunk,
then the chunk), `state` (2, 1, 128) and `sr`, and branches on sr; its 16 kHz branch holds the
weights as Constant nodes named after the upstream modules (stft.forward_basis_buffer,
encoder.N.reparam_conv, decoder.rnn, decoder.decoder.2). The port is that branch: STFT as a Conv1d
(reflect-padded 64 on the right), magnitude, 4 Conv1d + ReLU, an LSTMCell carried between chunks,
ReLU, 1x1 Conv1d, sigmoid. It takes only tensors (no sr), so every exporter can trace it.
(The package's safetensors is a different checkpoint: its probabilities differ by up to 0.37.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.models import fetch

ONNX = "silero_vad/data/silero_vad.onnx"
JIT = "silero_vad/data/silero_vad.jit"
CHUNK, CONTEXT = 512, 64  # samples per chunk at 16 kHz; context kept from the previous chunk


class SileroVAD(nn.Module):
    def __init__(self):
        super().__init__()
        self.stft = nn.Conv1d(1, 258, 256, stride=128, bias=False)  # real + imaginary, 129 bins
        self.convs = nn.ModuleList(nn.Conv1d(i, o, 3, stride=s, padding=1) for i, o, s in
                                   ((129, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1)))
        self.rnn = nn.LSTMCell(128, 128)
        self.head = nn.Conv1d(128, 1, 1)

    def forward(self, x, state):  # (1, 576), (2, 1, 128) -> (1, 1) probability, (2, 1, 128)
        spec = self.stft(nn.functional.pad(x, (0, CONTEXT), mode="reflect").unsqueeze(1))
        y = torch.sqrt(spec[:, :129] ** 2 + spec[:, 129:] ** 2)  # (1, 129, 4)
        for conv in self.convs:
            y = torch.relu(conv(y))  # -> (1, 128, 1)
        h, c = self.rnn(y.squeeze(-1), (state[0], state[1]))
        prob = torch.sigmoid(self.head(torch.relu(h).unsqueeze(-1))).mean(dim=2)
        return prob, torch.stack([h, c])


# port parameter -> the upstream name in the ONNX file's 16 kHz branch
_NAMES = {"stft.weight": "stft.forward_basis_buffer", "head.weight": "decoder.decoder.2.weight",
          "head.bias": "decoder.decoder.2.bias",
          **{f"rnn.{p}": f"decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh")},
          **{f"convs.{i}.{p}": f"encoder.{i}.reparam_conv.{p}" for i in range(4)
             for p in ("weight", "bias")}}


def onnx_weights(path) -> dict:
    """The 16 kHz branch's Constant tensors, by upstream name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    branch = _sixteen_k_branch(graph)
    prefix = "If_0_then_branch__Inline_0__" if branch.name.endswith("then") else \
        "If_0_else_branch__Inline_0__"
    found = {}
    for node in branch.node:
        if node.op_type == "Constant" and node.output[0].startswith(prefix):
            found[node.output[0][len(prefix):]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _sixteen_k_branch(graph):
    """The If node compares sr with a constant: 16000 selects then_branch, else else_branch."""
    from onnx import numpy_helper

    const = next(n for n in graph.node if n.op_type == "Constant")
    if_node = next(n for n in graph.node if n.op_type == "If")
    rate = int(numpy_helper.to_array(const.attribute[0].t))
    want = "then_branch" if rate == 16000 else "else_branch"
    branch = next(a.g for a in if_node.attribute if a.name == want)
    branch.name = want[:4]  # "then" / "else": which prefix the constants carry
    return branch


def silero_vad() -> SileroVAD:
    """The port with the weights of silero_vad.onnx (fetched from the pinned wheel)."""
    weights = onnx_weights(fetch.member("silero-vad", ONNX))
    model = SileroVAD()
    model.load_state_dict({k: torch.from_numpy(np.array(weights[v])) for k, v in _NAMES.items()})
    return model.eval()


def chunks(audio: np.ndarray) -> np.ndarray:
    """(n, 576) model inputs: each 512-sample chunk after the 64 samples before it (zeros first)."""
    n = len(audio) // CHUNK
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio[: n * CHUNK]])
    return np.stack([padded[i * CHUNK: i * CHUNK + CONTEXT + CHUNK] for i in range(n)])


def labels(n_chunks: int, turns) -> np.ndarray:
    """1 where a chunk's centre lies in a speaker turn (the RTTM), else 0."""
    centres = (np.arange(n_chunks) * CHUNK + CHUNK / 2) / 16_000
    return np.array([any(a <= t < b for a, b in turns) for t in centres], dtype=np.int64)
