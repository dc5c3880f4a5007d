/* edgepack int8 kernels: the arithmetic contract of DESIGN.md (TFLite / gemmlowp).
 *
 * Tensors are int8, NCHW (no batch), contiguous. Weights are int8 (O, I/groups, KH, KW) or (O, I),
 * biases int32, requantization per output channel: M = M0 * 2^shift with M0 a Q31 integer in
 * [2^30, 2^31) (or 0), shift in [-31, 31].
 *
 *   acc = bias[c] + sum (x - in_zp) * w                   (int32, see the overflow proof in kernels.c)
 *   out = clamp(RDBPOT(SRDHM(sat32(acc * 2^max(shift,0)), M0), max(-shift,0)) + out_zp, act_min, act_max)
 *
 * SRDHM = gemmlowp SaturatingRoundingDoublingHighMul (C division truncating toward zero),
 * RDBPOT = gemmlowp RoundingDivideByPOT (round half away from zero). Global average pooling
 * rounds (sum - count * in_zp) / count half away from zero (TFLite's AVERAGE_POOL_2D: the generator
 * sets in_zp = out_zp = 0, it averages the raw values); a mean pool (TFLite's int8 MEAN)
 * requantizes that sum as above, 1/count folded into its multiplier (which may be below 2^30).
 * An fc flagged EP_FLAG_SINGLE_ROUNDING (TFLite's FULLY_CONNECTED) rounds once instead:
 *   out = clamp((acc * M0 + 2^(30 - shift)) >> (31 - shift) + out_zp, act_min, act_max)   (int64)
 *
 * C99, no malloc, no floating point, no global state: every kernel reads its parameters from a
 * const ep_layer (placed in flash by the generated model.c) and writes only its output tensor
 * (and the scratch buffer it is given).
 */
#ifndef EDGEPACK_KERNELS_H
#define EDGEPACK_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t in_c, in_h, in_w;    /* input tensor (C, H, W); an fc input is (in_c, 1, 1) */
    int32_t out_c, out_h, out_w; /* output tensor */
    int32_t kh, kw;              /* kernel (a max pool's window) height and width */
    int32_t sh, sw;              /* strides along H and along W */
    int32_t pad_top, pad_left;   /* zero-point rows above / columns left of the input */
    int32_t pad_bottom, pad_right; /* ... below / right of it (TFLite's SAME pads these alone) */
    int32_t in_zp, out_zp;       /* zero points of input and output */
    int32_t in2_zp;              /* an add's second input zero point */
    int32_t act_min, act_max;    /* fused activation clamp in the output's int8 domain */
    const int8_t *weight;        /* conv (O, I, KH, KW), depthwise (C*m, 1, KH, KW) (out c reads in c/m), fc (O, I) */
    const int32_t *bias;         /* (O), scale in_scale * w_scale[o], zero point 0 */
    const int32_t *multiplier;   /* (O) Q31 M0 in [2^30, 2^31), or 0; an add: (3) input a, input b, output */
    const int8_t *shift;         /* (O) M = M0 * 2^shift */
    int32_t flags;               /* EP_FLAG_* facts the generator proved for this layer */
} ep_layer;

/* every channel's accumulator bound |bias| + max|x - zp| * sum|w|, times 2^max(shift, 0), is
 * below 2^29: the fast kernels may requantize without 64-bit arithmetic (kernels_fast.c) */
#define EP_FLAG_SMALL_ACC 1
/* an fc that rounds acc * M once (TFLite's FULLY_CONNECTED), not gemmlowp's twice */
#define EP_FLAG_SINGLE_ROUNDING 2

/* requantization primitives (exported so they can be tested on their own) */
int32_t ep_srdhm(int32_t a, int32_t b);
int32_t ep_rounding_divide_by_pot(int32_t x, int32_t exponent);
int32_t ep_requantize(int32_t acc, int32_t multiplier, int32_t shift);
int32_t ep_requantize_single(int32_t acc, int32_t multiplier, int32_t shift);
int8_t ep_output(const ep_layer *l, int32_t channel, int32_t acc);

