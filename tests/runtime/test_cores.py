"""Core selection and sensor sampling read through the same code from this host's /sys and from
a big.LITTLE phone's sysfs tree (tests/runtime/sysfs/sm8550, see its README)."""

import json
import shutil
from pathlib import Path

import pytest

from edgepress.errors import UserError
from edgepress.runtime import cores, fingerprint, sensors

PHONE = Path(__file__).with_name("sysfs") / "sm8550"


def test_the_phone_has_three_kinds_of_core_and_the_host_is_read_the_same_way():
    phone = cores.topology(PHONE)
    assert [c.cpu for c in phone] == list(range(8)) and cores.heterogeneous(phone)
    assert [g["cpus"] for g in cores.clusters(phone)] == ["7", "3-6", "0-2"]
    assert cores.clusters(phone)[0] == {"cpus": "7", "capacity": 1024, "max_freq_mhz": 3187.2}
    host = cores.topology("/")
    assert host and all(isinstance(c.cpu, int) for c in host)


@pytest.mark.parametrize("spec, threads, chosen", [
    (None, 1, [7]),  # auto on a big.LITTLE CPU: the fastest cores, as many as the threads
    (None, 3, [3, 4, 7]),  # the prime core, then the big ones in CPU order
    ("big", 5, [3, 4, 5, 6, 7]),
    ("little", 2, [0, 1]),
    ("all", 2, list(range(8))),
    ("4-5,7", 1, [4, 5, 7]),
])
def test_selection_on_the_phone(spec, threads, chosen):
    assert cores.select(spec, threads, cores.topology(PHONE)) == chosen


def test_uniform_cores_are_left_alone_unless_asked():
    uniform = [cores.Core(n, 1024, 1800000) for n in range(4)]
    assert cores.select(None, 2, uniform) is None
    assert cores.select("big", 2, uniform) == [0, 1]


def test_a_background_app_limited_to_little_cores_gets_the_fastest_it_may_use():
    # Android's cpusets keep a background app on the little cores: `allowed` is its affinity
    assert cores.select(None, 2, cores.topology(PHONE), allowed={0, 1, 2}) is None
    with pytest.raises(UserError, match=r"CPU 7 is not available to this process "
                                        r"\(available: 0-2\)"):
        cores.select("7", 1, cores.topology(PHONE), allowed={0, 1, 2})


@pytest.mark.parametrize("bad", ["fast", "3-1", "1,,2", "x7"])
def test_a_bad_cores_value_names_the_choices(bad):
    with pytest.raises(UserError, match=r"--cores .*: choose one of auto, big, little, all, or "
                                        r"a CPU list") as e:
        cores.select(bad, 1, cores.topology(PHONE))
    assert "\n" not in str(e.value)


def test_list_format_round_trips():
    assert cores.parse_list("0-2,4,6-7\n") == [0, 1, 2, 4, 6, 7]
    assert cores.format_list([7, 0, 1, 2, 4]) == "0-2,4,7"
    assert cores.parse_list("") == []


def test_pinning_restores_the_mask_it_found():
    before = cores.affinity()
    with cores.pinned([before[0]]) as mask:
        assert mask == [before[0]]
    assert cores.affinity() == before
    with cores.pinned(None) as mask:
        assert mask == before


def test_plan_on_this_host_records_why():
    plan = cores.plan(None, 1)
    if plan["heterogeneous"]:
        assert plan["chosen"] and "fastest" in plan["why"]
    else:
        assert plan["chosen"] is None and plan["why"] == "not pinned: the cores are alike"


def _copy(tmp_path):
    root = tmp_path / "phone"
    shutil.copytree(PHONE, root)
    return root


def test_sampler_reads_the_chosen_cores_clock_and_the_hottest_zone(tmp_path):
    root = _copy(tmp_path)
    s = sensors.Sampler([3, 7], root, interval_s=1.0)
    s.tick(0)
    s.tick(500_000_000)  # within the interval: not read
    (root / "sys/devices/system/cpu/cpu7/cpufreq/scaling_cur_freq").write_text("2400000\n")
    (root / "sys/class/thermal/thermal_zone3/temp").write_text("63400\n")
    s.tick(1_000_000_000)
    out = s.summary()
    assert [x["t_s"] for x in out["samples"]] == [0.0, 1.0]
    assert out["samples"][0] == {"t_s": 0.0, "freq_mhz": [2803.2, 3187.2], "temp_c": 52.1,
                                 "zone": "cpu-1-8-0"}
    assert out["freq_mhz"] == {"min": 2400.0, "max": 3187.2}
    assert out["temp_c"] == {"start": 52.1, "end": 63.4, "max": 63.4}
    assert out["freq_exposed"] and out["thermal_exposed"]
    json.dumps(out)


def test_a_kernel_that_hides_the_sensors_gives_nulls(tmp_path):
    s = sensors.Sampler([0], tmp_path)  # an empty /sys, like a container's
    s.tick(0)
    out = s.summary()
    assert out["samples"][0] == {"t_s": 0.0, "freq_mhz": [None], "temp_c": None, "zone": None}
    assert not out["freq_exposed"] and not out["thermal_exposed"]
    assert out["freq_mhz"] is None and out["temp_c"] is None


@pytest.mark.parametrize("raw, celsius", [(45000, 45.0), (45, 45), (-273000, None), (0, 0)])
def test_temperatures_in_millidegrees_or_degrees(raw, celsius):
    assert sensors._celsius(raw) == celsius


def test_sustained_windows_flag_a_slowing_run():
    # 10 windows of 1 s; latency rises from 10 ms to 12 ms over the run: throttled
    starts = [int(i * 0.1e9) for i in range(100)]
    samples = [int((10 + 2 * (i // 10) / 9) * 1e6) for i in range(100)]
    out = sensors.windows(samples, starts, 10.0)
    assert [w["n"] for w in out["windows"]] == [10] * 10
    assert out["windows"][0]["p50_ms"] == 10.0 and out["windows"][-1]["p50_ms"] == 12.0
    assert out["last_over_first"] == pytest.approx(1.2) and out["throttled"]
    steady = sensors.windows([10_000_000] * 100, starts, 10.0)
    assert steady["last_over_first"] == 1.0 and not steady["throttled"]


def test_the_phone_fingerprint_names_its_model_and_soc():
    props = fingerprint.parse_getprop((PHONE / "getprop.txt").read_text())
    got = fingerprint.phone("", PHONE, props)
    assert got == {"phone_model": "samsung SM-S911B", "soc": "QTI SM8550",
                   "soc_platform": "kalama", "android": "14 (API 34)"}
    # without getprop (a proot that hides /system): the kernel's socinfo
    assert fingerprint.phone("", PHONE, {})["soc"] == "Snapdragon SM8550"
    assert fingerprint.phone("Hardware\t: Qualcomm SM8150\n", "/nonexistent", {})["soc"] == \
        "Qualcomm SM8150"
    assert fingerprint.phone("", "/nonexistent", {}) == {
        "phone_model": None, "soc": None, "soc_platform": None, "android": None}
