"""auto:latency=F: the per-layer latency table measured on this host for a tiny model (and
cached), the ratio choice against an injected table, the SSH path through a stand-in device, the
recipe keys (bad targets: test_prune.BAD); and the layer types pruning leaves alone."""

import json
import shutil
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models
from tiny_models import factory
from edgepress import options
from edgepress.compress import calibrate, load, pipeline, prune, recipe
from edgepress.compress.prune import auto, choice, latency, ondevice
from edgepress.errors import UserError


def _loaded(name="prunable_cnn"):
    return load.open_source(factory(name), None, tiny_models.MODELS[name][1])


def _example():
    return {"x": torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))}


def _scan(model, ratios=(0.5,)):
    loaded = _loaded()
    data = calibrate.open_data("random", loaded.inputs, 8, seed=3)
    return auto.scan(model, _example(), data, prune.PruneConfig("channels"), ratios=ratios)


def test_latency_table_measured_on_the_host_and_cached(tmp_path):
    model = _loaded().model
    scan = _scan(model)
    where = latency.Where(cache=str(tmp_path))
    table = latency.table(model, _example(), scan, where)
    per_layer = table.per_layer()
    assert set(per_layer) == {"res.0", "res.3", "inv.0", "inv.3", "inv.6", "fc"}
    assert per_layer["res.0"].keys() == {"32x16", "16x16"}  # out 32 -> 16 (its own trial)
    assert per_layer["res.3"].keys() == {"16x32", "16x16"}  # its input follows res.0
    assert all(ms > 0 for cells in per_layer.values() for ms in cells.values())
    assert table.whole_ms > 0 and table.record["measured_now"] == len(table.cells_ms)
    stored = json.loads(Path(table.record["file"]).read_text())
    assert stored["where"]["fmt"] == "onnx" and stored["where"]["precision"] == "fp32"

    def no_timing(models, **timing):
        raise AssertionError(f"timed again: {sorted(models)}")

    again = latency.table(model, _example(), scan, where, timer=no_timing)  # from the cache
    assert again.record["measured_now"] == 0 and again.cells_ms == table.cells_ms
    other = latency.Where(precision="int8", cache=str(tmp_path))  # another key: another file
    assert latency._cache_file(model, _example(), other) != Path(table.record["file"])


def _trial(ratio, drop, widths):
    return {"ratio": ratio, "drop": drop, "snr_db": 30.0, "macs_saved": 0.1, "widths": widths}


def _injected():
    """Two independent layers: `big` has many MACs but its cells barely get faster; `fast`
    gets much faster for the same drop. A latency aim must take `fast`, a MACs aim `big`."""
    base = {"big": latency.Layer("Linear", (1, 64), 64, 64),
            "fast": latency.Layer("Linear", (1, 32), 64, 32)}
    scan = {"ratios": [0.5], "layers": [
        {"name": "big", "trials": [dict(_trial(0.5, 1.0, {"big": [32, 64]}), macs_saved=0.4)]},
        {"name": "fast", "trials": [dict(_trial(0.5, 1.0, {"fast": [32, 32]}), macs_saved=0.1)]}]}
    ms = {base["big"].signature(): 2.0, base["big"].at(32, 64).signature(): 1.9,
          base["fast"].signature(): 6.0, base["fast"].at(32, 32).signature(): 2.0}
    return base, scan, latency.Table(base, ms, whole_ms=10.0, record={"cells": {}})


def test_ratio_choice_against_an_injected_table():
    base, scan, table = _injected()
    measured = []

    def check(pruned):  # the "measurement": the table's own prediction, recorded
        measured.append(pruned)
        return {"ratio": 0.6, "unpruned_ms": 10.0, "pruned_ms": 6.0}

    model = torch.nn.Linear(1, 1)
    ratios, rounds = choice.choose_latency(model, {}, scan, None, 0.6, table, check,
                                         pruned_copy=lambda *a: "pruned")
    assert ratios == {"fast": 0.5}  # 40% saved for the same drop; `big` saves 1%
    assert rounds == [{"goal": 0.6, "predicted": 0.6, "ratio": 0.6, "unpruned_ms": 10.0,
                       "pruned_ms": 6.0, "chosen": True}]
    assert choice._greedy(scan["layers"], 0.4, choice._macs_saved) == {"big": 0.5}  # MACs: the other


