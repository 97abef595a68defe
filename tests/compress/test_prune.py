"""prune: every METHOD on tiny models with a residual block, a depthwise block and a transformer
block; pruned bundles export and verify; the sensitivity scan; bad specs are one line, exit 2."""

import copy
import json

import numpy as np
import pytest
import torch

import tiny_models
from tiny_models import factory
from edgepress import cli
from edgepress.cli import compress as cli_compress
from edgepress.compress import calibrate, load, pipeline, prune
from edgepress.compress.prune import auto, trials
from edgepress.errors import UserError

# One spec per method: a new method without a case here fails test_every_method_has_a_case.
SPECS = {"channels": "channels:0.5", "magnitude": "magnitude:0.8", "nm": "nm:2:4",
         "auto": "auto:macs=0.7"}
MODELS = ("prunable_cnn", "encoder")  # residual + depthwise CNN; transformer encoder block


def _loaded(name):
    fn, shapes = tiny_models.MODELS[name]
    return load.open_source(factory(name), None, shapes)


def _example(loaded):
    return {s.name: torch.randn(*s.shape, generator=torch.Generator().manual_seed(1))
            for s in loaded.inputs}


def _data(loaded, n=8):
    return calibrate.open_data("random", loaded.inputs, n, seed=3)


def test_every_method_has_a_case():
    assert set(SPECS) == set(prune.METHODS)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", sorted(prune.METHODS))
def test_method_prunes_and_keeps_outputs(method, model):
    loaded = _loaded(model)
    example = _example(loaded)
    with torch.no_grad():
        shapes_before = [o.shape for o in torch.atleast_1d(loaded.model(**example))]
    result = prune.run(loaded.model, prune.parse(SPECS[method]), example, _data(loaded))
    fig = result.figures
    with torch.no_grad():
        out = result.model(**example)
    assert [o.shape for o in torch.atleast_1d(out)] == shapes_before
    assert torch.isfinite(out).all()
    assert not any(hasattr(m, "weight_orig") for m in result.model.modules()), "masks left"
    if method == "auto":  # the MACs target is met, from per-layer ratios the scan chose
        assert fig["macs"]["ratio"] <= 0.71 and fig["auto"]["chosen_ratios"]
    if method in ("channels", "auto"):
        assert fig["params"]["after"] < fig["params"]["before"]
        assert fig["macs"]["ratio"] < 1.0 and fig["widths"]
        for before_after in fig["widths"].values():  # rounded to 8 where a layer shrank
            out_ch = before_after["after"][0]
            assert out_ch == before_after["before"][0] or out_ch % 8 == 0
    else:
        assert fig["params"]["after"] == fig["params"]["before"]  # same shapes, more zeros
        assert fig["nonzero_params"]["after"] < 0.75 * fig["nonzero_params"]["before"]
        assert fig["macs"]["ratio"] == 1.0 and "do not speed up dense engines" in fig["note"]


def test_first_conv_and_classifier_skipped_by_default():
    loaded = _loaded("prunable_cnn")
    fig = prune.run(loaded.model, prune.parse("magnitude:0.8"), _example(loaded)).figures
    assert fig["skipped"] == {"stem.0": "first conv (default)", "fc": "classifier (default)"}
    assert fig["sparsity"]["stem.0"] == 0.0 and fig["sparsity"]["fc"] == 0.0
    assert fig["sparsity"]["res.0"] > 0.7


@pytest.mark.parametrize("scope", prune.SCOPES)
def test_magnitude_ratio_global_and_uniform(scope):
    loaded = _loaded("prunable_cnn")
    cfg = prune.parse("magnitude:0.6", scope=scope)
    fig = prune.run(loaded.model, cfg, _example(loaded)).figures
    pruned = {n: s for n, s in fig["sparsity"].items() if n not in fig["skipped"]}
    if scope == "uniform":
        assert all(abs(s - 0.6) < 0.01 for s in pruned.values()), pruned
    else:  # one threshold: layers differ, the total is the ratio
        weights = dict(loaded.model.named_modules())
        sizes = {n: weights[n].weight.numel() for n in pruned}
        total = sum(pruned[n] * sizes[n] for n in pruned) / sum(sizes.values())
        assert abs(total - 0.6) < 0.01 and len(set(pruned.values())) > 1


