"""The bundle manifest: written to its schema, and read strictly (a wrong value is one line)."""

import json
import shutil

import numpy as np
import pytest

from edgepress.compress import quantize
from edgepress.errors import UserError
from edgepress.runtime import artifact, schema, verify


def _copy(cnn_bundles, tmp_path, fmt="onnx", **changes):
    b = tmp_path / "b"
    shutil.copytree(cnn_bundles / f"{fmt}-fp32", b)
    manifest = json.loads((b / artifact.MANIFEST).read_text())
    manifest.update(changes)
    (b / artifact.MANIFEST).write_text(json.dumps(manifest))
    return b


def test_written_manifests_fit_their_schema(cnn_bundles):
    jsonschema = pytest.importorskip("jsonschema")
    spec = schema.load("manifest")
    jsonschema.Draft202012Validator.check_schema(spec)
    for fmt in ("onnx", "tflite"):
        manifest = json.loads((cnn_bundles / f"{fmt}-fp32" / artifact.MANIFEST).read_text())
        jsonschema.validate(manifest, spec, cls=jsonschema.Draft202012Validator)


def test_every_precision_has_thresholds_and_nothing_else_is_valid():
    precisions = schema.load("manifest")["properties"]["precision"]["enum"]
    made = {"fp32"} | {p for _fmt, p in quantize.METHODS}
    assert set(precisions) == set(verify.THRESHOLDS) == made


@pytest.mark.parametrize("precision, hint", [
    ("FP32", "case-sensitive: 'fp32'"), ("int4", None), ("", None)])
def test_unknown_precision_is_one_clear_line(cnn_bundles, tmp_path, precision, hint):
    b = _copy(cnn_bundles, tmp_path, precision=precision)
    with pytest.raises(UserError) as e:
        artifact.open_bundle(b)
    line = str(e.value)
    assert "\n" not in line and f"precision {precision!r} is not one of: " in line
    assert all(p in line for p in verify.THRESHOLDS)
    assert hint is None or hint in line


def test_mis_cased_precision_no_longer_gets_int8_thresholds(cnn_bundles, tmp_path):
    """A bundle whose outputs fail fp32's gates but pass int8's: as "fp32" it fails; as "FP32" it
    used to pass on int8's thresholds. Now it is refused before anything runs."""
    b = _copy(cnn_bundles, tmp_path)
    ins, outs = artifact.read_golden(b / artifact.GOLDEN)
    rng = np.random.default_rng(0)
    noisy = {k: v + 0.01 * np.abs(v).max() * rng.standard_normal(v.shape).astype(v.dtype)
             for k, v in outs.items()}  # ~40 dB SNR: below fp32's 60, above int8's 12
    artifact.write_golden(b / artifact.GOLDEN, ins, noisy)
    assert not verify.apply(artifact.open_bundle(b)).passed
    for precision in ("FP32", "Int8"):
        manifest = json.loads((b / artifact.MANIFEST).read_text())
        (b / artifact.MANIFEST).write_text(json.dumps({**manifest, "precision": precision}))
        with pytest.raises(UserError, match="precision"):
            verify.apply(artifact.open_bundle(b))


def test_thresholds_refuse_what_they_do_not_know():
    with pytest.raises(UserError, match="precision 'FP32' is not one of: dynamic, fp16, fp32"):
        verify.thresholds("FP32")
    assert verify.thresholds("int8") is verify.THRESHOLDS["int8"]


@pytest.mark.parametrize("changes, message", [
    ({"format": "coreml"}, "field format 'coreml' is not one of: onnx, tflite"),
    ({"inputs": [{"name": "x", "shape": [1, 2.5], "dtype": "float32"}]},
     "field inputs[0].shape[1] should be integer or string, got float"),
    ({"outputs": [{"name": "y", "shape": [1, True], "dtype": "float32"}]},
     "field outputs[0].shape[1] should be integer or string, got bool"),
    ({"model_file": None}, "field model_file should be string, got NoneType"),
])
def test_other_fields_are_checked_by_the_schema(cnn_bundles, tmp_path, changes, message):
    b = _copy(cnn_bundles, tmp_path, **changes)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        artifact.open_bundle(b)
