"""Reports: statistics derived from raw samples, the schema, the loader's refusals, fingerprint."""

import json

import numpy as np
import pytest
from fake_reports import lognormal, make, write

from edgepress import cli
from edgepress.errors import UserError
from edgepress.runtime import fingerprint, report


def test_stats_use_the_documented_percentile_method():
    samples = list(range(1, 101))  # 1..100 ms
    s = report.stats(samples)
    # linear (Hyndman & Fan 7): p = 1 + (n - 1) * q / 100
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01) and s["p99_9"] == pytest.approx(99.901)
    assert s["std"] == pytest.approx(np.std(samples, ddof=1))
    assert s["throughput_per_s"] == pytest.approx(1000 / 50.5)
    assert (s["min"], s["max"], s["n"], s["percentile_method"]) == (1, 100, 100, "linear")


def test_results_keep_raw_samples_at_ns_resolution():
    res = report.results([1_234_567, 2_000_001], init_ms=5.0, first_ms=1.5)
    assert res["samples_ms"] == [1.234567, 2.000001]
    assert res["latency_ms"]["n"] == 2 and res["latency_ms"]["max"] == 2.000001


def test_schema_is_valid_and_describes_a_report():
    jsonschema = pytest.importorskip("jsonschema")
    schema = report.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(make(lognormal(50, 1.0, 0)), schema,
                        cls=jsonschema.Draft202012Validator)


def test_newer_minor_with_extra_fields_loads(tmp_path):
    path = write(tmp_path, "r", [1.0, 2.0], schema_version="1.7", future_field={"x": 1})
    assert report.load(path)["future_field"] == {"x": 1}


def _mutate(rep, how):
    if how == "newer major":
        rep["schema_version"] = "2.0"
    elif how == "missing p50":
        del rep["results"]["latency_ms"]["p50"]
    elif how == "missing device":
        del rep["device"]
    elif how == "threads as text":
        rep["engine"]["threads"] = "four"
    elif how == "sample not a number":
        rep["results"]["samples_ms"][1] = "fast"
    return rep


@pytest.mark.parametrize("how, message", [
    ("newer major", r"schema_version '2.0' is not supported \(this edgepress reads 1.x\)"),
    ("missing p50", "missing field results.latency_ms.p50"),
    ("missing device", "missing field device"),
    ("threads as text", "field engine.threads should be integer, got str"),
    ("sample not a number", r"field results.samples_ms\[1\] should be number, got str"),
])
def test_loader_names_what_is_wrong(tmp_path, how, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_mutate(make([1.0, 2.0, 3.0]), how)))
    with pytest.raises(UserError, match=message):
        report.load(path)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ('{"schema_version": "1.0", "kind": "be', "is not valid JSON"),
    ("[1, 2]", "has no schema_version"),
    ("\xff\xfe", "is not valid JSON"),
])
def test_cli_refuses_unreadable_reports_with_one_line(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_bytes(content.encode("latin-1"))
    good = write(tmp_path, "good", [1.0, 2.0])
    for argv in (["compare", str(good), str(bad)], ["report", str(bad)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_save_refuses_to_replace_without_overwrite(tmp_path):
    rep = make([1.0])
    report.save(rep, tmp_path / "r.json", overwrite=False)
    with pytest.raises(UserError, match="already exists"):
        report.save(rep, tmp_path / "r.json", overwrite=False)


_PI_FILES = {
    "/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 "
                     "cpuid asimdhp asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
                     "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
    "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "ondemand\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1500000\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "2400000\n",
    "/proc/meminfo": "MemTotal:        8245228 kB\nMemFree: 1 kB\n",
}


def test_fingerprint_of_a_raspberry_pi(monkeypatch):
    monkeypatch.setattr(fingerprint, "_read", lambda p: _PI_FILES.get(p, ""))
    fp = fingerprint.fingerprint()
    assert fp["cpu_model"] == "Arm Cortex-A76"  # no model name on Arm: from the CPU part
    assert fp["board_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert fp["isa"] == ["asimd", "asimddp", "asimdhp"]
    assert (fp["governor"], fp["cur_freq_mhz"], fp["max_freq_mhz"]) == ("ondemand", 1500.0, 2400.0)
    assert fp["ram_bytes"] == 8245228 * 1024


def test_fingerprint_of_an_x86_machine_without_sysfs(monkeypatch):
    cpuinfo = ("model name\t: Intel(R) Xeon(R) Gold 6338\n"
               "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_int8\n")
    monkeypatch.setattr(fingerprint, "_read", lambda p: cpuinfo if p == "/proc/cpuinfo" else "")
    fp = fingerprint.fingerprint()
    assert fp["cpu_model"] == "Intel(R) Xeon(R) Gold 6338"
    assert {"avx512_vnni", "amx_int8", "avx2"} <= set(fp["isa"]) and "fpu" not in fp["isa"]
    assert fp["governor"] is None and fp["cur_freq_mhz"] is None and fp["board_model"] is None
