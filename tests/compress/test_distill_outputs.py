"""distill for the outputs real models have: sigmoid / multi-label (BCE against the teacher's
probabilities), models that return probabilities, the task metric plug-in, and the teacher's
outputs cached when it is frozen."""

import copy
import math
import sys

import numpy as np
import pytest
import torch
from test_distill import _Data, _Named, _student, _teacher_and_data

from edgepress.compress import distill
from edgepress.compress.distill import cache, losses
from edgepress.errors import UserError


def test_sigmoid_kd_loss_matches_a_hand_computation():
    s, t, temp = [[2.0, -1.0], [0.0, 3.0]], [[1.0, 1.0], [-2.0, 4.0]], 2.0
    terms = []
    for srow, trow in zip(s, t):
        for a, b in zip(srow, trow):
            p, q = 1 / (1 + math.exp(-b / temp)), 1 / (1 + math.exp(-a / temp))
            terms.append(-(p * math.log(q) + (1 - p) * math.log(1 - q)))
    want = temp * temp * sum(terms) / len(terms)
    got = distill.sigmoid_kd_loss(torch.tensor(s), torch.tensor(t), temp)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # a model ending in a sigmoid: the same loss, read back from its probabilities
    kind = losses.detect(torch.sigmoid(torch.tensor(t)), "auto")
    assert kind == losses.Output("sigmoid", probabilities=True)
    got = losses.kd(kind, torch.sigmoid(torch.tensor(s)), torch.sigmoid(torch.tensor(t)), temp)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_output_kind_detection():
    z = torch.randn(16, 5) * 3
    assert losses.detect(z, "auto") == losses.Output("softmax", False)
    assert losses.detect(z, "sigmoid") == losses.Output("sigmoid", False)
    softmax = losses.detect(z.softmax(-1), "auto")
    assert softmax == losses.Output("softmax", True)
    # softmax probabilities: log p are the logits up to a shift, which softmax ignores
    s = torch.randn(16, 5)
    assert losses.kd(softmax, s.softmax(-1), z.softmax(-1), 4.0).item() == pytest.approx(
        distill.kd_loss(s, z, 4.0).item(), rel=1e-4)


class _Bins(torch.nn.Module):
    """A crepe-like head: independent sigmoid outputs (several may be on at once)."""

    def __init__(self, width, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.inner = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),
                                         torch.nn.Linear(width, 6))

    def forward(self, x):
        return torch.sigmoid(self.inner(x) * 3)


class _MultiHot(_Data):
    def labelled(self):
        for i in range(len(self.x)):
            yield {"x": self.x[i:i + 1]}, (None if self.y is None else self.y[i])


def _bins_run(loss, labelled, metric="auto"):
    teacher = _Bins(32, 0).eval()
    x, vx = (np.random.default_rng(seed).standard_normal((256, 8)).astype(np.float32)
             for seed in (0, 1))
    with torch.no_grad():
        y = (teacher(torch.from_numpy(x)) > 0.5).float().numpy()
    student = _Bins(16, 1)
    before = distill.evaluate(student, teacher, {"x": torch.from_numpy(vx)}, None)
    cfg = distill.DistillConfig(epochs=10, batch_size=32, lr=2e-2, loss=loss, metric=metric)
    result = distill.fit(student, teacher, cfg, _MultiHot(x, y if labelled else None),
                         _MultiHot(vx), progress=False)
    return before, result


@pytest.mark.parametrize("labelled", [False, True])
def test_multilabel_teacher_is_distilled_with_bce(labelled):
    before, result = _bins_run("auto", labelled)
    assert result.metric == "multilabel"  # auto: a sigmoid head gets the multi-label metric
    assert result.trained_on["loss"] == "sigmoid"
    assert result.metric_name == "multilabel vs teacher"  # the held-out set has no labels
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert result.best_metric > max(0.85, before + 0.15), (before, result.history)
    if not labelled:  # the softmax losses, forced onto these outputs, teach less
        _, softmax = _bins_run("softmax", labelled, metric="multilabel")
        assert result.best_metric > softmax.best_metric + 0.05, softmax.history


def test_a_users_metric_drives_early_stopping(tmp_path, monkeypatch):
    (tmp_path / "my_metric.py").write_text(
        "calls = []\n"
        "def closeness(out, ref):\n"
        "    calls.append(tuple(out.shape))\n"
        "    return -float((out.softmax(-1) - ref.softmax(-1)).abs().mean())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    teacher, x, _ = _teacher_and_data(n=64)
    cfg = distill.DistillConfig(epochs=4, batch_size=16, lr=1e-2, metric="my_metric:closeness")
    result = distill.fit(_student(), teacher, cfg, _Data(x), progress=False)
    calls = sys.modules["my_metric"].calls
    assert calls == [(64, 4)] * 4  # once per epoch, on the validation (here: train) outputs
    assert result.metric_name == "my_metric:closeness vs teacher"
    assert result.best_metric == max(h[result.metric_name] for h in result.history)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_x:fn", "cannot import 'no_such_module_x'"),
    ("math:no_such_fn", "math has no callable 'no_such_fn'"),
    ("top5", "distill metric 'top5' is not one of: auto, top1, multilabel, module:function"),
])
def test_bad_metric(spec, message):
    teacher, x, y = _teacher_and_data(n=8)
    with pytest.raises(UserError, match=message):
        distill.fit(_student(), teacher, distill.DistillConfig(epochs=1, metric=spec),
                    _Data(x, y), progress=False)


class _Counting(_Named):
    """Counts the samples the teacher is run on."""

    seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return super().forward(x)


@pytest.mark.parametrize("method", sorted(distill.METHODS))
def test_frozen_teacher_runs_once_per_sample(method):
    cache.clear()  # an earlier test's run of the same teacher on the same data would be reused
    teacher, x, y = _teacher_and_data(n=64)
    counting = _Counting(teacher.inner)
    features = ("inner.0=inner.0",) if method == "features" else ()
    cfg = distill.DistillConfig(method=method, epochs=3, batch_size=16, features=features)
    distill.fit(_student(), counting, cfg, _Data(x), progress=False)
    if method == "logits":
        assert counting.seen == 64  # once, cached for every epoch and the validation metric
    else:  # feature KD needs the teacher's layers each step: one sizing pass + every epoch
        assert counting.seen == 64 + 1 + 3 * 64


def test_a_second_run_reuses_the_teachers_outputs_and_training_speed_is_recorded():
    cache.clear()
    teacher, x, _ = _teacher_and_data(n=64)
    cfg = distill.DistillConfig(epochs=2, batch_size=16)
    first = _Counting(teacher.inner)
    r1 = distill.fit(_student(), first, cfg, _Data(x), progress=False)
    again = _Counting(copy.deepcopy(teacher.inner))  # loaded afresh: same class, same weights
    r2 = distill.fit(_student(), again, cfg, _Data(x), progress=False)
    assert (first.seen, again.seen) == (64, 0)
    assert r2.history == r1.history  # the reused outputs are the ones it would have computed
    with torch.no_grad():
        next(again.parameters()).add_(0.5)  # other weights: other outputs, run again
    distill.fit(_student(), again, cfg, _Data(x), progress=False)
    assert again.seen == 64
    distill.fit(_student(), again, cfg, _Data(x[:32]), progress=False)  # other data too
    assert again.seen == 96
    assert r1.trained_on["samples_per_s"] > 0
    figures = {**r1.figures(), "teacher": "t"}
    assert f"{r1.trained_on['samples_per_s']:g} samples/s on cpu" in distill.describe(figures)[0]
