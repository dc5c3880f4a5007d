"""The int8 plan of a PT2E-converted graph (quantize/dequantize nodes around aten ops): the torch front end's last step.

Each conv/linear/pool/max pool/add/mul node sits between dequantize and quantize nodes (optionally with a fused
ReLU/ReLU6 before the quantize); a layer's input is found by following its dequantize back to the
quantize node its producer wrote, so the plan is a graph (a residual tensor feeds its next layer and
its add). Anything else is refused with the name of the node.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.fx import GraphModule, Node

from edgepack import ops
from edgepack.errors import UnsupportedModelError
from edgepack.ops.add import AddParams
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.ops.mul import MulParams, mul_output_shape, mul_requantization
from edgepack.plan.plan import PLAN_INPUT, Layer, Plan, QParams, add_multipliers, quantize_multiplier
from edgepack.quantize.layers import ADD_OPS, COMPUTE_OPS, MAXPOOL_OPS, POOL_OPS, RESHAPE_OPS, max_pool_geometry
from edgepack.quantize.layers import MUL_OPS
from edgepack.ops.concat import ConcatParams
from edgepack.quantize.layers import CAT_OPS
from edgepack.ops.resize import ResizeParams
from edgepack.quantize.layers import UPSAMPLE_OPS, upsample_size
from edgepack.ops.lut import LutParams, lut_layer
from edgepack.ops.pad import PadParams, padded_shape
from edgepack.quantize.layers import PAD_OPS, pad_constant, pad_geometry
from edgepack.quantize.layers import LUT_OPS
from edgepack.quantize.quantizer import is_activation, is_relu6
from edgepack.ops.softmax import SOFTMAX_OUTPUT, softmax_layer
from edgepack.quantize.layers import SOFTMAX_OPS

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed
Q_OPS = {qd.quantize_per_tensor.default}
DQ_TENSOR = {qd.dequantize_per_tensor.default}
DQ_CHANNEL = {qd.dequantize_per_channel.default}


def _attr(gm: GraphModule, node: Node):
    if isinstance(node, Node) and node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return value
    return node


def _qparams(node: Node) -> QParams:
    _, scale, zp, qmin, qmax, dtype = node.args[:6]
    if dtype != torch.int8 or (qmin, qmax) != (-128, 127):
        raise UnsupportedModelError(f"{node.name}: activations must be int8 [-128, 127], got {dtype} [{qmin}, {qmax}]")
    return QParams(float(scale), int(zp))


def _users(node: Node) -> list[Node]:
    """Data consumers of ``node`` (torch.export's shape-guard call is not one)."""
    return [u for u in node.users if not (u.op == "call_module" and str(u.target).startswith("_guards"))]


def _single_user(node: Node) -> Node:
    users = _users(node)
    if len(users) != 1:
        raise UnsupportedModelError(f"{node.name} feeds {len(users)} nodes before it is quantized: the int8 plan "
                                    "quantizes every layer's output (after at most one ReLU/ReLU6)")
    return users[0]


def _input_dq(node: Node) -> Node:
    dq = node.args[0]
    if not (isinstance(dq, Node) and dq.target in DQ_TENSOR):
        raise UnsupportedModelError(f"{node.name}: input is not quantized (no dequantize before it)")
    return dq


def _output(node: Node) -> tuple[Node, str]:
    """Follow the fused activation (if any) to the quantize node; return it and the activation."""
    user, activation = _single_user(node), "none"
    if is_activation(user):
        activation = "relu6" if is_relu6(user) else "relu"
        user = _single_user(user)
    if user.target not in Q_OPS:
        raise UnsupportedModelError(f"{node.name}: output is not quantized (found {user.target})")
    return user, activation


def _weight(gm: GraphModule, node: Node) -> tuple[np.ndarray, np.ndarray]:
    dq = node.args[1]
    if dq.target in DQ_CHANNEL:
        w, scales, zps, axis, qmin, qmax, _ = dq.args[:7]
        w, scales, zps = _attr(gm, w), _attr(gm, scales), _attr(gm, zps)
        if axis != 0:
            raise UnsupportedModelError(f"{node.name}: per-channel weight axis {axis}, expected 0")
    elif dq.target in DQ_TENSOR:
        w, scale, zp = _attr(gm, dq.args[0]), dq.args[1], dq.args[2]
        scales = torch.full((w.shape[0],), float(scale))
        zps = torch.full((w.shape[0],), int(zp))
    else:
        raise UnsupportedModelError(f"{node.name}: weight is not a quantized constant")
    if not isinstance(w, torch.Tensor) or w.dtype != torch.int8 or torch.any(torch.as_tensor(zps) != 0):
        raise UnsupportedModelError(f"{node.name}: weights must be symmetric int8 constants")
    return w.numpy().astype(np.int8), torch.as_tensor(scales).double().numpy()


def _clamp(activation: str, out: QParams) -> tuple[int, int]:
    if activation == "none":
        return -128, 127
    lo = max(-128, out.zero_point)
    hi = 127 if activation == "relu" else min(127, out.zero_point + int(round(6.0 / out.scale)))
    return lo, hi


def _compute_layer(gm: GraphModule, node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    w, w_scale = _weight(gm, node)
    bias = _attr(gm, node.args[2]) if len(node.args) > 2 and node.args[2] is not None else None
    bias = np.zeros(w.shape[0]) if bias is None else bias.detach().double().numpy()
    acc_scale = in_q.scale * w_scale
    int_bias = np.clip(np.round(bias / np.where(acc_scale > 0, acc_scale, 1.0)), -2**31, 2**31 - 1)
    mult = [quantize_multiplier(float(s) / out_q.scale) for s in acc_scale]
    arrays = {
        "weight": w, "bias": int_bias.astype(np.int32), "weight_scale": w_scale.astype(np.float32),
        "multiplier": np.array([m for m, _ in mult], np.int32), "shift": np.array([s for _, s in mult], np.int32),
    }
    lo, hi = _clamp(activation, out_q)
    common = dict(input_q=in_q, output_q=out_q, act_min=lo, act_max=hi, activation=activation, arrays=arrays)
    if node.target == aten.linear.default:
        if len(shape) != 1 or shape[0] != w.shape[1]:
            raise UnsupportedModelError(f"{node.name}: linear expects {w.shape[1]} features, input is {shape}")
        return Layer(node.name, "fc", shape, (w.shape[0],), **common), q_out
    args = list(node.args) + [None] * 7
    stride, padding, dilation, groups = (args[3] or [1, 1]), (args[4] or [0, 0]), (args[5] or [1, 1]), (args[6] or 1)
    c, h, wd = shape
    kh, kw = w.shape[2:]
    (sh, sw), (ph, pw) = (int(stride[0]), int(stride[-1])), (int(padding[0]), int(padding[-1]))  # (H, W), or one
    if tuple(dilation) not in ((1, 1), (1,)):
        raise UnsupportedModelError(f"{node.name}: dilation {list(dilation)} is not supported (only 1)")
    if groups == 1:
        kind = "pointwise" if (kh, kw, ph, pw) == (1, 1, 0, 0) else "conv"
    elif groups == c and w.shape[0] % c == 0 and w.shape[1] == 1:  # C*m outputs: depth multiplier m
        kind = "depthwise"
    else:
        raise UnsupportedModelError(f"{node.name}: grouped conv with groups={groups} (only 1 or = channels)")
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    pads = (ph, pw, ph, pw)  # PyTorch pads symmetrically per axis: (top, left, bottom, right)
    layer = Layer(node.name, kind, shape, (w.shape[0], oh, ow), stride=(sh, sw), pads=pads, **common)
    return layer, q_out


def _pool_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    c, h, w = shape
    target, args = node.target, node.args
    global_pool = (
        (target == aten.adaptive_avg_pool2d.default and tuple(args[1]) in ((1, 1), (1,)))
        or (target == aten.mean.dim and sorted(a % 4 for a in args[1]) == [2, 3])
        or (target == aten.avg_pool2d.default and tuple(args[1]) in ((h, w),) and len(args) <= 3 + 1)
    )
    if not global_pool:
        raise UnsupportedModelError(f"{node.name}: only global average pooling is supported")
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if out_q != in_q or activation != "none":
        raise UnsupportedModelError(f"{node.name}: pooling must keep its input's quantization parameters")
    out_shape = (c,) if target == aten.mean.dim and not (len(args) > 2 and args[2]) else (c, 1, 1)
    return Layer(node.name, "avgpool", shape, out_shape, input_q=in_q, output_q=out_q), q_out


def _max_pool_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    """TFLite's int8 MAX_POOL_2D in its input's quantization (the quantizer shares it), a fused ReLU/ReLU6 as
    its clamp; PyTorch pads with -inf, so the padding never wins a max, as in TFLite."""
    window, stride, padding = max_pool_geometry(node)
    if len(shape) != 3:
        raise UnsupportedModelError(f"{node.name}: max pooling reads a (C, H, W) map, not {list(shape)}")
    c, h, w = shape
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if out_q != in_q:
        raise UnsupportedModelError(f"{node.name}: max pooling must keep its input's quantization parameters")
    lo, hi = _clamp(activation, out_q)
    (kh, kw), (sh, sw), (ph, pw) = window, stride, padding
    out_shape = (c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    return Layer(node.name, "maxpool", shape, out_shape, in_q, out_q, lo, hi, stride=stride, pads=(ph, pw, ph, pw),
                 activation=activation, params=MaxPoolParams(window)), q_out


def _lut_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    """nn.Hardswish / nn.Hardsigmoid / nn.LeakyReLU (or a ReLU/ReLU6 no layer fused, e.g. at the input: TFLite's
    RELU / RELU6) as a lut layer: its table TFLite's arithmetic for the
    observed input and output quantization (the quantizer gives each its own observer), so the .tflite twin
    (the builtin; a GATHER from the table for the hard sigmoid) is bit-exact."""
    function = ("relu6" if is_relu6(node) else "relu") if is_activation(node) else LUT_OPS[node.target]
    alpha = None
    if function == "leaky_relu":
        alpha = float(node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01))
    q_out, activation = _output(node)
    if activation != "none":
        raise UnsupportedModelError(f"{node.name}: a ReLU/ReLU6 after {node.target} is not supported by the int8 "
                                    "plan: remove it")
    return lut_layer(node.name, LutParams(function, alpha), shape, in_q, _qparams(q_out)), q_out


def _add_layer(node: Node, sources: list[tuple[QParams, int, tuple]]) -> tuple[Layer, Node]:
    """TFLite's int8 ADD of two equally shaped tensors, each in its producer's quantization (what the
    observers chose: PT2E shares an add input's observer with its producer's output)."""
    (qa, _, shape_a), (qb, _, shape_b) = sources
    if shape_a != shape_b:
        raise UnsupportedModelError(f"{node.name}: adds tensors of shapes {shape_a} and {shape_b}: only equal shapes "
                                    "(no broadcasting) are supported")
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    multiplier, shift = add_multipliers(qa, qb, out_q)
    lo, hi = _clamp(activation, out_q)
    return Layer(node.name, "add", shape_a, shape_a, qa, out_q, lo, hi, activation=activation,
                 arrays={"multiplier": multiplier, "shift": shift}, params=AddParams(qb)), q_out


def _mul_layer(node: Node, sources: list[tuple[QParams, int, tuple]]) -> tuple[Layer, Node]:
    """TFLite's int8 MUL of two tensors of one shape, or of a (C, 1, 1) gate and a (C, H, W) map in either
    order, each in its producer's quantization (as an add's inputs)."""
    (qa, _, shape_a), (qb, _, shape_b) = sources
    shape = mul_output_shape(shape_a, shape_b)
    if shape is None:
        raise UnsupportedModelError(f"{node.name}: multiplies tensors of shapes {shape_a} and {shape_b}: the int8 plan "
                                    "multiplies equal shapes or a (C, 1, 1) gate and a (C, H, W) map")
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    multiplier, shift = mul_requantization(qa, qb, out_q)
    lo, hi = _clamp(activation, out_q)
    return Layer(node.name, "mul", shape_a, shape, qa, out_q, lo, hi, activation=activation,
                 arrays={"multiplier": multiplier, "shift": shift}, params=MulParams(qb, shape_b)), q_out


def _concat_layer(node: Node, sources: list[tuple[QParams, int, tuple]]) -> tuple[Layer, Node]:
    """TFLite's int8 CONCATENATION of (C_k, H, W) maps on their channels, a copy: the annotation shares one
    quantization among the inputs and the output (a ReLU after the cat would be a clamp TFLite's has not)."""
    shapes = [shape for _, _, shape in sources]
    if any(len(s) != 3 or s[1:] != shapes[0][1:] for s in shapes):
        raise UnsupportedModelError(f"{node.name}: concatenates {shapes}: the int8 plan joins (C, H, W) maps of one "
                                    "height and width on their channels")
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if activation != "none" or any(q != out_q for q, _, _ in sources):
        raise UnsupportedModelError(f"{node.name}: torch.cat must keep its inputs' quantization with no ReLU after it "
                                    "(the int8 concat is a copy): apply the ReLU to each input before the cat")
    out_shape = (sum(s[0] for s in shapes), *shapes[0][1:])
    return Layer(node.name, "concat", shapes[0], out_shape, sources[0][0], out_q, inputs=tuple(i for _, i, _ in sources),
                 params=ConcatParams(tuple(q for q, _, _ in sources[1:]))), q_out


def _resize_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    """nn.Upsample / F.interpolate in mode "nearest" as TFLite's int8 RESIZE_NEAREST_NEIGHBOR (no flags: the index
    PyTorch takes, quantize.layers.upsample_size), a copy in its input's quantization (the quantizer shares it)."""
    out_hw = upsample_size(node, shape)
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if out_q != in_q or activation != "none":
        raise UnsupportedModelError(f"{node.name}: an upsample must keep its input's quantization parameters")
    return Layer(node.name, "resize_nearest", shape, (shape[0], *out_hw), in_q, out_q, params=ResizeParams()), q_out


def _pad_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    """nn.ZeroPad2d / nn.ConstantPad2d / F.pad (constant) as TFLite's int8 PAD / PADV2, in its input's quantization
    (the quantizer shares it); the constant quantized as PyTorch's quantize_per_tensor would (x * (1 / scale) in
    float32, rounded half to even, + zero point, clamped): ZeroPad2d's 0.0 is the zero point."""
    pads, _ = pad_geometry(node)
    if len(shape) != 3:
        raise UnsupportedModelError(f"{node.name}: pads a {list(shape)} tensor: the int8 pad takes (N, C, H, W) maps")
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if out_q != in_q or activation != "none":
        raise UnsupportedModelError(f"{node.name}: a pad must keep its input's quantization parameters, with no ReLU "
                                    "after it: apply the ReLU before the pad")
    constant = pad_constant(node, out_q.scale, out_q.zero_point)  # refused by name outside the calibrated range
    return Layer(node.name, "pad", shape, padded_shape(shape, pads), in_q, out_q, pads=pads,
                 params=PadParams(constant)), q_out


def _softmax_layer(node: Node, shape: tuple[int, ...], in_q: QParams) -> tuple[Layer, Node]:
    """A kept softmax (the model's last op, over the classes) as TFLite's int8 SOFTMAX, beta 1: its input in its
    producer's quantization, its output in the fixed scale 1/256, zero point -128 the quantizer annotates."""
    q_out, activation = _output(node)
    out_q = _qparams(q_out)
    if len(shape) != 1 or out_q != SOFTMAX_OUTPUT or activation != "none":
        raise UnsupportedModelError(f"{node.name}: a softmax must read the (classes,) logits and output in scale "
                                    f"1/256, zero point -128, got {list(shape)} and {out_q}: end the model in "
                                    "softmax(logits, dim=1)")
    return softmax_layer(node.name, shape[0], in_q), q_out


def _is_shape_arithmetic(node: Node) -> bool:
    """sym_size and friends of a dynamic batch: they compute view sizes, not data."""
    return "sym_size" in str(node.target) or isinstance(node.meta.get("val"), (int, torch.SymInt))


def build_plan(gm: GraphModule, input_shape: tuple[int, int, int]) -> Plan:
    """One layer per compute node, in graph order; each quantize node a layer wrote is a plan tensor."""
    walk = _Walk(gm, input_shape)
    for node in gm.graph.nodes:
        walk.visit(node)
    return walk.plan()


class _Walk:
    """The graph walked in order: the layers so far and the plan tensor each quantize node holds."""

    def __init__(self, gm: GraphModule, input_shape: tuple[int, int, int]):
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedModelError(f"model has {len(placeholders)} inputs: exactly one image input is supported")
        self.q_in = _single_user(placeholders[0])
        if self.q_in.target not in Q_OPS:
            raise UnsupportedModelError("model input is not quantized: the first layer must be a conv")
        self.gm, self.input_shape = gm, tuple(input_shape)
        self.input_q, self.layers = _qparams(self.q_in), []
        self.tensors: dict[Node, tuple[int, tuple]] = {self.q_in: (PLAN_INPUT, self.input_shape)}  # quantize node -> (tensor, shape)
        self.fused: set[Node] = set()  # activation and quantize nodes a layer took as its output
        self.output_tensor = None

    def source(self, node: Node, arg: int, dq: Node | None = None) -> tuple[QParams, int, tuple]:
        """The quantization, plan tensor and shape of ``node``'s input ``arg`` (``dq`` when the input is one of a
        list, as torch.cat's)."""
        dq = node.args[arg] if dq is None else dq
        if not (isinstance(dq, Node) and dq.target in DQ_TENSOR):
            raise UnsupportedModelError(f"{node.name}: input {arg} is not quantized (no dequantize before it)")
        if dq.args[0] not in self.tensors:
            raise UnsupportedModelError(f"{node.name}: input {arg} does not come from a layer the int8 plan has")
        index, shape = self.tensors[dq.args[0]]
        return _qparams(dq), index, shape

    def visit(self, node: Node) -> None:
        if node.op == "output":
            data = node.args[0][0] if isinstance(node.args[0], (tuple, list)) else node.args[0]
            if isinstance(data, Node) and data.target in DQ_TENSOR and data.args[0] in self.tensors:
                self.output_tensor = self.tensors[data.args[0]][0]
            return
        if node.op != "call_function" or node in self.fused or node is self.q_in:
            return
        if node.target in Q_OPS | DQ_TENSOR | DQ_CHANNEL or _is_shape_arithmetic(node):
            return
        if node.target in RESHAPE_OPS:
            self._reshape(node)
            return
        layer, q_out = self._layer(node)
        self.fused.update(u for u in _users(node) if is_activation(u))
        self.fused.add(q_out)
        self.layers.append(layer)
        self.tensors[q_out] = (len(self.layers) - 1, tuple(layer.output_shape))

    def _layer(self, node: Node) -> tuple[Layer, Node]:
        if node.target in UPSAMPLE_OPS:
            in_q, index, shape = self.source(node, 0)
            layer, q_out = _resize_layer(node, shape, in_q)
            layer.inputs = () if index == len(self.layers) - 1 else (index,)  # () = the previous layer
            return layer, q_out
        if node.target in ADD_OPS | MUL_OPS:
            sources = [self.source(node, 0), self.source(node, 1)]
            layer, q_out = (_add_layer if node.target in ADD_OPS else _mul_layer)(node, sources)
            layer.inputs = (sources[0][1], sources[1][1])
            return layer, q_out
        if node.target in CAT_OPS:
            return _concat_layer(node, [self.source(node, k, dq) for k, dq in enumerate(node.args[0])])
        if node.target in PAD_OPS:
            in_q, index, shape = self.source(node, 0)
            layer, q_out = _pad_layer(node, shape, in_q)
            layer.inputs = () if index == len(self.layers) - 1 else (index,)  # () = the previous layer
            return layer, q_out
        if node.target in SOFTMAX_OPS:
            in_q, index, shape = self.source(node, 0)
            layer, q_out = _softmax_layer(node, shape, in_q)
            layer.inputs = () if index == len(self.layers) - 1 else (index,)  # () = the previous layer
            return layer, q_out
        if node.target in LUT_OPS or is_activation(node):  # a ReLU/ReLU6 here follows no layer that fuses it
            in_q, index, shape = self.source(node, 0)
            layer, q_out = _lut_layer(node, shape, in_q)
            layer.inputs = () if index == len(self.layers) - 1 else (index,)  # () = the previous layer
            return layer, q_out
        if node.target not in COMPUTE_OPS | POOL_OPS | MAXPOOL_OPS:
            raise UnsupportedModelError(f"{node.name}: operator {node.target} is not supported by the int8 plan")
        in_q, index, shape = self.source(node, 0)
        if node.target in COMPUTE_OPS:
            layer, q_out = _compute_layer(self.gm, node, shape, in_q)
        elif node.target in MAXPOOL_OPS:
            layer, q_out = _max_pool_layer(node, shape, in_q)
        else:
            layer, q_out = _pool_layer(node, shape, in_q)
        layer.inputs = () if index == len(self.layers) - 1 else (index,)  # () = the previous layer
        return layer, q_out

    def _reshape(self, node: Node) -> None:
        """A flatten or view keeps its input's plan tensor (and quantization) under a flat shape."""
        in_q, index, shape = self.source(node, 0)
        q_out, _ = _output(node)
        if _qparams(q_out) != in_q:
            raise UnsupportedModelError(f"{node.name}: reshape changes quantization parameters")
        self.tensors[q_out] = (index, (int(np.prod(shape)),))
        self.fused.add(q_out)

    def plan(self) -> Plan:
        """The plan, refused unless it ends in the classifier the graph returns and fits the int8 contract."""
        layers = self.layers
        if not layers or not ops.get(layers[-1].kind).classifier:
            raise UnsupportedModelError("the model must end in a quantized Linear classifier")
        if self.output_tensor != len(layers) - 1:
            raise UnsupportedModelError("the model's output is not its last layer's: the int8 plan returns the last layer")
        plan = Plan(self.input_q, self.input_shape, layers)
        problems = plan.problems()
        if problems:
            raise UnsupportedModelError(f"the model does not fit the int8 contract: {problems[0]}: check the weights "
                                        "(e.g. a channel whose weights are all ~0) or calibrate with more varied images")
        return plan
