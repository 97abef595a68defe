"""The `edgepress` command: a thin argparse layer over the public functions, one module per
command group (compress, verify, bench, reports, inspect, devices), each with register(sub).

User mistakes (edgepress.errors.UserError) print one line and exit 2; `--debug` shows tracebacks.
Host-side modules (torch) are imported only by the commands that need them: building the parser
imports no torch.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from edgepress import __version__
from edgepress.cli import bench, compress, devices, inspect, quiet, reports, verify
from edgepress.cli.parser import Parser
from edgepress.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgepress", description="Make trained PyTorch models small and fast "
                     "for edge devices: export, verify and measure them.")
    parser.add_argument("--version", action="version", version=f"edgepress {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (and --verbose)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the engines' and libraries' own log lines, warnings and "
                             "progress bars")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (compress, verify, bench, reports, inspect, devices):
        group.register(sub)
    return parser


def _terminate(signum, frame):
    # SIGTERM (a service manager, `timeout`, CI) unwinds like Ctrl-C, so temp outputs are
    # removed and nothing half-written remains; SIGKILL cannot be caught (see atomic.recover).
    raise KeyboardInterrupt


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    debug, verbose = "--debug" in argv, "--verbose" in argv
    if debug or verbose:
        from edgepress.runtime import enginelog
        enginelog.show()  # sets EDGEPRESS_ENGINE_LOGS=1, so child processes inherit it
    quiet.apply(verbose, debug)  # before any command imports a library
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv)  # recorded verbatim in reports
        return args.func(args)
    except UserError as e:
        if debug:
            raise
        print(f"edgepress: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepress: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
