/* edgepack Helium (M-profile Vector Extension, MVE) int8 kernels for Cortex-M55 and other Armv8.1-M cores.
 *
 * Bit-exact with the portable kernels (kernels.c) and the fast ones (kernels_fast.c), same tests:
 *   - pointwise 1x1 (stride 1): the NCHW input is packed 8 pixels at a time into pixel-major rows (one
 *     byte scatter per channel), then every output channel runs over blocks of 4 pixels with VMLADAVA
 *     (16 int8 multiply-accumulates per instruction, raw inputs: the zero point is folded into the bias);
 *   - 3x3 depthwise and 3x3 convolutions over few input planes: the input plane(s) are copied into scratch
 *     framed by the zero point, then 4 outputs of a row at a time accumulate in int32 lanes with VMLA
 *     (one byte load widened to 32 bits, strided loads as gathers);
 *   - requantization of 4 outputs at once (requantize_x4 below: VQSHL, VQRDMULH, rounding shift).
 * Without MVE (any other build) every function is its kernels_fast.c twin, so a "helium" build links
 * anywhere; the scratch sizes of kernels.h cover both.
 */
#include <string.h>

#include "kernels.h"

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>

#define EP_MVE_INLINE static inline __attribute__((always_inline))
#define EP_HELIUM_MAX_PLANES 7 /* ep_conv_helium: fewer than 8 input planes (codegen chooses it so) */

/* Requantize 4 accumulators of one channel exactly as ep_output() (kernels.c) does:
 * 1. sat32(acc * 2^left) is VQSHL by left (saturating).
 * 2. SRDHM(a, M0) with M0 in [0, 2^31) is (a * M0 + 2^30) >> 31 (the proof in kernels_fast.c at ep_rq_apply),
 *    which is VQRDMULH: (2 * a * M0 + 2^31) >> 32, never saturating since M0 != INT32_MIN.
 * 3. RoundingDivideByPOT(x, e), half away from zero, is (x - [x < 0] + 2^(e-1)) >> e for e >= 1 (the same
 *    proof): VRSHL by -e rounds half up, so subtract 1 from negative x first. (x & -e) has its sign bit set
 *    exactly when x < 0 and e > 0, so its arithmetic shift by 31 is that correction (0 when e = 0);
 *    the saturating add only matters for x = INT32_MIN, whose result it does not change.
 * 4. + out_zp saturating (a saturated int32 still clamps to the same int8), clamp to the activation range. */
EP_MVE_INLINE int32x4_t requantize_x4(int32x4_t acc, int32_t multiplier, int32_t shift, int32_t out_zp,
                                      int32x4_t lo, int32x4_t hi)
{
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int32x4_t x = vqrdmulhq_n_s32(vqshlq_r_s32(acc, left), multiplier);
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, vdupq_n_s32(-right)), 31));
    x = vqaddq_n_s32(vrshlq_n_s32(x, -right), out_zp);
    return vminq_s32(vmaxq_s32(x, lo), hi);
}

/* ---------------------------------------------------------------- pointwise 1x1 */

/* per output channel, what a pass needs after its dot products: the folded bias and the requantization */
typedef struct {
    int32_t bias, multiplier, left, negright;
} ep_chan;

/* bias - in_zp * sum(w) per output channel (the raw products x * w then sum to the centred accumulator; |zp * sum w|
 * + |bias| is below the accumulator bound the generator proved, so no int32 overflow), and the shift split */
static void channel_table(const ep_layer *l, ep_chan *out)
{
    const int32_t cin = l->in_c;
    int32_t co, c;
    for (co = 0; co < l->out_c; co++) {
        const int8_t *w = l->weight + co * cin;
        const int32_t shift = l->shift[co];
        int32_t sum = 0;
        for (c = 0; c + 16 <= cin; c += 16) {
            sum = vaddvaq_s8(sum, vldrbq_s8(w + c));
        }
        if (c < cin) {
            sum = vaddvaq_p_s8(sum, vldrbq_z_s8(w + c, vctp8q((uint32_t)(cin - c))), vctp8q((uint32_t)(cin - c)));
        }
        out[co].bias = l->bias[co] - l->in_zp * sum;
        out[co].multiplier = l->multiplier[co];
        out[co].left = shift > 0 ? shift : 0;
        out[co].negright = shift > 0 ? 0 : shift;
    }
}

