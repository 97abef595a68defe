"""TFLite quantization paths.

- int8: PT2E quantization in torch (litert-torch's PT2EQuantizer, per-channel weights,
  histogram-calibrated activations) converted by litert-torch into an int8 model (the
  FULLY_CONNECTED ops it leaves float, an LSTM cell's, get hybrid weights: hybrid.py): one
  candidate beside AI Edge Quantizer's calibrated recipes (aeq_static.py); choose.py measures
  them on the model and keeps one (which wins depends on the model and the host).
- dynamic / weight-int8 / fp16: AI Edge Quantizer recipes on the fp32 .tflite (dynamic measured
  0.30x fp32 latency, cosine 0.997 on a sentence encoder); PT2E's dynamic mode has no weight-only
  or fp16 variant, AEQ covers all three with one code path.
"""

from __future__ import annotations

from edgepress import progress
from edgepress.compress.quantize import bias_correction, hybrid
from edgepress.compress.quantize.job import CALIB_CAP, Job, QuantizeConfig, Quantized
from edgepress.errors import UserError

def int8(job: Job, cfg: QuantizeConfig) -> Quantized:
    return _pt2e(job, cfg, job.loaded.model)


def int8_folded_stem(job: Job, cfg: QuantizeConfig) -> Quantized:
    """PT2E on the model with its strided few-channel convs folded into stride-1 ones
    (space_to_depth.py), where litert-torch's lowering of the original has a slow int8 kernel."""
    from edgepress.compress.quantize import space_to_depth

    model, notes = space_to_depth.rewrite(job.loaded.model)
    q = _pt2e(job, cfg, model)
    q.figures["rewritten"] = notes
    return q


def _pt2e(job: Job, cfg: QuantizeConfig, model) -> Quantized:
    import litert_torch
    from litert_torch.quantize import quant_config

    from edgepress.compress import export

    prefix = ""
    if job.layout == "nhwc":
        model, prefix = export.ChannelsLast(model), "inner."
    exclude = [prefix + name for name in cfg.exclude]
    model, converted, quantizer, corrections = _corrected(job, model, exclude)
    kwargs = _layout_kwargs(job.sample, job.layout)
    with export.quiet():  # a converter error reaches guard.build: this bundle fails, not the run
        litert_torch.convert(converted, (), sample_kwargs=kwargs,
                             quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
                             ).export(str(job.out_path))
    corrections["hybrid_fc"] = hybrid.apply(job, job.out_path)  # the LSTM's FCs PT2E left float
    return Quantized(job.out_path, {
        "method": "full-integer int8 (per-channel int8 weights, int8 activations and I/O)",
        "library": "litert-torch PT2EQuantizer + litert-torch conversion",
        "calib_method": "histogram (PT2E HistogramObserver; --calib-method applies to ONNX)",
        **corrections})


def _corrected(job: Job, model, exclude: list) -> tuple:
    """(float model, its PT2E model, quantizer, records): the PT2E model of `model` and, where
    it has layer pairs to equalize, of its equalized copy (equalize.py), each bias-corrected
    where that raises its SNR (bias_correction.py); the one with the best selection-split SNR
    is kept, and both records say what was measured."""
    import torch

    from edgepress.compress.quantize import equalize

    feed = lambda s: _torch_kwargs(s, job.layout)  # noqa: E731
    variants = [(model, {"applied": False})]
    found = [] if job.select is None else equalize.pairs(torch.export.export(
        model.eval(), (), _layout_kwargs(job.sample, job.layout)).module())
    if found:
        eq_model, done = equalize.apply(model, found)
        variants.append((eq_model, {"applied": True, "pairs": done}))
    built = []
    for float_model, eq in variants:
        fq, quantizer = pt2e_model(float_model, job.sample, job.calib, job.layout, exclude=exclude)
        bc = bias_correction.apply(float_model, fq, job.calib, job.select, feed)
        score = bc["snr_db_with"] if bc["applied"] else bc.get("snr_db_without", 0.0)
        built.append((score, float_model, fq, quantizer, eq, bc))
    best = built[-1] if built[-1][0] > built[0][0] + bias_correction.MIN_GAIN_DB else built[0]
    if len(built) > 1:
        best[4]["snr_db"] = {"with": built[1][0], "without": built[0][0],
                             "measured_on": "selection split, after bias correction"}
    elif not found:
        best[4]["why"] = ("no held-out data" if job.select is None else "no pair of layers "
                          "with only ReLU / max-pool / padding / BatchNorm between")
    return best[1], best[2], best[3], {"equalization": best[4], "bias_correction": best[5]}


