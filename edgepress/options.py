"""Every option of `compress`, declared once: one dataclass per recipe table, one field per option.

A field's metadata carries its help, CLI flag and recipe key (the field name unless `key` says
otherwise); its default is the dataclass default. recipe.py parses the TOML tables from these
fields and cli/compress.py builds the flags from them, so adding an option is one line here (plus
its check in the stage and its test). Torch-free: building the parser imports nothing heavy.

Kinds (how a value is typed in a recipe and read from a flag): str, int, float, bool, path (a
str resolved against the recipe's folder), data (a path unless it is 'random' or
module:function), and [T] for arrays of T (a comma-separated or repeated flag).
"""

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path


def option(default, help: str, flag: str, *, key: str | None = None, kind: str | None = None,
           name: str | None = None, metavar: str | None = None, repeat: bool = False,
           cli: str | None = None):
    """A dataclass field that is an option. `name` is its flat name (the manifest's recipe record
    and pipeline.Request's keyword; the flag's dest unless given); `repeat`: the flag may be
    given several times; `cli`: 'switch' (a store_true flag) or 'yes-no'."""
    kind = kind or _kind_of(default)
    meta = {"help": help, "flag": flag, "key": key, "kind": kind, "name": name,
            "metavar": metavar, "repeat": repeat, "cli": cli}
    return field(default=default, metadata=meta)


def _kind_of(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, tuple):
        return "[str]"
    return {int: "int", float: "float"}.get(type(default), "str")


@dataclass(frozen=True)
class Model:
    source: str | None = option(None, "module:function, file.py:function, .pt (TorchScript), "
                                ".pt2, a Hugging Face-style directory, or .onnx", "SOURCE",
                                kind="data")
    weights: str | None = option(None, ".safetensors or state-dict .pt for a factory source",
                                 "--weights", kind="path")
    input_shape: tuple = option((), "e.g. 1,3,224,224 or input_ids=1,128:int64 (repeat for "
                                "several inputs)", "--input-shape", name="input_shapes",
                                metavar="[NAME=]DIMS[:DTYPE]", repeat=True)
    trust_pickle: bool = option(False, "allow pickled weights or models: unpickling runs any "
                                "code the file carries, so only for files you made or fully "
                                "trust", "--trust-pickle", cli="switch")


@dataclass(frozen=True)
class Data:
    calib: str | None = option(None, ".npz named as the inputs, an image folder, module:function "
                               "returning input dicts, or 'random' (smoke tests only)", "--calib",
                               kind="data", metavar="DATA")
    calib_samples: int | None = option(None, "use at most N calibration samples",
                                       "--calib-samples", kind="int")
    eval: str | None = option(None, "held-out data (same forms; optional `labels`)", "--eval",
                              kind="data", metavar="DATA")
    train: str | None = option(None, "training data for distillation (.npz with optional "
                               "`labels`, image folder, module:function)", "--train",
                               kind="data", metavar="DATA")
    val: str | None = option(None, "validation data for early stopping (unset: --eval, else "
                             "--train)", "--val", kind="data", metavar="DATA")
    image_size: tuple | None = option(None, "image-folder DATA: resize to H,W (unset: the "
                                      "input's)", "--image-size", kind="[int]")
    image_mean: tuple = option((0.0,), "image-folder DATA: per-channel mean on [0,1]",
                               "--image-mean", kind="[float]")
    image_std: tuple = option((1.0,), "image-folder DATA: per-channel std on [0,1]",
                              "--image-std", kind="[float]")
    image_layout: str = option("nchw", "image-folder DATA: nchw or nhwc", "--image-layout")