/* pixels p0 .. p0+n-1 (n <= 8) of every channel packed for dot_2x4 / dot_1x4: per block of 4 pixels (j / 4) and
 * 16-channel chunk k, 64 bytes holding the chunk's 16 channels of pixel j % 4, then the next pixel:
 *   xt[(j / 4) * chunks * 64 + k * 64 + (j % 4) * 16 + c % 16] = in[c * plane + p0 + j],  k = c / 16
 * one widening load and one byte scatter (16-bit offsets) per channel; lanes past in_c are never written */
EP_MVE_INLINE void pack8(const int8_t *in, int32_t plane, int32_t cin, int32_t n, int8_t *xt)
{
    const int32_t block = ((cin + 15) / 16) * 64;
    const uint16x8_t j = vidupq_n_u16(0, 1);
    const uint16x8_t offsets = vaddq_u16(vmulq_n_u16(vshrq_n_u16(j, 2), (uint16_t)block),
                                         vmulq_n_u16(vandq_u16(j, vdupq_n_u16(3)), 16));
    const mve_pred16_t p = vctp16q((uint32_t)n);
    int32_t c;
    for (c = 0; c < cin; c++, in += plane) {
        vstrbq_scatter_offset_p_s16(xt + (c >> 4) * 64 + (c & 15), offsets, vldrbq_z_s16(in, p), p);
    }
}

EP_MVE_INLINE int32x4_t lanes4(int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
    int32x4_t v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    return vsetq_lane_s32(a3, v, 3);
}

/* two output channels (weight rows w0, w1) over one packed block of 4 pixels (x): 6 loads, 8 VMLADAVA per
 * 16 input channels; the channel tail is predicated on the weights (zero lanes meet unwritten packed lanes) */
EP_MVE_INLINE void dot_2x4(const int8_t *w0, const int8_t *w1, const int8_t *x, int32_t cin, int32_t b0, int32_t b1,
                           int32x4_t *out0, int32x4_t *out1)
{
    int32_t a0 = b0, a1 = b0, a2 = b0, a3 = b0, c0 = b1, c1 = b1, c2 = b1, c3 = b1, c;
    for (c = 0; c + 16 <= cin; c += 16, x += 64) {
        const int8x16_t v0 = vldrbq_s8(w0 + c), v1 = vldrbq_s8(w1 + c);
        const int8x16_t x0 = vldrbq_s8(x), x1 = vldrbq_s8(x + 16), x2 = vldrbq_s8(x + 32), x3 = vldrbq_s8(x + 48);
        a0 = vmladavaq_s8(a0, x0, v0), c0 = vmladavaq_s8(c0, x0, v1);
        a1 = vmladavaq_s8(a1, x1, v0), c1 = vmladavaq_s8(c1, x1, v1);
        a2 = vmladavaq_s8(a2, x2, v0), c2 = vmladavaq_s8(c2, x2, v1);
        a3 = vmladavaq_s8(a3, x3, v0), c3 = vmladavaq_s8(c3, x3, v1);
    }
    if (c < cin) {
        const mve_pred16_t p = vctp8q((uint32_t)(cin - c));
        const int8x16_t v0 = vldrbq_z_s8(w0 + c, p), v1 = vldrbq_z_s8(w1 + c, p);
        const int8x16_t x0 = vldrbq_s8(x), x1 = vldrbq_s8(x + 16), x2 = vldrbq_s8(x + 32), x3 = vldrbq_s8(x + 48);
        a0 = vmladavaq_s8(a0, x0, v0), c0 = vmladavaq_s8(c0, x0, v1);
        a1 = vmladavaq_s8(a1, x1, v0), c1 = vmladavaq_s8(c1, x1, v1);
        a2 = vmladavaq_s8(a2, x2, v0), c2 = vmladavaq_s8(c2, x2, v1);
        a3 = vmladavaq_s8(a3, x3, v0), c3 = vmladavaq_s8(c3, x3, v1);
    }
    *out0 = lanes4(a0, a1, a2, a3);
    *out1 = lanes4(c0, c1, c2, c3);
}