def test_greedy_passes_over_ratios_that_round_to_the_same_widths():
    """16 channels rounded to multiples of 8: 25% and 50% both keep 8 and save the same; the
    greedy must go on to 75% rather than stop at 25%."""
    a = [dict(_trial(r, r, {"a": [w, 4]}), macs_saved=s)
         for r, w, s in ((0.25, 8, 0.3), (0.5, 8, 0.3), (0.75, 4, 0.6))]
    assert choice._greedy([{"name": "a", "trials": a}], 0.5, choice._macs_saved) == {"a": 0.75}


def test_latency_miss_tightens_the_goal_then_says_what_it_reached():
    _, scan, table = _injected()
    misses = iter([0.75, 0.58])  # measured ratios: the first plan misses, the tighter one meets

    def check(pruned):
        return {"ratio": next(misses), "unpruned_ms": 10.0, "pruned_ms": 0.0}

    ratios, rounds = choice.choose_latency(None, {}, scan, None, 0.6, table, check,
                                         pruned_copy=lambda *a: None)
    assert [r["goal"] for r in rounds] == [0.6, 0.45] and ratios == {"big": 0.5, "fast": 0.5}
    assert [r.get("chosen", False) for r in rounds] == [False, True]
    with pytest.raises(UserError, match=r"auto:latency=0.1: .* reach only 0.59 x the measured"):
        choice.choose_latency(None, {}, scan, None, 0.1, table,
                            lambda p: {"ratio": 0.59, "unpruned_ms": 1, "pruned_ms": 1},
                            pruned_copy=lambda *a: None)


def _flat_table():
    """`a` at 25/50/75% and `b` at 50%, whose table predicts 5% of the latency saved per step of
    `a` and 3% for `b`, where the measurement (below) saves four times that: a flat table, as
    crepe tiny's was. `b` costs less accuracy per saving, so the greedy takes it first."""
    base = {"a": latency.Layer("Linear", (1, 64), 64, 64),  # cells are keyed by their shapes
            "b": latency.Layer("Linear", (1, 32), 64, 32)}
    trials = {"a": [_trial(r, 1.0 * (i + 1), {"a": [int(64 * (1 - r)), 64]})
                    for i, r in enumerate((0.25, 0.5, 0.75))],
              "b": [_trial(0.5, 0.5, {"b": [32, 32]})]}
    scan = {"ratios": [0.25, 0.5, 0.75], "layers": [{"name": n, "trials": t}
                                                    for n, t in trials.items()]}
    ms = {base["a"].signature(): 5.0, base["b"].signature(): 3.0,
          **{base["a"].at(out, 64).signature(): 5.0 - 0.5 * (i + 1)
             for i, out in enumerate((48, 32, 16))}, base["b"].at(32, 32).signature(): 2.7}
    return scan, latency.Table(base, ms, whole_ms=10.0, record={"cells": {}})


def test_latency_overshoot_is_interpolated_between_plans_that_meet_and_miss():
    scan, table = _flat_table()
    measured = []

    def check(plan):  # four times the table's saving, each plan measured once
        assert plan not in measured, f"measured twice: {plan}"
        measured.append(plan)
        return {"ratio": round(1 - 4 * table.saved(choice._trials_of(scan["layers"], plan)), 4),
                "unpruned_ms": 10.0, "pruned_ms": 0.0}

    ratios, rounds = choice.choose_latency(None, {}, scan, None, 0.5, table, check,
                                         pruned_copy=lambda model, ex, cfg, plan: plan)
    # 0.5: everything, 0.28; loosened by the miss (0.72: the same plan, not measured again;
    # 0.94: too slow, 0.68); then between the two: 0.841 (0.28 again), 0.895 (0.48: kept)
    assert [r["ratio"] for r in rounds] == [0.28, 0.68, 0.48]
    assert [r["goal"] for r in rounds] == pytest.approx([0.5, 0.94, 0.8955], abs=1e-3)
    assert ratios == {"a": 0.5, "b": 0.5} and rounds[-1].get("chosen")
    assert measured == [{"a": 0.75, "b": 0.5}, {"a": 0.25, "b": 0.5}, {"a": 0.5, "b": 0.5}]