def test_nm_keeps_two_of_every_four_inputs():
    loaded = _loaded("prunable_cnn")
    result = prune.run(loaded.model, prune.parse("nm:2:4"), _example(loaded))
    w = result.model.res[3].weight.detach()  # (16, 32, 3, 3): groups of 4 along the 32 inputs
    groups = w.movedim(1, -1).reshape(-1, 4)
    assert (torch.count_nonzero(groups, dim=1) <= 2).all()
    assert result.figures["sparsity"]["res.3"] == pytest.approx(0.5, abs=0.01)
    assert result.figures["sparsity"]["inv.3"] == 0.0  # depthwise: 1 input per group, left dense
    assert "not a multiple of 4" in result.figures["left_dense"]["inv.3"]


def test_per_layer_ratio_and_skip():
    loaded = _loaded("prunable_cnn")
    cfg = prune.parse("channels:0.5", skip=("inv.0",), layer_ratios=(("res.0", 0.75),))
    fig = prune.run(loaded.model, cfg, _example(loaded)).figures
    assert fig["widths"]["res.0"]["after"][0] == 8  # 32 * (1 - 0.75)
    assert "inv.0" not in fig["widths"] and fig["skipped"]["inv.0"] == "asked (--prune-skip)"


@pytest.mark.parametrize("scope", prune.SCOPES)
def test_channels_global_and_uniform(scope):
    loaded = _loaded("prunable_cnn")
    fig = prune.run(loaded.model, prune.parse("channels:0.5", scope=scope),
                      _example(loaded)).figures
    assert fig["scope"] == scope and fig["macs"]["ratio"] < 0.9 and fig["round_to"] == 8
    shrunk = [w["after"][0] for w in fig["widths"].values() if w["after"][0] != w["before"][0]]
    assert shrunk and all(c % 8 == 0 for c in shrunk)


@pytest.mark.parametrize("importance", prune.IMPORTANCES)
def test_importances_rank_channels(importance):
    loaded = _loaded("prunable_cnn")
    cfg = prune.parse("channels:0.5", importance=importance)
    fig = prune.run(loaded.model, cfg, _example(loaded), _data(loaded)).figures
    assert fig["importance"] == importance and fig["macs"]["ratio"] < 0.9
    if importance == "taylor":  # the data it ranked on is on record (random here, and says so)
        assert fig["data"]["kind"] == "random" and fig["data"]["warning"]


def test_taylor_and_auto_need_data():
    loaded = _loaded("prunable_cnn")
    for cfg in (prune.parse("channels:0.5", importance="taylor"), prune.parse("auto:macs=0.5")):
        with pytest.raises(UserError, match="--calib DATA"):
            prune.run(loaded.model, cfg, _example(loaded))


def test_l1_removes_the_weakest_channels():
    loaded = _loaded("prunable_cnn")
    with torch.no_grad():
        loaded.model.res[0].weight[:16].mul_(1e-3)  # the first 16 of 32 inner channels: tiny
    kept = loaded.model.res[0].weight[16:].detach().clone()
    prune.run(loaded.model, prune.parse("channels:0.5"), _example(loaded))
    assert torch.equal(loaded.model.res[0].weight.detach(), kept)


def test_masks_kept_for_fine_tuning_then_finalized():
    loaded = _loaded("prunable_cnn")
    cfg = prune.PruneConfig("magnitude", ratio=0.5, permanent=False)
    model = prune.run(loaded.model, cfg, _example(loaded)).model
    assert hasattr(model.res[0], "weight_mask")
    prune.finalize(model.modules())
    assert not hasattr(model.res[0], "weight_mask") and (model.res[0].weight == 0).any()