/* portable reference kernels: any kernel (kh x kw), strides (sh, sw) and (top, left, bottom, right) padding */
void ep_conv(const ep_layer *l, const int8_t *in, int8_t *out);
void ep_depthwise(const ep_layer *l, const int8_t *in, int8_t *out);
void ep_pointwise(const ep_layer *l, const int8_t *in, int8_t *out);
void ep_avgpool(const ep_layer *l, const int8_t *in, int8_t *out);
void ep_mean_pool(const ep_layer *l, const int8_t *in, int8_t *out);
/* TFLite's int8 MAX_POOL_2D: the max over each kh x kw window's in-bounds values (padded positions
 * take no part), clamped to [act_min, act_max]; input and output share their quantization */
void ep_maxpool(const ep_layer *l, const int8_t *in, int8_t *out);
/* TFLite's int8 RESIZE_NEAREST_NEIGHBOR: out[c][y][x] = in[c][bias[y]][multiplier[x]], the two tables
 * (out_h row and out_w column indices) being the index maps the generator computed as TFLite does */
void ep_resize_nearest(const ep_layer *l, const int8_t *in, int8_t *out);
void ep_fc(const ep_layer *l, const int8_t *in, int8_t *out);
/* an elementwise int8 function (TFLite's HARD_SWISH, LOGISTIC, LEAKY_RELU, RELU, RELU6, RELU_N1_TO_1):
 * out[i] = weight[in[i] + 128] over the in_c * in_h * in_w values, weight being the layer's 256-entry
 * table that the generator computed with TFLite's arithmetic for the layer's quantization */
void ep_lut(const ep_layer *l, const int8_t *in, int8_t *out);
/* TFLite's int8 SOFTMAX over the in_c * in_h * in_w logits (reference_ops::Softmax, gemmlowp fixed point):
 * bias holds the generator's {multiplier, left_shift, diff_min} (softmax.cc Prepare for the input scale and
 * beta); outputs in scale 1/256, zero point -128. No float, no scratch (each exp is computed twice). */
void ep_softmax(const ep_layer *l, const int8_t *in, int8_t *out);
/* TFLite's int8 CONCATENATION on channels: input k's channels[k] planes of in_h x in_w follow those of
 * inputs 0..k-1 (the generator proved one quantization for all: a copy, no rescaling, no clamp) */
void ep_concat(const ep_layer *l, int32_t count, const int8_t *const in[], const int32_t channels[], int8_t *out);
/* TFLite's int8 ADD of two (C, H, W) tensors: each input minus its zero point, times 2^20, rescaled
 * by MultiplyByQuantizedMultiplierSmallerThanOneExp(multiplier[k], shift[k]) (k = 0 for a, 1 for b),
 * the sum rescaled by multiplier[2], shift[2], plus out_zp, clamped. int32 values, no division. */
void ep_add(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);
/* TFLite's int8 MUL: (a - in_zp) * (b - in2_zp), requantized by multiplier[0], shift[0] (M = s_a * s_b / s_out)
 * as any layer, plus out_zp, clamped. ep_mul: a, b and out of one shape; ep_mul_channel: one operand is a
 * (C, 1, 1) gate broadcast over the other's (C, out_h, out_w) map (a when in_h * in_w is 1, else b). */
void ep_mul(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);
void ep_mul_channel(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);
/* TFLite's int8 PAD / PADV2 on H and W: each (in_h, in_w) plane copied into an (out_h, out_w) plane at
 * (pad_top, pad_left), every other position set to value (the int8 constant: PAD's output zero point) */
void ep_pad(const ep_layer *l, int32_t value, const int8_t *in, int8_t *out);

/* fast kernels (kernels_fast.c): Cortex-M DSP extension (SMLAD) when __ARM_FEATURE_DSP is set,
 * the same algorithm with C emulations of the intrinsics otherwise. Bit-exact with the portable
 * ones. Each falls back to its portable kernel for shapes it does not specialise (the generator
 * calls ep_conv_fast / ep_depthwise_fast only on 3x3 kernels with equal strides, ep_pointwise_fast on
 * 1x1 stride 1; ep_conv_gemm_fast takes the other convolutions and strided pointwise layers). */
/* scratch bytes (8-byte aligned buffers, planned in the arena by the generator):
 * pointwise: the int16 pairs of 4 pixels; 3x3: the input plane(s) framed by the zero point */
#define EP_POINTWISE_FAST_SCRATCH(in_c) ((((in_c) + 3) / 4) * 32)
#define EP_3X3_FAST_SCRATCH(planes, h, w, top, left, bottom, right) \
    ((planes) * ((h) + (top) + (bottom)) * ((w) + (left) + (right)) + 4)
