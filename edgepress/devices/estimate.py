"""estimate: a roofline latency estimate of a bundle on a device, and whether it fits in RAM.

Per layer (inspect.py's MACs and bytes), time = max(compute, memory): compute is the layer's ops
against the device's peak for the threads used, memory is the bytes it moves against the device's
sustained bandwidth. Engines reach a fraction of that roofline (kernel overheads, layers too small
to fill the vector units): the fraction, the efficiency, is measured on this host by running the
same bundle and comparing with the host's own roofline, then assumed to carry over. It is an
estimate, printed with its assumptions; a real report from the device (`--report`) wins. A phone
profile lists published measurements on its SoC (`[[checks]]`); benchmarks/phone_checks.py runs
this estimate for each and records the result in profiles/checks.json, and every estimate for
that profile says how far off those checks were.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from edgepress.devices import profile as profiles
from edgepress.devices.profile import INT8_PRECISIONS, Cores, Profile
from edgepress.errors import UserError
from edgepress.runtime import artifact, fingerprint

# Resident memory of a process that has imported Python, numpy and the engine, before any model:
# VmRSS measured on this project's x86-64 host (the aarch64 builds are of similar size).
ENGINE_OVERHEAD_MB = {"onnxruntime": 64, "litert": 45, "tflite-runtime": 40}
WARN_RAM_FRACTION = 0.75  # above this the OS and other processes will likely push it into swap
CHECKS_FILE = profiles.PROFILES / "checks.json"  # written by benchmarks/phone_checks.py


def apply(bundle_dir, device: Profile, threads: int | None = None,
          efficiency: float | None = None) -> dict:
    """The estimate for `bundle_dir` on `device` (JSON-ready). `efficiency` None: calibrate."""
    bundle = artifact.open_bundle(bundle_dir)
    threads = device.threads if threads is None else threads
    if threads < 1:
        raise UserError(f"--threads {threads}: must be >= 1")
    info = _inspect(bundle)
    fit = memory_fit(bundle, info, device)
    check_fits(fit, device, f"bundle {str(bundle.path)!r}")  # before minutes of calibrating
    source = "given"
    if efficiency is None:
        efficiency, source = calibrate(bundle, info)
    elif not 0 < efficiency <= 1:
        raise UserError(f"--efficiency {efficiency}: must be in (0, 1]")
    roof = roofline(info, device, bundle.precision, threads)
    return {
        "kind": "estimate", "device": device.name, "bundle": str(bundle.path),
        "format": bundle.format, "precision": bundle.precision, "threads": threads,
        "latency_ms": roof["ms"] / efficiency, "roofline_ms": roof["ms"],
        "compute_bound_layers": roof["compute_bound"], "memory_bound_layers": roof["memory_bound"],
        "peak_gops": device.peak_gops(bundle.precision, threads),
        "bandwidth_gbs": device.bandwidth_gbs, "macs": info["macs"],
        "efficiency": efficiency, "efficiency_source": source,
        "memory": fit,
        "assumptions": _assumptions(device, bundle.precision, threads, source),
        "checks": checks(device),
    }


def check_key(check: dict) -> str:
    return f"{check['model']} {check['precision']} t{check['threads']}"


def checks(device: Profile, recorded: dict | None = None) -> list[dict]:
    """The profile's published measurements, each beside edgepress's estimate of it (as
    benchmarks/phone_checks.py recorded it) and their ratio; None where none was recorded."""
    if recorded is None:
        recorded = json.loads(CHECKS_FILE.read_text()) if CHECKS_FILE.is_file() else {}
    mine = recorded.get("estimates", {}).get(device.name, {})
    out = []
    for c in device.checks:
        est = (mine.get(check_key(c)) or {}).get("estimated_ms")
        out.append({**c, "estimated_ms": est,
                    "ratio": est / c["published_ms"] if est is not None else None})
    return out


def check_lines(est: dict) -> list[str]:
    """How far off the profile's checks were, as `estimate` prints it."""
    done = [c for c in est.get("checks", ()) if c["ratio"] is not None]
    lines = [f"  checked: {check_key(c)}: estimated {c['estimated_ms']:.2f} ms, published "
             f"{c['published_ms']:g} ms ({c['engine']}): {c['ratio']:.2f}x ({c['source']})"
             for c in done]
    if done:
        ratios = [c["ratio"] for c in done]
        lines.insert(0, f"checks against published measurements on {est['device']}'s SoC: "
                        f"estimates were {min(ratios):.2f}x-{max(ratios):.2f}x the measured "
                        f"latency ({len(done)} checks)")
    elif est.get("checks"):
        lines.insert(0, f"{est['device']} lists {len(est['checks'])} published measurements, but "
                        f"no estimate of them is recorded: run benchmarks/phone_checks.py")
    return lines


def _inspect(bundle) -> dict:
    from edgepress.runtime import inspect

    return inspect.apply(bundle.model_path)


def roofline(info: dict, device: Profile, precision: str, threads: int) -> dict:
    """Milliseconds the layers take at the device's peaks, and how many are bound by what."""
    ops_per_s = device.peak_gops(precision, threads) * 1e9
    bytes_per_s = device.bandwidth_gbs * 1e9
    total_ms, bound = 0.0, {"compute": 0, "memory": 0}
    for layer, weight_bytes in zip(info["layers"], _weight_shares(info)):
        compute = profiles.OPS_PER_MAC * layer["macs"] / ops_per_s
        moved = _activation_bytes(layer, info, precision) + weight_bytes
        memory = moved / bytes_per_s
        bound["compute" if compute >= memory else "memory"] += 1
        total_ms += 1000 * max(compute, memory)
    return {"ms": total_ms, "compute_bound": bound["compute"], "memory_bound": bound["memory"]}


