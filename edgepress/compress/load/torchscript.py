"""TorchScript (.pt) and ExportedProgram (.pt2) files, converted to ordinary modules called by
input name; a pickled whole model only behind --trust-pickle."""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path

from edgepress.compress.load.loaded import TRUST_PICKLE_WARNING, Loaded, unpickle
from edgepress.errors import ARCHIVE_ERRORS, UserError, first_line
from edgepress.runtime import shapes
from edgepress.runtime.artifact import sha256_file


def load(source, weights, given, trust_pickle) -> Loaded:
    import torch

    path = Path(source)
    if not _is_torchscript_archive(path):
        if trust_pickle:
            return _pickled_module(source, given)
        raise UserError(f"{source!r} is not a TorchScript archive (torch.jit.save); a pickled "
                        f"model is refused because loading it could execute code: use a factory "
                        f"with --weights, an ExportedProgram (.pt2) or TorchScript (or "
                        f"--trust-pickle for a file you made or fully trust)")
    _check_records(path, source)
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise UserError(f"{source!r} is not a loadable TorchScript file ({first_line(e)})") \
            from None
    names = [a.name for a in module.forward.schema.arguments[1:]]
    specs = shapes.resolve(names, given, declared={}, what=f"TorchScript {source!r}")
    model, note = _script_to_module(module, specs)
    return Loaded("torchscript", source, specs, model=model, notes=[note],
                  provenance={"path": source, "sha256": sha256_file(path)})


def _check_records(path: Path, source: str) -> None:
    """torch.jit.load does not check that a tensor record holds the data its pickle declares:
    a TorchScript file with a truncated data/N record loads, then reads past the end of the
    buffer and segfaults when run (found by tests/fuzz). Each storage that data.pkl and
    constants.pkl declare ('storage', torch.XStorage, key, location, numel) must fit its
    record. The pickles are only scanned as opcodes (pickletools), never executed."""
    import pickletools

    try:
        with zipfile.ZipFile(path) as z:
            sizes = {n: z.getinfo(n).file_size for n in z.namelist()}
            for pkl in [n for n in sizes if n.rsplit("/", 1)[-1] in ("data.pkl", "constants.pkl")]:
                folder = pkl[:-len(".pkl")]
                for key, storage, numel in _declared_storages(pickletools.genops(z.read(pkl))):
                    need = numel * _STORAGE_BYTES.get(storage, 1)
                    if sizes.get(f"{folder}/{key}", -1) < need:
                        raise UserError(f"{source!r}: tensor record {folder}/{key} is missing or "
                                        f"shorter than the {need} bytes it declares (truncated "
                                        f"or damaged TorchScript archive)")
    except (*ARCHIVE_ERRORS, KeyError) as e:
        raise UserError(f"{source!r} is not a loadable TorchScript file ({first_line(e)})") \
            from None


