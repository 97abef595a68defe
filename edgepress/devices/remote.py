"""The device's half of a deploy: a standard-library-only script, copied to the device and run
with its own python3 before edgepress is installed there.

    python3 remote.py unpack PKG.tar.gz SHA256 DEST   check the archive's sha256, extract it safely
    python3 remote.py activate ROOT RELEASE           point ROOT/current at ROOT/releases/RELEASE
    python3 remote.py prune ROOT                      remove releases other than current/previous

Every step writes beside its target and renames, so a deploy cut off at any point (lost SSH
connection, power) leaves the previous install as `current`, working.
"""

import hashlib
import os
import shutil
import sys
import tarfile

BAD_PACKAGE = 3  # exit status for a corrupt or unsafe package (2 is the CLI's user error)


class PackageError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_member(member, dest):
    """tarfile's own `data` filter (no absolute paths, no `..`, no links out of DEST, no device
    files, sane permissions) where this Python has it (3.12, and 3.8.17+/3.9.17+/3.10.12+/3.11.4+
    backports); our packages hold only files and directories, so anything else is refused first,
    which also covers older Pythons without the filter."""
    if not (member.isfile() or member.isdir()):
        raise PackageError(f"refusing {member.name!r}: packages hold only files and directories")
    if os.path.isabs(member.name) or ".." in member.name.replace("\\", "/").split("/"):
        raise PackageError(f"refusing {member.name!r}: path outside the package")
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return member
    try:
        return data_filter(member, dest)
    except tarfile.FilterError as e:
        raise PackageError(f"refusing {member.name!r}: {e}") from None


def extract(archive, dest):
    """Extracts a .tar.gz into DEST (which must not exist); every member is checked before
    anything is written."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            safe_member(member, dest)
        os.makedirs(dest)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter=safe_member)
        else:  # checked above: only plain files and directories inside DEST
            tar.extractall(dest)


def unpack(archive, sha256, dest):
    """DEST appears complete or not at all; an existing DEST (same sha256, same content) is
    kept as it is."""
    got = sha256_file(archive)
    if got != sha256:
        raise PackageError(f"{archive}: sha256 {got} does not match the expected {sha256} "
                           f"(corrupt or modified in transit)")
    if os.path.isdir(dest):
        return
    tmp = f"{dest}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        extract(archive, tmp)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def activate(root, release):
    """current -> releases/RELEASE in one rename (a symlink replaced atomically)."""
    link = os.path.join(root, "current")
    tmp = f"{link}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release), tmp)
    previous = os.readlink(link) if os.path.islink(link) else None
    os.replace(tmp, link)
    if previous and previous != os.path.join("releases", release):
        with open(os.path.join(root, "previous.tmp"), "w") as f:
            f.write(os.path.basename(previous))
        os.replace(os.path.join(root, "previous.tmp"), os.path.join(root, "previous"))


def prune(root):
    """Removes releases other than current and previous, and leftovers of cut-off deploys."""
    keep = set()
    link = os.path.join(root, "current")
    if os.path.islink(link):
        keep.add(os.path.basename(os.readlink(link)))
    try:
        with open(os.path.join(root, "previous")) as f:
            keep.add(f.read().strip())
    except OSError:
        pass
    releases = os.path.join(root, "releases")
    for name in os.listdir(releases) if os.path.isdir(releases) else ():
        if name not in keep:
            shutil.rmtree(os.path.join(releases, name), ignore_errors=True)
    incoming = os.path.join(root, "incoming")
    for name in os.listdir(incoming) if os.path.isdir(incoming) else ():
        os.unlink(os.path.join(incoming, name))


def main(argv):
    commands = {"unpack": (unpack, 3), "activate": (activate, 2), "prune": (prune, 1)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(f"usage: remote.py {'|'.join(commands)} ARGS", file=sys.stderr)
        return 2
    try:
        commands[argv[0]][0](*argv[1:])
    except (PackageError, tarfile.TarError, OSError) as e:
        print(f"edgepress device: {e}", file=sys.stderr)
        return BAD_PACKAGE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
