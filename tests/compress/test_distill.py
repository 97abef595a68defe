"""distill: the KD loss, training that recovers a pruned student, resume, DDP."""

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tiny_models import ROOT

from edgepress.compress import distill
from edgepress.errors import UserError


class _Data:
    """The Dataset interface distill reads: labelled() yields (sample with batch dim 1, label)."""

    def __init__(self, x, y=None):
        self.x, self.y = x, y

    def labelled(self):
        for i in range(len(self.x)):
            yield {"x": self.x[i:i + 1]}, (None if self.y is None else int(self.y[i]))


def _teacher_and_data(n=256, seed=0):
    torch.manual_seed(seed)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 4)).eval()
    x = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    with torch.no_grad():
        y = teacher(torch.from_numpy(x)).argmax(-1).numpy()
    return _Named(teacher), x, y


class _Named(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _student(seed=1):
    torch.manual_seed(seed)
    return _Named(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                      torch.nn.Linear(16, 4)))


def test_kd_loss_is_zero_for_identical_logits():
    z = torch.randn(16, 10)
    for t in (1.0, 4.0, 20.0):
        assert distill.kd_loss(z, z.clone(), t).abs().item() < 1e-6
    assert distill.kd_loss(z, z + 1.0, 2.0).abs().item() < 1e-6  # softmax ignores a shift


def test_kd_loss_temperature_scaling_matches_hintons_limit():
    """T^2 * KL -> sum((d - mean d)^2) / (2C) as T grows (d = student - teacher logits): the
    T^2 factor keeps the loss (and its gradients) the same size whatever the temperature."""
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    d = s - t
    limit = ((d - d.mean(-1, keepdim=True)) ** 2).sum(-1).mean() / (2 * 10)
    for temp, tol in ((20.0, 0.05), (100.0, 0.005)):
        got = distill.kd_loss(s, t, temp)
        assert abs(got.item() - limit.item()) / limit.item() < tol


@pytest.mark.parametrize("method", sorted(distill.METHODS))
@pytest.mark.parametrize("labelled", [True, False])
def test_distillation_teaches_the_student(method, labelled):
    teacher, x, y = _teacher_and_data()
    student = _student()
    before = distill.evaluate(student, teacher, {"x": torch.from_numpy(x)}, None)
    features = ("inner.0=inner.0",) if method == "features" else ()
    cfg = distill.DistillConfig(method=method, epochs=8, batch_size=32, lr=2e-2,
                                features=features)
    result = distill.fit(student, teacher, cfg, _Data(x, y if labelled else None),
                           progress=False)
    assert result.metric_name == ("accuracy" if labelled else "agreement with teacher")
    assert result.best_metric > max(0.85, before + 0.2), (before, result.history)
    assert result.model is student and not student.training
    assert len(result.history) == 8
    # the best epoch's weights are the ones kept
    assert distill.evaluate(student, teacher, {"x": torch.from_numpy(x)},
                            torch.from_numpy(y) if labelled else None) == result.best_metric


def test_early_stopping_keeps_the_best():
    teacher, x, y = _teacher_and_data(n=128)
    cfg = distill.DistillConfig(epochs=50, batch_size=32, lr=5e-2, patience=2)
    result = distill.fit(_student(), teacher, cfg, _Data(x, y), progress=False)
    assert len(result.history) < 50
    assert len(result.history) - 1 - result.best_epoch == 2
    assert result.best_metric == max(h["accuracy"] for h in result.history)


