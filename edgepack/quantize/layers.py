"""The PyTorch layers the int8 plan takes, in one table: each layer's nn.Module classes and the aten ops it
becomes in a torch.export graph. The module check (frontends.torch.check_supported), the graph check
(quantize.quantizer.check_graph_ops), the quantizer and the plan's graph walk (frontends.pt2e_plan) all read
these sets, and a refusal lists SUPPORTED_LAYERS, so what is accepted and what a refusal offers cannot drift.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgepack.errors import UnsupportedModelError

aten = torch.ops.aten

COMPUTE_OPS = {aten.conv2d.default, aten.linear.default}
BATCHNORM_OPS = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
RELU_OPS = {aten.relu.default, aten.relu_.default}
RELU6_OPS = {aten.hardtanh.default, aten.hardtanh_.default}  # ReLU6 is hardtanh(0, 6); other bounds are refused
ACTIVATION_OPS = RELU_OPS | RELU6_OPS
ADD_OPS = {aten.add.Tensor, aten.add_.Tensor, operator.add}  # torch `+`, torch.add, operator.add
MUL_OPS = {aten.mul.Tensor, aten.mul_.Tensor, operator.mul}  # torch `*`, torch.mul, operator.mul (of two tensors)
POOL_OPS = {aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default, aten.mean.dim}
MAXPOOL_OPS = {aten.max_pool2d.default}  # nn.MaxPool2d and F.max_pool2d (return_indices=False)
# nn.Upsample / nn.UpsamplingNearest2d / F.interpolate in mode "nearest" (integer scale factors, or a size)
UPSAMPLE_OPS = {aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default}
# elementwise functions the plan runs as a lut layer (edgepack.ops.lut), each op -> the function it computes
LUT_OPS = {aten.hardswish.default: "hard_swish", aten.hardswish_.default: "hard_swish",
           aten.hardsigmoid.default: "hardsigmoid", aten.hardsigmoid_.default: "hardsigmoid",
           aten.leaky_relu.default: "leaky_relu", aten.leaky_relu_.default: "leaky_relu"}
CAT_OPS = {aten.cat.default, aten.concat.default}  # torch.cat / torch.concat (dim=1 of (N, C, H, W) maps)
RESHAPE_OPS = {aten.flatten.using_ints, aten.view.default, aten.reshape.default}
PAD_OPS = {aten.pad.default, aten.constant_pad_nd.default}  # nn.ZeroPad2d / nn.ConstantPad2d / F.pad, constant mode
SOFTMAX_OPS = {aten.softmax.int, aten._softmax.default}  # nn.Softmax / F.softmax / torch.softmax / Tensor.softmax
SHARED_OPS = POOL_OPS | MAXPOOL_OPS | RESHAPE_OPS | UPSAMPLE_OPS  # output keeps the input's quantization parameters
SHARED_OPS |= PAD_OPS  # a constant pad too (TFLite's int8 PAD / PADV2 keep the quantization)
# Dropout is the identity in eval mode: its nodes leave the graph before quantization (remove_no_ops)
NO_OPS = {aten.dropout.default, aten.dropout_.default, aten.feature_dropout.default, aten.alpha_dropout.default,
          aten.feature_alpha_dropout.default}


@dataclass(frozen=True)
class TorchLayer:
    name: str  # as a refusal lists it
    modules: tuple  # the nn.Module classes of the layer
    ops: frozenset  # the aten ops it is in an exported graph
    plan_kinds: tuple = ()  # the int8 plan layers it becomes (debug pairs them with its module calls)
    functional: bool = False  # may be a function call (F.max_pool2d), which no module hook sees


LAYERS = (
    TorchLayer("Conv2d", (nn.Conv2d,), frozenset({aten.conv2d.default}), ("conv", "pointwise", "depthwise")),
    TorchLayer("BatchNorm2d", (nn.BatchNorm2d,), frozenset(BATCHNORM_OPS)),
    TorchLayer("ReLU", (nn.ReLU,), frozenset(RELU_OPS)),
    TorchLayer("ReLU6", (nn.ReLU6,), frozenset(RELU6_OPS)),
    TorchLayer("AdaptiveAvgPool2d(1)/AvgPool2d (global)", (nn.AdaptiveAvgPool2d, nn.AvgPool2d), frozenset(POOL_OPS),
               ("avgpool",)),
    TorchLayer("MaxPool2d", (nn.MaxPool2d,), frozenset(MAXPOOL_OPS), ("maxpool",), functional=True),
    TorchLayer("Hardswish/Hardsigmoid/LeakyReLU", (nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU), frozenset(LUT_OPS),
               ("lut",), functional=True),
    TorchLayer("Flatten", (nn.Flatten,), frozenset(RESHAPE_OPS)),
    TorchLayer("Linear", (nn.Linear,), frozenset({aten.linear.default}), ("fc",)),
    TorchLayer("BatchNorm1d (after a Linear)", (nn.BatchNorm1d,), frozenset(BATCHNORM_OPS)),  # folded into it
    TorchLayer("+ (residual add)", (), frozenset(ADD_OPS), ("add",)),
    TorchLayer("* (multiply)", (), frozenset(MUL_OPS), ("mul",)),
    TorchLayer("torch.cat (channels)", (), frozenset(CAT_OPS), ("concat",)),
    TorchLayer("ZeroPad2d/ConstantPad2d/F.pad (constant, height and width)", (nn.ZeroPad2d, nn.ConstantPad2d),
               frozenset(PAD_OPS), ("pad",), functional=True),
    TorchLayer("Upsample (nearest, integer scale)", (nn.Upsample, nn.UpsamplingNearest2d), frozenset(UPSAMPLE_OPS),
               ("resize_nearest",), functional=True),
    TorchLayer("Softmax (the last op, over the classes: dim=1 of (N, classes); dropped unless keep_softmax)",
               (nn.Softmax,), frozenset(SOFTMAX_OPS), ("softmax",), functional=True),
    TorchLayer("Dropout", (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout),
               frozenset(NO_OPS)),
    TorchLayer("Identity", (nn.Identity,), frozenset()),
)
CONTAINERS = (nn.Sequential,)  # checked by their leaves (an empty one is a leaf that does nothing)
SUPPORTED_MODULES = CONTAINERS + tuple(cls for layer in LAYERS for cls in layer.modules)
SUPPORTED_OPS = frozenset().union(*(layer.ops for layer in LAYERS)) | {operator.getitem}
PLAN_KIND_MODULES = {kind: layer.modules for layer in LAYERS for kind in layer.plan_kinds}
FUNCTIONAL_KINDS = frozenset(kind for layer in LAYERS if layer.functional for kind in layer.plan_kinds)
SUPPORTED_LAYERS = ", ".join(layer.name for layer in LAYERS[:-1]) + f" and {LAYERS[-1].name}"


def _where(node: torch.fx.Node, module_word: str, function: str) -> str:
    """How a refusal names ``node``: "layer 'name' (Class)" when its innermost module's class name contains
    ``module_word`` (the nn.Module the user wrote), else "node (function)" for a functional call."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    module = stack[-1][1].rsplit(".", 1)[-1] if stack else ""
    return f"layer '{stack[-1][0]}' ({module})" if module_word in module else f"{node.name} ({function})"