def _weight_shares(info: dict) -> list[float]:
    # The model file is what an inference reads as weights. Per-layer weight bytes are not always
    # visible (a QDQ graph feeds weights through DequantizeLinear), so the file's size is split
    # over the layers by their visible weights, or by their MACs when none are visible.
    layers = info["layers"]
    keys = [layer.get("weight_bytes", 0) for layer in layers]
    if not sum(keys):
        keys = [layer["macs"] for layer in layers]
    total = sum(keys) or 1
    return [info["size_bytes"] * k / total for k in keys]


def _activation_bytes(layer: dict, info: dict, precision: str) -> float:
    # inspect counts the graph's own element types. An ONNX int8 (QDQ) graph shows fp32 tensors
    # between its Quantize/Dequantize pairs that the engine fuses and runs as int8: a quarter.
    moved = layer.get("activation_bytes", 0)
    return moved / 4 if info["format"] == "onnx" and precision in INT8_PRECISIONS else moved


def memory_fit(bundle, info: dict, device: Profile) -> dict:
    """Weights + the largest layer's activations + engine overhead, against the device's RAM."""
    engine = device.engines[bundle.format]
    weights = bundle.model_path.stat().st_size
    activations = max((_activation_bytes(la, info, bundle.precision) for la in info["layers"]),
                      default=0)
    overhead = ENGINE_OVERHEAD_MB.get(engine, 64) * 2**20
    need = int(weights + activations + overhead)
    return {"weights_bytes": weights, "peak_activations_bytes": int(activations),
            "engine_overhead_bytes": overhead, "engine": engine, "needed_bytes": need,
            "ram_bytes": device.ram_bytes, "fits": need <= device.ram_bytes,
            "tight": need > WARN_RAM_FRACTION * device.ram_bytes}


def check_fits(fit: dict, device: Profile, what: str) -> None:
    """Refuses a model the device cannot hold, with the numbers."""
    if not fit["fits"]:
        raise UserError(
            f"{what} does not fit in {device.name}'s RAM: needs {_mib(fit['needed_bytes'])} "
            f"(weights {_mib(fit['weights_bytes'])} + activations "
            f"{_mib(fit['peak_activations_bytes'])} + {fit['engine']} "
            f"{_mib(fit['engine_overhead_bytes'])}) > {_mib(fit['ram_bytes'])} RAM")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


# ---- calibration on this host --------------------------------------------------------------

def calibrate(bundle, info: dict) -> tuple[float, str]:
    """(efficiency, how it was found): host roofline / host measured latency, on 1 thread."""
    from edgepress.runtime import bench

    rep = bench.apply(bundle.path, 1, bench.Protocol(warmup_runs=5, warmup_s=0.05, min_runs=20,
                                                     min_s=0.2, memory=False))
    measured_ms = rep["results"]["latency_ms"]["p50"]
    host = host_profile()
    roof_ms = roofline(info, host, bundle.precision, 1)["ms"]
    efficiency = min(1.0, roof_ms / measured_ms) if measured_ms > 0 else 1.0
    return efficiency, (f"measured on this host ({host.description}): p50 {measured_ms:.3f} ms "
                        f"vs its roofline {roof_ms:.4f} ms, 1 thread, {rep['engine']['name']}")


def host_profile() -> Profile:
    """This machine as a profile, from its fingerprint; what it cannot read is assumed."""
    fp = fingerprint.fingerprint()
    isa = set(fp["isa"])
    fp32, int8 = _macs_per_cycle(isa)
    base = profiles.load("x86-64" if fp["arch"] in ("x86_64", "AMD64") else "rpi4")
    ghz = (fp["max_freq_mhz"] or _cpuinfo_mhz() or 3000.0) / 1000.0
    cores = Cores(fp["cpu_model"] or fp["arch"], fp["cores"] or 1, ghz, fp32, int8)
    return replace(base, name="host", cores=(cores,),
                   description=f"{fp['cpu_model'] or fp['arch']} at {ghz:g} GHz")


def _macs_per_cycle(isa: set) -> tuple[int, int]:
    """(fp32, int8) MACs per cycle per core from the vector extensions this CPU reports,
    assuming two vector FMA pipes (most desktop, server and big Arm cores)."""
    if "avx512f" in isa:
        return 32, 128 if "avx512_vnni" in isa else 64
    if "avx2" in isa and "fma" in isa:
        return 16, 64 if "avx_vnni" in isa else 32
    if "asimd" in isa or "neon" in isa:
        return 8, 32 if "asimddp" in isa else 16
    return 4, 8


def _cpuinfo_mhz() -> float | None:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines() \
            if Path("/proc/cpuinfo").exists() else ():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1])
    return None


def _assumptions(device: Profile, precision: str, threads: int, source: str) -> list[str]:
    kind = "int8" if precision in INT8_PRECISIONS else "fp32"
    return [
        f"{device.formula(precision)}; {threads} thread(s) on the fastest cores, scaling linearly",
        f"{kind} kernels; sustained bandwidth {device.bandwidth_gbs:g} GB/s (profile)",
        ("per layer: max(compute, bytes moved / bandwidth); weights read once per inference; "
         "elementwise layers and dispatch overheads are not counted, except through the "
         "efficiency"),
        f"efficiency {source}, assumed to carry over to the device",
        "memory: model file + the largest layer's activations + engine overhead (a lower bound)",
    ]