def test_resume_continues_where_the_run_stopped(tmp_path):
    """Epochs 0-2, then a 'killed' run resumed for epochs 3-5, equals six uninterrupted epochs."""
    teacher, x, y = _teacher_and_data(n=128)
    cfg = distill.DistillConfig(epochs=6, batch_size=32, lr=1e-2, schedule="constant")
    straight = distill.fit(_student(), teacher, cfg, _Data(x, y), progress=False)

    ckpt = tmp_path / "ckpt"
    first = distill.DistillConfig(epochs=3, batch_size=32, lr=1e-2, schedule="constant",
                                  checkpoint_dir=str(ckpt))
    distill.fit(_student(), teacher, first, _Data(x, y), progress=False)
    assert (ckpt / distill.CHECKPOINT).is_file()
    resumed_cfg = distill.DistillConfig(epochs=6, batch_size=32, lr=1e-2, schedule="constant",
                                        checkpoint_dir=str(ckpt))
    resumed = distill.fit(_student(), teacher, resumed_cfg, _Data(x, y), progress=False)
    assert resumed.resumed_from == 3
    assert [h["epoch"] for h in resumed.history] == list(range(6))
    np.testing.assert_allclose([h["loss"] for h in resumed.history],
                               [h["loss"] for h in straight.history], rtol=1e-4)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    teacher, x, y = _teacher_and_data(n=64)
    cfg = distill.DistillConfig(epochs=1, checkpoint_dir=str(tmp_path))
    distill.fit(_student(), teacher, cfg, _Data(x, y), progress=False)
    other = _Named(torch.nn.Sequential(torch.nn.Linear(8, 4)))
    with pytest.raises(UserError, match="does not fit this run"):
        distill.fit(other, teacher, cfg, _Data(x, y), progress=False)


@pytest.mark.parametrize("change, message", [
    ({"method": "attention"}, "distill method 'attention' is not one of: features, logits"),
    ({"optimizer": "lion"}, "distill optimizer 'lion'"),
    ({"temperature": 0.0}, "distill temperature 0.0 is out of range"),
    ({"method": "features"}, "needs layer pairs"),
])
def test_bad_config(change, message):
    teacher, x, y = _teacher_and_data(n=8)
    with pytest.raises(UserError, match=message):
        distill.fit(_student(), teacher, distill.DistillConfig(**change), _Data(x, y))


def test_unknown_feature_layer():
    teacher, x, y = _teacher_and_data(n=8)
    cfg = distill.DistillConfig(method="features", features=("inner.9=inner.0",))
    with pytest.raises(UserError, match="'inner.9' is not in the student"):
        distill.fit(_student(), teacher, cfg, _Data(x, y))


_DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    sys.path[:0] = [{tests!r}, {tests!r} + "/compress"]
    from test_distill import _Data, _student, _teacher_and_data
    from edgepress.compress import distill
    torch.set_num_threads(1)
    teacher, x, y = _teacher_and_data()
    student, seen = _student(), []
    student.register_forward_pre_hook(
        lambda m, args, kw: seen.extend(kw["x"].sum(-1).tolist()) if m.training else None,
        with_kwargs=True)
    cfg = distill.DistillConfig(epochs=8, batch_size=32, lr=1e-2, checkpoint_dir={ckpt!r},
                                train_device="auto")
    result = distill.fit(student, teacher, cfg, _Data(x, y), progress=False)
    rank = int(os.environ.get("RANK", 0))
    with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"metric": result.best_metric, "backend": torch.distributed.get_backend(),
                    "weight": result.model.inner[0].weight.sum().item(),
                    "seen": seen[:len(x) // 2]}}, f)  # the first epoch's samples
""")


def test_ddp_two_gloo_processes_match_one(tmp_path):
    """torchrun with 2 CPU processes: both ranks end with identical weights (DDP keeps them in
    sync), quality matches a single process, and only rank 0 writes the checkpoint."""
    import json

    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(ROOT / "tests"),
                                         ckpt=str(tmp_path / "ckpt"), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(torchrun, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["backend"] == r1["backend"] == "gloo"  # a CPU train device: gloo, not NCCL
    # each rank trains on its own half of the samples (a DistributedSampler-style split)
    teacher, x, y = _teacher_and_data()
    every = sorted(x.sum(-1).tolist())
    np.testing.assert_allclose(sorted(r0["seen"] + r1["seen"]), every, rtol=1e-5)
    assert len(r0["seen"]) == len(r1["seen"]) == len(x) // 2
    assert r0["weight"] == r1["weight"] and r0["metric"] == r1["metric"]
    single = distill.fit(_student(), teacher,
                           distill.DistillConfig(epochs=8, batch_size=32, lr=1e-2),
                           _Data(x, y), progress=False)
    assert abs(r0["metric"] - single.best_metric) <= 0.03
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [distill.CHECKPOINT]
