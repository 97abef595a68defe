"""verify: a bundle that does not match its golden outputs exits 1, saying why; top-1 judges
only outputs that are class scores."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tiny_models import ROOT

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime import artifact, verify


def _cli(*argv):
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgepress.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env)


@pytest.fixture
def failing_bundle(cnn_bundles, tmp_path):
    """The fp32 ONNX bundle with its golden outputs altered (negated): the model no longer
    reproduces them, though the bundle itself is intact (manifest, sha256, shapes)."""
    b = tmp_path / "onnx-fp32"
    shutil.copytree(cnn_bundles / "onnx-fp32", b)
    ins, outs = artifact.read_golden(b / artifact.GOLDEN)
    artifact.write_golden(b / artifact.GOLDEN, ins, {k: -v for k, v in outs.items()})
    return b


def test_failed_verification_exits_1_with_the_reasons(failing_bundle):
    proc = _cli("verify", str(failing_bundle))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "FAIL"
    reasons = [line for line in lines if line.startswith("FAIL output_0: ")]
    assert any("SNR" in r and "< 60.0 dB" in r for r in reasons), lines
    assert any("cosine" in r for r in reasons), lines
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


def test_failed_verification_as_json_exits_1(failing_bundle):
    proc = _cli("verify", str(failing_bundle), "--json")
    assert proc.returncode == 1, proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["passed"] is False and verdict["precision"] == "fp32"
    assert verdict["failures"] and all(f.startswith("output_0: ") for f in verdict["failures"])


def test_intact_bundle_exits_0(cnn_bundles):
    proc = _cli("verify", str(cnn_bundles / "onnx-fp32"))
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "PASS", proc.stdout


# ---- which outputs top-1 judges -------------------------------------------------------------

def _swapped_top2(out):
    """`out` with each sample's two largest scores exchanged: argmax never agrees, yet the
    vector barely moves when the margin is small."""
    flat = out.reshape(out.shape[0], -1).copy()
    order = flat.argsort(-1)
    rows = np.arange(flat.shape[0])
    first, second = order[:, -1], order[:, -2]
    flat[rows, first], flat[rows, second] = flat[rows, second], flat[rows, first].copy()
    return flat.reshape(out.shape)


def _near_miss_bundle(tmp_path, architecture):
    """A `dynamic` bundle of a model that returns its (1, 384) input, whose golden outputs are
    those vectors with their top two values swapped: a near-identical vector (cosine ~0.9998)
    whose argmax never agrees."""
    import onnx
    from onnx import TensorProto, helper

    b = tmp_path / "near-miss"
    b.mkdir()
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 384]) for n in ("x", "emb")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["emb"])], "g", io[:1], io[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(b / "model.onnx"))
    x = np.random.default_rng(0).normal(size=(16, 1, 384)).astype(np.float32)
    artifact.write_golden(b / artifact.GOLDEN, {"x": x}, {"emb": _swapped_top2(x)})
    specs = [artifact.spec_record(artifact.TensorSpec(n, (1, 384), "float32"), "NCHW")
             for n in ("x", "emb")]
    source = {"kind": "hf", "path": "enc", **({"architecture": architecture} if architecture
                                              else {})}
    golden = {"file": artifact.GOLDEN, "samples": 16, "seed": 0, "reference": "torch"}
    artifact.write_manifest(b / artifact.MANIFEST, artifact.manifest(
        "onnx", "dynamic", b / "model.onnx", specs[:1], specs[1:], source=source, recipe={},
        stages={}, preprocessing=None, golden=golden))
    m = verify.compare(_swapped_top2(x), x)
    limits = verify.THRESHOLDS["dynamic"]
    # the premise: SNR and cosine pass, top-1 agreement fails
    assert m["cosine"] >= limits["cosine"] and m["snr_db"] >= limits["snr_db"], m
    assert m["top1_agreement"] < limits["top1_agreement"], m
    return b


def test_embedding_passes_on_cosine_whatever_its_argmax(tmp_path):
    v = verify.apply(artifact.open_bundle(_near_miss_bundle(tmp_path, "BertModel")))
    assert v.passed, v.failures
    assert v.criteria["emb"]["criteria"] == ["snr_db", "cosine"]
    assert "BertModel" in v.criteria["emb"]["top1_why"]
    assert v.metrics["emb"]["top1_agreement"] < 0.9  # still reported, as information


@pytest.mark.parametrize("architecture", [None, "BertForSequenceClassification"])
def test_classifier_still_fails_on_top1(tmp_path, architecture):
    v = verify.apply(artifact.open_bundle(_near_miss_bundle(tmp_path, architecture)))
    assert not v.passed
    assert [f.split(": ", 1)[1].split(" ")[0] for f in v.failures] == ["top-1"], v.failures
    assert "top1_agreement" in v.criteria["emb"]["criteria"]


def test_the_tiny_cnn_is_judged_by_top1(cnn_bundles):
    v = verify.apply(artifact.open_bundle(cnn_bundles / "onnx-fp32"))
    assert v.passed and "top1_agreement" in v.criteria["output_0"]["criteria"], v.criteria


def test_the_rule_reads_shape_labels_and_values():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 1, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    unit = logits / np.linalg.norm(logits, axis=-1, keepdims=True)
    cases = {"hidden states": (rng.normal(size=(8, 1, 16, 384)), {}, False, "[1, 16, 384]"),
             "logits": (logits, {}, True, "[-"), "softmax": (probs, {}, True, "softmax"),
             "sigmoid": (1 / (1 + np.exp(-logits)), {}, True, "sigmoid"),
             "normalized": (unit, {}, False, "L2 norm 1.0000"),
             "labelled": (unit, {"fidelity": {"accuracy": {"labelled": 50, "fp32": 0.9}}},
                          True, "50 --eval labels")}
    for case, (ref, manifest, applies, why) in cases.items():
        got, reason = verify.top1_applies(manifest, ref)
        assert got is applies and why in reason, (case, reason)


# ---- sigmoid heads: top-1 gates them; ordered bins declare a neighbouring-bin tolerance ------

def _sigmoid_bundle(tmp_path, reference, quantized, tolerance=None):
    """An int8 bundle of a model that returns its (1, K) input, fed `quantized` (what the int8
    model gives) against golden outputs `reference` (fp32's)."""
    import onnx
    from onnx import TensorProto, helper

    x = quantized.astype(np.float32)
    k = x.shape[-1]
    b = tmp_path / f"sigmoid-{tolerance}"
    b.mkdir()
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, k]) for n in ("x", "probs")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probs"])], "g", io[:1],
                              io[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(b / "model.onnx"))
    artifact.write_golden(b / artifact.GOLDEN, {"x": x}, {"probs": reference.astype(np.float32)})
    specs = [artifact.spec_record(artifact.TensorSpec(n, (1, k), "float32"), "NCHW")
             for n in ("x", "probs")]
    golden = {"file": artifact.GOLDEN, "samples": len(x), "seed": 0, "reference": "torch",
              **({"top1_tolerance": tolerance} if tolerance is not None else {})}
    artifact.write_manifest(b / artifact.MANIFEST, artifact.manifest(
        "onnx", "int8", b / "model.onnx", specs[:1], specs[1:], source={"kind": "factory"},
        recipe={}, stages={}, preprocessing=None, golden=golden))
    return artifact.open_bundle(b)