def test_sensitivity_scan(tmp_path):
    loaded = _loaded("prunable_cnn")
    example = _example(loaded)
    cfg = prune.PruneConfig("channels")
    scan = auto.scan(loaded.model, example, _data(loaded), cfg, ratios=(0.5,))
    names = [layer["name"] for layer in scan["layers"]]
    assert "res.0" in names and "inv.0" in names and "stem.0" not in names
    for layer in scan["layers"]:
        assert 0 < layer["trials"][0]["macs_saved"] < 1
        assert 0 < layer["trials"][0]["snr_db"] < 100  # pruned outputs differ, but not all noise
    assert scan["baseline"] == 100.0  # agreement of the model with itself


def test_scan_measures_each_trial_with_batchnorm_statistics_re_estimated():
    """With --prune-recalibrate-bn (the default) a trial scores as the stage leaves a pruned
    model: a pruned copy with its BatchNorm statistics re-estimated on the scan's data gives the
    trial's SNR; the model's own statistics are put back."""
    from edgepress.compress.prune import recalibrate

    loaded = _loaded("prunable_cnn")
    model, example, data = loaded.model, _example(loaded), _data(loaded)
    before = copy.deepcopy(model.state_dict())
    scans = {flag: auto.scan(model, example, data, prune.PruneConfig("channels",
                                                                     recalibrate_bn=flag),
                             ratios=(0.5,))
             for flag in (True, False)}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    trial = {flag: next(t for layer in scan["layers"] if layer["name"] == "res.0"
                        for t in layer["trials"]) for flag, scan in scans.items()}
    pruned = trials.prune_layers(model, example, prune.PruneConfig(
        "channels", skip=("stem.0", "fc"), skip_defaults=False), {"res.0": 0.5})
    metric = auto._Metric(model, data, auto.EVAL_LIMIT)
    as_pruned = metric.measure(pruned)[1]
    recalibrate.batchnorms(pruned, data, auto.EVAL_LIMIT)
    assert trial[True]["snr_db"] == pytest.approx(metric.measure(pruned)[1], abs=0.05)
    assert trial[False]["snr_db"] == pytest.approx(as_pruned, abs=0.05)
    assert abs(trial[True]["snr_db"] - trial[False]["snr_db"]) > 0.1  # it did change something


def _masked_against_copies(model, example):
    cfg = prune.PruneConfig("channels")
    skipped = prune.skipped_layers(model, cfg, example)
    cfg = prune.PruneConfig("channels", skip=tuple(skipped), skip_defaults=False)
    called = prune.execution_order(model, example)
    order = [n for n in called if n not in skipped]
    masks = trials.masked(model, example, cfg, skipped, called)
    assert masks is not None
    base, before = prune.measure(model, example), copy.deepcopy(model.state_dict())
    compared = 0
    for name in order:
        for r in (0.25, 0.5, 0.75):
            with trials.on_copy(model, example, cfg, base, name, r) as (pruned, widths, macs, _):
                expected = pruned(**example)
            with masks.trial(base, name, r) as (masked, got_widths, got_macs, _), torch.no_grad():
                got = masked(**example)
            assert got_widths == widths and got_macs == pytest.approx(macs, rel=1e-3), name
            assert torch.allclose(got, expected, atol=1e-5), (name, r)
            compared += bool(widths)
    assert compared and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_masked_trials_equal_pruned_copies():
    """Zeroing a trial's channels in place gives the pruned copy's outputs, widths and MACs (and
    puts the weights back): residual, depthwise and concatenated groups."""
    loaded = _loaded("prunable_cnn")
    _masked_against_copies(loaded.model, _example(loaded))
    _masked_against_copies(_Concat().eval(), {"x": torch.randn(1, 3, 8, 8)})
    scan = auto.scan(loaded.model, _example(loaded), _data(loaded), prune.PruneConfig("channels"),
                     ratios=(0.5,))
    assert scan["trials_on"] == "masks"
    encoder = _loaded("encoder")  # attention: copies
    scan = auto.scan(encoder.model, _example(encoder), _data(encoder),
                     prune.PruneConfig("channels"), ratios=(0.5,))
    assert scan["trials_on"] == "copies"


# ---- through the pipeline: export, verify, manifest, reload -----------------------------------

