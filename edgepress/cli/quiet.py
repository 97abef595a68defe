"""quiet: other libraries' import-time and progress noise kept off the terminal, unless the user
asks for it with --verbose or --debug.

What reached the terminal before edgepress said anything, with a Hugging Face directory: torch's
pytree FutureWarnings (a library still calling the deprecated `_register_pytree_node`), torchao's
`logger.warning("Failed to load .../_C_mxfp8...so")` at import (no handler configured, so
Python's last-resort handler prints it), torch's own logger's "W... torch/utils/_pytree.py:630]
<enum ...> is an Enum subclass" lines (torchao registering its enums) and transformers' "Loading
weights" tqdm bar. Each is switched off where it is decided, before those libraries are imported:

- warnings attributed to any module outside edgepress are ignored (edgepress's own stay);
- a NullHandler on the root logger, so records of libraries that configure no handler are
  dropped instead of reaching the last-resort handler (edgepress prints what it says itself);
- transformers' own logger at errors, huggingface_hub's / transformers' progress bars off and
  torch's logger (which has its own handler) at errors, through the environment variables they
  read at import (TORCH_LOGS="-torch": torch's syntax for ERROR; a value the user set is kept).

With --verbose or --debug nothing is changed, and logging shows INFO (DEBUG) records.
"""

from __future__ import annotations

import logging
import os
import warnings

_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TORCH_LOGS": "-torch"}


def apply(verbose: bool, debug: bool) -> None:
    if verbose or debug:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO)
        return
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", module=r"(?!edgepress(\.|$))")
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