def _pitch_posteriors(n=16, k=360):
    """crepe-like per-bin sigmoid posteriors: a bump centred between two bins, so its two
    highest bins are neighbours of nearly equal height (where int8 moves crepe's argmax)."""
    rng = np.random.default_rng(1)
    centres = rng.integers(40, k - 40, size=n) + 0.45
    grid = np.arange(k)
    return (0.9 * np.exp(-0.5 * ((grid[None] - centres[:, None]) / 1.25) ** 2))[:, None]


def _multilabel_probs(n=16, k=360):
    """Multi-label sigmoid outputs whose two most probable labels are far apart (k // 2) and
    nearly equal: swapping them changes the head's answer, not the vector's shape."""
    rng = np.random.default_rng(2)
    p = 1 / (1 + np.exp(-rng.normal(-3, 1, size=(n, 1, k))))
    top = rng.integers(0, k // 2, size=n)
    p[np.arange(n), 0, top], p[np.arange(n), 0, top + k // 2] = 0.95, 0.94
    return p


@pytest.mark.parametrize("tolerance", [None, 2])
def test_a_multilabel_head_whose_int8_argmax_moves_far_fails(tmp_path, tolerance):
    probs = _multilabel_probs()
    v = verify.apply(_sigmoid_bundle(tmp_path, probs, _swapped_top2(probs), tolerance))
    m = v.metrics["probs"]
    assert m["cosine"] >= v.thresholds["cosine"] and m["snr_db"] >= v.thresholds["snr_db"], m
    assert not v.passed and len(v.failures) == 1 and "top-1 agreement" in v.failures[0], v.failures
    assert "sigmoid probabilities" in v.criteria["probs"]["top1_why"]


def test_neighbouring_bin_moves_pass_only_with_a_declared_tolerance(tmp_path):
    fp32 = _pitch_posteriors()
    int8 = _swapped_top2(fp32)  # every argmax one bin over, as int8 does on crepe's bins
    undeclared = verify.apply(_sigmoid_bundle(tmp_path, fp32, int8))
    assert not undeclared.passed and undeclared.metrics["probs"]["top1_agreement"] == 0.0
    assert [f.split(": ", 1)[1].split(" ")[0] for f in undeclared.failures] == ["top-1"]
    declared = verify.apply(_sigmoid_bundle(tmp_path, fp32, int8, tolerance=1))
    assert declared.passed, declared.failures
    assert declared.metrics["probs"]["top1_agreement"] == 1.0
    assert declared.metrics["probs"]["top1_exact"] == 0.0  # still reported beside it
    assert "within 1 position" in declared.criteria["probs"]["top1_why"]


def test_a_tolerance_is_not_a_pass_for_moves_beyond_it(tmp_path):
    fp32 = _pitch_posteriors()
    moved = np.roll(fp32, 3, axis=-1)  # three bins over: 60 cents, a different answer
    v = verify.apply(_sigmoid_bundle(tmp_path, fp32, moved, tolerance=2))
    assert not v.passed and v.metrics["probs"]["top1_agreement"] == 0.0
    assert any("argmax within 2" in f for f in v.failures), v.failures


def test_a_corrupt_tolerance_in_the_manifest_is_one_line(tmp_path):
    fp32 = _pitch_posteriors()
    bundle = _sigmoid_bundle(tmp_path, fp32, fp32, tolerance=-1)
    with pytest.raises(UserError, match="top1_tolerance -1"):
        verify.apply(bundle)


def test_compress_records_the_declared_tolerance_for_the_device(tmp_path):
    from tiny_models import MODELS, factory

    from edgepress.compress import pipeline

    out = tmp_path / "b"
    pipeline.run(pipeline.Request(source=factory("cnn"), out=out, formats=("onnx",),
                                  input_shapes=tuple(MODELS["cnn"][1]), top1_tolerance=1,
                                  summary=False))
    bundle = artifact.open_bundle(out / "onnx-fp32")
    assert bundle.manifest["golden"]["top1_tolerance"] == 1
    v = verify.apply(bundle)
    assert v.passed and "within 1 position" in v.criteria["output_0"]["top1_why"], v.criteria