def test_a_goal_past_one_goes_halfway_to_it():
    """A table that predicts far less saving than is measured: the miss would move the goal past
    1; it goes halfway to 1 instead, to the lighter plan that meets the target."""
    scan, table = _flat_table()
    measured = {(("a", 0.75), ("b", 0.5)): 0.1, (("a", 0.5), ("b", 0.5)): 0.2,
                (("a", 0.25), ("b", 0.5)): 0.48, (("b", 0.5),): 0.7}

    def check(plan):
        return {"ratio": measured[tuple(sorted(plan.items()))], "unpruned_ms": 1.0,
                "pruned_ms": 0.0}

    ratios, rounds = choice.choose_latency(None, {}, scan, None, 0.5, table, check,
                                         pruned_copy=lambda model, ex, cfg, plan: plan)
    assert [r["goal"] for r in rounds] == pytest.approx([0.5, 0.9, 0.95])
    assert ratios == {"a": 0.25, "b": 0.5} and rounds[-1]["ratio"] == 0.48


class _FakeTimer:
    """Deterministic stand-in for the engine: ms proportional to MACs."""

    def __call__(self, models, **timing):
        return {key: prune.macs(m, ex) / 1e6 + 0.01 for key, (m, ex) in models.items()}

    def close(self):
        pass


def test_through_the_pipeline_the_manifest_records_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "timer_for", lambda where: _FakeTimer())
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 3, 16, 16), np.float32))
    req = pipeline.Request(source=factory("prunable_cnn"), out=tmp_path / "o", formats=("onnx",),
                           input_shapes=("1,3,16,16",), prune="auto:latency=0.8",
                           calib=str(calib), golden_samples=2, latency_cache=str(tmp_path / "c"))
    [result] = pipeline.run(req)
    assert result.verdict.passed
    manifest = json.loads((result.bundle / "manifest.json").read_text())
    auto_fig = manifest["stages"]["prune"]["auto"]
    lat = auto_fig["latency"]
    assert manifest["recipe"]["prune"] == "auto:latency=0.8" and auto_fig["latency_target"] == 0.8
    assert lat["fmt"] == "onnx" and lat["precision"] == "fp32" and lat["on"] == "host"
    assert choice.chosen_round(lat)["ratio"] <= 0.81 and "res.0" in lat["table_ms"]
    assert Path(lat["table_file"]).parent == tmp_path / "c"


class _LocalDevice:
    """A stand-in SSH connection: commands run here, in a fake home with a deployed venv whose
    python is this one (so the device's half is the real edgepress.runtime.layer_times)."""

    def __init__(self, home: Path):
        self.home, self.target, self.commands = home, "pi@stand-in", []

    def run(self, command):
        self.commands.append(command)
        proc = subprocess.run(["sh", "-c", command], cwd=self.home, capture_output=True,
                              text=True)
        return proc.returncode, proc.stdout, proc.stderr

    def put(self, local, remote):
        shutil.copy(local, self.home / remote)

    def close(self):
        pass


def test_latency_on_a_device_over_ssh(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "edgepress/current/venv/bin").mkdir(parents=True)
    python = home / ondevice.PYTHON
    repo = Path(__file__).resolve().parents[2]
    python.write_text(f"#!/bin/sh\nPYTHONPATH={repo} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    dev = _LocalDevice(home)
    monkeypatch.setattr(ondevice, "CONNECT", lambda target: dev)
    model = _loaded().model
    where = latency.Where(on="ssh://pi@stand-in", cache=str(tmp_path / "c"))
    table = latency.table(model, _example(), _scan(model), where)
    assert table.whole_ms > 0 and all(ms > 0 for ms in table.cells_ms.values())
    assert not (home / ondevice.FOLDER).exists() or not any((home / ondevice.FOLDER).iterdir())
    python.unlink()  # no deploy there: one clear line
    with pytest.raises(UserError, match="no edgepress runtime there.*edgepress deploy"):
        latency.table(model, _example(), _scan(model, (0.25,)), where)


def test_recipe_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[prune]\nmethod = "auto:latency=0.5"\nlatency_on = "ssh://pi@rpi"\n'
                    'latency_threads = 2\nlatency_cache = "tables"\n')
    r = options.Recipe.build(recipe.load(path))
    assert r.prune.method == "auto:latency=0.5" and r.prune.latency_on == "ssh://pi@rpi"
    assert r.prune.latency_threads == 2 and r.prune.latency_cache == str(tmp_path / "tables")
    cfg = prune.parse(r.prune.method, latency_on=r.prune.latency_on)
    assert (cfg.aim, cfg.ratio, cfg.spec()) == ("latency", 0.5, "auto:latency=0.5")


