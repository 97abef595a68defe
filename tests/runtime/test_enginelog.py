"""The engines' own log lines stay off the terminal unless asked for; errors still get out."""

import os
import subprocess
import sys

import pytest
from tiny_models import ROOT

from edgepress.runtime import enginelog

DELEGATE_LINE = "Created TensorFlow Lite XNNPACK delegate"


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv(enginelog.ENV, "0")


def test_info_lines_are_dropped_the_rest_passed_on(quiet, capfd):
    with enginelog.filtered():
        os.write(2, b"INFO: chatter\nWARNING: op X is slow here\n")  # as C++ fprintf would
        os.write(2, b"INFO: more\nERROR: something else\n")
    assert capfd.readouterr().err == "WARNING: op X is slow here\nERROR: something else\n"


def test_a_failing_call_leaves_its_error_to_the_exception(quiet, capfd):
    with pytest.raises(ValueError, match="not a valid Flatbuffer"):
        with enginelog.filtered():
            os.write(2, b"ERROR: the same thing, logged\n")
            raise ValueError("not a valid Flatbuffer")
    os.write(2, b"after\n")  # fd 2 is the terminal again
    assert capfd.readouterr().err == "after\n"


def test_shown_lets_everything_through(monkeypatch, capfd):
    monkeypatch.setenv(enginelog.ENV, "1")
    with enginelog.filtered():
        os.write(2, b"INFO: chatter\n")
    assert capfd.readouterr().err == "INFO: chatter\n"


def _commands(bundle, show: str):
    code = ("import sys; from edgepress.cli import main; "
            f"sys.exit(main(['verify', {str(bundle)!r}]) or main(['inspect', {str(bundle)!r}]) "
            f"or main(['bench', {str(bundle)!r}, '--runs', '3', '--min-seconds', '0']))")
    env = {**os.environ, enginelog.ENV: show,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env)


def test_runtime_commands_are_quiet_unless_asked(cnn_bundles):
    """verify, inspect and bench of a TFLite bundle: LiteRT's delegate line (printed by its C++
    logger at the first load in a process, so tested in a fresh one) reaches the terminal only
    when the engine logs are shown (--verbose)."""
    bundle = cnn_bundles / "tflite-fp32"
    quiet = _commands(bundle, "0")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "PASS" in quiet.stdout
    shown = _commands(bundle, "1")
    assert shown.returncode == 0 and DELEGATE_LINE in shown.stderr
