"""The demo's real speech, split so that nothing the model is trained, calibrated or stopped on
is scored: CMU ARCTIC a0007 (4 s, pysptk's sdist) and pyannote-audio's 30 s two-speaker call,
both 16 kHz, from pinned PyPI packages fetched once into the cache (benchmarks/models/fetch.py).

  eval.npz     the held-out test frames: the suite's crepe eval split (benchmarks/models/real.py:
               ARCTIC 2-4 s and the call 10-30 s, 40 ms hop, the frames crepe full calls voiced),
               with `ref_cents`, crepe full's decoded pitch, which the summary scores against
  calib.npz    32 ARCTIC frames of 0-2 s (int8 calibration, BatchNorm statistics after pruning)
  train.npz    distillation frames (no labels: crepe full's outputs are the targets), all from
               before the held-out audio: the speech there (ARCTIC up to the first eval frame,
               the call's 6.6-8.5 s: its first speaker turn starts at 6.69 s) every 10 ms, the
               call's silent first 6.6 s every 80 ms (so the student keeps its unvoiced
               outputs), and AUGMENTED frames cut from that speech, pitch-shifted, some noisy
               or mixed (benchmarks/models/crepe.py, augmented)
  val.npz      early stopping and the quantizer's held-out data: the call's 8.5-10 s, 10 ms hop
  teacher.npz  crepe full's outputs on train and val, by frame digest (model.py: crepe_full_memo)

Written once (crepe full labels the frames: the one costly step) into a versioned folder of the
cache, ~/.cache/edgepress-bench/crepe-demo/vN, and copied from there into examples/crepe/data/,
where the recipes read them: a clean clone reuses what an earlier one wrote.
"""

import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.models import crepe, fetch, real, speech  # noqa: E402

from examples.crepe import model  # noqa: E402  (the teacher and its frame digests)

DATA = Path(__file__).resolve().parent / "data"
TRAIN_HOP = 160  # 10 ms
SILENCE_HOP = 1280  # 80 ms: unvoiced frames are easy; a few keep the student's low outputs
VAL_HOP = 160
SPEECH_FROM, TRAIN_END, VAL_END = 6.6, 8.5, 10.0  # s of the call (10-30 s is held out)
AUGMENTED = 3000  # half from each speaker's speech; crepe full labels each once, when written
EVAL_HOP = 640  # real.pitch_splits' hop: its eval frames start at multiples of 40 ms
PACKAGES = ("torchcrepe", "pysptk", "pyannote-audio")
FILES = ("calib.npz", "train.npz", "val.npz", "eval.npz", "teacher.npz")
VERSION = "3"  # data/VERSION: files an earlier version of this module wrote are rewritten


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


def cache() -> Path:
    return fetch.cache_dir() / "crepe-demo" / f"v{VERSION}"


def prepare(where: Path = DATA, kept: Path | None = None) -> dict:
    """The data files in `where`: kept as they are when current, else copied from the cache
    folder `kept` (default cache()), else written there first. Their paths, the held-out frame
    count, and the seconds spent writing (0 when nothing was)."""
    kept = cache() if kept is None else kept
    t0, written = time.perf_counter(), False
    if not _current(where):
        if not _current(kept):
            _write(kept)
            written = True
        where.mkdir(parents=True, exist_ok=True)
        for name in (*FILES, "VERSION"):
            shutil.copyfile(kept / name, where / name)
    paths = {Path(f).stem: where / f for f in FILES}
    with np.load(paths["eval"]) as z:
        voiced = len(z["x"])
    return {**{k: str(p) for k, p in paths.items()}, "eval_frames": voiced,
            "written_s": time.perf_counter() - t0 if written else 0.0}


def _current(where: Path) -> bool:
    stamp = where / "VERSION"
    return (all((where / f).is_file() for f in FILES) and stamp.is_file()
            and stamp.read_text().strip() == VERSION)


def _write(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "VERSION").unlink(missing_ok=True)  # stamped last: a killed run is not current
    splits = real.pitch_splits(where)  # calib.npz, select.npz, eval.npz (with ref_cents)
    (where / "select.npz").unlink()  # the suite's selection frames overlap train.npz here
    train, val = _frames()
    np.savez(where / "train.npz", x=train[:, None])
    np.savez(where / "val.npz", x=val[:, None])
    t0 = time.perf_counter()
    both = np.concatenate([train, val])
    np.savez(where / "teacher.npz", digest=_table(model.digests(both)),
             out=_teacher(both))
    print(f"data: {len(train)} training, {len(val)} validation, "
          f"{splits['sizes']['calib']} calibration and {splits['sizes']['eval']} held-out "
          f"voiced evaluation frames in {where}; crepe full labelled the {len(both)} training "
          f"and validation frames in {time.perf_counter() - t0:.0f} s (once)", flush=True)
    (where / "VERSION").write_text(VERSION + "\n")


def _frames() -> tuple[np.ndarray, np.ndarray]:
    """(train, val) frames, (n, 1024) each."""
    arctic, call = speech.arctic(), speech.call()
    eval_start = (len(crepe.frames(arctic, EVAL_HOP)) // 2) * EVAL_HOP  # real.pitch_splits' split
    s = lambda t: int(t * speech.RATE)  # noqa: E731  (seconds -> samples)
    spoken = (arctic[:eval_start], call[s(SPEECH_FROM): s(TRAIN_END)])
    train = np.concatenate([*(crepe.frames(a, TRAIN_HOP) for a in spoken),
                            crepe.frames(call[: s(SPEECH_FROM)], SILENCE_HOP),
                            *(crepe.augmented(a, AUGMENTED // 2, seed=i)
                              for i, a in enumerate(spoken))])
    return train, crepe.frames(call[s(TRAIN_END): s(VAL_END)], VAL_HOP)


def _table(digests: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), -1)


def _teacher(frames: np.ndarray) -> np.ndarray:
    import torch

    full = crepe.crepe_full()
    with torch.no_grad():
        return np.concatenate([full(torch.from_numpy(frames[i:i + 256])).numpy()
                               for i in range(0, len(frames), 256)])