/* the last output channel of an odd count: dot_2x4 with one row */
static int32x4_t dot_1x4(const int8_t *w, const int8_t *x, int32_t cin, int32_t bias)
{
    int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias, c;
    for (c = 0; c < cin; c += 16, x += 64) {
        const int8x16_t v = vldrbq_z_s8(w + c, vctp8q((uint32_t)(cin - c)));
        a0 = vmladavaq_s8(a0, vldrbq_s8(x), v);
        a1 = vmladavaq_s8(a1, vldrbq_s8(x + 16), v);
        a2 = vmladavaq_s8(a2, vldrbq_s8(x + 32), v);
        a3 = vmladavaq_s8(a3, vldrbq_s8(x + 48), v);
    }
    return lanes4(a0, a1, a2, a3);
}

/* requantize 4 outputs of a channel (requantize_x4's steps) and store them, or the first `valid` when not `full` */
EP_MVE_INLINE void store_x4(int32x4_t acc, const ep_chan *ch, int32_t out_zp, int32x4_t lo, int32x4_t hi, int32_t full,
                            int32_t valid, int8_t *o)
{
    int32x4_t x = vqrdmulhq_n_s32(vqshlq_r_s32(acc, ch->left), ch->multiplier);
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, vdupq_n_s32(ch->negright)), 31));
    x = vminq_s32(vmaxq_s32(vqaddq_n_s32(vrshlq_n_s32(x, ch->negright), out_zp), lo), hi);
    if (full) {
        vstrbq_s32(o, x);
    } else {
        vstrbq_p_s32(o, x, vctp32q((uint32_t)valid));
    }
}

/* one packed block of 4 pixels (x) through every output channel, walking weights, channel table and output planes */
EP_MVE_INLINE void pw_block(const ep_layer *l, const int8_t *x, const ep_chan *ch, int32_t full, int32_t valid,
                            int8_t *o)
{
    const int32_t cin = l->in_c, plane = l->in_h * l->in_w, out_zp = l->out_zp;
    const int32x4_t lo = vdupq_n_s32(l->act_min), hi = vdupq_n_s32(l->act_max);
    const int8_t *w = l->weight;
    int32_t co;
    for (co = l->out_c; co >= 2; co -= 2, w += 2 * cin, ch += 2, o += 2 * plane) {
        int32x4_t a, b;
        dot_2x4(w, w + cin, x, cin, ch[0].bias, ch[1].bias, &a, &b);
        store_x4(a, ch, out_zp, lo, hi, full, valid, o);
        store_x4(b, ch + 1, out_zp, lo, hi, full, valid, o + plane);
    }
    if (co) {
        store_x4(dot_1x4(w, x, cin, ch->bias), ch, out_zp, lo, hi, full, valid, o);
    }
}

__attribute__((noinline)) static void pw_block_full(const ep_layer *l, const int8_t *x, const ep_chan *ch, int8_t *o)
{
    pw_block(l, x, ch, 1, 4, o);
}

__attribute__((noinline)) static void pw_block_part(const ep_layer *l, const int8_t *x, const ep_chan *ch,
                                                    int32_t valid, int8_t *o)
{
    pw_block(l, x, ch, 0, valid, o);
}

