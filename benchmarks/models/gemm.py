"""The roofline's measured peak: one large GEMM (512 x 2048 by 2048 x 2048, 2.1 GMAC), the best
case of every engine (dense, cache-friendly, nothing but multiply-accumulate). Built fp32 and int8
by edgepress like any zoo model and timed by `edgepress bench` through onnxruntime and LiteRT,
its GMAC/s is each engine's practical peak on this CPU at each precision and thread count.
Weights are random (seeded): only its speed is used.
"""

import torch
from torch import nn

ROWS, DIM = 512, 2048


def gemm() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(DIM, DIM, bias=False).eval()
