"""One-dimensional convolutions of an ONNX graph run as two-dimensional ones (height 1).

ONNX Runtime's CPU provider runs a 2-D ``Conv`` through its blocked (NCHWc)
kernels and a 1-D one through im2col and a matrix product: on this project's
x86 hosts the 2-D form is 1.2x to 1.6x faster for the same arithmetic (one
thread, 32 to 256 channels, kernels 3 to 11), and a speech model's vocoder is
mostly such convolutions (HiFi-GAN at ``transformers``' defaults: 5.7 -> 4.4 ms
per frame). The rewrite inserts an ``Unsqueeze`` to ``[B, C, 1, T]`` where a
run of convolutions begins and a ``Squeeze`` where a tensor leaves it, and
keeps the elementwise operators between them (activations, residual sums) in
the 4-D form, so a chain of convolutions changes layout once, not per layer.
"""

from __future__ import annotations

HEIGHT_AXIS = "ttsstack_height_axis"
"""Name of the initializer ``[2]`` every inserted ``Unsqueeze`` and ``Squeeze`` reads."""

UNARY_ELEMENTWISE = frozenset({
    "Abs", "Cos", "Elu", "Erf", "Exp", "Gelu", "HardSigmoid", "Identity", "LeakyRelu", "Log", "Mish", "Neg",
    "Relu", "Selu", "Sigmoid", "Sin", "Softplus", "Softsign", "Sqrt", "Tanh",
})
"""Operators whose output is their input's shape, whatever its rank: run on the 4-D form as they are."""
BINARY_ELEMENTWISE = frozenset({"Add", "Div", "Mul", "Sub"})
"""Operators kept in the 4-D form when one input is in it and the other is 3-D (lifted too, so broadcasting
is unchanged: a mask ``[B, 1, T]`` becomes ``[B, 1, 1, T]``) or a single value."""


def _is_conv1d(node, initializers: dict) -> bool:
    """Whether ``node`` is a ``Conv``/``ConvTranspose`` over one spatial axis (3-D input and weight)."""
    if node.op_type not in ("Conv", "ConvTranspose"):
        return False
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
    if kernel is not None:
        return len(kernel) == 1
    weight = initializers.get(node.input[1])
    return weight is not None and len(weight.dims) == 3


def _ranks(graph) -> dict[str, int]:
    """The rank of every tensor whose shape the graph records (inputs, initializers, the exporter's ``value_info``)."""
    ranks = {i.name: len(i.dims) for i in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _single_value(name: str, initializers: dict) -> bool:
    """Whether ``name`` is an initializer of one element and rank at most 1 (it broadcasts against any rank)."""
    tensor = initializers.get(name)
    return tensor is not None and len(tensor.dims) <= 1 and all(d == 1 for d in tensor.dims)


def _attributes_2d(node) -> dict:
    """``node``'s attributes for the height-1 form: a leading 1 (or 0 for padding) on every spatial one."""
    from onnx import helper

    attrs = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if attribute.name in ("kernel_shape", "strides", "dilations", "output_shape"):
            value = [1, *value]
        elif attribute.name == "pads":
            value = [0, value[0], 0, value[1]]
        elif attribute.name == "output_padding":
            value = [0, *value]
        attrs[attribute.name] = value
    return attrs


def _subgraph_inputs(node) -> set[str]:
    """Every tensor name the subgraphs of ``node`` (``If``, ``Loop``, ``Scan``) read, at any depth."""
    from onnx import AttributeProto

    names: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            for inner in graph.node:
                names.update(inner.input)
                names |= _subgraph_inputs(inner)
    return names


def conv1d_as_conv2d(model) -> int:
    """Rewrite ``model``'s (an ``onnx.ModelProto``) 1-D convolutions in place as height-1 2-D ones; how many.

    Tensors of the 4-D form keep their 3-D name for any other reader: a
    ``Squeeze`` makes it, once, before its first such reader (and for a graph
    output). The arithmetic is the same; only the kernels' summation order
    differs, which compile validation checks against the program.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    if not any(_is_conv1d(node, initializers) for node in graph.node):
        return 0
    ranks = _ranks(graph)
    graph.initializer.append(helper.make_tensor(HEIGHT_AXIS, TensorProto.INT64, [1], [2]))
    lifted: dict[str, str] = {}  # 3-D name -> its 4-D form
    squeezed: set[str] = set()
    nodes, rewritten = [], 0

    def four_d(name: str) -> str:
        if name not in lifted:
            lifted[name] = f"{name}__h1"
            nodes.append(helper.make_node("Unsqueeze", [name, HEIGHT_AXIS], [lifted[name]]))
            squeezed.add(name)  # the 3-D tensor exists already
        return lifted[name]

    def three_d(name: str) -> None:
        if name in lifted and name not in squeezed:
            nodes.append(helper.make_node("Squeeze", [lifted[name], HEIGHT_AXIS], [name]))
            squeezed.add(name)

    for node in graph.node:
        if _is_conv1d(node, initializers):
            rewritten += 1
            x, weight = four_d(node.input[0]), four_d(node.input[1])
            out = lifted[node.output[0]] = f"{node.output[0]}__h1"
            nodes.append(helper.make_node(node.op_type, [x, weight, *node.input[2:]], [out], name=node.name,
                                          **_attributes_2d(node)))
        elif (node.op_type in UNARY_ELEMENTWISE and node.input[0] in lifted) or (
                node.op_type in BINARY_ELEMENTWISE and any(name in lifted for name in node.input)
                and all(name in lifted or ranks.get(name) == 3 or _single_value(name, initializers)
                        for name in node.input)):
            inputs = [name if _single_value(name, initializers) else four_d(name) for name in node.input]
            out = lifted[node.output[0]] = f"{node.output[0]}__h1"
            node_4d = helper.make_node(node.op_type, inputs, [out], name=node.name, domain=node.domain or None)
            node_4d.attribute.extend(node.attribute)
            nodes.append(node_4d)
        else:
            for name in {*node.input, *_subgraph_inputs(node)}:
                three_d(name)
            nodes.append(node)
    for output in graph.output:
        three_d(output.name)
    del graph.node[:]
    graph.node.extend(nodes)
    unused = [v for v in graph.value_info if v.name in lifted and v.name not in squeezed]
    for value in unused:  # shapes recorded for 3-D tensors that now exist only in the 4-D form
        graph.value_info.remove(value)
    return rewritten