void ep_pointwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t cin = l->in_c, plane = l->in_h * l->in_w, block = ((cin + 15) / 16) * 64;
    ep_chan *ch = (ep_chan *)scratch;
    int8_t *xt = (int8_t *)scratch + 16 * l->out_c;
    int32_t p0, j0;
    if (l->sh != 1 || l->sw != 1 || l->kh != 1 || l->kw != 1 || l->pad_top || l->pad_left || l->pad_bottom || l->pad_right) {
        ep_pointwise(l, in, out);
        return;
    }
    channel_table(l, ch);
    for (p0 = 0; p0 < plane; p0 += 8) {
        const int32_t n = plane - p0 < 8 ? plane - p0 : 8;
        pack8(in + p0, plane, cin, n, xt);
        for (j0 = 0; j0 < n; j0 += 4) { /* a block past the last pixel computes rows it does not store */
            if (n - j0 >= 4) {
                pw_block_full(l, xt + (j0 / 4) * block, ch, out + p0 + j0);
            } else {
                pw_block_part(l, xt + (j0 / 4) * block, ch, n - j0, out + p0 + j0);
            }
        }
    }
}

/* ---------------------------------------------------------------- 3x3 over zero-point-framed planes */

/* the zero-point frame of `planes` padded planes (pitch hp * wp each), written once per call */
static void frame_planes(const ep_layer *l, int32_t planes, int8_t *xp)
{
    const int32_t wp = l->pad_left + l->in_w + l->pad_right, hp = l->pad_top + l->in_h + l->pad_bottom;
    memset(xp, (int)(int8_t)l->in_zp, (size_t)(planes * hp * wp + EP_HELIUM_SLACK));
}

/* copy one input plane into the interior of its framed plane, 16 bytes per predicated vector */
static void fill_plane(const ep_layer *l, const int8_t *in, int8_t *xp)
{
    const int32_t wp = l->pad_left + l->in_w + l->pad_right, w = l->in_w;
    int8_t *row = xp + l->pad_top * wp + l->pad_left;
    int32_t y, x;
    for (y = 0; y < l->in_h; y++, row += wp, in += w) {
        for (x = 0; x < w; x += 16) {
            const mve_pred16_t p = vctp8q((uint32_t)(w - x));
            vstrbq_p_s8(row + x, vldrbq_z_s8(in + x, p), p);
        }
    }
}

/* the requantization constants of one channel, taken once per output plane */
typedef struct {
    int32_t left, multiplier, negright, out_zp;
} ep_rq4;

EP_MVE_INLINE ep_rq4 rq4_of(const ep_layer *l, int32_t c)
{
    const int32_t shift = l->shift[c];
    ep_rq4 q = {shift > 0 ? shift : 0, l->multiplier[c], shift > 0 ? 0 : shift, l->out_zp};
    return q;
}

/* requantize_x4 with the constants of ep_rq4 (rmask = vdupq_n_s32(negright)) */
EP_MVE_INLINE int32x4_t rq4_apply(int32x4_t acc, const ep_rq4 *q, int32x4_t rmask, int32x4_t lo, int32x4_t hi)
{
    int32x4_t x = vqrdmulhq_n_s32(vqshlq_r_s32(acc, q->left), q->multiplier);
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, rmask), 31));
    x = vqaddq_n_s32(vrshlq_n_s32(x, q->negright), q->out_zp);
    return vminq_s32(vmaxq_s32(x, lo), hi);
}

/* one row of 3 taps for 4 outputs (x: the left input of the first): stride 1 reads 4 neighbours per load, other
 * strides gather them (offsets 0, s, 2s, 3s); `unit` is a constant wherever this is inlined */
EP_MVE_INLINE int32x4_t taps3(const int8_t *x, int32_t unit, uint32x4_t gather, int32_t w0, int32_t w1, int32_t w2,
                              int32x4_t acc)
{
    if (unit) {
        acc = vmlaq_n_s32(acc, vldrbq_s32(x), w0);
        acc = vmlaq_n_s32(acc, vldrbq_s32(x + 1), w1);
        return vmlaq_n_s32(acc, vldrbq_s32(x + 2), w2);
    }
    acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(x, gather), w0);
    acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(x + 1, gather), w1);
    return vmlaq_n_s32(acc, vldrbq_gather_offset_s32(x + 2, gather), w2);
}

