"""Hugging Face directories of vision and audio models (random weights, tiny configs): loaded
with their own input names, exported in fp32 to both formats."""

import pytest
import torch

from edgepress.compress import load, pipeline
from edgepress.runtime import artifact

transformers = pytest.importorskip("transformers")


def _vit():
    return transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8, num_labels=3))


def _resnet():
    return transformers.ResNetForImageClassification(transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3))


def _wav2vec2():
    return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, vocab_size=10))


def _convnext():
    return transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3, image_size=32))


def _mobilenet_v2():
    return transformers.MobileNetV2ForImageClassification(transformers.MobileNetV2Config(
        depth_multiplier=0.25, image_size=32, num_labels=3))


# name -> (model builder, --input-shape, the input spec it must give)
MODELS = {
    "vit": (_vit, (), ("pixel_values", (1, 3, 32, 32))),
    "resnet": (_resnet, ("pixel_values=1,3,64,64",), ("pixel_values", (1, 3, 64, 64))),
    "wav2vec2": (_wav2vec2, ("input_values=1,4000",), ("input_values", (1, 4000))),
}
LOAD_ONLY = {  # loaded here; their export is the breadth matrix's (issue 17, item 1)
    "convnext": (_convnext, (), ("pixel_values", (1, 3, 32, 32))),
    "mobilenet_v2": (_mobilenet_v2, (), ("pixel_values", (1, 3, 32, 32))),
}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    for name, (build, _, _) in {**MODELS, **LOAD_ONLY}.items():
        torch.manual_seed(0)
        build().eval().save_pretrained(root / name)
    return root


@pytest.mark.parametrize("name", sorted({**MODELS, **LOAD_ONLY}))
def test_vision_and_audio_directories_take_their_own_inputs(name, hf_dirs):
    _, shapes, (input_name, shape) = {**MODELS, **LOAD_ONLY}[name]
    loaded = load.open_source(str(hf_dirs / name), None, shapes)
    assert [(s.name, s.shape, s.dtype) for s in loaded.inputs] == [(input_name, shape, "float32")]
    assert loaded.int_high == {}  # no token ids to bound
    example = load.example(loaded)
    by_name = load.outputs(loaded.model(**example))[0]
    # positionally too, as the TorchScript-based ONNX export (export's fallback) calls it
    positional = load.outputs(loaded.model(*[example[s.name] for s in loaded.inputs]))[0]
    assert by_name.shape[0] == 1 and torch.equal(by_name, positional)


def test_text_input_names_are_refused_on_a_vision_model(hf_dirs):
    from edgepress.errors import UserError

    with pytest.raises(UserError, match="has inputs: pixel_values"):
        load.open_source(str(hf_dirs / "resnet"), None, ["input_ids=1,16"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_vision_and_audio_directories_export_fp32_in_both_formats(name, hf_dirs, tmp_path):
    _, shapes, (input_name, shape) = MODELS[name]
    results = pipeline.run(pipeline.Request(source=str(hf_dirs / name), out=tmp_path / "out",
                                            input_shapes=shapes, summary=False))
    assert [r.bundle.name for r in results] == ["onnx-fp32", "tflite-fp32"]
    for r in results:
        assert r.verdict.passed, r.verdict.failures
        bundle = artifact.open_bundle(r.bundle)
        assert [(s.name, s.shape) for s in bundle.inputs] == [(input_name, shape)]
        assert bundle.manifest["source"]["architecture"].endswith("ForImageClassification") \
            or bundle.manifest["source"]["architecture"] == "Wav2Vec2ForCTC"


def test_a_bad_image_size_is_one_clear_line(hf_dirs, tmp_path):
    import json
    import shutil

    from edgepress.errors import UserError

    broken = tmp_path / "vit"
    shutil.copytree(hf_dirs / "vit", broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "image_size": "big"}))
    with pytest.raises(UserError, match="image_size 'big' should be a whole number"):
        load.open_source(str(broken), None, ())
