"""load: turn a SOURCE string into a torch module (or an ONNX file) plus its declared inputs.

Source kinds (detected from the string): a factory `pkg.mod:fn` / `path/file.py:fn` with optional
weights, a TorchScript file, an ExportedProgram `.pt2`, a Hugging Face-style directory, or an
`.onnx` file. Nothing here unpickles arbitrary objects: weights are safetensors or a state dict
read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


from edgepress.runtime import shapes
from edgepress.options import Model
from edgepress.errors import ARCHIVE_ERRORS, UserError, first_line
from edgepress.runtime.artifact import TensorSpec, sha256_file


@dataclass
class Loaded:
    """What the later stages need: a module (or an ONNX file), its inputs, and provenance."""

    kind: str
    source: str
    inputs: list[TensorSpec]
    model: object = None  # torch.nn.Module in eval mode, unless kind == "onnx"
    onnx_path: Path | None = None
    provenance: dict = field(default_factory=dict)  # for the manifest's "source"
    notes: list = field(default_factory=list)  # what was done to the source, in words
    int_high: dict = field(default_factory=dict)  # input name -> exclusive upper bound of ids
    extra_files: dict = field(default_factory=dict)  # bundle-relative name -> source Path


def apply(state, cfg: Model):
    """The stage: loads [model] source into state.loaded."""
    check(cfg)
    state.loaded = open_source(cfg.source, cfg.weights, cfg.input_shape, cfg.trust_pickle)
    state.stages["load"] = {"kind": state.loaded.kind, "notes": state.loaded.notes}
    return state


def example(loaded: Loaded, seed: int = 0) -> dict:
    """One random sample of the model's inputs, as tensors: the shapes a stage traces with."""
    import torch

    one = shapes.random_inputs(loaded.inputs, 1, seed, loaded.int_high)
    return {k: torch.from_numpy(v[0]) for k, v in one.items()}


def check(cfg: Model) -> Model:
    if not cfg.source:
        raise UserError("no model: give SOURCE (or [model] source in the recipe)")
    return cfg


