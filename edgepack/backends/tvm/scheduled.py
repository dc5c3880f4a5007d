"""What the hand-scheduled int8 kernel sets (x86_vnni.py, aarch64_neon.py) share: which plans they
take, the per-channel constants, and the Relax pipeline that only lowers (the kernels are scheduled)."""
from __future__ import annotations

import numpy as np

from edgepack.plan.plan import Layer, Plan

LANES = 16  # channels are padded to a multiple of 16 in both kernel sets


def chain_shaped(plan: Plan) -> bool:
    """conv ... global pool ... FC: the first layer reads the NCHW input (a conv), pools are global, the
    FC reads a pooled 1x1 feature, and no multiplier is INT32_MIN (the saturating case both leave out)."""
    layers = plan.layers
    if layers[0].kind not in ("conv", "pointwise") or layers[-1].kind != "fc":
        return False
    if any((layer.arrays["multiplier"] == -(2**31)).any() for layer in layers if "multiplier" in layer.arrays):
        return False
    spatial = 0
    for layer in layers:
        if layer.kind == "fc" and spatial != 1:
            return False
        if layer.kind == "avgpool" and tuple(layer.output_shape[1:]) not in ((), (1, 1)):
            return False
        if layer.kind != "fc":
            spatial = int(np.prod(layer.output_shape[1:]))
    return True


def shape(var) -> list[int]:
    return [int(d) for d in var.ty.shape]


def pad16(n: int) -> int:
    return -(-n // LANES) * LANES


def zero_padded(w2d: np.ndarray, n_pad: int, k_pad: int) -> np.ndarray:
    """(N, K) int8 weights in an (n_pad, k_pad) array of zeros: padded channels and K positions add nothing."""
    full = np.zeros((n_pad, k_pad), np.int8)
    full[: w2d.shape[0], : w2d.shape[1]] = w2d
    return full


def folded_bias(layer: Layer, zero_point: int, n_pad: int) -> np.ndarray:
    """bias - zp * sum(w) per channel (inputs padded with zp), zero for the padded channels."""
    bias = np.zeros(n_pad, np.int32)
    folded = layer.folded_bias(zero_point)
    bias[: len(folded)] = folded
    return bias


def build(mod, tvm_tgt):
    """Compile a module of scheduled kernels. Loop partitioning splits the border pixels (padding tests
    marked likely) from the interior, whose taps then run branch-free."""
    import tvm

    with tvm.transform.PassContext(opt_level=3, config={"s_tir.LoopPartition": {"partition_const_loop": True}}):
        return tvm.compile(mod, target=tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))


def relax_pipeline(tvm_tgt):
    """The kernels are scheduled already: no legalisation or fusion, only lowering to the VM."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with tvm_tgt:
            passes = [relax.transform.LegalizeOps()] + cpu.dataflow_lower_passes(tvm_tgt) + cpu.finalize_passes(tvm_tgt)
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def plan_function(plan: Plan, low):
    """The Relax ``main(x: int8[1, C, H, W]) -> int8[1, classes]`` of a kernel set: one call per plan layer
    through ``low`` (a kernel set's lowering: conv, pointwise, depthwise, avgpool, fc and its BlockBuilder
    ``bb``), then the logits. Returns the IRModule, kernels not yet scheduled by the caller."""
    from tvm import relax, te

    bb = low.bb
    x = relax.Var("x", relax.TensorType((1,) + tuple(plan.input_shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y, nchw = x, True
            for i, layer in enumerate(plan.layers):
                if layer.kind == "conv" or (nchw and layer.kind == "pointwise"):
                    y = low.conv(y, layer, i, nchw)
                elif layer.kind == "pointwise":
                    y = low.pointwise(y, layer, i)
                elif layer.kind == "depthwise":
                    y = low.depthwise(y, layer, i)
                elif layer.kind == "avgpool":
                    y = low.avgpool(y, layer, i)
                else:
                    y = low.fc(y, layer, i)
                nchw = False
            classes = plan.layers[-1].output_shape[0]
            y = bb.emit_te(lambda t: te.compute((1, classes), lambda a, b: _int8(t[a, b]), name="out"), y,
                           primfunc_name_hint="logits")
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _int8(value):
    """A logit as int8: the VNNI kernels write even the logits as uint8 value + 128 (x86_vnni._requantize)."""
    return value if value.dtype == "int8" else (value.astype("int32") - 128).astype("int8")


def global_average_pool(layer: Layer, hw: int, channels: int, offset: int = 0):
    """TE function of the global pool over (H*W, C) activations held as value + ``offset`` (128 for the
    uint8 VNNI layout): the mean in the shared scale, rounded half away from zero, as reference.avgpool."""
    from tvm import te, tirx as tir

    dtype = "uint8" if offset else "int8"
    zp_in, zp_out = layer.input_q.zero_point + offset, layer.output_q.zero_point

    def fn(x):
        r = te.reduce_axis((0, hw), "r")
        total = te.compute((1, channels), lambda _, n: te.sum(x[r, n].astype("int32") - zp_in, axis=r), name="total")

        def mean(_, n):
            t = total[0, n]
            m = tir.Select(t >= 0, tir.floordiv(t + hw // 2, hw), -tir.floordiv(-t + hw // 2, hw))
            return (tir.max(tir.min(m + zp_out, 127), -128) + offset).astype(dtype)
        return te.compute((1, channels), mean, name="out")

    return fn
