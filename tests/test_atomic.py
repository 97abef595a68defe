"""Atomic outputs: a killed run leaves the previous output or nothing, and a rerun succeeds."""

import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_models import ROOT, factory

from edgepress import atomic
from edgepress.errors import UserError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_run_are_cleaned_and_the_old_output_restored(tmp_path):
    final = tmp_path / "out"
    pid = _dead_pid()
    # A run killed between "move the old output aside" and "move the new one in":
    (tmp_path / f".out.old-{pid}").mkdir()
    (tmp_path / f".out.old-{pid}" / "bundle.txt").write_text("previous")
    (tmp_path / f".out.tmp-{pid}-abc").mkdir()
    (tmp_path / f".out.tmp-{pid}-abc" / "half").write_text("half-written")
    atomic.recover(final)
    assert (final / "bundle.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_a_live_process_are_left_alone(tmp_path):
    busy = tmp_path / f".out.tmp-{os.getpid()}-xyz"
    busy.mkdir()
    atomic.recover(tmp_path / "out")
    assert busy.is_dir()


def test_an_error_inside_removes_the_temp_and_keeps_the_old(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "keep").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.directory(final, overwrite=True) as tmp:
            (tmp / "new").write_text("new")
            raise RuntimeError("stage failed")
    assert (final / "keep").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_disk_full_is_a_clear_error_with_no_partial_files(tmp_path):
    """A real full disk: a 64 KiB tmpfs (needs root, as CI has)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        with pytest.raises(UserError, match="No space left on device"):
            with atomic.directory(mnt / "out") as tmp:
                (tmp / "model.onnx").write_bytes(b"x" * 1024 * 1024)
        assert list(mnt.iterdir()) == []
        with pytest.raises(UserError, match="No space left on device"):
            atomic.write_bytes(mnt / "report.json", b"x" * 1024 * 1024)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)])


@pytest.mark.parametrize("sig", [signal.SIGKILL,
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_compress_killed_midway_leaves_previous_output_then_rerun_succeeds(tmp_path, sig):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "edgepress.cli", "compress", factory("cnn"), "--input-shape",
            "1,3,16,16", "--format", "onnx,tflite", "--golden-samples", "2", "--out", str(out), "--overwrite"]
    assert subprocess.run(argv, capture_output=True, cwd=ROOT).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    # Kill it once it is writing: its temp directory has appeared beside the output.
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tmp-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "compress never started writing"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    atomic.recover(out)  # what the next run does first
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert subprocess.run(argv, capture_output=True, cwd=ROOT).returncode == 0
    assert (out / "tflite-fp32" / "model.tflite").is_file()
