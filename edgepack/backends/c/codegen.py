"""Generate model.c / model.h from the int8 plan: const weights in flash, layer calls, static arena.

The output is a pure function of (plan, kernel set, memory plan): no timestamps, no paths, so
the same plan gives byte-identical sources. Everything the C cannot check at run time is
checked here, before any code is written (supported shapes, requantization ranges, and the
int32 accumulator bound that kernels.c's overflow proof relies on).

What differs per op kind lives in one place, ``C_LOWERINGS`` (the C executor's table of the op
registry, edgepack.ops): one ``CLowering`` per kind says what it refuses, which constant arrays and
``ep_layer`` fields model.c holds for it and which kernels.h function runs it (portable or fast, with
its scratch). A plan holding a kind without an entry is refused by op name before any work.
"""
from __future__ import annotations

import textwrap

import numpy as np

from edgepack import ops
from edgepack.errors import UnsupportedModelError
from edgepack.ops import Lowerings
from edgepack.ops.avgpool import pool_zero_points
from edgepack.ops.fc import rounds_once
from edgepack.ops.mul import MUL_MAX_LEFT_SHIFT, mul_output_shape
from edgepack.ops.resize import resize_maps
from edgepack.ops.pad import padded_shape
from edgepack.ops.softmax import MAX_CLASSES, softmax_scaling
from edgepack.plan.plan import Layer, Plan
from edgepack.version import __version__

INT32_MAX = 2**31 - 1
KERNEL_SETS = ("portable", "fast", "helium")  # helium: the fast set with MVE kernels where it has them
CONV_FAST_MAX_IN = 16  # EP_CONV_FAST_MAX_IN in kernels.h
DW_SMALL_MAX_PLANE = 576  # 24x24: depthwise input planes up to it take ep_depthwise_small_fast
FAST_SUFFIXES = ("_fast", "_helium")  # the kernels.h functions of the fast and helium sets
HELIUM_FLAT_MAX = 64  # EP_HELIUM_FLAT_MAX in kernels.h

C_LOWERINGS = Lowerings("C")


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _fail(layer: Layer, i: int, why: str):
    raise UnsupportedModelError(f"layer {i} '{layer.name}' ({layer.kind}) cannot be lowered to C: {why}")


# ---------------------------------------------------------------- the C lowering of each op kind

class CLowering:
    """How one op kind becomes C. The defaults are those of a layer that requantizes. Whether model.c holds
    int8 weights and int32 biases (and an accumulator bound is proven) is the op's (``ops.get(kind).weighted``)."""
    portable = ""  # the kernels.h function of the portable set (the fast set falls back to it)

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        """Refuse (``_fail``) what the kernel does not implement exactly, beyond the checks of every layer."""

    def requantized(self, layer: Layer) -> bool:
        """model.c holds its int32 multiplier and int8 shift arrays."""
        return True

    def window(self, layer: Layer) -> tuple[int, int]:
        """ep_layer's (kh, kw): the kernel's, or a max pool's window."""
        return 1, 1

    def zero_points(self, layer: Layer) -> tuple[int, int]:
        """ep_layer's in_zp and out_zp."""
        return layer.input_q.zero_point, layer.output_q.zero_point

    def extra_fields(self, layer: Layer) -> str:
        """ep_layer fields only this kind sets, each followed by ", "."""
        return ""

    def tables(self, layer: Layer) -> tuple[tuple[str, str, str], ...]:
        """Further constant arrays model.c holds: (plan array, C type, the ep_layer pointer set to it)."""
        return ()

    def table(self, layer: Layer, name: str) -> np.ndarray:
        """The values of one of ``tables()``: the plan array of that name, unless the lowering derives them."""
        return layer.arrays[name]

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """The fast set's kernel for shapes it specialises, with its scratch bytes (kernels.h EP_*_FAST_SCRATCH)."""
        return None

    def helium(self, layer: Layer) -> tuple[str, int] | None:
        """The helium set's (kernels_helium.c, Armv8.1-M MVE) kernel for shapes it specialises, with its scratch;
        None: the fast set's kernel."""
        return None

    def portable_kernel(self, layer: Layer) -> str:
        return self.portable

    def arguments(self, plan: Plan, i: int, sources: list[str]) -> str:
        """The kernel's input arguments, from the C expressions of the tensors the layer reads."""
        return ", ".join(sources)

    def kernel(self, layer: Layer, kernels: str) -> tuple[str, int]:
        chosen = (self.helium(layer) if kernels == "helium" else None) or \
            (self.fast(layer) if kernels in ("fast", "helium") else None)
        return chosen or (self.portable_kernel(layer), 0)


class _Weighted(CLowering):
    """Convolutions and fc: int8 weights, int32 bias, per-channel requantization."""

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        w, out_c = layer.arrays["weight"], layer.output_shape[0]
        if w.dtype != np.int8:
            _fail(layer, i, f"weights are {w.dtype}, not int8")
        if layer.arrays["bias"].shape != (out_c,):
            _fail(layer, i, f"bias has shape {layer.arrays['bias'].shape}, expected ({out_c},)")
        _check_requantization(layer, i, out_c)
        self.check_shapes(layer, i)

    def check_shapes(self, layer: Layer, i: int) -> None:
        raise NotImplementedError


class _Fc(_Weighted):
    portable = "ep_fc"

    def check_shapes(self, layer: Layer, i: int) -> None:
        w, out_c = layer.arrays["weight"], layer.output_shape[0]
        if w.shape != (out_c, numel(layer.input_shape)):
            _fail(layer, i, f"weight shape {w.shape} does not match {numel(layer.input_shape)} -> {out_c}")

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """Any fc: the centred input packed once into int16 pairs (EP_FC_FAST_SCRATCH)."""
        return "ep_fc_fast", numel(layer.input_shape) // 4 * 8


