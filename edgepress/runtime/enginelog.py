"""enginelog: the engines' own C++ log lines kept off the terminal unless asked for.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." for every TFLite model
it loads (at the first allocate_tensors, when it applies its default delegates), before
edgepress says anything. Its minimal logger writes with fprintf(stderr) at INFO and above,
honours no environment variable (TF_CPP_MIN_LOG_LEVEL is TensorFlow's logger, not this one) and
its severity setter (tflite::LoggerOptions) is not exposed to Python. So, in the narrowest
place: around the calls that log, file descriptor 2 points at a temp file, and what was written
there is passed on afterwards, INFO lines dropped. When the call fails nothing is passed on:
the exception becomes edgepress's one-line error. `EDGEPRESS_ENGINE_LOGS=1` (what the CLI's
--verbose / --debug set, through `show`) lets everything through as it is written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading

ENV = "EDGEPRESS_ENGINE_LOGS"
_LOCK = threading.RLock()  # fd 2 is process-wide: one redirect at a time (nesting is fine)


def show(on: bool = True) -> None:
    """Lets the engines' log lines through (set in the environment, so child processes such
    as the memory probe inherit it)."""
    os.environ[ENV] = "1" if on else "0"


def shown() -> bool:
    return os.environ.get(ENV, "0") not in ("", "0")


@contextlib.contextmanager
def filtered():
    """Runs the body with the engine's INFO lines on stderr dropped, the rest passed on."""
    if shown():
        yield
        return
    with _LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()  # Python-level writes inside the window went to the sink too
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                sink.seek(0)
                _pass_on(sink.read())


def _pass_on(data: bytes) -> None:
    kept = [line for line in data.decode(errors="replace").splitlines(keepends=True)
            if not line.startswith("INFO: ")]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
