"""align: pads a convolution's input channels up to a multiple of 4 before ONNX int8
quantization, so that onnxruntime runs it with its fast int8 kernel on x86, where the zero
weights this adds are a negligible share of the model.

onnxruntime's symmetric int8 convolution (MLAS ConvSym, the VNNI kernels) requires input
channels that are a multiple of 4. An RGB stem (3 channels) misses that and falls back to
im2col + GEMM. MobileNetV2's 3->32 stem took 608 us of a 4.25 ms int8 inference that way (1
thread, onnxruntime 1.32), 4x its share of the MACs. Padding adds one zero input channel and a
matching zero weight slice. The conv's output is exactly the same (identical SNR against fp32).
Measured (1 thread, 400-1200 interleaved calls, load 4): MobileNetV2 int8 ran 1.054x slower
unpadded (95% CI [1.032, 1.068]) for 806 bytes of zero weights (0.02% of the file); crepe tiny's
1-input-channel 512-tap stem ran 1.024x slower unpadded ([1.013, 1.039]), but padding it to 4
channels quadruples the stem's weights: the int8 file grew from 0.27 to 0.37 of fp32. So a conv
is padded only when its zero weights stay within MAX_GROWTH of the model's weights.
"""

from __future__ import annotations

ALIGN = 4  # MLAS ConvSym's KernelInputChannelAlignment on x86 (AVX2, AVX-VNNI, AVX-512)
MIN_PIXELS = 1024  # below this the extra Pad costs more than the faster kernel saves
MAX_GROWTH = 0.01  # zero weights added, as a share of the model's weight elements


def pad_input_channels(model) -> list[str]:
    """Pads, in place, every float Conv (group 1, constant weights) whose input channels are not
    a multiple of ALIGN, whose input has at least MIN_PIXELS pixels and whose zero weights stay
    within MAX_GROWTH of the model's. Returns one note per conv padded or left for its size."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = _known_shapes(graph)
    weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
    notes = []
    for node in list(graph.node):
        if node.op_type != "Conv" or node.input[1] not in inits or _group(node) != 1:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        shape = shapes.get(node.input[0])
        extra = -w.shape[1] % ALIGN
        if not extra or w.ndim != 4 or not shape or np.prod(shape[2:]) < MIN_PIXELS:
            continue
        zeros = np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)
        if zeros.size > MAX_GROWTH * weights:
            notes.append(f"{node.name}: input channels {w.shape[1]} left as they are (padding "
                         f"would add {zeros.size / weights:.0%} to the model's weights)")
            continue
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.concatenate([w, zeros], 1),
                                                              node.input[1]))
        pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64),
                                       f"{node.name}_align_pads")
        padded = f"{node.input[0]}_aligned{ALIGN}"
        graph.initializer.append(pads)
        graph.node.insert(list(graph.node).index(node), helper.make_node(
            "Pad", [node.input[0], pads.name], [padded], name=f"{node.name}_align", mode="constant"))
        node.input[0] = padded
        _forget_shape(graph, node.input[1])
        notes.append(f"{node.name}: input channels {w.shape[1]} -> {w.shape[1] + extra} (zero "
                     f"channel; onnxruntime's fast int8 conv needs a multiple of {ALIGN})")
    return notes


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _known_shapes(graph) -> dict:
    """name -> static shape, from the graph's inputs and shape-inferred value_info."""
    out = {}
    for v in list(graph.input) + list(graph.value_info):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[v.name] = tuple(d.dim_value for d in dims)
    return out


def _forget_shape(graph, name: str) -> None:
    # a stale annotation of the widened weight would fail the quantizer's shape inference
    kept = [v for v in graph.value_info if v.name != name]
    del graph.value_info[:]
    graph.value_info.extend(kept)