class _Conv(_Weighted):
    """A full convolution; its fast kernel copies up to CONV_FAST_MAX_IN padded input planes into scratch."""
    portable, fast_kernel = "ep_conv", "ep_conv_fast"

    def window(self, layer: Layer) -> tuple[int, int]:
        w = layer.arrays["weight"]
        return (int(w.shape[2]), int(w.shape[3])) if w.ndim == 4 else (1, 1)

    def groups_in(self, layer: Layer) -> int:
        """Input channels each output channel reads."""
        return layer.input_shape[0]

    def check_kind(self, layer: Layer, i: int, k: int) -> None:
        """What this kind of convolution adds to the shape checks."""

    def check_shapes(self, layer: Layer, i: int) -> None:
        w, out_c = layer.arrays["weight"], layer.output_shape[0]
        if len(layer.input_shape) != 3 or len(layer.output_shape) != 3:
            _fail(layer, i, "convolutions need (C, H, W) input and output")
        _, h, wd = layer.input_shape
        kh, kw = self.window(layer)
        groups_in = self.groups_in(layer)
        if w.ndim not in (2, 4) or w.shape[0] != out_c or (w.ndim == 4 and w.shape[1] != groups_in) \
                or (w.ndim == 2 and w.shape[1] != groups_in):
            _fail(layer, i, f"weight shape {w.shape} does not fit {layer.input_shape} -> {layer.output_shape}")
        self.check_kind(layer, i, kh * kw)
        (sh, sw), (top, left, bottom, right) = layer.strides, layer.pads
        expect = ((h + top + bottom - kh) // sh + 1, (wd + left + right - kw) // sw + 1)
        if min(sh, sw) < 1 or min(layer.pads) < 0 or tuple(layer.output_shape[1:]) != expect:
            _fail(layer, i, f"output {layer.output_shape} does not follow from stride {layer.stride}, "
                  f"pads {list(layer.pads)}, kernel {kh}x{kw}")

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """3x3 at stride 1 over fewer than 8 planes (a first conv) without im2col (two outputs per load); every other
        conv (wider, strided, rectangular) as the im2col GEMM ep_conv_gemm_fast, which is faster there (cortex-m4
        ticks, direct vs GEMM: ResNet-8's 3 -> 16 planes 35,220 vs 39,553, 16 -> 16 126,705 vs 110,379, 16 -> 32 at
        stride 2 98,742 vs 48,321; MobileNetV1 0.25-96's 3 -> 8 at stride 2 57,288 vs 51,148)."""
        direct = self.groups_in(layer) < 8 and layer.strides == (1, 1)
        return (self.fast_3x3(layer) if direct else None) or gemm_fast(layer)

    def helium(self, layer: Layer) -> tuple[str, int] | None:
        """3x3, equal strides up to 4, fewer than 8 input planes (a first conv): ep_conv_helium, 4 outputs of a row
        per VMLA over the framed planes, plane by plane with int32 partial sums of one output plane
        (EP_CONV_HELIUM_SCRATCH); wider convs take the fast set's kernel."""
        chosen = self.helium_3x3(layer, "ep_conv_helium") if self.groups_in(layer) < 8 else None
        if chosen is None:
            return None
        _, out_h, out_w = layer.output_shape
        return chosen[0], (chosen[1] + 3) // 4 * 4 + 4 * out_h * ((out_w + 3) // 4 * 4)

    def helium_3x3(self, layer: Layer, fn: str) -> tuple[str, int] | None:
        (sh, sw), (_, h, w), (top, left, bottom, right) = layer.strides, layer.input_shape, layer.pads
        if self.window(layer) != (3, 3) or sh != sw or sh > 4:
            return None
        return fn, self.groups_in(layer) * (h + top + bottom) * (w + left + right) + 16

    def fast_3x3(self, layer: Layer) -> tuple[str, int] | None:
        """3x3 kernels with equal strides only (the SMLAD lanes hold a row of 3)."""
        planes = self.groups_in(layer)
        sh, sw = layer.strides
        if self.window(layer) != (3, 3) or sh != sw or planes > CONV_FAST_MAX_IN:
            return None
        (_, h, w), (top, left, bottom, right) = layer.input_shape, layer.pads
        return self.fast_kernel, planes * (h + top + bottom) * (w + left + right) + 4


class _Depthwise(_Conv):
    portable, fast_kernel = "ep_depthwise", "ep_depthwise_fast"

    def groups_in(self, layer: Layer) -> int:
        return 1

    def check_kind(self, layer: Layer, i: int, k: int) -> None:
        if layer.output_shape[0] % layer.input_shape[0]:
            _fail(layer, i, "a depthwise conv outputs its channel count times its depth multiplier")

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """Depth multiplier 1 only (the fast kernel pads one input plane per output); m > 1 runs portable. Input
        planes up to DW_SMALL_MAX_PLANE take ep_depthwise_small_fast (frame written once per layer, a plane's sums
        in scratch, then one requantization pass; cortex-m4 ticks vs ep_depthwise_fast in MobileNetV1 0.25-96:
        256 channels 3x3 -> 3x3 3,121 vs 5,137, 128 of 6x6 5,096 vs 6,447, 32 of 24x24 16,853 vs 19,405), at 4
        scratch bytes an output: larger planes keep ep_depthwise_fast, whose smaller scratch does not raise the
        arena's peak (MobileNetV2 0.35-96's 48x48 -> 24x24 layer would add 2,304 B)."""
        if layer.output_shape[0] != layer.input_shape[0]:
            return None
        chosen = self.fast_3x3(layer)
        if chosen is None:
            return dw_kxk_fast(layer, self.window(layer))
        out_plane = layer.output_shape[1] * layer.output_shape[2]
        if chosen is None or layer.input_shape[1] * layer.input_shape[2] > DW_SMALL_MAX_PLANE:
            return chosen
        return "ep_depthwise_small_fast", (chosen[1] + 3) // 4 * 4 + 4 * out_plane  # EP_DW_SMALL_FAST_SCRATCH

    def helium(self, layer: Layer) -> tuple[str, int] | None:
        """ep_depthwise_helium: depth multiplier 1, one framed plane, and for output planes of at most 64 values
        (HELIUM_FLAT_MAX) a table of their input offsets (EP_DEPTHWISE_HELIUM_SCRATCH)."""
        chosen = self.helium_3x3(layer, "ep_depthwise_helium") if layer.output_shape[0] == layer.input_shape[0] else None
        if chosen is None:
            return None
        outputs = layer.output_shape[1] * layer.output_shape[2]
        table = 16 * ((outputs + 3) // 4) if outputs <= HELIUM_FLAT_MAX else 0
        return chosen[0], (chosen[1] + 3) // 4 * 4 + table


class _Pointwise(_Conv):
    portable = "ep_pointwise"

    def window(self, layer: Layer) -> tuple[int, int]:
        return 1, 1

    def check_kind(self, layer: Layer, i: int, k: int) -> None:
        if k != 1 or any(layer.pads):
            _fail(layer, i, "a pointwise conv must be 1x1 without padding")

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        if layer.strides == (1, 1) and not any(layer.pads):
            return "ep_pointwise_fast", (layer.input_shape[0] + 3) // 4 * 32
        return gemm_fast(layer)  # strided: the im2col GEMM with k = in_c

    def helium(self, layer: Layer) -> tuple[str, int] | None:
        """Stride 1: ep_pointwise_helium, VMLADAVA over pixel-major packed rows (EP_POINTWISE_HELIUM_SCRATCH)."""
        if layer.strides == (1, 1) and not any(layer.pads):
            return "ep_pointwise_helium", 16 * layer.output_shape[0] + 128 * ((layer.input_shape[0] + 15) // 16)
        return None


class _AvgPool(CLowering):
    """Global average pooling; a "mean" pool (TFLite's int8 MEAN) requantizes its sum with ep_mean_pool."""
    portable = "ep_avgpool"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        if len(layer.input_shape) != 3 or numel(layer.output_shape) != layer.input_shape[0]:
            _fail(layer, i, "only global average pooling (C, H, W) -> (C,) is supported")
        if numel(layer.input_shape[1:]) >= 2**23:
            _fail(layer, i, "the pooled plane has 2^23 or more values (int32 sum bound)")
        if layer.params.pool == "mean":
            _check_requantization(layer, i, layer.input_shape[0])

    def requantized(self, layer: Layer) -> bool:
        return layer.params.pool == "mean"

    def zero_points(self, layer: Layer) -> tuple[int, int]:
        return pool_zero_points(layer)  # none for TFLite's raw average

    def portable_kernel(self, layer: Layer) -> str:
        return "ep_mean_pool" if layer.params.pool == "mean" else self.portable


class _Add(CLowering):
    """TFLite's int8 ADD of two tensors (ep_add)."""
    portable = "ep_add"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        """Two inputs of the output's shape, in-int8 zero points, 3 rescalings smaller than one."""
        if len(plan.inputs_of(i)) != 2 or layer.params is None or not -128 <= layer.params.input2_q.zero_point <= 127:
            _fail(layer, i, "an add needs two inputs with int8 zero points")
        if any(plan.tensor_shape(j) != tuple(layer.output_shape) for j in plan.inputs_of(i)):
            _fail(layer, i, "an add's inputs must have its output's shape")
        mult, shift = (layer.arrays.get(k, np.zeros(0)).astype(np.int64) for k in ("multiplier", "shift"))
        if mult.shape != (3,) or shift.shape != (3,) or mult.min() < 0 or mult.max() > INT32_MAX \
                or shift.min() < -31 or shift.max() > 0:
            _fail(layer, i, "an add needs 3 multipliers in [0, 2^31) and shifts in [-31, 0]")

    def extra_fields(self, layer: Layer) -> str:
        return f".in2_zp = {layer.params.input2_q.zero_point}, "

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """The same arithmetic in 32 bits (SMMULR): check() proved ep_add's bounds for every add."""
        return "ep_add_fast", 0


class _MaxPool(CLowering):
    """TFLite's int8 MAX_POOL_2D (ep_maxpool): window in kh, kw, strides and pads as a conv's; no requantization."""
    portable = "ep_maxpool"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        if len(layer.input_shape) != 3 or len(layer.output_shape) != 3 or layer.input_shape[0] != layer.output_shape[0]:
            _fail(layer, i, "a max pool maps (C, H, W) to (C, H', W') of the same channels")
        if min(layer.params.window_hw) < 1 or min(layer.strides) < 1 or min(layer.pads) < 0:
            _fail(layer, i, f"window {layer.params.window}, stride {layer.stride} or pads {list(layer.pads)} out of range")

    def requantized(self, layer: Layer) -> bool:
        return False

    def window(self, layer: Layer) -> tuple[int, int]:
        return layer.params.window_hw


class _Mul(CLowering):
    """TFLite's int8 MUL (ep_mul; ep_mul_channel when one operand is a (C, 1, 1) gate): one multiplier and shift."""
    portable = "ep_mul"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        shapes = (tuple(layer.input_shape), tuple(layer.params.input2_shape))
        if tuple(plan.tensor_shape(j) for j in plan.inputs_of(i)) != shapes or mul_output_shape(*shapes) is None:
            _fail(layer, i, "a mul reads two tensors of one shape, or a (C, 1, 1) gate and a (C, H, W) map")
        if not -128 <= layer.params.input2_q.zero_point <= 127:
            _fail(layer, i, "a mul's second input zero point is outside int8")
        _check_requantization(layer, i, 1)
        if int(layer.arrays["shift"][0]) > MUL_MAX_LEFT_SHIFT:
            _fail(layer, i, f"a mul's shift is above {MUL_MAX_LEFT_SHIFT} (the shifted product would leave int32)")

    def extra_fields(self, layer: Layer) -> str:
        return f".in2_zp = {layer.params.input2_q.zero_point}, "

    def portable_kernel(self, layer: Layer) -> str:
        return "ep_mul" if tuple(layer.input_shape) == tuple(layer.params.input2_shape) else "ep_mul_channel"

    def fast(self, layer: Layer) -> tuple[str, int] | None:
        """32-bit requantization (SMMULR) where the shifted products stay below 2^29, which the kernel tests (else it
        runs its portable twin): MobileNetV3's SE gates (cortex-m4, about 100 instructions a value portable)."""
        return self.portable_kernel(layer) + "_fast", 0


class _Concat(CLowering):
    """TFLite's int8 CONCATENATION on channels (ep_concat): a copy of each input's planes in turn; the inputs
    as a compound-literal array (C99), with their channel counts."""
    portable = "ep_concat"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        shapes = [plan.tensor_shape(j) for j in plan.inputs_of(i)]
        if any(len(s) != 3 or s[1:] != tuple(layer.output_shape[1:]) for s in shapes) \
                or sum(s[0] for s in shapes) != layer.output_shape[0]:
            _fail(layer, i, "a concat joins (C, H, W) maps of its output's height and width on the channels")
        if any(q != layer.output_q for q in layer.inputs_q()) or (layer.act_min, layer.act_max) != (-128, 127):
            _fail(layer, i, "a concat's inputs must share its output's quantization, with no clamp (a copy)")

    def requantized(self, layer: Layer) -> bool:
        return False

    def arguments(self, plan: Plan, i: int, sources: list[str]) -> str:
        channels = ", ".join(str(int(plan.tensor_shape(j)[0])) for j in plan.inputs_of(i))
        return f"{len(sources)}, (const int8_t *const[]){{{', '.join(sources)}}}, (const int32_t[]){{{channels}}}"


class _Lut(CLowering):
    """An elementwise int8 function (ep_lut): its 256-entry table (x + 128 -> y) in flash, as ep_layer.weight."""
    portable = "ep_lut"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        table = layer.arrays.get("table")
        if table is None or table.dtype != np.int8 or table.shape != (256,):
            _fail(layer, i, "a lut needs its int8 table of 256 entries")
        if numel(layer.input_shape) != numel(layer.output_shape):
            _fail(layer, i, "a lut keeps its input's size")

    def requantized(self, layer: Layer) -> bool:
        return False

    def tables(self, layer: Layer) -> tuple[tuple[str, str, str], ...]:
        return (("table", "int8_t", "weight"),)


class _Pad(CLowering):
    """TFLite's int8 PAD / PADV2 on H and W (ep_pad): pads in pad_*, the int8 constant an argument; a copy."""
    portable = "ep_pad"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        if len(layer.input_shape) != 3 or len(layer.output_shape) != 3 or min(layer.pads) < 0 \
                or tuple(layer.output_shape) != padded_shape(tuple(layer.input_shape), tuple(layer.pads)):
            _fail(layer, i, "a pad maps (C, H, W) to (C, H + top + bottom, W + left + right)")
        if not -128 <= layer.params.value <= 127 or layer.input_q != layer.output_q:
            _fail(layer, i, "a pad writes an int8 constant and keeps its input's quantization (a copy)")

    def requantized(self, layer: Layer) -> bool:
        return False

    def arguments(self, plan: Plan, i: int, sources: list[str]) -> str:
        return f"{int(plan.layers[i].params.value)}, {sources[0]}"


C_LOWERINGS.register("conv")(_Conv())
C_LOWERINGS.register("depthwise")(_Depthwise())
C_LOWERINGS.register("pointwise")(_Pointwise())
C_LOWERINGS.register("avgpool")(_AvgPool())
C_LOWERINGS.register("fc")(_Fc())
C_LOWERINGS.register("add")(_Add())
C_LOWERINGS.register("maxpool")(_MaxPool())
C_LOWERINGS.register("mul")(_Mul())
C_LOWERINGS.register("lut")(_Lut())
C_LOWERINGS.register("concat")(_Concat())
C_LOWERINGS.register("pad")(_Pad())


class _ResizeNearest(CLowering):
    """TFLite's int8 RESIZE_NEAREST_NEIGHBOR (ep_resize_nearest): a copy through the index maps the generator
    computes as TFLite does (float32, here, so the C needs no float): rows as ep_layer.bias, columns as
    ep_layer.multiplier."""
    portable = "ep_resize_nearest"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        if len(layer.input_shape) != 3 or len(layer.output_shape) != 3 or layer.input_shape[0] != layer.output_shape[0]:
            _fail(layer, i, "a resize maps (C, H, W) to (C, H', W') of the same channels")

    def requantized(self, layer: Layer) -> bool:
        return False

    def tables(self, layer: Layer) -> tuple[tuple[str, str, str], ...]:
        return (("rows", "int32_t", "bias"), ("cols", "int32_t", "multiplier"))

    def table(self, layer: Layer, name: str) -> np.ndarray:
        return dict(zip(("rows", "cols"), resize_maps(layer)))[name]


C_LOWERINGS.register("resize_nearest")(_ResizeNearest())


class _Softmax(CLowering):
    """TFLite's int8 SOFTMAX (ep_softmax): softmax.cc Prepare's multiplier, left shift and diff_min, computed
    here from the input scale and beta, as ep_layer.bias (the C needs no float)."""
    portable = "ep_softmax"

    def check(self, plan: Plan, layer: Layer, i: int) -> None:
        if len(layer.input_shape) != 1 or tuple(layer.output_shape) != tuple(layer.input_shape) \
                or not 1 <= layer.input_shape[0] <= MAX_CLASSES:
            _fail(layer, i, f"a softmax maps a (classes,) vector of at most {MAX_CLASSES} values to its own shape")

    def requantized(self, layer: Layer) -> bool:
        return False

    def tables(self, layer: Layer) -> tuple[tuple[str, str, str], ...]:
        return (("scaling", "int32_t", "bias"),)

    def table(self, layer: Layer, name: str) -> np.ndarray:
        return np.array(softmax_scaling(layer.input_q.scale, layer.params.beta), np.int32)


C_LOWERINGS.register("softmax")(_Softmax())


def layer_kernel(layer: Layer, kernels: str) -> tuple[str, int]:
    """The C function that runs ``layer`` with the ``kernels`` set, and its scratch bytes (the
    EP_*_FAST_SCRATCH macros of kernels.h). Shapes the fast kernels do not specialise use the portable kernel."""
    return C_LOWERINGS[layer.kind].kernel(layer, kernels)


def gemm_fast(layer: Layer) -> tuple[str, int]:
    """ep_conv_gemm_fast and its scratch (EP_CONV_GEMM_FAST_SCRATCH): one block of 4 packed im2col columns and a raw one."""
    k = int(np.prod(layer.arrays["weight"].shape[1:]))
    return "ep_conv_gemm_fast", (k + 3) // 4 * 36


def dw_kxk_fast(layer: Layer, window: tuple[int, int]) -> tuple[str, int] | None:
    """ep_depthwise_kxk_fast for depthwise windows up to 8x8 the 3x3 kernels do not take (MobileNetV3's 5x5, any
    strides), with its scratch (EP_DW_KXK_FAST_SCRATCH: the framed plane, 8 slack bytes, the plane's int32 sums)."""
    if max(window) > 8:
        return None
    (_, h, w), (top, left, bottom, right), (_, oh, ow) = layer.input_shape, layer.pads, layer.output_shape
    return "ep_depthwise_kxk_fast", ((h + top + bottom) * (w + left + right) + 8 + 3) // 4 * 4 + 4 * oh * ow


def has_fast_kernel(kind: str) -> bool:
    """The fast set has a kernel for some shapes of this op kind (its lowering overrides CLowering.fast)."""
    return type(C_LOWERINGS[kind]).fast is not CLowering.fast


def kernel_choices(plan: Plan, kernels: str = "fast", portable_layers: dict[int, str] | None = None) -> list[dict]:
    """Per layer, the C function the ``kernels`` set runs it with and its scratch bytes; ``fallback`` marks a layer
    of a kind the fast set has kernels for that still runs the portable one, with its ``reason``: the shapes it does
    not specialise, or ``portable_layers`` (layer -> why, memplan.fit_arena: scratch over the RAM budget)."""
    rows, forced = [], portable_layers or {}
    for i, layer in enumerate(plan.layers):
        fn, scratch = layer_kernel(layer, "portable" if i in forced else kernels)
        portable = fn == C_LOWERINGS[layer.kind].portable_kernel(layer)
        rows.append({"layer": i, "name": layer.name, "kind": layer.kind, "kernel": fn, "scratch_bytes": scratch,
                     "fallback": kernels != "portable" and portable and has_fast_kernel(layer.kind)})
        if rows[-1]["fallback"]:
            rows[-1]["reason"] = forced.get(i, "shape: the fast kernels do not specialise it")
    return rows


def kernel_summary(rows: list[dict]) -> str:
    """The manifest / bench line of kernel_choices: "5 of 7 layers fast; portable: maxpool x2; fallback: ..."."""
    def kinds(which: list[str]) -> str:
        return ", ".join(f"{k} x{which.count(k)}" if which.count(k) > 1 else k for k in dict.fromkeys(which))

    slow = [r["kind"] for r in rows if not r["kernel"].endswith(FAST_SUFFIXES) and not r["fallback"]]
    chosen = kinds([k for k in slow if has_fast_kernel(k)])  # only in a portable build: its kernel set's choice
    none = kinds([k for k in slow if not has_fast_kernel(k)])
    fallbacks = ", ".join(f"{r['name']} ({r['reason'].split(':')[0]})" for r in rows if r["fallback"])
    fast = sum(r["kernel"].endswith(FAST_SUFFIXES) for r in rows)
    helium = sum(r["kernel"].endswith("_helium") for r in rows)
    return (f"{fast} of {len(rows)} layers fast" + (f" ({helium} Helium)" if helium else "")
            + (f"; portable kernel set: {chosen}" if chosen else "")
            + (f"; portable (no fast kernel): {none}" if none else "")
            + (f"; fallback to portable: {fallbacks}" if fallbacks else ""))


def scratch_total(plan: Plan, kernels: str) -> int:
    return sum(layer_kernel(layer, kernels)[1] for layer in plan.layers)


# ---------------------------------------------------------------- checks before any code is written

def check_supported(plan: Plan) -> None:
    """Refuse, by layer, anything the C kernels do not implement exactly (an op kind they lack by its name)."""
    C_LOWERINGS.check(plan)
    if not plan.layers:
        raise UnsupportedModelError("the int8 plan has no layers: nothing to generate")
    if len(plan.input_shape) not in (1, 3):
        raise UnsupportedModelError(f"the C backend needs a (C, H, W) or (F,) input, the plan has {plan.input_shape}")
    for q, what in ((plan.input_q, "model input"), *((q, "model output") for q in plan.output_qs)):
        if not -128 <= q.zero_point <= 127:
            raise UnsupportedModelError(f"{what} zero point {q.zero_point} is outside int8")
    for i, layer in enumerate(plan.layers):
        _check_layer(plan, layer, i)
        C_LOWERINGS[layer.kind].check(plan, layer, i)
    check_accumulators(plan)


def _check_layer(plan: Plan, layer: Layer, i: int) -> None:
    """What every layer needs: inputs of its size (only the first for an op with own_input_shapes: its lowering
    checks the others), int8 zero points, an activation range inside int8."""
    for j in plan.inputs_of(i)[:1] if ops.get(layer.kind).own_input_shapes else plan.inputs_of(i):
        if not -1 <= j < i or numel(layer.input_shape) != numel(plan.tensor_shape(j)):
            _fail(layer, i, f"input shape {layer.input_shape} does not match its input tensor {j}")
    for zp in (layer.input_q.zero_point, layer.output_q.zero_point):
        if not -128 <= zp <= 127:
            _fail(layer, i, f"zero point {zp} is outside int8")
    if not -128 <= layer.act_min <= layer.act_max <= 127:
        _fail(layer, i, f"activation range [{layer.act_min}, {layer.act_max}] is not inside int8")


def _check_requantization(layer: Layer, i: int, channels: int) -> None:
    """Multipliers in [0, 2^31) and shifts in [-31, 31], or [-31, 30] when rounding once (31 - shift > 0)."""
    for name in ("multiplier", "shift"):
        a = layer.arrays[name]
        if a.shape != (channels,):
            _fail(layer, i, f"{name} has shape {a.shape}, expected ({channels},)")
    mult, shift = layer.arrays["multiplier"].astype(np.int64), layer.arrays["shift"].astype(np.int64)
    if mult.min() < 0 or mult.max() > INT32_MAX:
        _fail(layer, i, "a requantization multiplier is outside [0, 2^31)")
    top = 30 if rounds_once(layer) else 31
    if shift.min() < -31 or shift.max() > top:
        _fail(layer, i, f"a requantization shift is outside [-31, {top}] ({shift.min()}..{shift.max()})")


def accumulator_bound(layer: Layer) -> np.ndarray:
    """Per output channel: |bias| + max|x - zp| * sum|w|, the bound of every partial sum (kernels.c)."""
    w = np.abs(layer.arrays["weight"].astype(np.int64)).reshape(layer.arrays["weight"].shape[0], -1)
    zp = layer.input_q.zero_point
    return np.abs(layer.arrays["bias"].astype(np.int64)) + max(127 - zp, zp + 128) * w.sum(axis=1)


def check_accumulators(plan: Plan) -> None:
    for i, layer in enumerate(plan.layers):
        if not ops.get(layer.kind).weighted:
            continue
        bound = accumulator_bound(layer)
        if bound.max() > INT32_MAX:
            c = int(bound.argmax())
            _fail(layer, i, f"output channel {c} can reach |acc| = {int(bound[c])} > 2^31 - 1 (int32 accumulator)")


def small_accumulators(layer: Layer) -> bool:
    """EP_FLAG_SMALL_ACC: every channel's accumulator bound, left-shifted, stays below 2^29."""
    if not ops.get(layer.kind).weighted:
        return False
    left = np.maximum(layer.arrays["shift"].astype(np.int64), 0)
    return bool(np.all(accumulator_bound(layer) << left < 2**29))


def weight_bytes(plan: Plan) -> list[dict]:
    """Constant bytes per layer as model.c stores them (int8 weights, int32 bias and multiplier, int8 shift, and
    the further tables a lowering keeps, e.g. a lut's 256 bytes)."""
    rows = []
    for i, layer in enumerate(plan.layers):
        a = layer.arrays
        row = {"layer": i, "name": layer.name, "kind": layer.kind,
               "weight_bytes": int(a["weight"].size) if "weight" in a else 0,
               "bias_bytes": 4 * int(a["bias"].size) if "bias" in a else 0,
               "requant_bytes": 5 * int(a["multiplier"].size) if "multiplier" in a else 0,
               "table_bytes": sum(int(C_LOWERINGS[layer.kind].table(layer, name).nbytes)
                                  for name, _, _ in C_LOWERINGS[layer.kind].tables(layer))}
        row["total_bytes"] = row["weight_bytes"] + row["bias_bytes"] + row["requant_bytes"] + row["table_bytes"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- model.h and model.c

def _int_literal(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 32) -> str:
    flat = [_int_literal(int(v)) for v in np.asarray(values).reshape(-1).tolist()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _float(x: float) -> str:
    text = repr(float(x))
    return text + ("f" if any(ch in text for ch in ".e") else ".0f")


def _dims(layer: Layer) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    def chw(shape):
        shape = tuple(int(d) for d in shape)
        return shape if len(shape) == 3 else (numel(shape), 1, 1)
    return chw(layer.input_shape), chw(layer.output_shape)


def generate(plan: Plan, kernels: str, memory) -> dict[str, str]:
    """model.h and model.c for ``plan`` with the ``kernels`` set ("portable" or "fast") and ``memory``, the
    plan's memplan.MemoryPlan for that set."""
    if kernels not in KERNEL_SETS:
        raise UnsupportedModelError(f"kernel set '{kernels}' is unknown: use portable or fast")
    check_supported(plan)
    return {"model.h": _header(plan, kernels, memory), "model.c": _source(plan, kernels, memory)}


def _kernel_comment(plan: Plan, kernels: str, memory) -> str:
    """model.h's lines on the kernels: the set, kernel_summary's line and how many layers run each kernels.h function
    (a fast build may run some layers portable: shapes it does not specialise, or scratch over the RAM budget)."""
    rows = kernel_choices(plan, kernels, memory.portable_layers)
    fns = [r["kernel"] for r in rows]
    counts = ", ".join(f"{fn} x{fns.count(fn)}" for fn in dict.fromkeys(fns))
    text = f"kernel set {kernels}: {kernel_summary(rows)}. Layers per kernel: {counts}."
    return "\n".join(f" * {line}" for line in textwrap.wrap(text, 110, break_on_hyphens=False))


def _header(plan: Plan, kernels: str, memory) -> str:
    c_in, h_in, w_in = (int(d) for d in (*plan.input_shape, 1, 1)[:3])  # a vector (F,) is (F, 1, 1)
    out_size = numel(plan.output_row_shape)
    return f"""/* Generated by edgepack {__version__} from the int8 plan (plan.json / plan.npz). Do not edit.
 *
 * int edgepack_invoke(const int8_t *input, int8_t *output)
 *   input:  int8 (C, H, W) = ({c_in}, {h_in}, {w_in}), real = EDGEPACK_INPUT_SCALE * (q - EDGEPACK_INPUT_ZERO_POINT)
{_output_comment(plan, out_size)} *   returns 0, or -1 for a null pointer. Uses the static arena below: not reentrant.
 * int edgepack_invoke_with_arena(const int8_t *input, int8_t *output, int8_t *arena)
 *   the same with a caller-owned arena of EDGEPACK_ARENA_SIZE bytes, 8-byte aligned
 *   (define EDGEPACK_NO_STATIC_ARENA to drop the static one).
 * No malloc, no floating point at run time.
{_kernel_comment(plan, kernels, memory)}
 */
#ifndef EDGEPACK_MODEL_H
#define EDGEPACK_MODEL_H

#include <stdint.h>

#define EDGEPACK_VERSION "{__version__}"
#define EDGEPACK_KERNELS "{kernels}"
#define EDGEPACK_LAYERS {len(plan.layers)}

#define EDGEPACK_INPUT_CHANNELS {c_in}
#define EDGEPACK_INPUT_HEIGHT {h_in}
#define EDGEPACK_INPUT_WIDTH {w_in}
#define EDGEPACK_INPUT_SIZE {c_in * h_in * w_in}
#define EDGEPACK_INPUT_SCALE {_float(plan.input_q.scale)}
#define EDGEPACK_INPUT_ZERO_POINT {plan.input_q.zero_point}

#define EDGEPACK_OUTPUT_SIZE {out_size}
#define EDGEPACK_OUTPUT_SCALE {_float(plan.output_q.scale)}
#define EDGEPACK_OUTPUT_ZERO_POINT {plan.output_q.zero_point}
{_output_defines(plan)}
/* static memory plan: {memory.planner}; {len(memory.buffers)} buffers,
 * naive sum {memory.naive_bytes} bytes, lower bound {memory.lower_bound_bytes} bytes */
#define EDGEPACK_ARENA_SIZE {memory.arena_bytes}

#ifdef EDGEPACK_PROFILE
void edgepack_layer_done(int layer); /* provided by the application, called after every layer */
#define EDGEPACK_LAYER_DONE(layer) edgepack_layer_done(layer)
#else
#define EDGEPACK_LAYER_DONE(layer) ((void)0)
#endif

int edgepack_invoke(const int8_t *input, int8_t *output);
int edgepack_invoke_with_arena(const int8_t *input, int8_t *output, int8_t *arena);

#endif /* EDGEPACK_MODEL_H */
"""


def _output_comment(plan: Plan, out_size: int) -> str:
    if not plan.multi_output():
        return (f" *   output: int8 ({out_size},) logits, real = EDGEPACK_OUTPUT_SCALE * (q - EDGEPACK_OUTPUT_ZERO_POINT)\n")
    return (f" *   output: int8 ({out_size},), the plan's {len(plan.output_layers)} outputs, each flattened (C, H, W), one after\n"
            " *   another: output k at EDGEPACK_OUTPUT<k>_OFFSET, EDGEPACK_OUTPUT<k>_SIZE values, real =\n"
            " *   EDGEPACK_OUTPUT<k>_SCALE * (q - EDGEPACK_OUTPUT<k>_ZERO_POINT) (EDGEPACK_OUTPUT_SCALE: output 0's)\n")


def _output_defines(plan: Plan) -> str:
    """Each output's place and quantization in the output buffer, for a plan with several outputs."""
    if not plan.multi_output():
        return ""
    lines = [f"#define EDGEPACK_OUTPUTS {len(plan.output_layers)}"]
    for k, ((start, stop), q) in enumerate(zip(plan.output_segments(), plan.output_qs)):
        lines += [f"#define EDGEPACK_OUTPUT{k}_OFFSET {start}", f"#define EDGEPACK_OUTPUT{k}_SIZE {stop - start}",
                  f"#define EDGEPACK_OUTPUT{k}_SCALE {_float(q.scale)}", f"#define EDGEPACK_OUTPUT{k}_ZERO_POINT {q.zero_point}"]
    return "\n".join(lines) + "\n"


def tensor_ref(plan: Plan, memory, j: int) -> str:
    """Where tensor ``j`` lives in the generated C: the caller's input, its place in the caller's output buffer (a
    plan output, also where its later readers read it), or the arena."""
    if j == -1:
        return "input"
    outputs = plan.output_layers
    if j in outputs:
        start = plan.output_segments()[outputs.index(j)][0]
        return f"output + {start}" if start else "output"
    return f"arena + {memory.offset(f't{j}')}"


def _source(plan: Plan, kernels: str, memory) -> str:
    """model.c: per layer its constants and ep_layer, then the invoke functions calling the kernels in order."""
    body = [f"/* Generated by edgepack {__version__} from the int8 plan. Do not edit. Kernels: {kernels}. */\n",
            '#include "model.h"\n#include "kernels.h"\n']
    calls = []
    for i, layer in enumerate(plan.layers):
        body.append(_layer_definitions(i, layer))
        calls.append(_layer_call(plan, i, layer, kernels, memory))
    body.append(_invoke_functions(memory, calls))
    return "".join(body)


def _layer_definitions(i: int, layer: Layer) -> str:
    """Layer i's comment, constant arrays and ``static const ep_layer edgepack_l<i>``."""
    lowering = C_LOWERINGS[layer.kind]
    (ic, ih, iw), (oc, oh, ow) = _dims(layer)
    parts = [f"\n/* layer {i}: {layer.name}, {layer.kind}, ({ic}, {ih}, {iw}) -> ({oc}, {oh}, {ow}), "
             f"stride {layer.stride}, pads {list(layer.pads)}, activation {layer.activation} */\n"]
    refs = {"weight": "0", "bias": "0", "multiplier": "0", "shift": "0"}
    arrays = (("weight", "int8_t"), ("bias", "int32_t")) if ops.get(layer.kind).weighted else ()
    arrays += (("multiplier", "int32_t"), ("shift", "int8_t")) if lowering.requantized(layer) else ()
    for name, ctype in arrays:
        parts.append(c_array(ctype, f"edgepack_l{i}_{name}", layer.arrays[name]))
        refs[name] = f"edgepack_l{i}_{name}"
    for name, ctype, pointer in lowering.tables(layer):
        parts.append(c_array(ctype, f"edgepack_l{i}_{name}", lowering.table(layer, name)))
        refs[pointer] = f"edgepack_l{i}_{name}"
    flags = " | ".join(name for name, on in (("EP_FLAG_SMALL_ACC", small_accumulators(layer)),
                                             ("EP_FLAG_SINGLE_ROUNDING", rounds_once(layer))) if on) or "0"
    top, left, bottom, right = layer.pads
    (kh, kw), (sh, sw) = lowering.window(layer), layer.strides
    in_zp, out_zp = lowering.zero_points(layer)
    parts.append(
        f"static const ep_layer edgepack_l{i} = {{\n"
        f"    .in_c = {ic}, .in_h = {ih}, .in_w = {iw}, .out_c = {oc}, .out_h = {oh}, .out_w = {ow},\n"
        f"    .kh = {kh}, .kw = {kw}, .sh = {sh}, .sw = {sw}, .pad_top = {top}, .pad_left = {left}, "
        f".pad_bottom = {bottom}, .pad_right = {right},\n"
        f"    .in_zp = {in_zp}, .out_zp = {out_zp}, {lowering.extra_fields(layer)}"
        f".act_min = {layer.act_min}, .act_max = {layer.act_max},\n"
        f"    .weight = {refs['weight']}, .bias = {refs['bias']}, .multiplier = {refs['multiplier']}, "
        f".shift = {refs['shift']},\n    .flags = {flags},\n}};\n")
    return "".join(parts)


def _layer_call(plan: Plan, i: int, layer: Layer, kernels: str, memory) -> str:
    """The kernel call of layer i: its inputs (the model input or arena tensors), its output, its scratch."""
    src = C_LOWERINGS[layer.kind].arguments(plan, i, [tensor_ref(plan, memory, j) for j in plan.inputs_of(i)])
    dst = tensor_ref(plan, memory, i)
    fn, scratch = layer_kernel(layer, memory.kernels_of(i, kernels))  # portable where the scratch did not fit
    if scratch:
        return f"    {fn}(&edgepack_l{i}, {src}, {dst}, arena + {memory.offset(f's{i}')});\n    EDGEPACK_LAYER_DONE({i});"
    return f"    {fn}(&edgepack_l{i}, {src}, {dst});\n    EDGEPACK_LAYER_DONE({i});"


def _invoke_functions(memory, calls: list[str]) -> str:
    offsets = "\n".join(f" *   {b.name}: offset {b.offset}, {b.size} bytes, steps {b.first}..{b.last}"
                        for b in memory.buffers)
    return f"""
/* arena layout (t<i> = output of layer i, s<i> = scratch of layer i):
{offsets}
 */
int edgepack_invoke_with_arena(const int8_t *input, int8_t *output, int8_t *arena)
{{
    if (input == 0 || output == 0 || arena == 0) {{
        return -1;
    }}
""" + "\n".join(calls) + f"""
    return 0;
}}

#ifndef EDGEPACK_NO_STATIC_ARENA
static union {{
    int64_t align; /* 8-byte alignment for every planned offset */
    int8_t bytes[{"EDGEPACK_ARENA_SIZE" if memory.arena_bytes else "8 /* this model keeps nothing in the arena */"}];
}} edgepack_arena;

int edgepack_invoke(const int8_t *input, int8_t *output)
{{
    return edgepack_invoke_with_arena(input, output, edgepack_arena.bytes);
}}
#endif
"""
