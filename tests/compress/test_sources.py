"""fp32 round trip for every source kind x both formats: outputs within 1e-4 of torch."""

import json

import numpy as np
import pytest
import torch
from tiny_models import TINY, factory

import tiny_models
from edgepress.compress import load, pipeline
from edgepress.runtime import artifact, verify
from edgepress.runtime.session import Session

TOL = 1e-4


def _run(source, out, shapes=(), formats=("onnx", "tflite"), **kw):
    return pipeline.run(pipeline.Request(source=source, out=out, formats=tuple(formats),
                                         input_shapes=tuple(shapes), **kw))


def _assert_close(results, formats=("onnx", "tflite")):
    assert [r.bundle.name for r in results] == [f"{f}-fp32" for f in formats]
    for r in results:
        assert r.verdict.passed, r.verdict.failures
        for name, m in r.verdict.metrics.items():
            assert m["max_abs"] <= TOL * max(1.0, m["ref_peak"]), (r.bundle.name, name, m)


@pytest.mark.parametrize("name", sorted(tiny_models.MODELS))
def test_factory_file_each_tiny_model(name, tmp_path):
    _fn, shapes = tiny_models.MODELS[name]
    results = _run(factory(name), tmp_path / "out", shapes)
    _assert_close(results)
    bundle = artifact.open_bundle(results[0].bundle)
    assert [s.name for s in bundle.inputs] == \
        list(__import__("inspect").signature(_fn().forward).parameters)


def test_factory_module_form_with_safetensors_and_pt_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    trained = tiny_models.TinyCNN().eval()  # different weights from the factory's seed
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    x = torch.randn(1, 3, 16, 16)
    for weights in ("w.safetensors", "w.pt"):
        loaded = load.open_source("tiny_models:cnn", str(tmp_path / weights), ["1,3,16,16"])
        assert torch.allclose(loaded.model(x), trained(x))
        assert loaded.provenance["weights"]["tensors"] == len(trained.state_dict())


def test_torchscript_source(tmp_path):
    ts = torch.jit.trace(tiny_models.cnn(), torch.randn(1, 3, 16, 16))
    torch.jit.save(ts, tmp_path / "m.pt")
    _assert_close(_run(str(tmp_path / "m.pt"), tmp_path / "out", ["1,3,16,16"]))


def test_exported_program_declares_its_shapes(tmp_path):
    ep = torch.export.export(tiny_models.mlp(), (torch.randn(1, 6), torch.randn(1, 4)))
    torch.export.save(ep, tmp_path / "m.pt2")
    results = _run(str(tmp_path / "m.pt2"), tmp_path / "out")  # no --input-shape needed
    _assert_close(results)
    bundle = artifact.open_bundle(results[1].bundle)
    assert [(s.name, s.shape) for s in bundle.inputs] == [("features", (1, 6)),
                                                          ("context", (1, 4))]
    assert [s.name for s in bundle.outputs] == ["output_0", "output_1"]


def test_onnx_source_dynamic_batch_fixed_and_copied(tmp_path):
    path = tmp_path / "m.onnx"
    torch.onnx.export(tiny_models.cnn(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(Exception, match="dynamic dims"):
        _run(str(path), tmp_path / "nope", formats=("onnx",))
    assert not (tmp_path / "nope").exists()
    results = _run(str(path), tmp_path / "out", ["x=1,3,16,16"], formats=("onnx",))
    _assert_close(results, ("onnx",))
    manifest = artifact.open_bundle(results[0].bundle).manifest
    assert manifest["stages"]["export"]["normalisation"][0].startswith("fixed dynamic dims")
    assert manifest["golden"]["reference"].startswith("onnxruntime")


def test_onnx_source_cannot_become_tflite(tmp_path, cnn_bundles):
    with pytest.raises(Exception, match="only be bundled as onnx"):
        _run(str(cnn_bundles / "onnx-fp32" / "model.onnx"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hf_directory_with_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).eval().save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(50)))
    results = _run(str(tmp_path / "hf"), tmp_path / "out", ["input_ids=1,16", "attention_mask=1,16"])
    _assert_close(results)
    for r in results:
        bundle = artifact.open_bundle(r.bundle)
        assert (r.bundle / "tokenizer" / "vocab.txt").is_file()
        assert bundle.manifest["source"]["architecture"] == "BertForSequenceClassification"
        ins, _ = bundle.golden()
        assert ins["input_ids"].max() < 50 and ins["input_ids"].max() > 1  # ids span the vocab


def test_tflite_nhwc_layout(tmp_path):
    results = _run(factory("cnn"), tmp_path / "out", ["1,3,16,16"], formats=("tflite",),
                   tflite_layout="nhwc")
    _assert_close(results, ("tflite",))
    bundle = artifact.open_bundle(results[0].bundle)
    assert bundle.inputs[0].shape == (1, 16, 16, 3)
    assert bundle.inputs[0].layout == "NHWC"
    # The NHWC bundle computes the same function as torch on the transposed input.
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    got = Session(bundle.model_path).run({"x": x.transpose(0, 2, 3, 1)})["output_0"]
    want = tiny_models.cnn()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=TOL)


def test_manifest_contents(cnn_bundles):
    for fmt in ("onnx", "tflite"):
        bundle = artifact.open_bundle(cnn_bundles / f"{fmt}-fp32")
        m = bundle.manifest
        assert m["schema_version"] == artifact.SCHEMA_VERSION
        assert m["format"] == fmt and m["precision"] == "fp32"
        assert m["model_sha256"] == artifact.sha256_file(bundle.model_path)
        assert m["model_size_bytes"] == bundle.model_path.stat().st_size
        assert m["source"]["kind"] == "factory" and m["source"]["path"] == f"{TINY}:cnn"
        assert m["inputs"][0] == {"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32",
                                  "layout": "NCHW"}
        assert m["tools"]["torch"].startswith("2.") and m["golden"]["samples"] == 8
        ins, outs = bundle.golden()
        assert ins["x"].shape == (8, 1, 3, 16, 16) and outs["output_0"].shape == (8, 1, 5)
        json.dumps(m)  # plain JSON, nothing exotic


def test_verify_catches_a_wrong_model(tmp_path, cnn_bundles):
    """A bundle whose golden outputs do not match its model fails verification."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cnn_bundles / "onnx-fp32", bad)
    ins, outs = artifact.read_golden(bad / artifact.GOLDEN)
    outs["output_0"] = outs["output_0"] + 0.05 * np.abs(outs["output_0"]).max()
    artifact.write_golden(bad / artifact.GOLDEN, ins, outs)
    verdict = verify.apply(artifact.open_bundle(bad))
    assert not verdict.passed
    assert any("SNR" in f for f in verdict.failures)