_STORAGE_BYTES = {"DoubleStorage": 8, "LongStorage": 8, "ComplexFloatStorage": 8,
                  "ComplexDoubleStorage": 16, "FloatStorage": 4, "IntStorage": 4,
                  "QInt32Storage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "ShortStorage": 2}


def _declared_storages(ops):
    """(key, storage class name, numel) of each persistent id in a TorchScript pickle."""
    pushed, memo = [], {}
    for op, arg, _pos in ops:
        name = op.name
        if name in ("GLOBAL",):
            pushed.append(("global", arg.split(" ")[-1]))
        elif name == "STACK_GLOBAL":
            pushed[-2:] = [("global", pushed[-1] if pushed else None)]
        elif isinstance(arg, (str, int)) and "GET" not in name and "PUT" not in name:
            pushed.append(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo.get(arg))
        elif name == "BINPERSID":
            tag, cls, key, _location, numel = ([None] * 5 + pushed)[-5:]
            if tag == "storage" and isinstance(cls, tuple) and isinstance(numel, int):
                yield str(key), cls[1], numel
        elif name not in ("MARK", "TUPLE", "PROTO", "FRAME"):
            pushed.append(None)


def _pickled_module(source: str, given) -> Loaded:
    """A whole module saved with torch.save (a pickle): only with --trust-pickle."""
    import torch

    model = unpickle(Path(source))
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{source!r} unpickled to {type(model).__name__}, not a torch.nn.Module")
    names = list(inspect.signature(model.forward).parameters)
    specs = shapes.resolve(names, given, declared={}, what=f"pickled model {source!r}")
    return Loaded("pickle", source, specs, model=model.eval(),
                  notes=[TRUST_PICKLE_WARNING.format(path=source)],
                  provenance={"kind": "pickle", "path": source, "sha256": sha256_file(Path(source))})


def _is_torchscript_archive(path: Path) -> bool:
    # torch.jit.save writes a zip holding <name>/code/ (the TorchScript source); a plain
    # torch.save pickle has no code/ directory.
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except ARCHIVE_ERRORS:
        return False


def _script_to_module(module, specs):
    """TorchScript cannot go through torch.export (so neither the dynamo ONNX exporter nor
    litert-torch): convert it to an ExportedProgram once, and everything downstream sees an
    ordinary module. The converter is private API (torch._export.converter), the only one
    upstream offers for this: where it is missing or its interface changed, the ScriptModule
    itself is the model (called by input name; torch.onnx's TorchScript-based exporter takes
    it, litert-torch does not, so only that bundle fails, recorded by guard.build)."""
    import torch

    converter = _converter()
    if converter is None:
        return module, ("TorchScript kept as a ScriptModule: this torch has no usable "
                        "torch._export.converter.TS2EPConverter (TFLite export needs it)")
    examples = shapes.random_inputs(specs, 1, seed=0)
    args = tuple(torch.from_numpy(examples[s.name][0, ...]) for s in specs)
    try:
        ep = converter(module, args).convert()
    except (TypeError, AttributeError) as e:  # the private interface changed, not the model
        return module, (f"TorchScript kept as a ScriptModule: torch's TS2EPConverter "
                        f"interface changed ({first_line(e)}); TFLite export needs it")
    except Exception as e:
        raise UserError(f"TorchScript model cannot be converted for export "
                        f"({first_line(e)})") from None
    return Named(ep.module(), [s.name for s in specs]), \
        "TorchScript converted to an ExportedProgram (torch TS2EPConverter)"


def _converter():
    """torch's TS2EPConverter class, when this torch has it (a feature check, not a version
    check: the module is private and may move)."""
    try:
        from torch._export.converter import TS2EPConverter
    except ImportError:
        return None
    return TS2EPConverter if callable(getattr(TS2EPConverter, "convert", None)) else None


def load_exported(source, weights, given, trust_pickle) -> Loaded:
    import torch

    try:
        ep = torch.export.load(source)
    except Exception as e:
        raise UserError(f"{source!r} is not a loadable ExportedProgram (torch.export.save) "
                        f"({first_line(e)})") from None
    declared = {}
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user and hasattr(node.meta.get("val"), "shape"):
            v = node.meta["val"]
            declared[node.name] = (tuple(int(d) for d in v.shape), str(v.dtype).replace("torch.", ""))
    names = list(ep.graph_signature.user_inputs)
    specs = shapes.resolve(names, given, declared, what=f"ExportedProgram {source!r}")
    return Loaded("exported-program", source, specs, model=Named(ep.module(), names),
                  provenance={"path": source, "sha256": sha256_file(Path(source))})


def Named(inner, names):  # noqa: N802 - builds a module; torch is imported lazily in this file
    """Wraps a positional-only module (what ExportedProgram.module() returns, with placeholder
    names like `x_1`) so it is called by our input names, as every other source is."""
    import torch

    class _Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs):
            return self.inner(*[inputs[n] for n in names])

        def train(self, mode: bool = True):
            # ExportedProgram modules refuse train()/eval() (their mode is fixed at export);
            # don't recurse into them.
            self.training = mode
            return self

    return _Named()
