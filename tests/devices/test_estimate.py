"""estimate: roofline arithmetic, calibration on the host, RAM fit, and the CLI beside a report."""

import pytest

from edgepress.cli import main
from edgepress.devices import estimate, profile
from edgepress.errors import UserError
from edgepress.runtime import bench, report


def test_estimate_is_roofline_over_efficiency(cnn_bundles):
    rpi4 = profile.load("rpi4")
    est = estimate.apply(cnn_bundles / "onnx-fp32", rpi4, efficiency=0.5)
    assert est["latency_ms"] == pytest.approx(est["roofline_ms"] / 0.5)
    assert est["peak_gops"] == pytest.approx(rpi4.peak_gops("fp32", 4))
    assert est["compute_bound_layers"] + est["memory_bound_layers"] == 3  # 2 convs + linear
    assert est["macs"] == 73768
    # the roofline can never beat the device's peak compute or its bandwidth on the weights
    floor_ms = 1000 * max(2 * est["macs"] / (est["peak_gops"] * 1e9),
                          est["memory"]["weights_bytes"] / (rpi4.bandwidth_gbs * 1e9))
    assert est["roofline_ms"] >= floor_ms * (1 - 1e-9)
    assert any("peak fp32 = 2 ops/MAC" in a for a in est["assumptions"])


def test_fewer_threads_and_slower_devices_estimate_slower(cnn_bundles):
    b = cnn_bundles / "tflite-fp32"
    one = estimate.apply(b, profile.load("rpi4"), threads=1, efficiency=1.0)["roofline_ms"]
    four = estimate.apply(b, profile.load("rpi4"), threads=4, efficiency=1.0)["roofline_ms"]
    pi3 = estimate.apply(b, profile.load("rpi3"), threads=4, efficiency=1.0)["roofline_ms"]
    assert one >= four and pi3 > four


def test_efficiency_is_calibrated_on_this_host(cnn_bundles):
    est = estimate.apply(cnn_bundles / "onnx-fp32", profile.load("rpi5"))
    assert 0 < est["efficiency"] <= 1
    assert est["efficiency_source"].startswith("measured on this host")


def test_model_larger_than_ram_is_refused_with_the_numbers(cnn_bundles, tmp_path, capsys):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text((profile.PROFILES / "rpi-zero2w.toml").read_text()
                    .replace("ram_mb = 512", "ram_mb = 32").replace('"rpi-zero2w"', '"tiny"'))
    with pytest.raises(UserError, match=r"needs 40\.0 MiB \(weights \d+ KiB \+ "
                       r"activations 16 KiB \+ tflite-runtime 40\.0 MiB\) > 32\.0 MiB RAM"):
        estimate.apply(cnn_bundles / "tflite-fp32", profile.load(str(tiny)), efficiency=1.0)
    assert main(["estimate", str(cnn_bundles / "tflite-fp32"), "--device", str(tiny)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_efficiency_and_threads(cnn_bundles):
    with pytest.raises(UserError, match="--efficiency 1.5"):
        estimate.apply(cnn_bundles / "onnx-fp32", profile.load("rpi4"), efficiency=1.5)
    with pytest.raises(UserError, match="--threads 0"):
        estimate.apply(cnn_bundles / "onnx-fp32", profile.load("rpi4"), threads=0)


def test_cli_prints_the_estimate_beside_a_real_report(cnn_bundles, tmp_path, capsys):
    rep = bench.apply(cnn_bundles / "onnx-fp32", 1, bench.Protocol(
        warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, memory=False))
    rep["device"]["emulated"] = "qemu-user"
    report.save(rep, tmp_path / "r.json")
    assert main(["estimate", str(cnn_bundles / "onnx-fp32"), "--device", "rpi4",
                 "--efficiency", "0.2", "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE" in out and "MEASURED" in out and "EMULATED" in out
    assert "assumes: peak fp32 = 2 ops/MAC x (4 x 1.8 GHz x 8) MACs/cycle = 115.2 GOPS" in out


def test_a_phone_estimate_says_how_far_off_its_published_checks_were(cnn_bundles, capsys):
    mid = profile.load("android-mid")
    first = mid.checks[0]
    recorded = {"estimates": {"android-mid": {estimate.check_key(first): {
        "estimated_ms": first["published_ms"] / 2}}}}
    got = estimate.checks(mid, recorded)
    assert got[0]["ratio"] == pytest.approx(0.5) and got[0]["source"] == first["source"]
    assert all(c["ratio"] is None for c in got[1:])  # none recorded for those
    lines = estimate.check_lines({"device": "android-mid", "checks": got})
    assert lines[0] == ("checks against published measurements on android-mid's SoC: estimates "
                        "were 0.50x-0.50x the measured latency (1 checks)")
    assert "estimated 19.48 ms, published 38.97 ms (ncnn): 0.50x" in lines[1]
    assert estimate.check_lines({"device": "x", "checks": got[1:]}) == [
        "x lists 3 published measurements, but no estimate of them is recorded: run "
        "benchmarks/phone_checks.py"]
    assert estimate.check_lines({"device": "rpi4", "checks": []}) == []
    assert main(["estimate", str(cnn_bundles / "onnx-fp32"), "--device", "android-mid",
                 "--efficiency", "0.5"]) == 0
    printed = capsys.readouterr().out  # what profiles/checks.json records, whatever it is
    assert estimate.check_lines({"device": "android-mid", "checks": estimate.checks(mid)})[0] \
        in printed


def test_every_published_check_has_a_recorded_estimate():
    # benchmarks/phone_checks.py writes them; a check added without running it fails here
    for prof in map(profile.load, profile.names()):
        for c in estimate.checks(prof):
            assert c["estimated_ms"] is not None, f"{prof.name}: {estimate.check_key(c)}"
