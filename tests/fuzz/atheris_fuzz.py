"""Coverage-guided fuzzing of one loader with atheris (libFuzzer for Python), over the same
targets and property as the Hypothesis suite (fuzz_targets.py): the file is accepted, or refused
with a one-line UserError; anything else (another exception, a segfault, an abort) is a crash,
and libFuzzer writes the input that caused it to crash-<sha1> in the work folder it prints.

    python tests/fuzz/atheris_fuzz.py TARGET SEEDS [libFuzzer flags, e.g. -runs=20000
                                                    -max_total_time=600 CORPUS_DIR]

SEEDS is a folder of valid seed files (fuzz_seeds.py; made there first when it does not exist:
a minute, it exports the tiny CNN); the target's seed starts the corpus. edgepress's own modules
are instrumented for coverage; the engines (onnxruntime, LiteRT, torch) are native and are not,
so for them this is a mutation fuzzer guided by edgepress's Python branches only. atheris is
optional (pip install atheris; a Linux x86-64 wheel for CPython 3.11 exists);
test_fuzz_loaders.py runs a short pass when it is installed.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import atheris  # noqa: E402

with atheris.instrument_imports(include=["edgepress"]):
    import edgepress.cli  # noqa: E402,F401
    import edgepress.compress.calibrate  # noqa: E402,F401
    import edgepress.compress.load  # noqa: E402,F401
    import edgepress.compress.recipe  # noqa: E402,F401
    import edgepress.runtime.artifact  # noqa: E402,F401
    import edgepress.runtime.bench  # noqa: E402,F401
    import edgepress.runtime.inspect  # noqa: E402,F401
    import edgepress.runtime.report  # noqa: E402,F401

import fuzz_targets  # noqa: E402


def main() -> None:
    name, seeds = sys.argv[1], Path(sys.argv[2])
    target = fuzz_targets.TARGETS[name]
    if not seeds.exists():
        import fuzz_seeds

        fuzz_seeds.make(seeds)
    work = Path(tempfile.mkdtemp(prefix=f"edgepress-atheris-{name}-"))
    corpus = work / "corpus"
    corpus.mkdir()
    shutil.copy(seeds / target.seed, corpus / "seed")
    flags = [a for a in sys.argv[3:] if a.startswith("-")]
    dirs = [a for a in sys.argv[3:] if not a.startswith("-")] or [str(corpus)]

    def one_input(data: bytes) -> None:
        fuzz_targets.run_case(name, seeds, work / "case", fuzz_targets.Case("atheris", data))

    (work / "case").mkdir()
    print(f"atheris {name}: work folder {work}", file=sys.stderr)
    os.chdir(work)  # crash-* files and stray outputs land here, not in the checkout
    atheris.Setup([sys.argv[0], *flags, *dirs], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
