"""speech: the real audio and text the real models are measured on, read from pinned packages.

- pyannote-audio's sample: 30 s of a 16 kHz two-speaker call, its speaker turns (sample.rttm) and
  transcript (sample.stm, 13 English sentences).
- pysptk's arctic_a0007.wav: 4 s of 16 kHz read speech from CMU ARCTIC.
"""

from __future__ import annotations

import wave

import numpy as np

from benchmarks.models import fetch

SAMPLE = "pyannote/audio/sample/"
ARCTIC = "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav"
RATE = 16_000


def read_wav(path) -> np.ndarray:
    """16-bit PCM mono -> float32 in [-1, 1)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == RATE, path
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def call() -> np.ndarray:
    """The pyannote sample (30 s, 16 kHz)."""
    return read_wav(fetch.member("pyannote-audio", SAMPLE + "sample.wav"))


def arctic() -> np.ndarray:
    return read_wav(fetch.member("pysptk", ARCTIC))


def turns() -> list[tuple[float, float]]:
    """(start, end) seconds of every speaker turn in sample.rttm (either speaker)."""
    lines = fetch.member("pyannote-audio", SAMPLE + "sample.rttm").read_text().splitlines()
    return [(float(f[3]), float(f[3]) + float(f[4])) for f in (ln.split() for ln in lines) if f]


def transcript() -> list[str]:
    """The sentences spoken in the sample, in order (sample.stm's text column)."""
    lines = fetch.member("pyannote-audio", SAMPLE + "sample.stm").read_text().splitlines()
    return [" ".join(ln.split()[5:]) for ln in lines if ln.strip()]