def outputs(out) -> list:
    """What a model returned, as the flat list of tensors every stage works with (tensors,
    tuples/lists/dicts of them, nested): decided here, once."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in outputs(o)]
    raise UserError(f"the model returned {type(out).__name__}; edgepress needs tensors (or "
                    f"tuples/dicts of tensors) as outputs")


def open_source(source: str, weights: str | None = None, input_shapes=(),
                trust_pickle=False) -> Loaded:
    """Loads SOURCE; `input_shapes` are the raw --input-shape strings."""
    kind = detect(source)
    if weights is not None and kind != "factory":
        raise UserError(f"--weights applies to a factory source (module:function), not to a "
                        f"{kind} source {source!r}")
    given = shapes.parse_all(input_shapes)
    loaded = KINDS[kind](source, weights, given, trust_pickle)
    loaded.provenance.setdefault("kind", kind)
    loaded.provenance.setdefault("path", source)
    return loaded


def detect(source: str) -> str:
    """The kind of SOURCE, or a clear error listing the accepted forms."""
    path = Path(source)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        raise UserError(f"source directory {source!r} has no config.json (a Hugging Face-style "
                        f"model directory needs config.json + model.safetensors)")
    suffix = path.suffix.lower()
    if suffix in _FILE_KINDS:
        if not path.is_file():
            raise UserError(f"source file {source!r} does not exist")
        return _FILE_KINDS[suffix]
    if ":" in source:
        return "factory"
    if path.exists():
        raise UserError(f"source {source!r}: unknown file type {path.suffix!r}; valid: "
                        f"{', '.join(sorted(_FILE_KINDS))}, a model directory, or module:function")
    raise UserError(f"source {source!r} does not exist and is not a factory (module:function or "
                    f"path/file.py:function)")


_FILE_KINDS = {".onnx": "onnx", ".pt2": "exported-program", ".pt": "torchscript",
               ".pth": "torchscript", ".ts": "torchscript", ".jit": "torchscript",
               ".torchscript": "torchscript"}


# ---- factory --------------------------------------------------------------------------------

def _factory(source, weights, given, trust_pickle) -> Loaded:
    import torch

    fn = _resolve_factory(source)
    try:
        model = fn()
    except Exception as e:
        raise UserError(f"factory {source!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"factory {source!r} returned {type(model).__name__}, not a "
                        f"torch.nn.Module")
    prov = {"kind": "factory", "path": source}
    if weights is not None:
        prov["weights"] = _load_weights(model, Path(weights), trust_pickle)
    names = list(inspect.signature(model.forward).parameters)
    specs = shapes.resolve(names, given, declared={}, what=f"factory {source!r}")
    return Loaded("factory", source, specs, model=model.eval(), provenance=prov)


def _resolve_factory(source: str):
    target, _, attr = source.rpartition(":")
    if not target or not attr:
        raise UserError(f"factory {source!r} must be module:function or path/file.py:function")
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UserError(f"factory {source!r}: {target} has no callable {attr!r}; it has: "
                        f"{', '.join(public[:12]) or 'nothing callable'}")
    return fn


def _import_file(path_str: str):
    path = Path(path_str)
    if not path.is_file():
        raise UserError(f"factory file {path_str!r} does not exist")
    name = f"_edgepress_factory_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling need the module registered
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserError(f"factory file {path_str!r} failed to import: {type(e).__name__}: {e}") \
            from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UserError(f"factory module {name!r} cannot be imported: {e}") from None
    except Exception as e:
        raise UserError(f"factory module {name!r} failed to import: {type(e).__name__}: {e}") \
            from None


def _load_weights(model, path: Path, trust_pickle: bool = False) -> dict:
    """Loads a state dict strictly into `model`; returns provenance for the manifest."""
    import torch

    if not path.is_file():
        raise UserError(f"weights file {str(path)!r} does not exist")
    state = _read_state_dict(path, trust_pickle)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise UserError(f"weights {str(path)!r} do not match the model: {'; '.join(parts)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return {"path": str(path), "sha256": sha256_file(path), "tensors": len(state)}


def _read_state_dict(path: Path, trust_pickle: bool = False) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"weights {str(path)!r} are not a valid .safetensors file ({e})") \
                from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-carrying pickles, RuntimeError for junk
        unsafe = "weights_only" in str(e) or "Unsupported global" in str(e)
        if unsafe and trust_pickle:
            state = _unpickle(path)
        else:
            why = ("it holds objects other than tensors, and unpickling them could execute code "
                   "(pass --trust-pickle only if you made or fully trust this file)" if unsafe
                   else f"not a readable torch state dict ({type(e).__name__})")
            raise UserError(f"weights {str(path)!r} refused: {why}; save a state dict of "
                            f"tensors or use .safetensors") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights {str(path)!r} are not a state dict (name -> tensor)")
    return state


TRUST_PICKLE_WARNING = ("--trust-pickle: unpickled {path}; unpickling runs any code the file "
                        "carries, so do this only for files you made or fully trust")


def _unpickle(path: Path):
    """The one place edgepress unpickles, and only behind --trust-pickle."""
    import sys

    import torch

    print(f"warning: {TRUST_PICKLE_WARNING.format(path=path)}", file=sys.stderr)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"{str(path)!r} cannot be unpickled ({first_line(e)})") from None


# ---- TorchScript and ExportedProgram --------------------------------------------------------

def _torchscript(source, weights, given, trust_pickle) -> Loaded:
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

    model = _unpickle(Path(source))
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
    upstream offers for this."""
    import torch
    from torch._export.converter import TS2EPConverter

    examples = shapes.random_inputs(specs, 1, seed=0)
    args = tuple(torch.from_numpy(examples[s.name][0]) for s in specs)
    try:
        ep = TS2EPConverter(module, args).convert()
    except Exception as e:
        raise UserError(f"TorchScript model cannot be converted for export "
                        f"({first_line(e)})") from None
    return Named(ep.module(), [s.name for s in specs]), \
        "TorchScript converted to an ExportedProgram (torch TS2EPConverter)"


def _exported(source, weights, given, trust_pickle) -> Loaded:
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


