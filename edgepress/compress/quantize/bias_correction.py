"""bias_correction: empirical bias correction of PT2E's fake-quantized model (issue 15, item 5),
kept only where it raises fidelity on held-out data.

Quantizing a layer's weights and inputs shifts the mean of its output channels; the layers after
it see that shift as a bias. Like NNCF's fast bias correction (on by default in nncf.quantize),
each conv / linear layer's per-channel output mean is measured over the calibration samples in the
float model and in the fake-quantized one, and the difference is taken off the layer's bias (one
pass each, all layers at once). The corrected model is kept when its output SNR against the
float model on the selection split is more than MIN_GAIN_DB above the uncorrected one's; the
manifest records both.
Wrapping NNCF was not possible: its bias correction runs inside nncf.quantize on its own
quantized graph, which litert-torch does not convert.
"""

from __future__ import annotations

from itertools import islice

CALIB_SAMPLES = 64  # output means settle long before this
# A correction is kept when it raises the selection-split SNR by more than this. On crepe tiny
# (real weights) bias correction gained 0.85 dB on its 7 selection samples and lost 1.5 dB on
# the 16 evaluation ones (32.3 -> 30.8 dB): gains under 1 dB on so few samples are noise.
MIN_GAIN_DB = 1.0
SELECT_SAMPLES = 32


def apply(model, fq, calib, select, feed) -> dict:
    """Corrects `fq`'s biases in place where that raises its selection-split SNR; returns the
    record. `feed(sample)` turns a dataset sample into the models' keyword arguments."""
    layers = biased_layers(fq)
    if select is None or not layers:
        return {"applied": False, "why": "no held-out data to measure on" if layers
                else "no conv/linear layer with a bias"}
    before = snr(model, fq, select, feed)
    delta = shifts(model, fq, layers, calib, feed)
    saved = {name: layers[name][0].detach().clone() for name in layers}
    with _no_grad():
        for name, (bias, _, _) in layers.items():
            bias -= delta[name]
    after = snr(model, fq, select, feed)
    keep = after > before + MIN_GAIN_DB
    if not keep:
        with _no_grad():
            for name, (bias, _, _) in layers.items():
                bias.copy_(saved[name])
    return {"applied": keep, "layers": len(layers), "snr_db_without": round(before, 3),
            "snr_db_with": round(after, 3), "measured_on": "selection split, fake-quantized "
            "model in torch against the float model",
            "calib_samples": min(calib.record()["samples"], CALIB_SAMPLES)}


def shifts(model, fq, layers: dict, calib, feed) -> dict:
    """layer name -> per-channel output mean of `fq` minus that of `model` (calibration data)."""
    return {name: q - f for (name, q), f in zip(_means(fq, layers, calib, feed).items(),
                                                 _float_means(model, layers, calib, feed))}


def _no_grad():
    import torch

    return torch.no_grad()


def biased_layers(fq) -> dict:
    """layer name -> (its bias parameter in `fq`, its output's channel axis, its graph node),
    for the conv / linear nodes _tag_layers named whose bias is a parameter."""
    params = dict(fq.named_parameters())
    out = {}
    for node in fq.graph.nodes:
        target, layer = str(node.target), node.meta.get("edgepress_layer")
        if node.op != "call_function" or layer is None or len(node.args) < 3 \
                or not ("conv" in target or "linear" in target):
            continue
        bias = node.args[2]
        if getattr(bias, "op", "") == "get_attr" and bias.target in params:
            out[layer] = (_own(fq, bias.target), 1 if "conv" in target else -1, node)
    return out


def _own(fq, target: str):
    """`fq`'s own copy of the parameter at `target`: torch.export's module shares its tensors
    with the float model, which a correction in place would change too."""
    import torch

    owner, _, leaf = target.rpartition(".")
    module = fq.get_submodule(owner) if owner else fq
    copy = torch.nn.Parameter(getattr(module, leaf).detach().clone(), requires_grad=False)
    setattr(module, leaf, copy)
    return copy


def _channel_mean(t, axis: int):
    dims = [d for d in range(t.dim()) if d != axis % t.dim()]
    return t.detach().mean(dim=dims)


def _means(fq, layers: dict, calib, feed) -> dict:
    """Per-channel output means of each layer in the fake-quantized graph (an fx Interpreter
    records the layer nodes' outputs)."""
    import torch

    nodes = {node: name for name, (_, _, node) in layers.items()}
    sums = {name: 0 for name in layers}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n in nodes:
                name = nodes[n]
                sums[name] = sums[name] + _channel_mean(result, layers[name][1])
            return result

    count = 0
    with torch.no_grad():
        for sample in islice(calib.samples(), CALIB_SAMPLES):
            Recorder(fq).run(*_ordered(fq, feed(sample)))
            count += 1
    return {name: s / count for name, s in sums.items()}


def _ordered(fq, kwargs: dict) -> list:
    """The graph's placeholders take the sample's tensors in order (torch.export keeps the
    forward's keyword arguments as placeholders of the same names)."""
    names = [n.name for n in fq.graph.nodes if n.op == "placeholder"]
    return [kwargs[n] for n in names]


def _float_means(model, layers: dict, calib, feed) -> list:
    import torch

    modules = dict(model.named_modules())
    sums, hooks = {name: 0 for name in layers}, []
    for name, (_, axis, _) in layers.items():
        def hook(_m, _i, out, name=name, axis=axis):
            sums[name] = sums[name] + _channel_mean(out, axis)
        hooks.append(modules[name].register_forward_hook(hook))
    count = 0
    try:
        with torch.no_grad():
            for sample in islice(calib.samples(), CALIB_SAMPLES):
                model(**feed(sample))
                count += 1
    finally:
        for h in hooks:
            h.remove()
    return [sums[name] / count for name in layers]


def snr(model, fq, data, feed) -> float:
    """Output SNR (dB) of the fake-quantized `fq` against the float `model` over `data`."""
    import torch

    from edgepress.compress import load
    from edgepress.runtime import verify

    fid = verify.Fidelity()
    with torch.no_grad():
        for sample, label in islice(data.labelled(), SELECT_SAMPLES):
            kwargs = feed(sample)
            named = lambda out: {f"output_{i}": o.detach().numpy()  # noqa: E731
                                 for i, o in enumerate(load.outputs(out))}
            fid.add(named(model(**kwargs)), named(fq(**kwargs)), label)
    return fid.result()["snr_db"]
