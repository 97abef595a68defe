"""A small transformer encoder classifier: token + position embeddings, 4 pre-norm layers
(width 256, 4 heads, MLP 1024), mean pooling, linear head. Input `input_ids` (1, 128) int64.

Attention is written out (q/k/v/out Linear layers, `num_heads` and `head_dim` attributes) rather
than nn.MultiheadAttention: the exporters trace it to plain MatMul/Softmax, and channel pruning
can drop whole heads. Weights are random (seeded).
"""

import math

import torch
from torch import nn

VOCAB = 1000
SEQ = 128


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x):  # (N, S, D) -> (N, S, D)
        n, s, _ = x.shape

        def split(t):  # (N, S, H*hd) -> (N, H, S, hd)
            return t.reshape(n, s, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, s, self.num_heads * self.head_dim)
        return self.out(y)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, vocab=VOCAB, seq=SEQ, dim=256, heads=4, layers=4, mlp=1024, classes=2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids):  # (N, S) int64 -> (N, classes)
        x = self.tokens(input_ids) + self.positions[:, : input_ids.shape[1]]
        return self.head(self.norm(self.layers(x)).mean(dim=1))


def encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder().eval()
