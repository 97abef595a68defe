"""Atomic writes: a directory or file appears whole under its final name, or not at all.

Both sides write (bundles on the host, reports on the device), so this lives outside both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from edgepress.errors import UserError


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Refuses to replace an existing output unless the user said --overwrite (after putting
    back what a killed earlier run may have left aside)."""
    path = Path(path)
    recover(path)
    if path.exists() and not overwrite:
        raise UserError(f"output {str(path)!r} already exists: pass --overwrite to replace it")


@contextlib.contextmanager
def directory(final: Path, overwrite: bool = False):
    """Yields an empty temp directory beside `final`; on success it is renamed into place.

    On any error (or KeyboardInterrupt) the temp directory is removed and `final` is untouched.
    A SIGKILL can leave a hidden `.NAME.tmp-PID-*` sibling, never a half-written `final`; the
    next run removes it (recover).
    """
    final = Path(final)
    refuse_existing(final, overwrite)  # recovers a killed run's leftovers first
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; outputs are not secrets
        yield tmp
        _swap_in(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # disk full, permissions: the user's environment, not a bug
            raise UserError(f"cannot write {str(final)!r}: {e.strerror or e}") from e
        raise


def recover(final: Path) -> None:
    """Cleans up after a run that was killed (SIGKILL, power loss) while writing `final`.

    Its temp directory is deleted; if it died between moving the previous output aside and
    moving the new one in, the previous output is put back. Only leftovers of processes that
    no longer run are touched, so a concurrent run is left alone.
    """
    if not final.parent.is_dir():
        return
    for leftover in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, rest = leftover.name[len(final.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not final.exists():
            os.rename(leftover, final)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_in(tmp: Path, final: Path) -> None:
    # rename() cannot replace a non-empty directory: move the old one aside first, so at every
    # instant either the old or the new output is complete under `final`'s parent.
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(final: Path, data: bytes, overwrite: bool = True) -> None:
    """Writes a file atomically (temp file in the same directory, fsync, rename)."""
    final = Path(final)
    refuse_existing(final, overwrite)  # recovers a killed run's leftovers first
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600, unlike an ordinary write
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {str(final)!r}: {e.strerror or e}") from e
        raise
