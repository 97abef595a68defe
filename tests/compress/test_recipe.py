"""Recipes: strict TOML tables into the option dataclasses; flags override; the full chain runs."""

import json

import numpy as np
import pytest
from tiny_models import TINY

from edgepress import cli
from edgepress import options
from edgepress.compress import recipe
from edgepress.errors import UserError


def _write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_parse_types_and_relative_paths(tmp_path):
    path = _write(tmp_path, """
[model]
source = "models.py:net"
input_shape = ["x=1,3,16,16"]
[data]
calib = "random"
eval = "data/eval.npz"
image_mean = [0.5, 0.5, 0.5]
[prune]
method = "channels:0.5"
round_to = 4
[quantize]
precisions = ["int8", "fp16"]
max_drop = 1
[export]
formats = ["onnx"]
out = "out"
""")
    tables = recipe.load(path)
    r = options.Recipe.build(tables)  # every key is a field of its table
    assert r.model.source == str(tmp_path / "models.py:net")
    assert r.model.input_shape == ("x=1,3,16,16",)
    assert r.data.calib == "random"  # not a path
    assert r.data.eval == str(tmp_path / "data/eval.npz")
    assert r.data.image_mean == (0.5, 0.5, 0.5)
    assert r.prune.method == "channels:0.5" and r.prune.round_to == 4
    assert r.quantize.precisions == ("int8", "fp16") and r.quantize.max_drop == 1.0
    assert r.export.out == str(tmp_path / "out")
    assert r.flat()["prune_round_to"] == 4  # the manifest's record keeps its flat names


@pytest.mark.parametrize("text, message", [
    ("[prune]\nimportanse = 'l2'\n", "unknown key 'importanse' in [prune]; valid: method, "
                                     "importance, scope"),
    ("[pruning]\nmethod = 'channels:0.5'\n", "unknown section [pruning]; valid: [model], [data]"),
    ("[prune]\nround_to = 'eight'\n", "[prune] round_to: expected an integer, got str 'eight'"),
    ("[export]\nformats = 'onnx'\n", "[export] formats: expected an array of str, got str"),
    ("[export]\noverwrite = 1\n", "[export] overwrite: expected true or false, got int 1"),
    ("[distill]\nepochs = true\n", "[distill] epochs: expected an integer, got bool True"),
    ("[model\nsource = 'x'\n", "is not valid TOML"),
    ("prune = 3\n", "prune must be a [prune] table"),
])
def test_bad_recipe_one_line_exit_2(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    assert cli.main(["compress", "--recipe", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_missing_recipe_file(tmp_path, capsys):
    assert cli.main(["compress", "--recipe", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _digits_like(tmp_path, n=96):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 5, n)
    np.savez(tmp_path / "train.npz", x=x, labels=labels)
    np.savez(tmp_path / "eval.npz", x=x[:32], labels=labels[:32])


def _convnet_recipe(tmp_path, rest: str):
    """A recipe for the tiny prunable CNN with its data written beside it, plus `rest`."""
    _digits_like(tmp_path)
    return _write(tmp_path, f"""
[model]
source = "{TINY}:convnet"
input_shape = ["1,3,16,16"]
[data]
train = "train.npz"
""" + rest)


def test_full_chain_from_a_recipe_with_flag_overrides(tmp_path, capsys):
    """load -> prune -> distill -> export -> quantize -> verify -> summary, one recipe; a flag
    overrides the file's value."""
    path = _convnet_recipe(tmp_path, """
eval = "eval.npz"
calib = "train.npz"
[prune]
method = "channels:0.5"
round_to = 2
[distill]
method = "logits"
epochs = 1
batch_size = 32
[quantize]
precisions = ["dynamic"]
[export]
formats = ["onnx"]
""")
    out = tmp_path / "out"
    assert cli.main(["compress", "--recipe", str(path), "--out", str(out),
                     "--distill-epochs", "2", "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "| onnx-int8 | accuracy |" in printed
    assert sorted(p.name for p in out.iterdir()) == ["onnx-fp32", "onnx-int8", "pruned.pt2",
                                                     "summary.json", "summary.md"]
    manifest = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    stages = manifest["stages"]
    assert {"load", "prune", "distill", "export", "quantize"} <= set(stages)
    assert stages["distill"]["epochs_run"] == 2  # the flag beat the recipe's 1
    assert stages["distill"]["train"]["samples"] == 96
    assert manifest["recipe"]["quantize"] == "int8"  # the flag beat the recipe's dynamic
    summary = json.loads((out / "summary.json").read_text())
    assert [r["bundle"] for r in summary["rows"]] == ["onnx-fp32", "onnx-int8"]
    for row in summary["rows"]:
        assert row["metric"] == "accuracy" and 0 <= row["value"] <= 1
        assert row["size_bytes"] > 0 and row["macs"] > 0 and row["p50_ms"] > 0
    import tiny_models

    teacher_params = sum(p.numel() for p in tiny_models.convnet().parameters())
    assert summary["rows"][0]["params"] < 0.7 * teacher_params  # the pruned student
    assert "distill" in summary


def test_distill_flags_need_distill(tmp_path, capsys):
    assert cli.main(["compress", f"{TINY}:cnn", "--input-shape", "1,3,16,16", "--teacher",
                     f"{TINY}:cnn", "--out", str(tmp_path / "o")]) == 2
    assert "--teacher applies to distillation" in capsys.readouterr().err


def test_distill_needs_train_data(tmp_path, capsys):
    assert cli.main(["distill", f"{TINY}:cnn", "--input-shape", "1,3,16,16",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--distill needs training data: --train DATA" in capsys.readouterr().err


def test_unknown_distill_method(tmp_path, capsys):
    _digits_like(tmp_path)
    assert cli.main(["compress", f"{TINY}:cnn", "--input-shape", "1,3,16,16", "--distill", "kd",
                     "--train", str(tmp_path / "train.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "distill method 'kd' is not one of: features, logits" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["digits", "mobilenet_v2"])
def test_shipped_recipes_parse(name):
    from tiny_models import ROOT

    r = options.Recipe.build(recipe.load(ROOT / "examples" / name / "recipe.toml"))
    assert r.prune.method == "channels:0.5" and r.distill.method == "logits"
    assert "int8" in r.quantize.precisions
    assert r.model.source.endswith(("digits_cnn", "mobilenet_v2"))


def test_distill_command_keeps_the_recipes_method(tmp_path, capsys):
    """`edgepress distill` means logits only when the recipe names no method."""
    path = _convnet_recipe(tmp_path, """
[distill]
method = "attention"
""")
    assert cli.main(["distill", "--recipe", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "distill method 'attention' is not one of" in capsys.readouterr().err