int8.key = "pt2e"
int8_folded_stem.key = "pt2e-folded-stem"


def _folds(job: Job) -> bool:
    from edgepress.compress.quantize import space_to_depth

    return space_to_depth.applies(getattr(job.loaded, "model", None))


int8_folded_stem.applies = _folds


def pt2e_model(model, sample: dict, calib, layout: str, exclude=(), only=()):
    """PT2E fake-quantized torch model (runnable in torch) and its quantizer. Layers (conv/linear
    module names) in `exclude` stay float; with `only`, every other layer does."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    kwargs = _layout_kwargs(sample, layout)
    # torch.export failing here is torch's limit, not the user's: guard.build records it
    graph = torch.export.export(model.eval(), (), kwargs).module()
    layers = _tag_layers(graph)
    unknown = sorted((set(exclude) | set(only)) - layers)
    if unknown:
        raise UserError(f"layer {unknown[0]!r} is not a quantizable layer of this model; its "
                        f"layers are: {', '.join(sorted(layers))}")
    # `only` keeps every other layer in float; non-layer ops (add, pooling) stay quantized
    quantizer = _layer_quantizer(set(exclude) | (layers - set(only) if only else set()))
    prepared = prepare_pt2e(graph, quantizer)
    total = min(calib.record()["samples"], CALIB_CAP)
    with torch.no_grad(), progress.bar("calibrating (PT2E)", total) as bar:
        for i, s in enumerate(calib.samples()):
            if i >= CALIB_CAP:
                break
            prepared(**_torch_kwargs(s, layout))
            bar.update()
    return convert_pt2e(prepared, fold_quantize=False), quantizer


_FOLLOWERS = ("batch_norm", "getitem", "relu", "hardtanh", "clamp")


def _tag_layers(graph) -> set:
    """Tags every conv/linear node, and the batch-norm/activation nodes fused with it, with the
    layer's module name (node.meta["edgepress_layer"]); returns the names. Why not
    PT2EQuantizer.set_module_name: litert-torch's filter parses nn_module_stack keys of the old
    dynamo form (`L__self___stem_0`) while torch.export 2.13 writes `L__self__stem.0`, so it never
    matches; and it requires every node of a conv-bn-relu pattern to sit in the named module."""
    owner, names = {}, set()
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        target, stack = str(node.target), node.meta.get("nn_module_stack") or {}
        if ("conv" in target or "linear" in target or "addmm" in target) and stack:
            owner[node] = list(stack.values())[-1][0]  # the innermost module: the layer
            names.add(owner[node])
        elif any(f in target for f in _FOLLOWERS) and node.args and node.args[0] in owner:
            owner[node] = owner[node.args[0]]
        if node in owner:
            node.meta["edgepress_layer"] = owner[node]
    return names


def _layer_quantizer(float_layers: set):
    """litert-torch's PT2EQuantizer (global per-channel int8 config) leaving `float_layers`
    unannotated, by their edgepress_layer tag (see _tag_layers)."""
    from litert_torch.quantize import pt2e_quantizer as pq

    class LayerQuantizer(pq.PT2EQuantizer):
        def _annotate_for_static_quantization_config(self, model):
            self._annotate_all_static_patterns(model, self.global_config, self._quantized)
            _annotate_missed_adds(model, self.global_config, self._quantized)
            _drop_integer_qspecs(model)
            return model

        @staticmethod
        def _quantized(node) -> bool:
            return node.meta.get("edgepress_layer") not in float_layers

    return LayerQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))


def _is_integer(node) -> bool:
    """A tensor-valued node of integer or bool dtype (token ids, positions, masks)."""
    import torch

    val = node.meta.get("val") if hasattr(node, "meta") else None
    return isinstance(val, torch.Tensor) and not val.dtype.is_floating_point


def _drop_integer_qspecs(model) -> None:
    """Only float tensors are observed: an annotation on an integer tensor (a transformer's token
    ids, `arange + offset` position ids) puts a HistogramObserver on it, and torch.histc has no
    integer kernel ("histogram_cpu" not implemented for 'Long'), so prepare/calibrate crashes."""
    for node in model.graph.nodes:
        ann = node.meta.get("quantization_annotation")
        if ann is None:
            continue
        ann.input_qspec_map = {a: q for a, q in ann.input_qspec_map.items()
                               if not _is_integer(a)}
        if _is_integer(node):
            ann.output_qspec = None


def _quantized_output(node, keep) -> bool:
    """The output of a quantized layer (a conv/linear and its fused bn/activation, tagged by
    _tag_layers) or of an annotated op."""
    ann = node.meta.get("quantization_annotation")
    return (ann is not None and ann.output_qspec is not None) or \
        ("edgepress_layer" in node.meta and keep(node))


def _annotate_missed_adds(model, config, keep) -> None:
    """litert-torch's `add` annotator groups adds by source function and annotates only the first
    output node of each group, so chained residual adds (MobileNetV2's blocks) stay float, each
    wrapped in DEQUANTIZE/QUANTIZE in the .tflite. Annotate the float adds it missed whose two
    inputs are already quantized (residuals between quantized layers), the way it annotates the
    first one. Other adds stay float: a transformer's attention-mask add carries finfo.min
    (-3.4e38), and quantizing it zeroes every attention score (findings-15: cosine 0.53)."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, \
        get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.add.Tensor \
                or "quantization_annotation" in node.meta or not keep(node):
            continue
        inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if len(inputs) == 2 and all(_quantized_output(a, keep) for a in inputs) and not _is_integer(node):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: get_input_act_qspec(config) for a in inputs},
                output_qspec=get_output_act_qspec(config), _annotated=True)


