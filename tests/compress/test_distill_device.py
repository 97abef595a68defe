"""distill's train device and mixed precision: --train-device, --amp, the refusals (one line,
exit 2 through the CLI), and the recipe keys. CPU only here: CUDA paths are refused cleanly."""

import numpy as np
import pytest
import torch
from test_distill import _Data, _student, _teacher_and_data
from tiny_models import TINY

from edgepress import cli, options
from edgepress.compress import distill, recipe
from edgepress.compress.distill import device
from edgepress.errors import UserError


@pytest.fixture
def no_cuda(monkeypatch):
    """A host without CUDA, even where the test machine has one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_selection(no_cuda):
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("auto") == torch.device("cpu")  # auto: CUDA only when there is one
    for bad, message in (("cuda", "torch sees no CUDA device"),
                         ("cuda:1", "torch sees no CUDA device"),
                         ("tpu", "train device 'tpu' is not one of: auto, cpu, cuda, cuda:N"),
                         ("cuda:x", "is not one of")):
        with pytest.raises(UserError, match=message):
            device.resolve(bad)


def test_cuda_selection_on_a_two_gpu_host(monkeypatch):
    """The choice alone (no tensor touches a GPU): auto and cuda take cuda:LOCAL_RANK, one GPU
    per torchrun rank; cuda:N names one GPU, which two ranks cannot share."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert device.resolve("auto") == device.resolve("cuda") == torch.device("cuda", 0)
    assert device.resolve("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match=r"this host has 2 CUDA device\(s\), cuda:0..cuda:1"):
        device.resolve("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device.resolve("auto") == torch.device("cuda", 1)
    with pytest.raises(UserError, match="each rank takes its own GPU"):
        device.resolve("cuda:0")
    device.check_amp("fp16", device.resolve("cuda"))  # fp16 is for CUDA: accepted


@pytest.mark.parametrize("flags, message", [
    (["--train-device", "cuda"], "train device 'cuda': torch sees no CUDA device"),
    (["--train-device", "cuda:0"], "train device 'cuda:0': torch sees no CUDA device"),
    (["--amp", "fp16"], "amp 'fp16' needs a CUDA train device"),
    (["--amp", "fp8"], "amp 'fp8' is not one of: bf16, fp16"),
    (["--distill-loss", "hinge"], "distill loss 'hinge' is not one of: auto, sigmoid, softmax"),
])
def test_refusals_one_line_exit_2(no_cuda, flags, message, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["distill", f"{TINY}:cnn", "--input-shape", "1,3,16,16", "--train", "random",
            *flags, "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".o*"))


def test_bf16_autocast_on_cpu_trains_in_bf16_and_returns_fp32():
    teacher, x, y = _teacher_and_data(n=64)
    student = _student()
    seen = set()
    student.inner[0].register_forward_hook(lambda m, i, o: seen.add(o.dtype) if m.training
                                           else None)
    cfg = distill.DistillConfig(epochs=2, batch_size=16, lr=1e-2, train_device="cpu", amp="bf16")
    result = distill.fit(student, teacher, cfg, _Data(x, y), progress=False)
    assert seen == {torch.bfloat16}  # the forward passes ran under CPU autocast
    on = dict(result.figures()["trained_on"])
    assert on.pop("samples_per_s") > 0
    assert on == {"device": "cpu", "processes": 1, "amp": "bf16", "loss": "softmax",
                  "teacher_outputs": "cached"}
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu"
               for p in student.parameters())


def test_fp16_on_cpu_is_refused():
    teacher, x, y = _teacher_and_data(n=8)
    cfg = distill.DistillConfig(train_device="cpu", amp="fp16")
    with pytest.raises(UserError, match="amp 'fp16' needs a CUDA train device"):
        distill.fit(_student(), teacher, cfg, _Data(x, y), progress=False)


def test_recipe_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[distill]\nmethod = "logits"\ntrain_device = "cpu"\namp = "bf16"\n'
                    'loss = "sigmoid"\nmetric = "multilabel"\n')
    d = options.Recipe.build(recipe.load(path)).distill
    assert (d.train_device, d.amp, d.loss, d.metric) == ("cpu", "bf16", "sigmoid", "multilabel")
    flat = options.Recipe.build(recipe.load(path)).flat()
    assert flat["train_device"] == "cpu" and flat["amp"] == "bf16"
    assert flat["distill_loss"] == "sigmoid" and flat["distill_metric"] == "multilabel"
