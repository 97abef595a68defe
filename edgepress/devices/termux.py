"""termux: which install path a device's Python gives, from what it says about itself.

On a phone edgepress runs in Termux, one of two ways:
- inside a proot Debian (proot-distro): glibc, Debian's python3, so the manylinux aarch64 wheels of
  onnxruntime and ai-edge-litert install offline from the package, exactly as on a Raspberry Pi;
- with Termux's own Python (linked against Android's bionic libc, which cannot load manylinux
  wheels): numpy and onnxruntime come from Termux's packages (`pkg install python-onnxruntime`),
  the package brings only the bundle and edgepress's own pure-Python wheel. ONNX only: Termux
  has no LiteRT package.
Everything here decides from preflight facts, before anything is written to the device.
"""

from __future__ import annotations

from dataclasses import replace

from edgepress.devices.profile import Profile
from edgepress.errors import UserError

# Run on the device by deploy's preflight (stdlib only); merged into its facts.
FACTS = """
def _env_facts():
    import importlib.util, os, platform, sys
    tracer = ""
    try:
        with open("/proc/self/status") as f:
            pid = [l.split()[1] for l in f if l.startswith("TracerPid:")][0]
        if pid != "0":
            with open("/proc/%s/comm" % pid) as f:
                tracer = f.read().strip()
    except (OSError, IndexError):
        pass
    api = getattr(sys, "getandroidapilevel", None)
    return {"android_api": api() if api else None, "tracer": tracer,
            "android_fs": os.path.exists("/system/build.prop"),
            "glibc": platform.libc_ver()[1] or None,
            "onnxruntime": importlib.util.find_spec("onnxruntime") is not None}
"""
TERMUX_PACKAGES = ("numpy", "onnxruntime")  # python-numpy, python-onnxruntime


def environment(facts: dict) -> str:
    """termux (Termux's own Python), proot (a glibc Linux inside Termux) or linux."""
    if facts.get("android_api"):
        return "termux"
    if facts.get("tracer") == "proot" or facts.get("android_fs"):
        return "proot"
    return "linux"


def describe(facts: dict) -> str:
    """The sentence deploy prints about the install path taken."""
    env, py = environment(facts), facts["python"]
    if env == "termux":
        return (f"Termux's own Python {py} (Android API {facts['android_api']}) with its "
                f"python-numpy and python-onnxruntime packages: ONNX only")
    glibc = f"glibc {facts.get('glibc') or '?'}"
    if env == "proot":
        return f"Debian-style Linux in proot on Android ({glibc}, Python {py}): offline package"
    return f"Linux ({glibc}, Python {py}): offline package"


def adapt(prof: Profile, facts: dict, fmt: str, where) -> Profile:
    """The profile to package for: unchanged for glibc Linux (proot included); for Termux's own
    Python, its packages instead of wheels, or one line saying what is missing."""
    if environment(facts) != "termux":
        return prof
    if fmt != "onnx":
        raise UserError(f"{where} runs Termux's own Python, which has no LiteRT: deploy an ONNX "
                        f"bundle, or run sshd inside a proot Debian (proot-distro) for {fmt}")
    if not facts.get("system_numpy") or not facts.get("onnxruntime"):
        raise UserError(f"{where} runs Termux's own Python without numpy and onnxruntime: run "
                        f"`pkg install python-onnxruntime` in Termux (manylinux wheels do not "
                        f"load on Android's libc)")
    return replace(prof, python=facts["python"], system_packages=TERMUX_PACKAGES,
                   engines={"onnx": "onnxruntime", "tflite": ""})
