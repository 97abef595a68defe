"""`edgepress devices`, `estimate`, `package`, `deploy`: device profiles and getting a bundle onto
a device (device side: no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from edgepress.cli.output import table
from edgepress.cli.parser import Parser


def register(sub) -> None:
    _add_devices(sub)
    _add_estimate(sub)
    _add_package(sub)
    _add_deploy(sub)


def _add_devices(sub):
    p = sub.add_parser("devices", help="device profiles: `devices list`, `devices show NAME`")
    dsub = p.add_subparsers(dest="devices_command", required=True, parser_class=Parser)
    dsub.add_parser("list", help="the known devices").set_defaults(func=_devices)
    show = dsub.add_parser("show", help="one device's figures, with the peak ops formulas")
    show.add_argument("name", help="a known device, or a profile .toml file")
    show.set_defaults(func=_devices)


def _devices(args) -> int:
    from edgepress.devices import profile

    if args.devices_command == "list":
        rows = [(p.name, p.arch, " + ".join(f"{c.count}x {c.model} {c.clock_ghz:g} GHz"
                                            for c in p.cores),
                 f"{p.ram_mb / 1024:g}", f"{p.peak_gops('fp32'):g}", f"{p.peak_gops('int8'):g}",
                 p.python or "-") for p in map(profile.load, profile.names())]
        table(("device", "arch", "cores", "RAM GB", "fp32 GOPS", "int8 GOPS", "python"), rows)
        return 0
    p = profile.load(args.name)
    print(f"{p.name}: {p.description}")
    print(f"arch     {p.arch}, Python {p.python or '- (no wheels: estimates only)'}, "
          f"glibc {p.glibc or '-'}; wheels tagged {', '.join(p.platform_tags()[:1]) or '-'}")
    for c in p.cores:
        print(f"cores    {c.count}x {c.model} at {c.clock_ghz:g} GHz: {c.fp32_macs_per_cycle} fp32 "
              f"/ {c.int8_macs_per_cycle} int8 MACs per cycle")
    print(f"ISA      {', '.join(p.isa)}")
    print("caches   " + ", ".join(f"{k.removesuffix('_kb')} {v} KiB" for k, v in p.caches.items()))
    print(f"memory   {p.ram_mb:,} MiB RAM, {p.bandwidth_gbs:g} GB/s sustained")
    print(f"         {p.formula('fp32')}")
    print(f"         {p.formula('int8')}")
    print(f"engine   onnx: {p.engines['onnx']}, tflite: {p.engines['tflite']}, "
          f"threads {p.threads}")
    return 0


def _bundle_on_device(p) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("--device", required=True, help="a known device (see `devices list`) or a "
                                                   "profile .toml file")


def _add_estimate(sub):
    p = sub.add_parser("estimate", help="roofline latency estimate and RAM fit of a bundle on "
                                        "a device")
    _bundle_on_device(p)
    p.add_argument("--threads", type=int, help="default: the device's recommended threads")
    p.add_argument("--efficiency", type=float, help="fraction of the roofline the engine "
                   "reaches (default: measured on this host with the bundle)")
    p.add_argument("--report", action="append", default=[], type=Path,
                   help="a bench report from the device, shown beside the estimate (repeat)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_estimate)


def _estimate(args) -> int:
    from edgepress.devices import estimate, profile
    from edgepress.runtime import report

    est = estimate.apply(args.bundle, profile.load(args.device), args.threads, args.efficiency)
    reps = [report.load(r) for r in args.report]
    if args.json:
        print(json.dumps({**est, "reports": [{"path": str(p), "device": r["device"],
                                              "latency_ms": r["results"]["latency_ms"]}
                                             for p, r in zip(args.report, reps)]}, indent=1))
        return 0
    mem = est["memory"]
    print(f"ESTIMATE {est['bundle']} on {est['device']} ({est['precision']}, {est['threads']} "
          f"threads): {est['latency_ms']:.3f} ms per inference")
    print(f"  roofline {est['roofline_ms']:.4f} ms ({est['compute_bound_layers']} layers "
          f"compute-bound, {est['memory_bound_layers']} memory-bound) / efficiency "
          f"{est['efficiency']:.3f}")
    print(f"  memory: needs {mem['needed_bytes'] / 2**20:.1f} MiB of {mem['ram_bytes'] / 2**20:,.0f}"
          f" MiB RAM{' (tight)' if mem['tight'] else ''}: weights "
          f"{mem['weights_bytes'] / 2**20:.2f} + activations "
          f"{mem['peak_activations_bytes'] / 2**20:.2f} + {mem['engine']} "
          f"{mem['engine_overhead_bytes'] / 2**20:.0f} MiB")
    for a in est["assumptions"]:
        print(f"  assumes: {a}")
    for line in estimate.check_lines(est):
        print(line)
    for path, r in zip(args.report, reps):
        d = r["device"]
        flag = " EMULATED: latency means nothing" if d.get("emulated") else ""
        print(f"MEASURED {path}: p50 {r['results']['latency_ms']['p50']:.3f} ms on "
              f"{d.get('board_model') or d.get('cpu_model')} ({d['arch']}), "
              f"{r['engine']['name']} {r['engine']['threads']} threads{flag}")
    return 0


def _add_package(sub):
    p = sub.add_parser("package", help="an offline deployment package for a device: bundle, "
                                       "wheels, run script")
    _bundle_on_device(p)
    p.add_argument("--out", required=True, type=Path, help="PKG.tar.gz")
    p.add_argument("--python", help="the device's Python as X.Y (default: the profile's)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_package)


def _package(args) -> int:
    from edgepress.devices import package, profile

    pkg = package.build(args.bundle, profile.load(args.device), args.out, args.python,
                        args.overwrite)
    m = pkg.manifest
    print(f"wrote {pkg.path} ({pkg.size_bytes / 2**20:.1f} MiB, sha256 {pkg.sha256}) for "
          f"{m['device']} ({m['arch']}, Python {m['python']}, {m['engine']})")
    print(f"wheels: {', '.join(m['wheels'])}")
    print(f"on the device: mkdir pkg && tar xzf {pkg.path.name} -C pkg && sh pkg/run.sh")
    return 0


def _add_deploy(sub):
    p = sub.add_parser("deploy", help="install a bundle on a device over SSH, verify and bench "
                                      "it there, bring the report back")
    p.add_argument("bundle", type=Path)
    p.add_argument("target", help="ssh://user@host[:port], or adb://[user@]SERIAL[:port] for a "
                                  "phone's Termux sshd over USB (port 8022)")
    p.add_argument("--device", required=True, help="a known device or a profile .toml file")
    p.add_argument("--identity", type=Path, help="private key (default: ~/.ssh's keys and "
                                                 "ssh-agent); never a password")
    p.add_argument("--known-hosts", type=Path, help="default ~/.ssh/known_hosts: the device's "
                                                    "host key must be there")
    p.add_argument("--out", type=Path, help="where to write the device's bench report")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--runs", type=int, default=50, help="bench: minimum timed runs")
    p.add_argument("--min-seconds", type=float, default=1.0, help="bench: minimum timed time")
    p.set_defaults(func=_deploy)


def _deploy(args) -> int:
    from edgepress.devices import deploy

    flags = ["--runs", str(args.runs), "--min-seconds", str(args.min_seconds)]
    res = deploy.apply(args.bundle, args.target, args.device, args.identity, args.known_hosts,
                       args.out, flags, overwrite=args.overwrite)
    v = res.verdict
    print(f"installed release {res.release} on {res.target} ({res.facts['machine']}, Python "
          f"{res.facts['python']}); package sha256 {res.package.sha256}")
    print(f"environment: {res.environment}")
    worst = min((m["snr_db"] for m in v["metrics"].values()), default=float("nan"))
    print(f"verify on the device: {'PASS' if v['passed'] else 'FAIL'} ({v['precision']}, "
          f"{v['samples']} samples, SNR {worst:.1f} dB)")
    for f in v["failures"]:
        print(f"FAIL {f}")
    if res.report is None:
        print("the device keeps its previous install (the new one failed verification)")
        return 1
    d, lat = res.report["device"], res.report["results"]["latency_ms"]
    flag = f"; EMULATED ({d['emulated']}): latency means nothing" if d.get("emulated") else ""
    print(f"bench on the device: p50 {lat['p50']:.3f} ms, {res.report['engine']['name']} "
          f"{res.report['engine']['threads']} threads, {d['arch']}, "
          f"{d.get('board_model') or d.get('cpu_model')}{flag}")
    if res.report_path:
        print(f"wrote {res.report_path}")
    return 0
