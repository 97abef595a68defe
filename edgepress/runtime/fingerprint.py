"""fingerprint: what machine measured a report, read from /proc and /sys where they exist.

Enough to tell whether two reports are comparable (same CPU, same cores, same governor) and to
explain a figure later (a board model, a clock pinned low, a phone's SoC). Every field is best
effort: a container or another OS may hide /sys, and a missing value is recorded as null, never
guessed. On Android (Termux, or a proot Debian inside it) the phone's model and SoC come from the
system properties (`getprop`), else from the kernel's socinfo files.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from edgepress.runtime import cores

# ISA features that change which kernels an engine picks (int8 dot products, wide vectors).
ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
       "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimdhp", "fphp",
       "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")

# Arm "CPU part" numbers (implementer 0x41) of cores found on edge boards, for CPUs whose
# /proc/cpuinfo has no model name.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
             "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C",
             "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720"}

_CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq"


def fingerprint() -> dict:
    cpuinfo = _read("/proc/cpuinfo")
    return {
        "arch": platform.machine(),
        "cpu_model": _cpu_model(cpuinfo),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "isa": isa_features(cpuinfo),
        "governor": _read(f"{_CPUFREQ}/scaling_governor").strip() or None,
        "cur_freq_mhz": _khz_to_mhz(_read(f"{_CPUFREQ}/scaling_cur_freq")),
        "max_freq_mhz": _khz_to_mhz(_read(f"{_CPUFREQ}/cpuinfo_max_freq")),
        "board_model": _board_model(cpuinfo),
        "ram_bytes": _ram_bytes(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()}",
        "os_release": _os_release(),
        "python": platform.python_version(),
        "emulated": emulation(),
        "cpu_clusters": cores.clusters(cores.topology()),
        **phone(cpuinfo),
    }


def phone(cpuinfo: str, root="/", props: dict | None = None) -> dict:
    """The phone's model, SoC and Android version where readable (all None elsewhere)."""
    props = android_properties() if props is None else props
    soc0 = Path(root) / "sys/devices/soc0"
    soc = (_join(props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) or
           _join(_read(str(soc0 / "family")).strip(), _read(str(soc0 / "machine")).strip()) or
           _field(cpuinfo, ("Hardware",)))
    release = props.get("ro.build.version.release")
    return {"phone_model": _join(props.get("ro.product.manufacturer"),
                                 props.get("ro.product.model")),
            "soc": soc, "soc_platform": props.get("ro.board.platform"),
            "android": f"{release} (API {props.get('ro.build.version.sdk')})" if release else None}


def android_properties() -> dict:
    """Android's system properties via `getprop` (in Termux's PATH; /system/bin inside proot);
    {} where there is none."""
    tool = shutil.which("getprop") or ("/system/bin/getprop"
                                       if os.path.exists("/system/bin/getprop") else None)
    if tool is None:
        return {}
    try:
        out = subprocess.run([tool], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_getprop(out)


def parse_getprop(text: str) -> dict:
    """`[key]: [value]` lines, as getprop prints them."""
    props = {}
    for line in text.splitlines():
        key, sep, value = line.partition("]: [")
        if sep and key.startswith("[") and value.endswith("]"):
            props[key[1:]] = value[:-1]
    return props


def _join(*parts) -> str | None:
    return " ".join(p for p in parts if p) or None


def emulation() -> str | None:
    """'qemu-user' when this process's arch differs from the kernel's (binfmt_misc runs it under
    an emulator: its latency means nothing); None on real hardware, or where the kernel has no
    /proc/sys/kernel/arch to ask. qemu-user rewrites `uname -m` but not that file."""
    kernel = _read("/proc/sys/kernel/arch").strip()
    machine = platform.machine()
    if kernel and machine and kernel != machine and not _same_family(kernel, machine):
        return "qemu-user"
    return None


def _same_family(kernel: str, machine: str) -> bool:
    # a 32-bit userland on a 64-bit kernel is native, not emulated (armv7l on aarch64, i686 on
    # x86_64)
    return {kernel, machine} <= {"aarch64", "armv7l", "armv8l", "armv6l"} or \
        {kernel, machine} <= {"x86_64", "i686", "i386"}


def isa_features(cpuinfo: str) -> list[str]:
    flags = set()
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in ISA if f in flags)


def int8_family() -> str:
    """'x86-vnni', 'x86' or 'arm': the CPU family onnxruntime's int8 kernels differ by (the one
    place edgepress reads this host's ISA for a decision)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return "arm"
    cpuinfo = _read("/proc/cpuinfo")
    if not cpuinfo:
        return "x86"
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa_features(cpuinfo))
    return "x86-vnni" if vnni else "x86"


def _cpu_model(cpuinfo: str) -> str | None:
    name = _field(cpuinfo, ("model name", "Model name", "cpu model", "Processor"))
    if name:
        return name
    part = _field(cpuinfo, ("CPU part",))
    if part and _field(cpuinfo, ("CPU implementer",)) == "0x41":
        return f"Arm {ARM_PARTS.get(part, 'part ' + part)}"
    return platform.processor() or None


def _board_model(cpuinfo: str) -> str | None:
    # Raspberry Pi and most Arm boards: the device tree; older Pi kernels: cpuinfo's "Model";
    # x86 machines: the DMI product name (a laptop model, or a cloud instance type).
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model",
                 "/sys/class/dmi/id/product_name"):
        text = _read(path).replace("\x00", "").strip()
        if text:
            return text
    return _field(cpuinfo, ("Model",))


def _field(cpuinfo: str, keys) -> str | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return value.strip()
    return None


def _ram_bytes() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # the kernel's "kB" is KiB
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _os_release() -> str | None:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def _khz_to_mhz(text: str) -> float | None:
    try:
        return int(text.strip()) / 1000.0
    except ValueError:
        return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