@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The prunable CNN through compress once per method (ONNX; TFLite in the slow test)."""
    root = tmp_path_factory.mktemp("pruned")
    calib = root / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((16, 3, 16, 16), np.float32))
    out = {}
    for method, spec in SPECS.items():
        req = pipeline.Request(source=factory("prunable_cnn"), out=root / method, formats=("onnx",),
                               input_shapes=("1,3,16,16",), prune=spec, calib=str(calib),
                               golden_samples=4)
        out[method] = pipeline.run(req)
    return out


@pytest.mark.parametrize("method", sorted(prune.METHODS))
def test_pruned_bundles_verify_against_the_pruned_model(method, bundles):
    for result in bundles[method]:
        assert result.verdict.passed, result.verdict.failures
        manifest = json.loads((result.bundle / "manifest.json").read_text())
        fig = manifest["stages"]["prune"]
        assert manifest["recipe"]["prune"] == SPECS[method] and fig["method"] == method
        if method in ("magnitude", "nm"):  # zeros compress: the honest size figure
            assert fig["gzip_size_bytes"] < 0.8 * manifest["model_size_bytes"]
        else:
            assert "gzip_size_bytes" not in fig and fig["macs"]["ratio"] < 1


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_channel_pruned_models_export_to_both_formats(model, tmp_path):
    shapes = tiny_models.MODELS[model][1]
    req = pipeline.Request(source=factory(model), out=tmp_path / "o", input_shapes=tuple(shapes),
                           prune="channels:0.5", golden_samples=4)
    results = pipeline.run(req)
    assert [r.bundle.name for r in results] == ["onnx-fp32", "tflite-fp32"]
    assert all(r.verdict.passed for r in results), [r.verdict.failures for r in results]


def test_saved_pruned_model_reloads_as_source(bundles):
    bundle = bundles["channels"][0].bundle
    saved = bundle.parent / prune.SAVED
    golden = np.load(bundle / "golden.npz")
    reloaded = load.open_source(str(saved))
    with torch.no_grad():
        out = reloaded.model(x=torch.from_numpy(golden["input.x"][0]))
    assert np.allclose(out.numpy(), golden["output.output_0"][0], atol=1e-5)
    with pytest.raises(UserError, match="no Conv/Linear modules"):  # a flat graph: say so
        prune.run(reloaded.model, prune.parse("channels:0.5"), {"x": torch.randn(1, 3, 16, 16)})


# ---- bad input: one line, exit 2 --------------------------------------------------------------

BAD = {
    "ratio zero": (["--prune", "channels:0"], "ratio 0 must be between 0 and 1"),
    "ratio one": (["--prune", "magnitude:1"], "ratio 1 must be between 0 and 1"),
    "ratio not a number": (["--prune", "channels:half"], "'half' is not a number"),
    "unknown method": (["--prune", "lottery:0.5"],
                       "--prune method 'lottery' is not one of: auto, channels, magnitude, nm"),
    "bad nm": (["--prune", "nm:4:2"], "expected nm:N:M with 0 < N < M"),
    "unknown layer": (["--prune", "channels:0.5", "--prune-skip", "res.9"],
                      "no layer named 'res.9'; prunable layers: stem.0, res.0"),
    "unknown importance": (["--prune", "channels:0.5", "--prune-importance", "l3"],
                           "--prune-importance 'l3' is not one of: l1, l2, random, taylor"),
    "bad layer ratio": (["--prune", "channels:0.5", "--prune-layer", "res.0"],
                        "expected NAME=RATIO"),
    "latency zero": (["--prune", "auto:latency=0"], "latency target 0 must be between 0 and 1"),
    "latency above one": (["--prune", "auto:latency=1.5"],
                          "latency target 1.5 must be between 0 and 1"),
    "latency not a number": (["--prune", "auto:latency=fast"], "'fast' is not a number"),
    "latency without a value": (["--prune", "auto:latency"], "auto takes a MACs or latency"),
    "unknown auto target": (["--prune", "auto:speed=0.5"], "auto takes a MACs or latency target"),
    "bad latency device": (["--prune", "auto:latency=0.5", "--latency-on", "pi.local"],
                           "--latency-on 'pi.local': expected host or ssh://user@host[:port]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_prune_spec_one_line_exit_2(case, tmp_path, capsys):
    flags, expected = BAD[case]
    out = tmp_path / "out"
    argv = ["compress", factory("prunable_cnn"), "--input-shape", "1,3,16,16", "--format", "onnx",
            "--out", str(out), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("method", ["magnitude", "channels"])
def test_cli_says_what_pruning_bought(method, bundles, capsys):
    out = bundles[method][0].bundle.parent
    cli_compress.print_pruned(out, bundles[method])
    printed = capsys.readouterr().out
    assert f"saved the pruned model as {out / prune.SAVED}" in printed
    if method == "magnitude":
        assert "do not speed up dense engines" in printed and "gzip-compressed" in printed
    else:
        assert "MACs x0." in printed and "no longer fits" in printed


def test_cli_sensitivity_table(tmp_path, capsys):
    data = tmp_path / "eval.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((12, 3, 16, 16), np.float32),
             labels=rng.integers(0, 5, 12))
    argv = ["inspect", factory("prunable_cnn"), "--input-shape", "1,3,16,16",
            "--prune-sensitivity", "--eval", str(data), "--prune-ratios", "0.5"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("accuracy %:") and "res.0" in printed and "drop@0.5" in printed


# ---- the CLI and a recipe give the same plan ---------------------------------------------------

CREPE_PRUNE = """[prune]
method = "auto:macs=0.5"
importance = "l2"
skip_defaults = false
skip = ["conv6", "classifier"]
recalibrate_bn = false
"""


def _cli_recipe(flags, recipe_file=None):
    from edgepress import options
    from edgepress.cli.parser import given
    from edgepress.compress import recipe

    argv = ["distill", "m.py:f", *flags] + (["--recipe", str(recipe_file)] if recipe_file else [])
    args = cli.build_parser().parse_args(argv)
    tables = recipe.load(args.recipe) if args.recipe else {}
    for name, values in given(args).items():
        tables.setdefault(name, {}).update(values)
    return options.Recipe.build(tables).prune


@pytest.mark.parametrize("skips", [["--prune-skip", "conv6,classifier"],
                                   ["--prune-skip", "conv6", "--prune-skip", "classifier"]])
def test_cli_flags_give_the_recipes_prune_table(skips, tmp_path):
    """`--prune-skip-defaults no` / `--prune-recalibrate-bn no` reach the plan (a `no` was dropped
    as "not given", so the CLI skipped crepe tiny's stem where the recipe pruned it), and a list
    flag given twice adds up (argparse kept only the last --prune-skip)."""
    toml = tmp_path / "r.toml"
    toml.write_text(CREPE_PRUNE)
    flags = ["--prune", "auto:macs=0.5", "--prune-importance", "l2", "--prune-skip-defaults",
             "no", "--prune-recalibrate-bn", "no", *skips]
    from_cli, from_recipe = _cli_recipe(flags), _cli_recipe([], toml)
    assert from_cli == from_recipe
    assert from_cli.skip == ("conv6", "classifier") and from_cli.skip_defaults is False
    assert _cli_recipe(["--prune-skip-defaults", "yes"], toml).skip_defaults is True  # CLI wins


def test_cli_prunes_the_stem_with_skip_defaults_no(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compress", factory("prunable_cnn"), "--input-shape", "1,3,16,16", "--format", "onnx",
            "--golden-samples", "2", "--out", str(out), "--prune", "channels:0.5",
            "--prune-skip-defaults", "no", "--prune-skip", "fc"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    fig = json.loads((out / "onnx-fp32" / "manifest.json").read_text())["stages"]["prune"]
    assert fig["skipped"] == {"fc": "asked (--prune-skip)"}
    assert fig["widths"]["stem.0"] == {"before": [16, 3], "after": [8, 3]}


def test_unreachable_macs_target_names_the_layers_left_whole():
    loaded = _loaded("prunable_cnn")
    with pytest.raises(UserError, match=r"reach only .* with stem.0 \(first conv \(default\)\), "
                                        r"fc \(classifier \(default\)\) left whole"):
        prune.run(loaded.model, prune.parse("auto:macs=0.05"), _example(loaded), _data(loaded))


def test_nothing_to_prune_is_a_clear_error():
    loaded = _loaded("cnn")  # 8 channels, stem and classifier skipped: nothing left to prune
    with pytest.raises(UserError, match="removed nothing"):
        prune.run(loaded.model, prune.parse("channels:0.5"), _example(loaded))


def test_taylor_removes_channels_that_do_not_reach_the_output():
    loaded = _loaded("prunable_cnn")
    with torch.no_grad():  # inner channels 0..15: large weights (l1 would keep them), no effect
        loaded.model.res[0].weight[:16].mul_(10)
        loaded.model.res[4].weight[:16].mul_(10)
        loaded.model.res[3].weight[:, :16].zero_()
    cfg = prune.parse("channels:0.5", importance="taylor", layer_ratios=(("res.0", 0.5),))
    prune.run(loaded.model, cfg, _example(loaded), _data(loaded))
    consumed = loaded.model.res[3].weight.detach()  # (16, 16 kept inputs, 3, 3)
    assert consumed.shape[1] == 16 and consumed.abs().sum(dim=(0, 2, 3)).min() > 0


class _Concat(torch.nn.Module):
    """Two branches concatenated along channels, then fused: the fuse conv's input channels must
    follow both branches' pruning."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.a = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.b = torch.nn.Conv2d(16, 16, 1)
        self.fuse = torch.nn.Conv2d(48, 16, 1)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        y = torch.cat([torch.relu(self.a(y)), torch.relu(self.b(y))], dim=1)
        return self.fc(self.fuse(y).mean(dim=(2, 3)))


def test_channels_through_concatenation():
    model, example = _Concat().eval(), {"x": torch.randn(1, 3, 8, 8)}
    fig = prune.run(model, prune.parse("channels:0.5"), example).figures
    assert model.a.out_channels == 16 and model.b.out_channels == 8
    assert model.fuse.in_channels == 24 and fig["macs"]["ratio"] < 0.6


def test_attention_loses_whole_heads():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "models" / "transformer.py"
    spec = importlib.util.spec_from_file_location("zoo_transformer", path)
    transformer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transformer)

    torch.manual_seed(0)
    model = transformer.Encoder(vocab=50, seq=8, dim=32, heads=4, layers=1, mlp=64).eval()
    example = {"input_ids": torch.randint(0, 50, (1, 8))}
    prune.run(model, prune.parse("channels:0.5"), example)
    attn = model.layers[0].attn
    assert attn.num_heads == 2 and attn.head_dim == 8  # heads removed, each head kept whole
    assert attn.q.out_features == attn.k.out_features == attn.v.out_features == 16
    assert model(**example).shape == (1, 2)