/* the output geometry and requantization of one output plane */
typedef struct {
    int32_t wp, pitch, stride, out_w, out_h;
    uint32x4_t gather;
    int32x4_t lo, hi, rmask;
    ep_rq4 q;
} ep_plane;

EP_MVE_INLINE ep_plane plane_of(const ep_layer *l, int32_t c)
{
    ep_plane g;
    g.wp = l->pad_left + l->in_w + l->pad_right;
    g.pitch = g.wp * (l->pad_top + l->in_h + l->pad_bottom);
    g.stride = l->sh, g.out_w = l->out_w, g.out_h = l->out_h;
    g.gather = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)g.stride);
    g.lo = vdupq_n_s32(l->act_min), g.hi = vdupq_n_s32(l->act_max);
    g.q = rq4_of(l, c);
    g.rmask = vdupq_n_s32(g.q.negright);
    return g;
}

/* depthwise: one framed plane, its 9 taps in registers, 4 outputs of a row per pass */
EP_MVE_INLINE void dw_plane(const ep_layer *l, const int8_t *xp, const int8_t *w, int32_t bias, int32_t c,
                            int32_t unit, int8_t *o)
{
    const ep_plane g = plane_of(l, c);
    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    int32_t oy, ox;
    for (oy = 0; oy < g.out_h; oy++, o += g.out_w) {
        const int8_t *row = xp + oy * g.stride * g.wp;
        for (ox = 0; ox < g.out_w; ox += 4) { /* the last pass of a row stores only the outputs inside it */
            const int8_t *x = row + ox * g.stride;
            int32x4_t acc = taps3(x, unit, g.gather, w0, w1, w2, vdupq_n_s32(bias));
            acc = taps3(x + g.wp, unit, g.gather, w3, w4, w5, acc);
            acc = rq4_apply(taps3(x + 2 * g.wp, unit, g.gather, w6, w7, w8, acc), &g.q, g.rmask, g.lo, g.hi);
            if (g.out_w - ox >= 4) {
                vstrbq_s32(o + ox, acc);
            } else {
                vstrbq_p_s32(o + ox, acc, vctp32q((uint32_t)(g.out_w - ox)));
            }
        }
    }
}

static void dw_plane_unit(const ep_layer *l, const int8_t *xp, const int8_t *w, int32_t bias, int32_t c, int8_t *o)
{
    dw_plane(l, xp, w, bias, c, 1, o);
}

static void dw_plane_strided(const ep_layer *l, const int8_t *xp, const int8_t *w, int32_t bias, int32_t c, int8_t *o)
{
    dw_plane(l, xp, w, bias, c, 0, o);
}

/* One input plane's share of a conv's output plane, its 9 taps in registers: the int32 partial sums of the output
 * plane wait in `part` (row pitch 4 * ceil(out_w / 4)) between planes; `stage` (a constant where this is inlined)
 * says whether this plane starts from the bias (bit 0) and whether it requantizes and stores (bit 1). */