class _WithCell(torch.nn.Module):
    """Convolutions, a GRUCell (which torch-pruning cannot prune), a classifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        conv, relu = torch.nn.Conv2d, torch.nn.ReLU
        self.features = torch.nn.Sequential(conv(3, 16, 3, padding=1), relu(),
                                            conv(16, 32, 3, padding=1), relu(), conv(32, 16, 1))
        self.cell, self.fc = torch.nn.GRUCell(16, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.cell(self.features(x).mean(dim=(2, 3))))


def test_pruning_says_which_layers_it_leaves_alone(capsys):
    model, example = _WithCell().eval(), {"x": torch.randn(1, 3, 8, 8)}
    cfg = prune.parse("channels:0.5", skip=("features.4",))  # it feeds the cell: width stays
    fig = prune.run(model, cfg, example).figures
    assert fig["skipped"]["cell"] == "GRUCell: torch-pruning cannot prune it; its widths stay"
    assert model.features[2].out_channels == 16 and model.cell.input_size == 16
    assert "left alone: cell (GRUCell" in "\n".join(prune.describe(fig, Path("p.pt2")))


FIXED_RESHAPE = """
import torch


class FixedReshape(torch.nn.Module):  # pruning `last` breaks the reshape that hard-codes its width
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv1d(1, 16, 3, padding=1)
        self.last = torch.nn.Conv1d(16, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 8, 4)

    def forward(self, x):  # (N, 1, 8) -> (N, 4)
        return self.fc(self.last(torch.relu(self.first(x))).reshape(-1, 16 * 8))


def model():
    return FixedReshape()
"""


def test_a_plan_that_breaks_the_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "timer_for", lambda where: _FakeTimer())
    (tmp_path / "fixed.py").write_text(FIXED_RESHAPE)
    loaded = load.open_source(f"{tmp_path / 'fixed.py'}:model", None, ("1,1,8",))
    data = calibrate.open_data("random", loaded.inputs, 4, seed=0)
    # `first` skipped too: with it prunable, the greedy's pick between the two hung on the
    # unseeded weights' sensitivities, and a plan pruning only `first` runs (then the aim is
    # out of reach instead), so the test failed about one run in two
    cfg = prune.parse("auto:latency=0.5", skip=("fc", "first"), skip_defaults=False, round_to=1,
                      latency_cache=str(tmp_path / "tables"))
    with pytest.raises(UserError, match="the pruned model no longer runs"):
        prune.run(loaded.model, cfg, load.example(loaded), data)


class _GlueTimer:
    """An engine where the whole model takes three times the sum of its layers timed alone (the
    time between layers shrinking with them), each layer's time proportional to its MACs: the
    uncalibrated table predicts a third of what a plan saves."""

    def __call__(self, models, **timing):
        return {key: prune.macs(m, ex) / 1e6 * (3 if key == "whole" else 1)
                for key, (m, ex) in models.items()}


def test_the_table_is_scaled_to_the_whole_model_so_the_plan_lands_near_the_target(tmp_path):
    model, example = _loaded().model, _example()
    cfg = prune.PruneConfig("channels", round_to=1)  # widths fine enough for a plan near 0.5
    data = calibrate.open_data("random", _loaded().inputs, 8, seed=3)
    scan = auto.scan(model, example, data, cfg, ratios=(0.125, 0.25, 0.375, 0.5, 0.625, 0.75))
    cfg = replace(cfg, skip=tuple(scan["skipped"]), skip_defaults=False)  # as auto.apply does
    table = latency.table(model, example, scan, latency.Where(cache=str(tmp_path)), _GlueTimer())
    assert table.scale == pytest.approx(3.0)
    whole = prune.macs(model, example)

    def check(pruned):  # measured: the whole model's time, proportional to its MACs
        return {"ratio": round(prune.macs(pruned, example) / whole, 4)}

    ratios, rounds = choice.choose_latency(model, example, scan, cfg, 0.5, table, check)
    [chosen] = rounds  # the prediction is the measurement: one round
    assert chosen["predicted"] == pytest.approx(chosen["ratio"], abs=0.01)
    assert 0.45 <= chosen["ratio"] <= 0.5 and chosen["chosen"]
    unscaled = latency.Table(table.base, table.cells_ms, table.whole_ms, table.record)
    _, rounds = choice.choose_latency(model, example, scan, cfg, 0.5, unscaled, check)
    assert rounds[0]["predicted"] > 0.7 and rounds[0]["ratio"] < 0.3  # what it overshot to