def _pair(value, default) -> tuple[int, int] | None:
    """An int or a list of one or two ints as (along H, along W); ``default`` for []; None for a longer list."""
    value = default if value in (None, []) else value
    values = [value] if isinstance(value, int) else list(value)
    return (int(values[0]), int(values[-1])) if len(values) in (1, 2) else None


def max_pool_geometry(node: torch.fx.Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(window, stride, padding), each (along H, along W), of an aten.max_pool2d node (nn.MaxPool2d or
    F.max_pool2d): any kernel_size, stride and padding, no dilation, floor mode. Anything else is refused
    naming the layer and the fix."""
    args = list(node.args) + [None] * (6 - len(node.args))
    window = _pair(args[1], None)
    stride, padding, dilation = _pair(args[2], window), _pair(args[3], 0), _pair(args[4], 1)
    stack = list(node.meta.get("nn_module_stack", {}).values())
    where = (f"layer '{stack[-1][0]}' (MaxPool2d)" if stack and stack[-1][1].endswith(".MaxPool2d")
             else f"{node.name} (F.max_pool2d)")
    for bad, what, fix in ((window is None, f"kernel_size {args[1]} is not 2-D", "use kernel_size=k or (kh, kw)"),
                           (stride is None, f"stride {args[2]} is not 2-D", "use stride=s or (sh, sw)"),
                           (padding is None, f"padding {args[3]} is not 2-D", "use padding=p or (ph, pw)"),
                           (dilation != (1, 1), f"dilation {args[4]} is not 1", "use dilation=1"),
                           (bool(args[5]), "ceil_mode=True", "use ceil_mode=False (pad the input instead)")):
        if bad:
            raise UnsupportedModelError(f"{where}: {what}, which the int8 max pool does not support: {fix}")
    return window, stride, padding


def upsample_size(node: torch.fx.Node, shape: tuple[int, ...]) -> tuple[int, int]:
    """The (H', W') an aten.upsample_nearest2d node (nn.Upsample / F.interpolate, mode "nearest") makes of a (C, H, W)
    map: a given size, or integer scale factors (x2). PyTorch then takes output row y from input row
    floor(y * H / H'), TFLite's RESIZE_NEAREST_NEIGHBOR index; a fractional scale factor takes 1 / factor instead,
    which can differ, and is refused naming the layer and the fix."""
    size, factors = (list(node.args) + [None, None])[1:3]
    where = _where(node, "Upsampl", "F.interpolate")
    if len(shape) != 3:
        raise UnsupportedModelError(f"{where}: resizes a {list(shape)} tensor: the int8 resize takes (N, C, H, W) maps")
    _, h, w = shape
    if size is not None:
        return int(size[0]), int(size[-1])
    fh, fw = (float(f) for f in (factors[0], factors[-1]))
    if not (fh.is_integer() and fw.is_integer() and min(fh, fw) >= 1):
        raise UnsupportedModelError(f"{where}: scale_factor ({fh:g}, {fw:g}) is not an integer, which the int8 resize "
                                    "does not support: use scale_factor=2 (any integer) or size=(H, W)")
    return h * int(fh), w * int(fw)


def pad_geometry(node: torch.fx.Node) -> tuple[tuple[int, int, int, int], float]:
    """(pads (top, left, bottom, right), constant) of an aten.pad / constant_pad_nd node (nn.ZeroPad2d,
    nn.ConstantPad2d, F.pad(x, (left, right, top, bottom))): constant mode, no cropping, no padding of the channels
    or the batch; anything else is refused naming the layer and the fix."""
    pad = [int(p) for p in node.args[1]]
    mode = node.args[2] if node.target == aten.pad.default and len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[-1] if len(node.args) > 2 + (node.target == aten.pad.default) else node.kwargs.get("value")
    where = _where(node, "Pad", "F.pad")
    for bad, what, fix in ((mode != "constant", f"mode {mode!r}", "use mode='constant' (zeros or a constant)"),
                           (any(pad[4:]), f"pads the channel or batch axis (pad {pad})",
                            "pad height and width only: pad=(left, right, top, bottom)"),
                           (min(pad, default=0) < 0, f"crops (negative pad {pad})", "slice the map instead")):
        if bad:
            raise UnsupportedModelError(f"{where}: {what}, which the int8 pad does not support: {fix}")
    left, right, top, bottom = (pad + [0, 0, 0, 0])[:4]
    return (top, left, bottom, right), float(value or 0.0)


def pad_constant(node: torch.fx.Node, scale: float, zero_point: int) -> int:
    """A constant pad's value in its input's int8 quantization (the pad shares it, as TFLite's PADV2 requires),
    quantized as PyTorch's quantize_per_tensor (x * (1 / scale) in float32, rounded half to even, + zero point).
    A value outside the calibrated range is refused naming the layer (clamping it would pad another value)."""
    _, value = pad_geometry(node)
    scaled = np.float32(value) * np.float32(1.0 / scale)
    constant = int(np.round(scaled)) + int(zero_point)
    if not -128 <= constant <= 127:
        low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
        raise UnsupportedModelError(
            f"{_where(node, 'Pad', 'F.pad')}: pad value {value:g} lies outside its input's calibrated range "
            f"[{low:.4g}, {high:.4g}], and the int8 pad keeps its input's quantization: pad with a value in that "
            "range (0 always is), or pad before the layer that narrows the range")
    return constant


def _input_rank(node: torch.fx.Node) -> tuple[int, tuple]:
    """(rank, shape) of a node's first input from its export metadata; (0, ()) when the graph has none."""
    first = node.args[0] if node.args else None
    val = first.meta.get("val") if isinstance(first, torch.fx.Node) else None
    return (val.dim(), tuple(val.shape)) if isinstance(val, torch.Tensor) else (0, ())


def check_resize_mode(node: torch.fx.Node) -> None:
    """Refuse, naming the layer, the mode and the fix, an aten upsample other than nearest on a 2-D map
    (bilinear, bicubic, nearest-exact, antialiased, 1-D or 3-D): the int8 plan's resize is nearest only."""
    name = str(node.target).split(".")[1] if str(node.target).startswith("aten.") else ""
    found = re.fullmatch(r"_?upsample_(\w+?)(1d|2d|3d)(_aa)?", name)
    if node.target in UPSAMPLE_OPS or not found:
        return
    mode, dims, antialias = found.group(1).replace("_", "-"), found.group(2), found.group(3)
    what = (f"mode '{mode}'" + (" with antialias" if antialias else "") if dims == "2d"
            else f"a {dims[0]}-D resize (mode '{mode}')")
    raise UnsupportedModelError(
        f"{_where(node, 'Upsampl', 'F.interpolate')}: {what} (operator {name}) is not supported by the int8 plan: "
        f"use mode='nearest' on (N, C, H, W) maps with an integer scale_factor or a size; the supported layers: "
        f"{SUPPORTED_LAYERS}")


def check_layer_geometry(node: torch.fx.Node) -> None:
    """Before calibration, refuse by layer name what the plan walk would refuse after it: a max pool, concat, pad
    or upsample of a geometry the int8 layer lacks, and an upsample of another mode (the walk checks again)."""
    rank, shape = _input_rank(node)
    if node.target in MAXPOOL_OPS:
        max_pool_geometry(node)
    elif node.target in CAT_OPS:
        check_cat_on_channels(node)
    elif node.target in PAD_OPS:
        pad_geometry(node)
        if rank not in (0, 4):
            dims = ", ".join(["N", *(str(d) for d in shape[1:])])
            raise UnsupportedModelError(f"{_where(node, 'Pad', 'F.pad')}: pads a {rank}-D tensor ({dims}), which the "
                                        "int8 pad does not support: pad (N, C, H, W) maps")
    elif node.target in UPSAMPLE_OPS and rank:
        upsample_size(node, shape[1:])
    elif node.target in SOFTMAX_OPS:
        check_softmax(node, rank, shape)
    else:
        check_resize_mode(node)


def check_cat_on_channels(node: torch.fx.Node) -> None:
    """A torch.cat node joins (N, C, H, W) maps on dim 1 (or -3), the int8 concat's channel axis; anything else
    is refused naming the node and the fix."""
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    val = node.meta.get("val")
    rank = val.dim() if isinstance(val, torch.Tensor) else 0
    if rank != 4 or dim % rank != 1:
        raise UnsupportedModelError(f"{node.name} (torch.cat): joins {rank}-D tensors on dim {dim}, which the int8 "
                                    "concat does not support: concatenate (N, C, H, W) maps on their channels, "
                                    "torch.cat(..., dim=1)")


def check_softmax(node: torch.fx.Node, rank: int, shape: tuple) -> None:
    """A softmax node is the graph's last op (what it returns), over dim 1 (or -1) of the (N, classes) logits: the
    int8 softmax (TFLite's SOFTMAX) is a classifier head only; anything else is refused naming the layer and the fix."""
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    users = list(node.users)
    last = bool(users) and all(u.op == "output" for u in users)
    dims = ", ".join(["N", *(str(d) for d in shape[1:])])
    for bad, what, fix in ((rank not in (0, 2), f"is over a {rank}-D tensor ({dims})",
                            "apply it to the (N, classes) output of the last Linear"),
                           (rank == 2 and dim is not None and dim % 2 != 1, f"is over dim {dim}",
                            "use dim=1 (or -1), over the classes"),
                           (not last, "is not the model's last op",
                            "move it to the end, over the (N, classes) logits, or remove it")):
        if bad:
            raise UnsupportedModelError(f"{_where(node, 'Softmax', 'F.softmax')}: the softmax {what}, which the int8 "
                                        f"plan does not support: {fix}")


def _softmax_dim(node: torch.fx.Node, modules: dict):
    """(True, dim) when a torch.fx node is a softmax call (nn.Softmax, F.softmax, torch.softmax, Tensor.softmax),
    else (False, None)."""
    if node.op == "call_module" and isinstance(modules.get(node.target), nn.Softmax):
        return True, modules[node.target].dim
    if (node.op == "call_function" and node.target in (torch.nn.functional.softmax, torch.softmax)) or (
            node.op == "call_method" and node.target == "softmax"):
        if node.kwargs.get("dtype") is not None:
            return False, None
        return True, node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return False, None


def strip_trailing_softmax(model: nn.Module) -> torch.fx.GraphModule | None:
    """``model`` returning the input of its last op when that op is a softmax over dim 1 (or -1, or None: the
    (N, classes) logits' implicit dim), as a torch.fx GraphModule; None when it ends otherwise (or torch.fx cannot
    trace it: folding then says why). Softmax is monotonic: the top class is unchanged."""
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 (fold's own trace refuses the model naming the reason)
        return None
    output = next(n for n in traced.graph.nodes if n.op == "output")
    last = output.args[0]
    if not isinstance(last, torch.fx.Node):
        return None
    found, dim = _softmax_dim(last, dict(traced.named_modules()))
    if not found or dim not in (None, 1, -1) or not isinstance(last.args[0], torch.fx.Node):
        return None
    output.replace_input_with(last, last.args[0])
    traced.graph.erase_node(last)
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def remove_no_ops(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop the Dropout nodes (NO_OPS) of an exported graph: the identity at inference, and without them a
    model quantizes exactly as the same model without Dropout (no observer of its own between two layers).
    QAT's short fine-tune then runs without dropout too."""
    removed = False
    for node in list(graph_module.graph.nodes):
        if node.op == "call_function" and node.target in NO_OPS:
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
            removed = True
    if removed:
        graph_module.graph.lint()
        graph_module.recompile()
    return graph_module