@pytest.mark.parametrize("recalibrate", [True, False])
def test_channel_pruning_re_estimates_batchnorm_statistics(recalibrate):
    """With data, every BatchNorm's running statistics become those of its inputs over the data
    through the pruned model (no weight changes); with recalibrate_bn off they stay as sliced."""
    loaded, data = _loaded("prunable_cnn"), _data(_loaded("prunable_cnn"), 16)
    cfg = prune.parse("channels:0.5", recalibrate_bn=recalibrate)
    result = prune.run(loaded.model, cfg, _example(loaded), data)
    model, norms = result.model, [m for m in result.model.modules()
                                  if isinstance(m, torch.nn.BatchNorm2d)]
    weights = [p.clone() for p in model.parameters()]
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda m, i: inputs.update({m: i[0]})) for m in norms]
    x = torch.from_numpy(np.concatenate([s["x"] for s, _ in data.labelled()]))
    with torch.no_grad():
        model(x=x)
    for h in hooks:
        h.remove()
    # the worst BatchNorm: within what the unbiased running variance upstream shifts it by
    off = max(float((m.running_mean - inputs[m].mean(dim=(0, 2, 3))).abs().max()) for m in norms)
    assert off < 1e-3 if recalibrate else off > 1e-2
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert ("bn_recalibrated" in result.figures) == recalibrate
    if recalibrate:
        assert result.figures["bn_recalibrated"] == {"layers": len(norms), "samples": 16}
