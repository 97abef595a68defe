"""Shared fixtures: tiny models saved as every source kind, and an exported digits-like bundle."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "tiny_models.py"
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402


def factory(name: str) -> str:
    """The SOURCE string for a tiny model's factory."""
    return f"{TINY}:{name}"


@pytest.fixture(scope="session")
def cnn_bundles(tmp_path_factory):
    """The tiny CNN exported to onnx-fp32 and tflite-fp32 (shared, read-only for tests)."""
    from edgepress.compress import pipeline

    out = tmp_path_factory.mktemp("cnn") / "bundles"
    pipeline.run(pipeline.Request(source=factory("cnn"), out=out,
                                  input_shapes=tuple(tiny_models.MODELS["cnn"][1])))
    return out