EP_MVE_INLINE void conv_pass(const ep_layer *l, const int8_t *xp, const int8_t *w, int32_t bias, int32_t c,
                             int32_t unit, int32_t stage, int32_t *part, int8_t *o)
{
    const ep_plane g = plane_of(l, c);
    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    const int32_t ow4 = (g.out_w + 3) & ~3;
    int32_t oy, ox;
    for (oy = 0; oy < g.out_h; oy++, o += g.out_w, part += ow4) {
        const int8_t *row = xp + oy * g.stride * g.wp;
        for (ox = 0; ox < g.out_w; ox += 4) {
            const int8_t *x = row + ox * g.stride;
            int32x4_t acc = (stage & 1) ? vdupq_n_s32(bias) : vldrwq_s32(part + ox);
            acc = taps3(x, unit, g.gather, w0, w1, w2, acc);
            acc = taps3(x + g.wp, unit, g.gather, w3, w4, w5, acc);
            acc = taps3(x + 2 * g.wp, unit, g.gather, w6, w7, w8, acc);
            if (!(stage & 2)) {
                vstrwq_s32(part + ox, acc);
                continue;
            }
            acc = rq4_apply(acc, &g.q, g.rmask, g.lo, g.hi);
            if (g.out_w - ox >= 4) {
                vstrbq_s32(o + ox, acc);
            } else {
                vstrbq_p_s32(o + ox, acc, vctp32q((uint32_t)(g.out_w - ox)));
            }
        }
    }
}

/* a conv's output plane over `planes` framed planes (pitch apart, weights planes x 9) */
EP_MVE_INLINE void conv_plane(const ep_layer *l, const int8_t *xp, int32_t planes, int32_t pitch, const int8_t *w,
                              int32_t bias, int32_t c, int32_t unit, int32_t *part, int8_t *o)
{
    int32_t p;
    if (planes == 1) {
        conv_pass(l, xp, w, bias, c, unit, 3, part, o);
        return;
    }
    conv_pass(l, xp, w, bias, c, unit, 1, part, o);
    for (p = 1; p + 1 < planes; p++) {
        conv_pass(l, xp + p * pitch, w + 9 * p, bias, c, unit, 0, part, o);
    }
    conv_pass(l, xp + p * pitch, w + 9 * p, bias, c, unit, 2, part, o);
}

static void plane3x3_unit(const ep_layer *l, const int8_t *xp, int32_t planes, int32_t pitch, const int8_t *w,
                          int32_t bias, int32_t c, int32_t *part, int8_t *o)
{
    conv_plane(l, xp, planes, pitch, w, bias, c, 1, part, o);
}

static void plane3x3_strided(const ep_layer *l, const int8_t *xp, int32_t planes, int32_t pitch, const int8_t *w,
                             int32_t bias, int32_t c, int32_t *part, int8_t *o)
{
    conv_plane(l, xp, planes, pitch, w, bias, c, 0, part, o);
}

static int32_t sum_weights(const int8_t *w, int32_t n)
{
    int32_t sum = 0, i;
    for (i = 0; i < n; i++) {
        sum += w[i];
    }
    return sum;
}

/* Small output planes (at most EP_HELIUM_FLAT_MAX outputs, e.g. 6x6 and 3x3): the outputs in flat order, 4 per
 * pass whatever the row width (a 6-wide row would take two passes, one of them half empty). The input offset of
 * each output comes from a table (in scratch after the framed plane, padded to 4 entries with offset 0); the
 * 3 rows of taps gather at that offset plus 0, wp, 2 wp from bases xp, xp + 1, xp + 2. */
static void flat_table(const ep_layer *l, uint32_t *table)
{
    const int32_t wp = l->pad_left + l->in_w + l->pad_right, n = l->out_h * l->out_w;
    int32_t o;
    for (o = 0; o < n; o++) {
        table[o] = (uint32_t)((o / l->out_w) * l->sh * wp + (o % l->out_w) * l->sw);
    }
    for (; o % 4; o++) {
        table[o] = 0u;
    }
}