@dataclass(frozen=True)
class Prune:
    method: str | None = option(None, "channels:R (structured, faster), magnitude:R "
                                "(unstructured), nm:2:4, auto:macs=F or auto:latency=F (needs "
                                "--calib)",
                                "--prune", name="prune", metavar="SPEC")
    importance: str = option("l1", "channels: l1, l2, taylor (needs --calib), random",
                             "--prune-importance")
    scope: str = option("uniform", "uniform (every layer by R) or global (ranked across "
                        "layers)", "--prune-scope")
    round_to: int = option(8, "channels: keep channel counts multiples of this (1: no "
                           "rounding)", "--prune-round-to")
    skip: tuple = option((), "comma-separated layers to leave alone (repeatable), besides the "
                         "first conv and the classifier unless told otherwise below",
                         "--prune-skip", metavar="NAMES")
    layers: tuple = option((), "a layer's own ratio (repeat)", "--prune-layer",
                           name="prune_layers", metavar="NAME=RATIO", repeat=True)
    skip_defaults: bool = option(True, "leave the first conv and the classifier alone (with no, "
                                 "name the classifier in --prune-skip)", "--prune-skip-defaults",
                                 metavar="yes|no", cli="yes-no")
    recalibrate_bn: bool = option(True, "channels/auto: re-estimate BatchNorm statistics on "
                                  "--calib data after pruning (no weights change; without "
                                  "--calib, nothing)", "--prune-recalibrate-bn",
                                  metavar="yes|no", cli="yes-no")
    latency_on: str = option("host", "auto:latency=F: where each layer is timed: host, or "
                             "ssh://user@host[:port], a device edgepress was deployed to",
                             "--latency-on", metavar="TARGET")
    latency_threads: int = option(1, "auto:latency=F: engine threads while timing",
                                  "--latency-threads")
    latency_cache: str | None = option(None, "auto:latency=F: where latency tables are kept "
                                       "(unset: ~/.cache/edgepress/latency)", "--latency-cache",
                                       kind="path", metavar="DIR")


@dataclass(frozen=True)
class Distill:
    method: str | None = option(None, "logits (KD on softened logits) or features (plus "
                                "--distill-feature layer pairs)", "--distill", name="distill",
                                metavar="METHOD")
    teacher: str | None = option(None, "another teacher (unset: SOURCE itself)", "--teacher",
                                 kind="data", metavar="SOURCE")
    student: str | None = option(None, "another student architecture (factory); unset: the "
                                 "(pruned) model", "--student", kind="data", metavar="SOURCE")
    epochs: int = option(10, "training epochs", "--distill-epochs")
    batch_size: int = option(64, "samples per step", "--distill-batch-size")
    lr: float = option(3e-3, "learning rate", "--distill-lr")
    optimizer: str = option("adamw", "adamw or sgd", "--distill-optimizer")
    schedule: str = option("cosine", "cosine, onecycle or constant", "--distill-schedule")
    weight_decay: float = option(1e-4, "the optimizer's weight decay", "--distill-weight-decay")
    temperature: float = option(4.0, "softmax temperature of the KD term",
                                "--distill-temperature")
    alpha: float = option(0.7, "weight of the KD term; the task loss gets 1 - alpha",
                          "--distill-alpha")
    features: tuple = option((), "a layer pair for feature KD (repeat)", "--distill-feature",
                             name="distill_features", metavar="STUDENT=TEACHER", repeat=True)
    feature_weight: float = option(1.0, "weight of each feature KD term",
                                   "--distill-feature-weight")
    patience: int = option(0, "early stopping: epochs without a better validation metric (0: "
                           "off)", "--distill-patience")
    loss: str = option("auto", "softmax (KL + cross-entropy) or sigmoid (binary cross-entropy, "
                       "multi-label); auto: sigmoid when the teacher outputs probabilities that "
                       "do not sum to 1", "--distill-loss")
    metric: str = option("auto", "top1, multilabel or module:function(outputs, reference) -> "
                         "float, for early stopping and reports; auto: follows the loss",
                         "--distill-metric")
    train_device: str = option("auto", "auto (CUDA when available), cpu, cuda or cuda:N; under "
                               "torchrun each rank takes cuda:LOCAL_RANK", "--train-device")
    amp: str | None = option(None, "mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA); unset: "
                             "fp32", "--amp", kind="str")
    checkpoint_dir: str | None = option(None, "checkpoint every epoch; a rerun resumes from it",
                                        "--distill-checkpoint", key="checkpoint", kind="path",
                                        metavar="DIR")


