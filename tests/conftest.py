"""Shared fixtures: tiny models saved as every source kind, and an exported digits-like bundle."""

import sys
from pathlib import Path

import pytest

# Test modules import shared names from tiny_models (never `from conftest import ...`: with
# several conftest.py files, which one Python calls "conftest" depends on collection order).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_models  # noqa: E402
from tiny_models import factory  # noqa: E402


@pytest.fixture(scope="session")
def cnn_bundles(tmp_path_factory):
    """The tiny CNN exported to onnx-fp32 and tflite-fp32 (shared, read-only for tests)."""
    from edgepress.compress import pipeline

    out = tmp_path_factory.mktemp("cnn") / "bundles"
    pipeline.run(pipeline.Request(source=factory("cnn"), out=out,
                                  input_shapes=tuple(tiny_models.MODELS["cnn"][1]), summary=False))
    return out