static void dw_plane_flat(const ep_layer *l, const int8_t *xp, const uint32_t *table, const int8_t *w, int32_t bias,
                          int32_t c, int8_t *o)
{
    const ep_plane g = plane_of(l, c);
    const int32_t n = g.out_h * g.out_w;
    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    int32_t i;
    for (i = 0; i < n; i += 4) {
        const uint32x4_t r0 = vldrwq_u32(table + i), r1 = vaddq_n_u32(r0, (uint32_t)g.wp);
        const uint32x4_t r2 = vaddq_n_u32(r1, (uint32_t)g.wp);
        int32x4_t acc = vmlaq_n_s32(vdupq_n_s32(bias), vldrbq_gather_offset_s32(xp, r0), w0);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 1, r0), w1);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 2, r0), w2);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp, r1), w3);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 1, r1), w4);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 2, r1), w5);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp, r2), w6);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 1, r2), w7);
        acc = vmlaq_n_s32(acc, vldrbq_gather_offset_s32(xp + 2, r2), w8);
        acc = rq4_apply(acc, &g.q, g.rmask, g.lo, g.hi);
        if (n - i >= 4) {
            vstrbq_s32(o + i, acc);
        } else {
            vstrbq_p_s32(o + i, acc, vctp32q((uint32_t)(n - i)));
        }
    }
}

void ep_depthwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t plane = l->in_h * l->in_w, oplane = l->out_h * l->out_w;
    const int32_t framed = (l->pad_top + l->in_h + l->pad_bottom) * (l->pad_left + l->in_w + l->pad_right);
    int8_t *xp = (int8_t *)scratch;
    uint32_t *table = (uint32_t *)(void *)(xp + ((framed + EP_HELIUM_SLACK + 3) & ~3));
    const int32_t flat = oplane <= EP_HELIUM_FLAT_MAX;
    int32_t c;
    if (l->kh != 3 || l->kw != 3 || l->sh != l->sw || l->out_c != l->in_c) {
        ep_depthwise(l, in, out);
        return;
    }
    frame_planes(l, 1, xp); /* the interior is overwritten per channel, the frame stays */
    if (flat) {
        flat_table(l, table);
    }
    for (c = 0; c < l->out_c; c++) {
        const int8_t *w = l->weight + 9 * c;
        const int32_t bias = l->bias[c] - l->in_zp * sum_weights(w, 9);
        fill_plane(l, in + c * plane, xp);
        if (flat) {
            dw_plane_flat(l, xp, table, w, bias, c, out + c * oplane);
        } else if (l->sh == 1) {
            dw_plane_unit(l, xp, w, bias, c, out + c * oplane);
        } else {
            dw_plane_strided(l, xp, w, bias, c, out + c * oplane);
        }
    }
}

void ep_conv_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t plane = l->in_h * l->in_w, oplane = l->out_h * l->out_w, planes = l->in_c;
    const int32_t pitch = (l->pad_left + l->in_w + l->pad_right) * (l->pad_top + l->in_h + l->pad_bottom);
    int8_t *xp = (int8_t *)scratch;
    int32_t *part = (int32_t *)(void *)(xp + ((planes * pitch + EP_HELIUM_SLACK + 3) & ~3));
    int32_t c;
    if (l->kh != 3 || l->kw != 3 || l->sh != l->sw || planes > EP_HELIUM_MAX_PLANES) {
        ep_conv(l, in, out);
        return;
    }
    frame_planes(l, planes, xp);
    for (c = 0; c < planes; c++) {
        fill_plane(l, in + c * plane, xp + c * pitch);
    }
    for (c = 0; c < l->out_c; c++) {
        const int8_t *w = l->weight + 9 * planes * c;
        const int32_t bias = l->bias[c] - l->in_zp * sum_weights(w, 9 * planes);
        if (l->sh == 1) {
            plane3x3_unit(l, xp, planes, pitch, w, bias, c, part, out + c * oplane);
        } else {
            plane3x3_strided(l, xp, planes, pitch, w, bias, c, part, out + c * oplane);
        }
    }
}

#else /* no MVE: the kernels_fast.c twins (their scratch fits in the Helium kernels') */

void ep_pointwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    ep_pointwise_fast(l, in, out, scratch);
}

void ep_depthwise_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    ep_depthwise_fast(l, in, out, scratch);
}

void ep_conv_helium(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    ep_conv_fast(l, in, out, scratch);
}

#endif
