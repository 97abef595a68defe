"""Runs one fuzz target's Hypothesis search in this process: `python fuzz_worker.py TARGET SEEDS
WORK EXAMPLES`. The parent (test_fuzz_loaders.py) runs it as a child, so a segfault or abort in
a native engine ends this process, not the test runner: the parent then reports the case that
was running (WORK/current-case.txt, the file itself left in WORK). A case that hangs is stopped
by faulthandler after HANG_S with every thread's stack. Exit 0: every case passed; 1: a case
raised something other than a one-line UserError (Hypothesis' shrunk example on stderr)."""

import faulthandler
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # fuzz_targets, tiny_models

from hypothesis import HealthCheck, given, settings  # noqa: E402

import fuzz_targets  # noqa: E402

HANG_S = 120  # a hang detector, not a timing gate: one tiny model loads in well under a second


def fuzz(name: str, seeds: Path, work: Path, n: int) -> None:
    """Hypothesis over one target, in the calling process."""
    target = fuzz_targets.TARGETS[name]

    @settings(max_examples=n, deadline=None, database=None, print_blob=True,
              derandomize="EDGEPRESS_FUZZ_EXAMPLES" not in os.environ,
              suppress_health_check=list(HealthCheck))
    @given(case=fuzz_targets.strategy(target, seeds))
    def prop(case):
        faulthandler.dump_traceback_later(HANG_S, exit=True)
        try:
            fuzz_targets.run_case(name, seeds, work, case)
            if os.environ.get("EDGEPRESS_FUZZ_SELFTEST") == "segfault":  # the parent's own test
                import ctypes

                ctypes.string_at(0)
        finally:
            faulthandler.cancel_dump_traceback_later()

    prop()


MEMORY_LIMIT = 4 << 30  # bytes of heap: a damaged shape must not take a shared machine down


if __name__ == "__main__":
    faulthandler.enable()  # a native crash prints the Python stack before the process dies
    import resource

    # A tensor shape mutated to billions of elements makes an engine allocate that much (LiteRT
    # took 2 GB and counting for a 16x33554448x8 activation, found by atheris); past the limit
    # the allocation fails, and the case is reported like any other crash.
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    name, seeds, work, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    try:
        fuzz(name, seeds, work, n)
    except Exception as e:  # Hypothesis re-raises the shrunk failure; say it in one place
        import traceback

        traceback.print_exc()
        print(f"FUZZ FAILURE {name}: {type(e).__name__}: {str(e)[:500]}", file=sys.stderr)
        sys.exit(1)
    print(f"fuzz {name}: {n} cases passed")
