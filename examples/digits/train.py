"""Train the digits CNN on scikit-learn's bundled load_digits (1,797 real 8x8 images).

Writes, into --out (default examples/digits/data):
  weights.safetensors  the trained weights (load with --weights)
  calib.npz            600 training images, array `image` (N, 1, 8, 8) float32 (no labels)
  train.npz, val.npz   the training images with `labels`, split 1147 / 200 (for distillation:
                       val is for early stopping, so the test set stays unseen)
  eval.npz             held-out test images `image` and their `labels` (450)
and prints the test accuracy. Deterministic for a given --seed; about 10 s on 2 cores.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from model import DigitsCNN  # noqa: E402


def load_split(seed: int):
    digits = load_digits()
    x = (digits.images / 16.0 - 0.5).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [-0.5, 0.5]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def train(x, y, epochs: int, seed: int) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * 22)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
    return model.eval()


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    x_train, x_test, y_train, y_test = load_split(args.seed)
    model = train(x_train, y_train, args.epochs, args.seed)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.out / "weights.safetensors"))
    np.savez(args.out / "calib.npz", image=x_train[:600])
    np.savez(args.out / "train.npz", image=x_train[:-200], labels=y_train[:-200])
    np.savez(args.out / "val.npz", image=x_train[-200:], labels=y_train[-200:])
    np.savez(args.out / "eval.npz", image=x_test, labels=y_test)
    print(f"digits CNN: test accuracy {acc:.4f} on {len(y_test)} held-out images")
    return acc


if __name__ == "__main__":
    main()