#define EP_CONV_FAST_MAX_IN 16 /* wider 3x3 convs than this use the portable kernel */
void ep_pointwise_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
void ep_depthwise_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
/* depthwise 3x3 for small planes (codegen picks it by input plane size): the zero-point frame written once per
 * layer, each channel's interior copied into it, its raw sums kept (int32, after the frame) and then requantized */
#define EP_DW_SMALL_FAST_SCRATCH(h, w, top, left, bottom, right, out_h, out_w) \
    ((EP_3X3_FAST_SCRATCH(1, h, w, top, left, bottom, right) + 3) / 4 * 4 + 4 * (out_h) * (out_w))
void ep_depthwise_small_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
/* depthwise (multiplier 1) of any window up to 8x8, any strides and pads (MobileNetV3's 5x5): the frame and raw sums
 * as ep_depthwise_small_fast, each window row in word loads against weights zero-padded to quads (8 slack bytes) */
#define EP_DW_KXK_FAST_SCRATCH(h, w, top, left, bottom, right, out_h, out_w) \
    ((((h) + (top) + (bottom)) * ((w) + (left) + (right)) + 8 + 3) / 4 * 4 + 4 * (out_h) * (out_w))
void ep_depthwise_kxk_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
void ep_conv_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
/* any convolution (kernel, strides, pads, input channels; a strided pointwise too) as an im2col GEMM over
 * blocks of 4 output pixels: the scratch holds one block's packed columns of k = in_c * kh * kw values
 * and one raw column */
#define EP_CONV_GEMM_FAST_SCRATCH(k) ((((k) + 3) / 4) * 36)
void ep_conv_gemm_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
/* fc with the centred input packed once into int16 pairs (scratch: the in_c / 4 * 4 packed values) */
#define EP_FC_FAST_SCRATCH(in_c) (((in_c) / 4) * 8)
void ep_fc_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
/* TFLite's int8 ADD in 32-bit arithmetic (SMMULR), bit-exact with ep_add */
void ep_add_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);
/* TFLite's int8 MUL (both forms) in 32-bit arithmetic (SMMULR) where every shifted product stays below 2^29 (else
 * the portable kernel): bit-exact with ep_mul / ep_mul_channel */
void ep_mul_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);
void ep_mul_channel_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out);

/* Helium kernels (kernels_helium.c, Armv8.1-M MVE; elsewhere their kernels_fast.c twins), bit-exact with the
 * portable ones: pointwise 1x1 stride 1 (scratch: per channel folded bias and requantization, 8 pixels of in_c
 * channels packed in 16-channel chunks), 3x3 depthwise (multiplier 1) and 3x3 conv over fewer than 8 planes, equal
 * strides up to 4
 * (scratch: the framed planes and slack for 4-pixel loads past a row's end) */
#define EP_HELIUM_SLACK 16
#define EP_POINTWISE_HELIUM_SCRATCH(in_c, out_c) (16 * (out_c) + 128 * (((in_c) + 15) / 16))
#define EP_3X3_HELIUM_SCRATCH(planes, h, w, top, left, bottom, right) \
    ((planes) * ((h) + (top) + (bottom)) * ((w) + (left) + (right)) + EP_HELIUM_SLACK)
/* a depthwise with at most EP_HELIUM_FLAT_MAX outputs per plane runs them in flat order: its scratch adds a table of
 * their input offsets, 4-byte aligned, padded to a multiple of 4 entries */
#define EP_HELIUM_FLAT_MAX 64
/* a conv adds the int32 partial sums of one output plane (rows padded to 4 values), 4-byte aligned */
#define EP_CONV_HELIUM_SCRATCH(planes, h, w, top, left, bottom, right, out_h, out_w) \
    (((EP_3X3_HELIUM_SCRATCH(planes, h, w, top, left, bottom, right) + 3) & ~3) + 4 * (out_h) * (((out_w) + 3) & ~3))
#define EP_DEPTHWISE_HELIUM_SCRATCH(h, w, top, left, bottom, right, out_h, out_w) \
    (((EP_3X3_HELIUM_SCRATCH(1, h, w, top, left, bottom, right) + 3) & ~3) \
     + ((out_h) * (out_w) <= EP_HELIUM_FLAT_MAX ? 16 * (((out_h) * (out_w) + 3) / 4) : 0))
void ep_pointwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
void ep_depthwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);
void ep_conv_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch);

#endif /* EDGEPACK_KERNELS_H */