def _torch_kwargs(sample: dict, layout: str) -> dict:
    """A dataset sample (numpy) as the torch model's keyword arguments."""
    import torch

    return _layout_kwargs({k: torch.from_numpy(v) for k, v in sample.items()}, layout)


def _layout_kwargs(sample: dict, layout: str) -> dict:
    from edgepress.runtime.layout import to_nhwc

    return {k: to_nhwc(v) for k, v in sample.items()} if layout == "nhwc" else sample


def aeq(recipe_name: str, what: str):
    """An AI Edge Quantizer method applying one of its recipes to the fp32 .tflite."""
    def method(job: Job, cfg: QuantizeConfig) -> Quantized:
        from ai_edge_quantizer import quantizer, recipe

        from edgepress.compress import export

        if cfg.exclude:
            raise UserError(f"keeping layers in float is supported for int8 and ONNX dynamic, "
                            f"not for tflite {cfg.precision}")
        with export.quiet():
            q = quantizer.Quantizer(str(job.fp32_path), _RECIPES[recipe_name](recipe))
            result = q.quantize(enable_progress_report=False)
        job.out_path.write_bytes(bytes(result.quantized_model))
        return Quantized(job.out_path, {"method": what, "library": "ai-edge-quantizer",
                                        "recipe": recipe_name})
    method.__name__ = f"_aeq_{recipe_name}"
    return method


def _fp16_recipe(recipe):
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              num_bits=16,
                              algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return rm.get_quantization_recipe()


_RECIPES = {"dynamic_wi8_afp32": lambda r: r.dynamic_wi8_afp32(),
            "weight_only_wi8_afp32": lambda r: r.weight_only_wi8_afp32(),
            "float_casting_wf16": _fp16_recipe}