@dataclass(frozen=True)
class Quantize:
    precisions: tuple = option((), "comma-separated: int8, dynamic, weight-int8, fp16",
                               "--quantize", name="quantize", metavar="PRECISIONS")
    calib_method: str = option("auto", "ONNX int8: auto (minmax and percentile measured, "
                               "one kept), minmax, entropy, percentile",
                               "--calib-method")
    max_drop: float | None = option(None, "keep sensitive layers in float until accuracy (or "
                                    "top-1 agreement) drops at most this many points",
                                    "--max-drop", kind="float", metavar="POINTS")
    min_snr: float | None = option(None, "keep sensitive layers in float until the output SNR "
                                   "against fp32 on held-out data is at least this many dB",
                                   "--min-snr", kind="float", metavar="DB")
    max_float_layers: int = option(8, "cap for --max-drop and --min-snr", "--max-float-layers")
    target: str = option("host", "CPU the int8 bundle is for: host, x86-vnni, x86, arm (picks "
                         "ONNX activation/weight types)", "--quant-target")


@dataclass(frozen=True)
class Export:
    formats: tuple = option(("onnx", "tflite"), "comma-separated: onnx, tflite", "--format",
                            name="formats")
    tflite_layout: str = option("nchw", "nchw (PyTorch's) or nhwc", "--tflite-layout")
    out: str | None = option(None, "output directory (one bundle each)", "--out", kind="path")
    overwrite: bool = option(False, "replace an existing --out", "--overwrite", cli="switch")


@dataclass(frozen=True)
class Verify:
    golden_samples: int = option(8, "reference samples per bundle", "--golden-samples")
    seed: int = option(0, "seed for sample inputs, pruning and training", "--seed")
    top1_tolerance: int = option(0, "top-1 agreement counts an output whose argmax lies within "
                                 "N positions of the reference's (ordered bins of one "
                                 "quantity, e.g. pitch or angle bins, where a neighbour is the "
                                 "same answer); 0: the same class only", "--top1-tolerance",
                                 metavar="N")


TABLES = {"model": Model, "data": Data, "prune": Prune, "distill": Distill,
          "quantize": Quantize, "export": Export, "verify": Verify}


@dataclass(frozen=True)
class Recipe:
    """What `edgepress compress` was asked to do: one table per stage (its manifest record is
    `flat()`)."""

    model: Model = field(default_factory=Model)
    data: Data = field(default_factory=Data)
    prune: Prune = field(default_factory=Prune)
    distill: Distill = field(default_factory=Distill)
    quantize: Quantize = field(default_factory=Quantize)
    export: Export = field(default_factory=Export)
    verify: Verify = field(default_factory=Verify)
    summary: bool = True  # not an option: `inspect` turns the summary off for its scratch run

    @classmethod
    def build(cls, given: dict, summary: bool = True) -> "Recipe":
        """From {table: {field: value}} (what a recipe file and the flags set)."""
        tables = {t: TABLES[t](**given.get(t, {})) for t in TABLES}
        return cls(**tables, summary=summary)

    @classmethod
    def from_flat(cls, **flat) -> "Recipe":
        """From flat names (pipeline.Request's keywords, the manifest's recipe record)."""
        by_name, given = flat_names(), {}
        summary = flat.pop("summary", True)
        for name, value in flat.items():
            if name not in by_name:
                raise TypeError(f"unknown recipe field {name!r}; valid: {', '.join(by_name)}")
            table, key = by_name[name]
            given.setdefault(table, {})[key] = value
        return cls.build(given, summary)

    def flat(self) -> dict:
        """Every option by its flat name, JSON-ready: the recipe as applied (what a rerun
        needs), as manifests have recorded it since schema 1.0."""
        out = {}
        for table, (name, f) in _all_fields():
            out[name] = _plain(getattr(getattr(self, table), f.name))
        return {**out, "summary": self.summary}


def flat_name(f) -> str:
    meta = f.metadata
    if meta["name"]:
        return meta["name"]
    return "source" if meta["flag"] == "SOURCE" else meta["flag"].lstrip("-").replace("-", "_")


def recipe_key(f) -> str:
    return f.metadata["key"] or f.name


def _all_fields():
    for table, cls in TABLES.items():
        for f in fields(cls):
            yield table, (flat_name(f), f)


def flat_names() -> dict:
    """flat name -> (table, field name)."""
    return {name: (table, f.name) for table, (name, f) in _all_fields()}


def default(f):
    return None if f.default is MISSING else f.default


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return str(v) if isinstance(v, Path) else v