# ---- Hugging Face directory -----------------------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                    "merges.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def _hf(source, weights, given, trust_pickle) -> Loaded:
    import json

    directory = Path(source)
    safetensors = (directory / "model.safetensors").is_file()
    pickled = trust_pickle and (directory / "pytorch_model.bin").is_file()
    if not safetensors and not pickled:
        raise UserError(f"model directory {source!r} has no model.safetensors (pickled "
                        f"pytorch_model.bin is refused: loading it could execute code; "
                        f"--trust-pickle allows it)")
    try:
        import transformers
    except ImportError:
        raise UserError("a Hugging Face-style directory needs transformers: "
                        "pip install 'edgepress[hf]'") from None
    try:
        config = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{source}/config.json is not valid JSON ({e})") from None
    _check_hf_config(config, source)
    model = _hf_model(transformers, directory, config, use_safetensors=safetensors)
    seq = min(128, int(config.get("max_position_embeddings", 128)))
    declared = {"input_ids": ((1, seq), "int64"), "attention_mask": ((1, seq), "int64")}
    specs = shapes.resolve(["input_ids", "attention_mask"], given, declared, what=source)
    extra = {f"tokenizer/{n}": directory / n for n in _TOKENIZER_FILES if (directory / n).is_file()}
    vocab = int(config.get("vocab_size", 2))
    return Loaded("hf", source, specs, model=model, extra_files=extra,
                  int_high={"input_ids": vocab, "attention_mask": 2},
                  provenance={"path": source,
                              "sha256": sha256_file(directory / ("model.safetensors"
                                                                 if safetensors else
                                                                 "pytorch_model.bin")),
                              "architecture": (config.get("architectures") or ["AutoModel"])[0]})


def _check_hf_config(config, source: str) -> None:
    """The keys edgepress reads itself, typed (found by tests/fuzz: "architectures": [null]
    reached getattr(transformers, None))."""
    if not isinstance(config, dict):
        raise UserError(f"{source}/config.json should be a JSON object, got "
                        f"{type(config).__name__}")
    archs = config.get("architectures")
    if archs is not None and not (isinstance(archs, list) and
                                  all(isinstance(a, str) for a in archs)):
        raise UserError(f"{source}/config.json: architectures {archs!r:.80} should be a list of "
                        f"class names")
    for key in ("max_position_embeddings", "vocab_size"):
        value = config.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{source}/config.json: {key} {value!r:.40} should be a whole "
                            f"number >= 1")


def _hf_model(transformers, directory: Path, config: dict, use_safetensors: bool = True):
    import torch

    arch = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModel
    try:
        inner = cls.from_pretrained(str(directory), local_files_only=True,
                                    use_safetensors=use_safetensors)
    except Exception as e:
        raise UserError(f"model directory {str(directory)!r} cannot be loaded by transformers "
                        f"({first_line(e)})") from None

    class FirstOutput(torch.nn.Module):
        """Named tensor inputs in, the model's first output (logits / hidden states) out."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=False)[0]

    return FirstOutput(inner.eval()).eval()


# ---- ONNX -----------------------------------------------------------------------------------

def _onnx(source, weights, given, trust_pickle) -> Loaded:
    import onnx

    path = Path(source)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{source!r} is not a valid ONNX model ({first_line(e)})") from None
    _check_external_data(model, path)
    try:  # by path: external data is checked relative to the model's folder, not the cwd
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise UserError(f"{source!r} is not a valid ONNX model ({first_line(e)})") from None
    inits = {i.name for i in model.graph.initializer}
    declared = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue  # old exporters list weights as graph inputs
        t = inp.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in t.shape.dim)
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        except KeyError:  # 0 (UNDEFINED) or a number onnx does not know passes the checker
            raise UserError(f"ONNX model {source!r}: input {inp.name!r} has element type "
                            f"{t.elem_type}, which is not a tensor type numpy has") from None
        declared[inp.name] = (dims, dtype)
    specs = shapes.resolve(list(declared), given, declared, what=f"ONNX model {source!r}")
    return Loaded("onnx", source, specs, onnx_path=path,
                  provenance={"path": source, "sha256": sha256_file(path)})


def _check_external_data(model, path: Path) -> None:
    """Weights stored outside the .onnx file must lie in its folder: a location like
    ../../etc/passwd or an absolute path (or a link pointing out) would make loading read
    arbitrary files."""
    folder = path.resolve().parent
    for tensor in model.graph.initializer:
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != 1 and "location" not in entries:  # 1: TensorProto.EXTERNAL
            continue
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UserError(f"{str(path)!r}: external data {location!r} of tensor "
                            f"{tensor.name!r} is outside the model's folder (refused)")
        if not target.is_file():
            raise UserError(f"{str(path)!r}: external data file {location!r} of tensor "
                            f"{tensor.name!r} is missing")


KINDS = {"factory": _factory, "torchscript": _torchscript, "exported-program": _exported,
         "hf": _hf, "onnx": _onnx}
