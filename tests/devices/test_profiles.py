"""Device profiles: the issue's devices, figures sourced in comments, peaks equal their formula."""

import re
from pathlib import Path

import pytest

from edgepress.cli import main
from edgepress.devices import profile
from edgepress.errors import UserError

REQUIRED = {"rpi3", "rpi4", "rpi5", "rpi-zero2w", "android-mid", "android-flagship",
            "jetson-orin-nano", "x86-64"}
FIGURES = ("ram_mb", "clock_ghz", "fp32_macs_per_cycle", "int8_macs_per_cycle", "l1d_kb",
           "l2_kb", "l3_kb", "bandwidth_gbs")


def test_the_issues_devices_are_all_there():
    assert REQUIRED <= set(profile.names())


@pytest.mark.parametrize("name", profile.names())
def test_peaks_are_their_formula(name):
    p = profile.load(name)
    assert p.name == name
    for precision, stated in (("fp32", p.peak_fp32_gops), ("int8", p.peak_int8_gops)):
        assert p.peak_gops(precision) == pytest.approx(stated, rel=1e-9)
        assert p.formula(precision).endswith(f"= {p.peak_gops(precision):g} GOPS")
    assert p.peak_int8_gops >= p.peak_fp32_gops
    assert 1 <= p.threads <= p.total_cores


@pytest.mark.parametrize("name", profile.names())
def test_every_figure_has_its_source_in_a_comment(name):
    text = (profile.PROFILES / f"{name}.toml").read_text()
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key in FIGURES:
            assert "#" in line, f"{name}: {line!r} has no source comment"
    for kind in ("fp32", "int8"):  # the peak's formula, written out beside its value
        assert re.search(rf"# peak {kind} = 2 ops/MAC x .*= [0-9.]+ GOPS", text), name


def test_more_threads_never_lower_the_peak():
    p = profile.load("android-flagship")
    peaks = [p.peak_gops("int8", t) for t in range(1, p.total_cores + 1)]
    assert peaks == sorted(peaks) and peaks[-1] == pytest.approx(p.peak_int8_gops)
    assert peaks[0] == pytest.approx(2 * 3.2 * 64)  # the prime core first


def test_platform_tags_go_newest_first_down_to_manylinux2014():
    tags = profile.load("rpi4").platform_tags()
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags
    assert profile.load("android-mid").platform_tags()[0] == "manylinux_2_36_aarch64"


def test_unknown_device_lists_the_known_ones(capsys):
    with pytest.raises(UserError, match="unknown device 'rpi9'; known devices: .*rpi4"):
        profile.load("rpi9")
    assert main(["devices", "show", "rpi9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "jetson-orin-nano" in err


def test_custom_profile_file_is_checked_strictly(tmp_path):
    text = (profile.PROFILES / "rpi4.toml").read_text()
    good = tmp_path / "myboard.toml"
    good.write_text(text.replace('name = "rpi4"', 'name = "myboard"'))
    assert profile.load(str(good)).name == "myboard"
    bad = tmp_path / "typo.toml"
    bad.write_text(text.replace("clock_ghz", "clock_gz"))
    with pytest.raises(UserError, match="unknown key 'clock_gz'"):
        profile.load(str(bad))


def test_cli_list_and_show(capsys):
    assert main(["devices", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REQUIRED)
    assert main(["devices", "show", "rpi5"]) == 0
    out = capsys.readouterr().out
    assert "peak int8 = 2 ops/MAC x (4 x 2.4 GHz x 32) MACs/cycle = 614.4 GOPS" in out
    assert "Cortex-A76" in out and "dotprod" in out


@pytest.mark.parametrize("name", ["android-mid", "android-flagship"])
def test_android_profiles_name_their_soc_python_engines_and_checks(name):
    zoo = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
    p = profile.load(name)
    assert p.soc.startswith("Qualcomm Snapdragon") and p.soc in (
        profile.PROFILES / f"{name}.toml").read_text()
    assert p.python and p.glibc and p.platform_tags()  # proot Debian: the offline package
    assert p.termux == {"python": "3.12", "onnx": "onnxruntime", "tflite": ""}
    assert p.checks and all((zoo / f"{c['model']}.py").is_file() and c["published_ms"] > 0 and
                            "github.com/" in c["source"] for c in p.checks)
