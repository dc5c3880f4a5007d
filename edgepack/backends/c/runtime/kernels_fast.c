/* edgepack fast int8 kernels for Cortex-M4 / M7 (Armv7E-M DSP extension).
 *
 * Bit-exact with the portable kernels (kernels.c), which they are tested against:
 *   - pointwise 1x1 (stride 1) as a blocked GEMM: for a block of 4 pixels, the centred inputs
 *     of all channels are packed once into int16 pairs (scratch), then every output channel
 *     runs over them with SMLAD (two 16x16 multiply-accumulates per instruction);
 *   - depthwise 3x3 and conv 3x3 without im2col: the input plane(s) are copied once into
 *     scratch framed by the zero point, so that every output is an interior one; each kernel
 *     row is one 4-byte load split by SXTB16 and accumulated with SMLAD / SMLABB / SMLATB
 *     (stride 1 computes two outputs per load); the zero point is folded into the bias;
 *   - requantization without 64-bit division (exact reformulation, proof at ep_rq_apply).
 * The accumulator bound of kernels.c covers every partial sum formed here.
 *
 * With __ARM_FEATURE_DSP the intrinsics come from <arm_acle.h>; elsewhere (host unit tests, or
 * with -DEDGEPACK_EMULATE_DSP) C emulations run the very same algorithm.
 */
#include <string.h>

#include "kernels.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kernels_fast.c assumes a little-endian target"
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(EDGEPACK_EMULATE_DSP)
#include <arm_acle.h>
#define EP_SXTB16(v) ((uint32_t)__sxtb16((int32_t)(v)))
#define EP_SXTB16_ROR8(v) ep_sxtb16_ror8(v)
static inline __attribute__((always_inline)) uint32_t ep_sxtb16_ror8(uint32_t v)
{
    uint32_t r; /* one instruction: gcc does not fold the rotation into SXTB16 by itself */
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#define EP_SSUB16(a, b) ((uint32_t)__ssub16((int32_t)(a), (int32_t)(b)))
#define EP_SMLAD(a, b, acc) __smlad((int32_t)(a), (int32_t)(b), (acc))
#define EP_SMLABB(a, b, acc) __smlabb((int32_t)(a), (int32_t)(b), (acc))
#define EP_SMLATB(a, b, acc) __smlatb((int32_t)(a), (int32_t)(b), (acc))
#else
/* C emulations of the Armv7E-M DSP instructions used below (two int16 lanes in a uint32_t) */
static int32_t ep_lo16(uint32_t v) { return (int32_t)(v & 0xFFFFu) - (int32_t)((v & 0x8000u) << 1); }
static int32_t ep_hi16(uint32_t v) { return ep_lo16(v >> 16); }
static uint32_t ep_pack16(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16); }
static int32_t ep_s8(uint32_t v) { return (int32_t)(v & 0xFFu) - (int32_t)((v & 0x80u) << 1); }
static uint32_t EP_SXTB16(uint32_t v) { return ep_pack16(ep_s8(v), ep_s8(v >> 16)); }
static uint32_t EP_SXTB16_ROR8(uint32_t v) { return ep_pack16(ep_s8(v >> 8), ep_s8(v >> 24)); }
static uint32_t EP_SSUB16(uint32_t a, uint32_t b) { return ep_pack16(ep_lo16(a) - ep_lo16(b), ep_hi16(a) - ep_hi16(b)); }
static int32_t EP_SMLAD(uint32_t a, uint32_t b, int32_t acc) { return acc + ep_lo16(a) * ep_lo16(b) + ep_hi16(a) * ep_hi16(b); }
static int32_t EP_SMLABB(uint32_t a, uint32_t b, int32_t acc) { return acc + ep_lo16(a) * ep_lo16(b); }
static int32_t EP_SMLATB(uint32_t a, uint32_t b, int32_t acc) { return acc + ep_hi16(a) * ep_lo16(b); }
#endif

#if defined(__GNUC__)
#define EP_INLINE static inline __attribute__((always_inline))
#define EP_NOINLINE static __attribute__((noinline))
#else
#define EP_INLINE static inline
#define EP_NOINLINE static
#endif

EP_INLINE uint32_t ep_read32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v); /* one (unaligned) LDR on Armv7-M */
    return v;
}

/* packed pair of two int8 weights as int16 lanes: (lo, hi) */
static uint32_t ep_pair(int8_t lo, int8_t hi)
{
    return ((uint32_t)(int32_t)lo & 0xFFFFu) | (((uint32_t)(int32_t)hi & 0xFFFFu) << 16);
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(EDGEPACK_EMULATE_DSP)
EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b) /* (a * b + 2^31) >> 32 */
{
    int32_t r;
    __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
#endif

/* per-channel requantization constants */
typedef struct {
    int32_t multiplier, shift, exponent, mask, half, out_zp, act_min, act_max;
    int32_t small;  /* the layer's EP_FLAG_SMALL_ACC: take the short exact path */
    int32_t pow2;   /* 2^(max(shift, 0) + 1) */
    int32_t round;  /* 2^(exponent - 1), or 0 */
    int32_t sign;   /* -1 if exponent > 0, else 0 */
    int32_t full;   /* activation range is all of int8 */
} ep_rq;

EP_INLINE void ep_rq_init(ep_rq *q, const ep_layer *l, int32_t c)
{
    q->multiplier = l->multiplier[c];
    q->shift = l->shift[c];
    q->exponent = q->shift > 0 ? 0 : -q->shift;
    q->mask = (int32_t)(((uint32_t)1 << q->exponent) - 1u); /* exponent <= 31 */
    q->half = q->mask >> 1;
    q->out_zp = l->out_zp;
    q->act_min = l->act_min;
    q->act_max = l->act_max;
    q->small = (l->flags & EP_FLAG_SMALL_ACC) != 0;
    q->pow2 = (int32_t)((uint32_t)2 << (q->shift > 0 ? q->shift : 0)); /* only used when small */
    q->round = q->exponent > 0 ? (int32_t)((uint32_t)1 << (q->exponent - 1)) : 0;
    q->sign = q->exponent > 0 ? -1 : 0;
    q->full = q->act_min == -128 && q->act_max == 127;
}

/* ep_rq_init kept out of line for the direct 3x3 kernels: inlined, gcc keeps the constants in registers
 * across their hot loop and spills (measured: depthwise layers up to 1.7% slower) */
EP_NOINLINE void ep_rq_init_outlined(ep_rq *q, const ep_layer *l, int32_t c)
{
    ep_rq_init(q, l, c);
}

/* Same result as ep_output() (kernels.c). Proofs, for a multiplier b = M0 in [0, 2^31):
 * 1. SRDHM(a, b) = trunc((ab + nudge) / 2^31), nudge = 2^30 if ab >= 0 else 1 - 2^30. For ab >= 0
 *    the dividend is >= 0, so trunc = floor((ab + 2^30) / 2^31). For ab < 0 the dividend v is < 0
 *    and trunc(v / d) = floor((v + d - 1) / d) = floor((ab + 2^30) / 2^31). So in both cases
 *    SRDHM(a, b) = (ab + 2^30) >> 31 (no saturation: b != INT32_MIN).
 * 2. Short path (EP_FLAG_SMALL_ACC: the generator proved |acc| * 2^max(shift, 0) < 2^29 for every
 *    channel, so the saturating left shift is a plain multiply): with a = acc * 2^left,
 *    (2a * b + 2^31) >> 32 = (ab + 2^30) >> 31, which is one SMMULR of 2a (fits int32) and b.
 *    RoundingDivideByPOT(x, e) (round half away from zero) is floor((x + 2^(e-1) - [x < 0]) / 2^e)
 *    for e >= 1: for x >= 0 it adds 1 exactly when the remainder is >= 2^(e-1), for x < 0 exactly
 *    when it is > 2^(e-1), which is gemmlowp's threshold test; |x| <= 2^29 keeps the sum in int32.
 * 3. General path: gemmlowp's own mask/threshold form in 32 bits; clamping x to [-256, 255]
 *    before adding the zero point (|zp| <= 128) changes nothing after the clamp to
 *    [act_min, act_max] inside int8, and keeps the addition from overflowing. Positive shifts
 *    there take the portable saturating path. */
EP_INLINE int8_t ep_rq_apply(const ep_rq *q, int32_t acc)
{
    int32_t x;
    if (q->small) {
        x = ep_smmulr(acc * q->pow2, q->multiplier);
        x = (x + q->round + ((x >> 31) & q->sign)) >> q->exponent;
        x += q->out_zp;
    } else {
        if (q->shift > 0) {
            x = ep_requantize(acc, q->multiplier, q->shift);
        } else {
            x = (int32_t)(((int64_t)acc * q->multiplier + ((int64_t)1 << 30)) >> 31);
            x = (x >> q->exponent) + ((x & q->mask) > q->half + (x < 0 ? 1 : 0) ? 1 : 0);
        }
        x = x < -256 ? -256 : (x > 255 ? 255 : x);
        x += q->out_zp;
    }
    if (q->full) {
        return (int8_t)(x < -128 ? -128 : (x > 127 ? 127 : x)); /* one SSAT */
    }
    x = x < q->act_min ? q->act_min : x;
    x = x > q->act_max ? q->act_max : x;
    return (int8_t)x;
}

/* ---------------------------------------------------------------- pointwise 1x1 GEMM */

/* pack the centred inputs of 4 pixels (p0..p0+3) for channels [0, c4) into int16 pairs:
 * per channel quad q and pixel j two words, (x[4q][j], x[4q+2][j]) and (x[4q+1][j], x[4q+3][j]),
 * the lane order SXTB16 / SXTB16 ROR 8 give for a word of 4 consecutive weights. */
static void ep_pack4(const int8_t *in, int32_t plane, int32_t c4, int32_t zp, uint32_t *buf)
{
    const uint32_t zz = ((uint32_t)zp & 0xFFFFu) | (((uint32_t)zp & 0xFFFFu) << 16);
    int32_t c;
    for (c = 0; c < c4; c += 4) {
        const int8_t *x = in + c * plane;
        const uint32_t v0 = ep_read32(x), v1 = ep_read32(x + plane);
        const uint32_t v2 = ep_read32(x + 2 * plane), v3 = ep_read32(x + 3 * plane);
        const uint32_t e0 = EP_SSUB16(EP_SXTB16(v0), zz), o0 = EP_SSUB16(EP_SXTB16_ROR8(v0), zz);
        const uint32_t e1 = EP_SSUB16(EP_SXTB16(v1), zz), o1 = EP_SSUB16(EP_SXTB16_ROR8(v1), zz);
        const uint32_t e2 = EP_SSUB16(EP_SXTB16(v2), zz), o2 = EP_SSUB16(EP_SXTB16_ROR8(v2), zz);
        const uint32_t e3 = EP_SSUB16(EP_SXTB16(v3), zz), o3 = EP_SSUB16(EP_SXTB16_ROR8(v3), zz);
        buf[0] = (e0 & 0xFFFFu) | (e2 << 16); /* pixel 0 */
        buf[1] = (e1 & 0xFFFFu) | (e3 << 16);
        buf[2] = (o0 & 0xFFFFu) | (o2 << 16); /* pixel 1 */
        buf[3] = (o1 & 0xFFFFu) | (o3 << 16);
        buf[4] = (e0 >> 16) | (e2 & 0xFFFF0000u); /* pixel 2 */
        buf[5] = (e1 >> 16) | (e3 & 0xFFFF0000u);
        buf[6] = (o0 >> 16) | (o2 & 0xFFFF0000u); /* pixel 3 */
        buf[7] = (o1 >> 16) | (o3 & 0xFFFF0000u);
        buf += 8;
    }
}

/* the last, partial block of n < 4 pixels: missing pixels are packed as 0 (centred), their
 * outputs are computed and dropped */
static void ep_pack_tail(const int8_t *in, int32_t plane, int32_t c4, int32_t zp, int32_t n, uint32_t *buf)
{
    int32_t c, j, i;
    for (c = 0; c < c4; c += 4, buf += 8) {
        for (j = 0; j < 4; j++) {
            int32_t v[4];
            for (i = 0; i < 4; i++) {
                v[i] = j < n ? (int32_t)in[(c + i) * plane + j] - zp : 0;
            }
            buf[2 * j] = ((uint32_t)v[0] & 0xFFFFu) | ((uint32_t)v[2] << 16);
            buf[2 * j + 1] = ((uint32_t)v[1] & 0xFFFFu) | ((uint32_t)v[3] << 16);
        }
    }
}

/* centred channel tail (cin % 4 channels) of one output channel for the pixels of a block */
EP_INLINE void ep_tail_channels(const int8_t *in, int32_t plane, int32_t c4, int32_t cin, int32_t zp, int32_t n,
                                const int8_t *w, int32_t *a)
{
    int32_t c, j;
    for (c = c4; c < cin; c++) {
        for (j = 0; j < n; j++) {
            a[j] += ((int32_t)in[c * plane + j] - zp) * (int32_t)w[c];
        }
    }
}

EP_INLINE void ep_store4(const ep_layer *l, int32_t co, const int32_t *a, int32_t n, int8_t *o)
{
    ep_rq q;
    int32_t j;
    ep_rq_init(&q, l, co);
    for (j = 0; j < n; j++) {
        o[j] = ep_rq_apply(&q, a[j]);
    }
}

/* two consecutive packed words at byte offset off of p (word-aligned) in one LDRD: half the load instructions
 * of two LDRs (gcc emits two LDRs for any C form); the "memory" clobber keeps it after the packing stores */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(EDGEPACK_EMULATE_DSP)
#define EP_LDRD(p, off, lo, hi) __asm volatile("ldrd %0, %1, [%2, #" #off "]" : "=&r"(lo), "=&r"(hi) : "r"(p) : "memory")
#else
#define EP_LDRD(p, off, lo, hi) ((lo) = (p)[(off) / 4], (hi) = (p)[(off) / 4 + 1])
#endif

/* 4 accumulators of output channel co over the packed block b: one weight word (4 input
 * channels) is split into (w0, w2), (w1, w3) and meets two packed words per pixel */
#define EP_GEMM_1x4(w, b, c4, a0, a1, a2, a3)                                        \
    do {                                                                              \
        int32_t c_;                                                                   \
        const uint32_t *b_ = (b);                                                     \
        for (c_ = 0; c_ < (c4); c_ += 4, b_ += 8) {                                   \
            const uint32_t wv_ = ep_read32((w) + c_);                                 \
            const uint32_t we_ = EP_SXTB16(wv_), wo_ = EP_SXTB16_ROR8(wv_);           \
            uint32_t x_, y_;                                                          \
            EP_LDRD(b_, 0, x_, y_);                                                   \
            a0 = EP_SMLAD(wo_, y_, EP_SMLAD(we_, x_, a0));                            \
            EP_LDRD(b_, 8, x_, y_);                                                   \
            a1 = EP_SMLAD(wo_, y_, EP_SMLAD(we_, x_, a1));                            \
            EP_LDRD(b_, 16, x_, y_);                                                  \
            a2 = EP_SMLAD(wo_, y_, EP_SMLAD(we_, x_, a2));                            \
            EP_LDRD(b_, 24, x_, y_);                                                  \
            a3 = EP_SMLAD(wo_, y_, EP_SMLAD(we_, x_, a3));                            \
        }                                                                             \
    } while (0)

/* the centred channels of one pixel of a pointwise layer (in_c a multiple of 4, in points at the pixel) packed into
 * int16 pairs, per channel quad (x0, x2), (x1, x3): the lanes SXTB16 / SXTB16 ROR 8 give for a weight word */
static void ep_pack_pixel(const ep_layer *l, const int8_t *in, uint32_t *x)
{
    const int32_t cin = l->in_c, plane = l->in_h * l->in_w, zp = l->in_zp;
    int32_t c;
    for (c = 0; c < cin; c += 4) {
        const int8_t *p = in + c * plane;
        x[c / 2] = ((uint32_t)(p[0] - zp) & 0xFFFFu) | ((uint32_t)(p[2 * plane] - zp) << 16);
        x[c / 2 + 1] = ((uint32_t)(p[plane] - zp) & 0xFFFFu) | ((uint32_t)(p[3 * plane] - zp) << 16);
    }
}

/* The last n = 1 or 2 pixels of a pointwise layer whose input channels are a multiple of 4 (in and out point at
 * the first): each pixel packed once (ep_pack_pixel, scratch), then two output channels at a time run their weight
 * rows over the n packed pixels, one weight word feeding 2n SMLAD pairs: no pixel is computed and dropped, and each
 * weight and input load serves two products (an odd last channel runs its row twice, the copy dropped) */
static void ep_pointwise_pixels(const ep_layer *l, const int8_t *in, int32_t n, uint32_t *x, int8_t *out);

/* the last n = 1 to 3 pixels of a pointwise layer: by twos, then one */
EP_NOINLINE void ep_pointwise_rest(const ep_layer *l, const int8_t *in, int32_t n, uint32_t *x, int8_t *out)
{
    ep_pointwise_pixels(l, in, n < 2 ? n : 2, x, out);
    if (n == 3) {
        ep_pointwise_pixels(l, in + 2, 1, x, out + 2);
    }
}

static void ep_pointwise_pixels(const ep_layer *l, const int8_t *in, int32_t n, uint32_t *x, int8_t *out)
{
    const int32_t cin = l->in_c, plane = l->in_h * l->in_w, cout = l->out_c;
    const uint32_t *x1 = x + cin / 2;
    int32_t c, co;
    ep_pack_pixel(l, in, x);
    if (n > 1) {
        ep_pack_pixel(l, in + 1, x + cin / 2);
    }
    for (co = 0; co < cout; co += 2) {
        const int8_t *w0 = l->weight + co * cin, *w1 = co + 1 < cout ? w0 + cin : w0;
        int32_t a00 = l->bias[co], a10 = co + 1 < cout ? l->bias[co + 1] : a00;
        int32_t a01 = n > 1 ? a00 : 0, a11 = n > 1 ? a10 : 0; /* one pixel: its odd lanes' partial sums */
        ep_rq q;
        for (c = 0; n > 1 && c < cin; c += 4) {
            const uint32_t v0 = ep_read32(w0 + c), v1 = ep_read32(w1 + c);
            const uint32_t e0 = EP_SXTB16(v0), o0 = EP_SXTB16_ROR8(v0), e1 = EP_SXTB16(v1), o1 = EP_SXTB16_ROR8(v1);
            uint32_t xe, xo;
            EP_LDRD(x + c / 2, 0, xe, xo);
            a00 = EP_SMLAD(o0, xo, EP_SMLAD(e0, xe, a00));
            a10 = EP_SMLAD(o1, xo, EP_SMLAD(e1, xe, a10));
            EP_LDRD(x1 + c / 2, 0, xe, xo);
            a01 = EP_SMLAD(o0, xo, EP_SMLAD(e0, xe, a01));
            a11 = EP_SMLAD(o1, xo, EP_SMLAD(e1, xe, a11));
        }
        for (c = 0; n == 1 && c < cin; c += 4) { /* one pixel: two rows, even and odd lanes apart (4 chains) */
            const uint32_t v0 = ep_read32(w0 + c), v1 = ep_read32(w1 + c);
            uint32_t xe, xo;
            EP_LDRD(x + c / 2, 0, xe, xo);
            a00 = EP_SMLAD(EP_SXTB16(v0), xe, a00);
            a01 = EP_SMLAD(EP_SXTB16_ROR8(v0), xo, a01);
            a10 = EP_SMLAD(EP_SXTB16(v1), xe, a10);
            a11 = EP_SMLAD(EP_SXTB16_ROR8(v1), xo, a11);
        }
        if (n == 1) {
            a00 += a01, a10 += a11;
        }
        ep_rq_init(&q, l, co);
        out[co * plane] = ep_rq_apply(&q, a00);
        if (n > 1) {
            out[co * plane + 1] = ep_rq_apply(&q, a01);
        }
        if (co + 1 < cout) {
            ep_rq_init(&q, l, co + 1);
            out[(co + 1) * plane] = ep_rq_apply(&q, a10);
            if (n > 1) {
                out[(co + 1) * plane + 1] = ep_rq_apply(&q, a11);
            }
        }
    }
}

void ep_pointwise_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t cin = l->in_c, plane = l->in_h * l->in_w, cout = l->out_c;
    const int32_t c4 = cin & ~3, zp = l->in_zp;
    uint32_t *buf = (uint32_t *)scratch;
    int32_t p0, co;
    if (l->sh != 1 || l->sw != 1 || l->kh != 1 || l->kw != 1 || l->pad_top || l->pad_left || l->pad_bottom || l->pad_right) {
        ep_pointwise(l, in, out);
        return;
    }
    /* one output channel x four pixels per pass (a 2 x 4 block runs out of Armv7-M registers
     * and spills: measured slower) */
    for (p0 = 0; p0 + 4 <= plane && c4 == cin; p0 += 4) {
        ep_pack4(in + p0, plane, c4, zp, buf);
        for (co = 0; co < cout; co++) {
            int32_t a0 = l->bias[co], a1 = a0, a2 = a0, a3 = a0;
            int8_t *o = out + co * plane + p0;
            ep_rq q;
            EP_GEMM_1x4(l->weight + co * cin, buf, c4, a0, a1, a2, a3);
            ep_rq_init(&q, l, co);
            o[0] = ep_rq_apply(&q, a0);
            o[1] = ep_rq_apply(&q, a1);
            o[2] = ep_rq_apply(&q, a2);
            o[3] = ep_rq_apply(&q, a3);
        }
    }
    /* the rest: a last partial block of pixels, or input channels that are not a multiple of 4 */
    for (; p0 < plane; p0 += 4) {
        const int32_t n = plane - p0 < 4 ? plane - p0 : 4;
        if (n < 4 && c4 == cin) { /* 1 to 3 pixels left: by twos, then one, never a block of 4 computing 4 */
            ep_pointwise_rest(l, in + p0, n, buf, out + p0);
            break;
        }
        ep_pack_tail(in + p0, plane, c4, zp, n, buf);
        for (co = 0; co < cout; co++) {
            const int8_t *w = l->weight + co * cin;
            int32_t a[4];
            a[0] = a[1] = a[2] = a[3] = l->bias[co];
            EP_GEMM_1x4(w, buf, c4, a[0], a[1], a[2], a[3]);
            ep_tail_channels(in + p0, plane, c4, cin, zp, n, w, a);
            ep_store4(l, co, a, n, out + co * plane + p0);
        }
    }
}

/* ---------------------------------------------------------------- 3x3 without im2col */

/* Copy `planes` input planes into scratch framed by pad_top / pad_bottom rows and pad_left /
 * pad_right columns of the zero point (plus 4 slack bytes for the last 4-byte load). A padded value x = zp contributes zp * w to the
 * raw sum, which the folded bias (bias - zp * sum w) cancels exactly: the same as the zero
 * padding of the centred input in the reference. So every output is an interior output. */
EP_INLINE void ep_pad_planes(const ep_layer *l, const int8_t *in, int32_t planes, int8_t *xp)
{
    const int32_t wp = l->pad_left + l->in_w + l->pad_right, hp = l->pad_top + l->in_h + l->pad_bottom;
    int32_t p, y;
    memset(xp, (int)(int8_t)l->in_zp, (size_t)(planes * hp * wp + 4));
    for (p = 0; p < planes; p++) {
        for (y = 0; y < l->in_h; y++) {
            memcpy(xp + (p * hp + y + l->pad_top) * wp + l->pad_left, in + (p * l->in_h + y) * l->in_w, (size_t)l->in_w);
        }
    }
}

/* split the 3x3 weights of `planes` planes into SMLAD lanes, w02 = (w[r][0], w[r][2]) and
 * w1 = (w[r][1], 0) per row r; returns sum(w) for the zero point fold */
static int32_t ep_split3x3(const int8_t *w, int32_t planes, uint32_t *w02, uint32_t *w1)
{
    int32_t i, sum = 0;
    for (i = 0; i < planes * 3; i++) {
        w02[i] = ep_pair(w[3 * i], w[3 * i + 2]);
        w1[i] = ep_pair(w[3 * i + 1], 0);
        sum += (int32_t)w[3 * i] + (int32_t)w[3 * i + 1] + (int32_t)w[3 * i + 2];
    }
    return sum;
}

/* one output plane of a 3x3 conv over `planes` zero-point-padded planes (xp, row pitch wp) */
EP_INLINE void ep_plane3x3(const ep_layer *l, const int8_t *xp, int32_t planes, const uint32_t *w02,
                           const uint32_t *w1, int32_t bias_raw, const ep_rq *q, int8_t *o)
{
    const int32_t wp = l->pad_left + l->in_w + l->pad_right, pitch = wp * (l->pad_top + l->in_h + l->pad_bottom);
    const int32_t stride = l->sh; /* the generator gives these kernels sh == sw only */
    int32_t oy, ox, p;
    for (oy = 0; oy < l->out_h; oy++, o += l->out_w) {
        const int8_t *row = xp + oy * stride * wp;
        ox = 0;
        if (stride == 1) { /* two outputs per 4-byte load: x0 x1 x2 x3 feed outputs ox and ox + 1 */
            for (; ox + 2 <= l->out_w; ox += 2) {
                int32_t a0 = bias_raw, a1 = bias_raw;
                const int8_t *x = row + ox;
                for (p = 0; p < planes; p++, x += pitch) {
                    uint32_t v = ep_read32(x), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v); /* (x0, x2), (x1, x3) */
                    a0 = EP_SMLAD(e, w02[3 * p], a0);     /* x0 w0 + x2 w2 */
                    a0 = EP_SMLABB(d, w1[3 * p], a0);     /* x1 w1 */
                    a1 = EP_SMLAD(d, w02[3 * p], a1);     /* x1 w0 + x3 w2 */
                    a1 = EP_SMLATB(e, w1[3 * p], a1);     /* x2 w1 */
                    v = ep_read32(x + wp), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v);
                    a0 = EP_SMLAD(e, w02[3 * p + 1], a0);
                    a0 = EP_SMLABB(d, w1[3 * p + 1], a0);
                    a1 = EP_SMLAD(d, w02[3 * p + 1], a1);
                    a1 = EP_SMLATB(e, w1[3 * p + 1], a1);
                    v = ep_read32(x + 2 * wp), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v);
                    a0 = EP_SMLAD(e, w02[3 * p + 2], a0);
                    a0 = EP_SMLABB(d, w1[3 * p + 2], a0);
                    a1 = EP_SMLAD(d, w02[3 * p + 2], a1);
                    a1 = EP_SMLATB(e, w1[3 * p + 2], a1);
                }
                o[ox] = ep_rq_apply(q, a0);
                o[ox + 1] = ep_rq_apply(q, a1);
            }
        }
        for (; ox < l->out_w; ox++) { /* the 4th byte of each load is ignored (SMLABB) */
            int32_t a = bias_raw;
            const int8_t *x = row + ox * stride;
            for (p = 0; p < planes; p++, x += pitch) {
                uint32_t v = ep_read32(x);
                a = EP_SMLAD(EP_SXTB16(v), w02[3 * p], a);
                a = EP_SMLABB(EP_SXTB16_ROR8(v), w1[3 * p], a);
                v = ep_read32(x + wp);
                a = EP_SMLAD(EP_SXTB16(v), w02[3 * p + 1], a);
                a = EP_SMLABB(EP_SXTB16_ROR8(v), w1[3 * p + 1], a);
                v = ep_read32(x + 2 * wp);
                a = EP_SMLAD(EP_SXTB16(v), w02[3 * p + 2], a);
                a = EP_SMLABB(EP_SXTB16_ROR8(v), w1[3 * p + 2], a);
            }
            o[ox] = ep_rq_apply(q, a);
        }
    }
}

void ep_depthwise_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t plane = l->in_h * l->in_w, oplane = l->out_h * l->out_w;
    int8_t *xp = (int8_t *)scratch;
    int32_t c;
    if (l->kh != 3 || l->kw != 3 || l->sh != l->sw || l->out_c != l->in_c) {
        ep_depthwise(l, in, out);
        return;
    }
    for (c = 0; c < l->out_c; c++) {
        uint32_t w02[3], w1[3];
        const int32_t sum = ep_split3x3(l->weight + c * 9, 1, w02, w1);
        ep_rq q;
        ep_rq_init_outlined(&q, l, c);
        ep_pad_planes(l, in + c * plane, 1, xp);
        ep_plane3x3(l, xp, 1, w02, w1, l->bias[c] - l->in_zp * sum, &q, out + c * oplane);
    }
}

/* n accumulators of channel c requantized into o (ep_rq_apply): the constants in locals (registers), the
 * common case (EP_FLAG_SMALL_ACC; a clamp covers the full int8 range too) tested once, not per value */
EP_NOINLINE void ep_rq_run(const ep_layer *l, int32_t c, const int32_t *acc, int32_t n, int8_t *o)
{
    ep_rq r;
    int32_t j;
    ep_rq_init(&r, l, c);
    if (!r.small) {
        for (j = 0; j < n; j++) {
            o[j] = ep_rq_apply(&r, acc[j]);
        }
        return;
    }
    for (j = 0; j < n; j++) {
        int32_t x = ep_smmulr(acc[j] * r.pow2, r.multiplier);
        x = ((x + r.round + ((x >> 31) & r.sign)) >> r.exponent) + r.out_zp;
        x = x < r.act_min ? r.act_min : x;
        o[j] = (int8_t)(x > r.act_max ? r.act_max : x);
    }
}

/* copy an (h, w) plane into the interior of a frame of row pitch wp: a word per 4 bytes (unaligned LDR / STR) */
EP_INLINE void ep_copy_interior(const int8_t *in, int32_t h, int32_t w, int32_t wp, int8_t *interior)
{
    int32_t y, x;
    for (y = 0; y < h; y++, in += w, interior += wp) {
        for (x = 0; x + 4 <= w; x += 4) {
            const uint32_t v = ep_read32(in + x);
            memcpy(interior + x, &v, sizeof v);
        }
        for (; x < w; x++) {
            interior[x] = in[x];
        }
    }
}

/* the raw 3x3 sums of one zero-point-framed plane (xp, row pitch wp) into acc (out_h x out_w), weights
 * (w0, w2), w1 of row r in k02[r], k1[r] (ep_plane3x3's lanes), kept in registers across the plane */
EP_INLINE void ep_sums3x3(const int8_t *xp, int32_t wp, int32_t stride, int32_t oh, int32_t ow, const uint32_t *k02,
                          const uint32_t *k1, int32_t bias_raw, int32_t *acc)
{
    const uint32_t a02 = k02[0], b02 = k02[1], c02 = k02[2], a1 = k1[0], b1 = k1[1], c1 = k1[2];
    int32_t oy, ox;
    for (oy = 0; oy < oh; oy++, acc += ow) {
        const int8_t *x = xp + oy * stride * wp;
        ox = 0;
        if (stride == 1) {
            for (; ox + 2 <= ow; ox += 2, x += 2) {
                uint32_t v = ep_read32(x), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v);
                int32_t s0 = EP_SMLABB(d, a1, EP_SMLAD(e, a02, bias_raw)), s1 = EP_SMLATB(e, a1, EP_SMLAD(d, a02, bias_raw));
                v = ep_read32(x + wp), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v);
                s0 = EP_SMLABB(d, b1, EP_SMLAD(e, b02, s0)), s1 = EP_SMLATB(e, b1, EP_SMLAD(d, b02, s1));
                v = ep_read32(x + 2 * wp), e = EP_SXTB16(v), d = EP_SXTB16_ROR8(v);
                acc[ox] = EP_SMLABB(d, c1, EP_SMLAD(e, c02, s0));
                acc[ox + 1] = EP_SMLATB(e, c1, EP_SMLAD(d, c02, s1));
            }
        }
        for (; ox < ow; ox++, x += stride) { /* the 4th byte of each load is ignored (SMLABB) */
            uint32_t v = ep_read32(x);
            int32_t s = EP_SMLABB(EP_SXTB16_ROR8(v), a1, EP_SMLAD(EP_SXTB16(v), a02, bias_raw));
            v = ep_read32(x + wp);
            s = EP_SMLABB(EP_SXTB16_ROR8(v), b1, EP_SMLAD(EP_SXTB16(v), b02, s));
            v = ep_read32(x + 2 * wp);
            acc[ox] = EP_SMLABB(EP_SXTB16_ROR8(v), c1, EP_SMLAD(EP_SXTB16(v), c02, s));
        }
    }
}

/* Depthwise 3x3 (depth multiplier 1, equal strides) for small planes, where ep_depthwise_fast's per-channel
 * set-up and per-output requantization outweigh its arithmetic (a 3x3 plane has 9 outputs). The zero-point
 * frame of one padded plane is written once per layer (only its interior changes); per channel its interior
 * is copied in, the weight rows split by SXTB16 straight from three word loads, the raw sums of the whole
 * plane formed with the weights in registers (ep_sums3x3) into scratch, then requantized in one pass
 * (ep_rq_run). Scratch: EP_DW_SMALL_FAST_SCRATCH. */
void ep_depthwise_small_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t ih = l->in_h, iw = l->in_w, plane = ih * iw, oh = l->out_h, ow = l->out_w, channels = l->out_c;
    const int32_t wp = l->pad_left + iw + l->pad_right, hp = l->pad_top + ih + l->pad_bottom, zp = l->in_zp;
    const int32_t stride = l->sh;
    int8_t *xp = (int8_t *)scratch, *interior = xp + l->pad_top * wp + l->pad_left;
    int32_t *acc = (int32_t *)scratch + (hp * wp + 4 + 3) / 4;
    int32_t c;
    if (l->kh != 3 || l->kw != 3 || l->sh != l->sw || l->out_c != l->in_c) {
        ep_depthwise(l, in, out);
        return;
    }
    memset(xp, (int)(int8_t)zp, (size_t)(hp * wp + 4));
    for (c = 0; c < channels; c++, in += plane, out += oh * ow) {
        const int8_t *w = l->weight + 9 * c;
        uint32_t k02[3], k1[3];
        int32_t sum, bias_raw;
        if (iw == 3) {
            ep_copy_interior(in, ih, 3, wp, interior);
        } else {
            ep_copy_interior(in, ih, iw, wp, interior);
        }
        k02[0] = EP_SXTB16(ep_read32(w));           /* (w0, w2) */
        k02[1] = EP_SXTB16(ep_read32(w + 3));       /* (w3, w5) */
        k02[2] = EP_SXTB16_ROR8(ep_read32(w + 5));  /* (w6, w8): bytes 1 and 3 of w[5..8], inside the 9 */
        k1[0] = (uint32_t)(int32_t)w[1], k1[1] = (uint32_t)(int32_t)w[4], k1[2] = (uint32_t)(int32_t)w[7];
        sum = EP_SMLAD(k02[0], 0x00010001u, EP_SMLAD(k02[1], 0x00010001u, EP_SMLAD(k02[2], 0x00010001u, 0)));
        sum += (int32_t)w[1] + (int32_t)w[4] + (int32_t)w[7];
        bias_raw = l->bias[c] - zp * sum;
        if (ow == 3 && stride == 1) { /* the 3x3 planes: constant width and stride let the compiler unroll */
            ep_sums3x3(xp, wp, 1, oh, 3, k02, k1, bias_raw, acc);
        } else if (ow == 3 && stride == 2) {
            ep_sums3x3(xp, wp, 2, oh, 3, k02, k1, bias_raw, acc);
        } else if (ow == 6 && stride == 1) {
            ep_sums3x3(xp, wp, 1, oh, 6, k02, k1, bias_raw, acc);
        } else {
            ep_sums3x3(xp, wp, stride, oh, ow, k02, k1, bias_raw, acc);
        }
        ep_rq_run(l, c, acc, oh * ow, out);
    }
}

void ep_conv_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t oplane = l->out_h * l->out_w;
    int8_t *xp = (int8_t *)scratch;
    int32_t co;
    if (l->kh != 3 || l->kw != 3 || l->sh != l->sw || l->in_c > EP_CONV_FAST_MAX_IN) {
        ep_conv(l, in, out);
        return;
    }
    ep_pad_planes(l, in, l->in_c, xp);
    for (co = 0; co < l->out_c; co++) {
        uint32_t w02[EP_CONV_FAST_MAX_IN * 3], w1[EP_CONV_FAST_MAX_IN * 3];
        const int32_t sum = ep_split3x3(l->weight + co * l->in_c * 9, l->in_c, w02, w1);
        ep_rq q;
        ep_rq_init_outlined(&q, l, co);
        ep_plane3x3(l, xp, l->in_c, w02, w1, l->bias[co] - l->in_zp * sum, &q, out + co * oplane);
    }
}

/* ---------------------------------------------------------------- any convolution as an im2col GEMM */

/* The raw im2col column of output pixel p (K = in_c * kh * kw input values in the weight row's order ci,
 * ky, kx) into col, padded positions and the k4 - K slack values after it set to the zero point (centred,
 * they are 0: the reference's zero padding). A 3x3 window inside the input is copied unrolled; the ep_layer
 * fields are read once (a byte store may alias them, so the compiler would reload them per value). */
static void ep_im2col_raw(const ep_layer *l, const int8_t *in, int32_t p, int8_t *col)
{
    const int32_t in_c = l->in_c, in_h = l->in_h, in_w = l->in_w, kh = l->kh, kw = l->kw;
    const int32_t plane = in_h * in_w, k = in_c * kh * kw;
    const int32_t iy0 = (p / l->out_w) * l->sh - l->pad_top, ix0 = (p % l->out_w) * l->sw - l->pad_left;
    const int row_inside = ix0 >= 0 && ix0 + kw <= in_w;
    const int8_t zp = (int8_t)l->in_zp;
    int32_t ci, ky, kx;
    if (kh == 3 && kw == 3 && row_inside && iy0 >= 0 && iy0 + 3 <= in_h) {
        const int8_t *x = in + iy0 * in_w + ix0;
        for (ci = 0; ci < in_c; ci++, x += plane, col += 9) {
            col[0] = x[0], col[1] = x[1], col[2] = x[2];
            col[3] = x[in_w], col[4] = x[in_w + 1], col[5] = x[in_w + 2];
            col[6] = x[2 * in_w], col[7] = x[2 * in_w + 1], col[8] = x[2 * in_w + 2];
        }
    } else {
        for (ci = 0; ci < in_c; ci++, in += plane) {
            for (ky = 0; ky < kh; ky++, col += kw) {
                const int32_t iy = iy0 + ky;
                if (iy < 0 || iy >= in_h) {
                    for (kx = 0; kx < kw; kx++) {
                        col[kx] = zp;
                    }
                } else if (row_inside) {
                    for (kx = 0; kx < kw; kx++) {
                        col[kx] = in[iy * in_w + ix0 + kx];
                    }
                } else {
                    for (kx = 0; kx < kw; kx++) {
                        col[kx] = ix0 + kx >= 0 && ix0 + kx < in_w ? in[iy * in_w + ix0 + kx] : zp;
                    }
                }
            }
        }
    }
    for (kx = k; kx & 3; kx++) {
        *col++ = zp;
    }
}

/* a raw column of q4 quads, centred and packed into pixel slot j of a block as ep_pack4 lays it out:
 * per quad, (x0, x2) and (x1, x3) in int16 lanes (SXTB16, SXTB16 ROR 8, minus the zero point) */
EP_INLINE void ep_pack_column(const int8_t *col, int32_t q4, int32_t zp, uint32_t *b)
{
    const uint32_t zz = ((uint32_t)zp & 0xFFFFu) | (((uint32_t)zp & 0xFFFFu) << 16);
    int32_t q;
    for (q = 0; q < q4; q++, col += 4, b += 8) {
        const uint32_t v = ep_read32(col);
        b[0] = EP_SSUB16(EP_SXTB16(v), zz);
        b[1] = EP_SSUB16(EP_SXTB16_ROR8(v), zz);
    }
}

/* Any convolution (kh x kw, strides (sh, sw), any pads, any in_c; a strided pointwise too) as a GEMM:
 * for a block of 4 output pixels the centred im2col columns are packed once into int16 pairs (scratch,
 * EP_CONV_GEMM_FAST_SCRATCH: the block, then one raw column), then every output channel runs its weight
 * row over them with SMLAD (EP_GEMM_1x4), a partial last quad of weights read without passing the row's
 * end. Missing pixels of the last block repeat its first one; their outputs are dropped. */
void ep_conv_gemm_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t oplane = l->out_h * l->out_w, k = l->in_c * l->kh * l->kw, k4 = k & ~3, kt = k & 3;
    const int32_t q4 = (k + 3) / 4;
    uint32_t *buf = (uint32_t *)scratch, *tail = buf + (k4 / 4) * 8;
    int8_t *col = (int8_t *)(buf + q4 * 8);
    int32_t p0, co, j;
    for (p0 = 0; p0 < oplane; p0 += 4) {
        const int32_t n = oplane - p0 < 4 ? oplane - p0 : 4;
        for (j = 0; j < 4; j++) {
            ep_im2col_raw(l, in, j < n ? p0 + j : p0, col);
            ep_pack_column(col, q4, l->in_zp, buf + 2 * j);
        }
        for (co = 0; co < l->out_c; co++) {
            const int8_t *w = l->weight + co * k;
            int8_t *o = out + co * oplane + p0;
            int32_t a0 = l->bias[co], a1 = a0, a2 = a0, a3 = a0;
            ep_rq q;
            EP_GEMM_1x4(w, buf, k4, a0, a1, a2, a3);
            if (kt) { /* the last 1-3 weights as a word, the missing bytes 0 */
                const uint32_t wv = (uint32_t)(uint8_t)w[k4] | (kt > 1 ? (uint32_t)(uint8_t)w[k4 + 1] << 8 : 0u)
                                    | (kt > 2 ? (uint32_t)(uint8_t)w[k4 + 2] << 16 : 0u);
                const uint32_t we = EP_SXTB16(wv), wo = EP_SXTB16_ROR8(wv);
                a0 = EP_SMLAD(wo, tail[1], EP_SMLAD(we, tail[0], a0));
                a1 = EP_SMLAD(wo, tail[3], EP_SMLAD(we, tail[2], a1));
                a2 = EP_SMLAD(wo, tail[5], EP_SMLAD(we, tail[4], a2));
                a3 = EP_SMLAD(wo, tail[7], EP_SMLAD(we, tail[6], a3));
            }
            ep_rq_init(&q, l, co);
            o[0] = ep_rq_apply(&q, a0);
            if (n == 4) {
                o[1] = ep_rq_apply(&q, a1);
                o[2] = ep_rq_apply(&q, a2);
                o[3] = ep_rq_apply(&q, a3);
            } else {
                if (n > 1) o[1] = ep_rq_apply(&q, a1);
                if (n > 2) o[2] = ep_rq_apply(&q, a2);
            }
        }
    }
}

/* ---------------------------------------------------------------- fully connected */

/* the input values [n4, n) past the last whole quad, centred, times a weight row's */
EP_INLINE int32_t ep_fc_tail(const int8_t *in, const int8_t *w, int32_t n4, int32_t n, int32_t zp)
{
    int32_t i, acc = 0;
    for (i = n4; i < n; i++) {
        acc += ((int32_t)in[i] - zp) * (int32_t)w[i];
    }
    return acc;
}

/* fc as one GEMV: the centred input packed once into int16 pairs (scratch, EP_FC_FAST_SCRATCH), two weight
 * rows at a time over it with SMLAD (one LDRD of packed input feeds both); ep_output requantizes (either
 * rounding, one call per output) */
void ep_fc_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t n = l->in_c, n4 = n & ~3, zp = l->in_zp;
    const uint32_t zz = ((uint32_t)zp & 0xFFFFu) | (((uint32_t)zp & 0xFFFFu) << 16);
    uint32_t *x = (uint32_t *)scratch;
    int32_t i, o;
    for (i = 0; i < n4; i += 4) {
        const uint32_t v = ep_read32(in + i);
        x[i / 2] = EP_SSUB16(EP_SXTB16(v), zz);
        x[i / 2 + 1] = EP_SSUB16(EP_SXTB16_ROR8(v), zz);
    }
    for (o = 0; o < l->out_c; o += 2) {
        const int8_t *w0 = l->weight + o * n, *w1 = o + 1 < l->out_c ? w0 + n : w0; /* an odd last row twice */
        int32_t a0 = l->bias[o], a1 = 0;
        for (i = 0; i < n4; i += 4) {
            const uint32_t *xp = x + i / 2;
            const uint32_t v0 = ep_read32(w0 + i), v1 = ep_read32(w1 + i);
            uint32_t xe, xo;
            EP_LDRD(xp, 0, xe, xo);
            a0 = EP_SMLAD(EP_SXTB16_ROR8(v0), xo, EP_SMLAD(EP_SXTB16(v0), xe, a0));
            a1 = EP_SMLAD(EP_SXTB16_ROR8(v1), xo, EP_SMLAD(EP_SXTB16(v1), xe, a1));
        }
        out[o] = ep_output(l, o, a0 + ep_fc_tail(in, w0, n4, n, zp));
        if (o + 1 < l->out_c) {
            out[o + 1] = ep_output(l, o + 1, l->bias[o + 1] + a1 + ep_fc_tail(in, w1, n4, n, zp));
        }
    }
}

/* ---------------------------------------------------------------- add */

/* MultiplyByQuantizedMultiplierSmallerThanOneExp(x, m, shift) for |x| < 2^29, m in [0, 2^31), e = -shift in
 * [0, 31], in 32 bits: SRDHM(x, m) = (x m + 2^30) >> 31 = SMMULR(2x, m) (proofs 1 and 2 at ep_rq_apply; 2|x| <
 * 2^30 fits), then RoundingDivideByPOT as floor((y + 2^(e-1) - [y < 0]) / 2^e) (proof 2; |y| <= |x| < 2^29, so
 * the sum stays in int32). */
EP_INLINE int32_t ep_add_rescale_fast(int32_t x, int32_t m, int32_t e)
{
    const int32_t y = ep_smmulr(x * 2, m);
    return e ? (y + (int32_t)((uint32_t)1 << (e - 1)) + (y >> 31)) >> e : y;
}

/* TFLite's int8 ADD (as ep_add: inputs times 2^20, each rescaled, summed, rescaled) without 64-bit
 * arithmetic: |q - zp| <= 255 keeps |wide| < 2^28; each rescaling's real multiplier is below 1 (the generator
 * checks M0 < 2^31 and shift <= 0), so |sum| < 2^29 and ep_add_rescale_fast applies to all three */
void ep_add_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t n = l->out_c * l->out_h * l->out_w;
    const int32_t ma = l->multiplier[0], mb = l->multiplier[1], mo = l->multiplier[2];
    const int32_t ea = -l->shift[0], eb = -l->shift[1], eo = -l->shift[2];
    const int32_t lo = l->act_min, hi = l->act_max, zo = l->out_zp;
    const int32_t za = l->in_zp * (1 << 20), zb = l->in2_zp * (1 << 20);
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t wa = (int32_t)a[i] * (1 << 20) - za, wb = (int32_t)b[i] * (1 << 20) - zb;
        const int32_t sum = ep_add_rescale_fast(wa, ma, ea) + ep_add_rescale_fast(wb, mb, eb);
        int32_t v = ep_add_rescale_fast(sum, mo, eo) + zo;
        v = v < lo ? lo : v;
        out[i] = (int8_t)(v > hi ? hi : v);
    }
}

/* ---------------------------------------------------------------- depthwise of any window up to 8x8 */

/* one channel's kh x kw weights as SMLAD lanes, each row zero-padded to nq quads: per row and quad the words
 * (w0, w2), (w1, w3); returns sum(w) for the zero point fold */
static int32_t ep_split_rows(const int8_t *w, int32_t kh, int32_t kw, int32_t nq, uint32_t *k)
{
    int32_t r, q, i, sum = 0;
    if (kw == 5) { /* a word and a byte a row: SXTB16 splits the word, SMLAD with (1, 1) sums it */
        for (r = 0; r < kh; r++, w += 5, k += 4) {
            const uint32_t v = ep_read32(w);
            k[0] = EP_SXTB16(v), k[1] = EP_SXTB16_ROR8(v), k[2] = ep_pair(w[4], 0), k[3] = 0;
            sum = EP_SMLAD(k[1], 0x00010001u, EP_SMLAD(k[0], 0x00010001u, sum)) + w[4];
        }
        return sum;
    }
    for (r = 0; r < kh; r++, w += kw) {
        for (q = 0; q < nq; q++, k += 2) {
            int8_t v[4];
            for (i = 0; i < 4; i++) {
                v[i] = 4 * q + i < kw ? w[4 * q + i] : 0;
                sum += v[i];
            }
            k[0] = ep_pair(v[0], v[2]);
            k[1] = ep_pair(v[1], v[3]);
        }
    }
    return sum;
}

/* The raw sums of one zero-point-framed plane (xp, row pitch wp) for kh rows of nq weight quads (k, ep_split_rows)
 * into acc (oh x ow). Each quad is one word load split by SXTB16 / SXTB16 ROR 8 into (x0, x2), (x1, x3), two SMLAD;
 * the padded weights are 0, so the up to 3 values read past a window's row add nothing. At stride 1 two outputs
 * share the loads: the ROR 8 half of a quad, (x1, x3), is the next output's first pair, and one more load at x + 2
 * gives its (x2, x4). Reads end at most 4 bytes past the frame (EP_DW_KXK_FAST_SCRATCH's slack). */
EP_INLINE void ep_sums_kxk(const int8_t *xp, int32_t wp, int32_t sh, int32_t sw, int32_t oh, int32_t ow, int32_t kh,
                           int32_t nq, const uint32_t *k, int32_t bias_raw, int32_t *acc)
{
    int32_t oy, ox, r, q;
    for (oy = 0; oy < oh; oy++, acc += ow) {
        const int8_t *row = xp + oy * sh * wp;
        ox = 0;
        for (; sw == 1 && ox + 2 <= ow; ox += 2) {
            const int8_t *x = row + ox;
            const uint32_t *kr = k;
            int32_t a0 = bias_raw, a1 = bias_raw;
            for (r = 0; r < kh; r++, x += wp) {
                for (q = 0; q < nq; q++, kr += 2) {
                    const uint32_t v = ep_read32(x + 4 * q), d = EP_SXTB16_ROR8(v);
                    const uint32_t f = EP_SXTB16(ep_read32(x + 4 * q + 2));
                    a0 = EP_SMLAD(d, kr[1], EP_SMLAD(EP_SXTB16(v), kr[0], a0));
                    a1 = EP_SMLAD(f, kr[1], EP_SMLAD(d, kr[0], a1));
                }
            }
            acc[ox] = a0;
            acc[ox + 1] = a1;
        }
        for (; ox < ow; ox++) {
            const int8_t *x = row + ox * sw;
            const uint32_t *kr = k;
            int32_t a = bias_raw;
            for (r = 0; r < kh; r++, x += wp) {
                for (q = 0; q < nq; q++, kr += 2) {
                    const uint32_t v = ep_read32(x + 4 * q);
                    a = EP_SMLAD(EP_SXTB16_ROR8(v), kr[1], EP_SMLAD(EP_SXTB16(v), kr[0], a));
                }
            }
            acc[ox] = a;
        }
    }
}

/* ep_sums_kxk for 5-wide windows (kw = 5: per row the words (w0, w2), (w1, w3), (w4, 0), 0): the fifth column
 * by SMLATB from the top lane of the pair the second load gives, no second quad (15 instructions a row for two
 * outputs at stride 1 instead of 22). Reads stay inside the windows. */
EP_INLINE void ep_sums_5wide(const int8_t *xp, int32_t wp, int32_t sh, int32_t sw, int32_t oh, int32_t ow, int32_t kh,
                             const uint32_t *k, int32_t bias_raw, int32_t *acc)
{
    int32_t oy, ox, r;
    for (oy = 0; oy < oh; oy++, acc += ow) {
        const int8_t *row = xp + oy * sh * wp;
        ox = 0;
        for (; sw == 1 && ox + 2 <= ow; ox += 2) {
            const int8_t *x = row + ox;
            const uint32_t *kr = k;
            int32_t a0 = bias_raw, a1 = bias_raw;
            for (r = 0; r < kh; r++, x += wp, kr += 4) {
                const uint32_t v = ep_read32(x), u = ep_read32(x + 2);
                const uint32_t d = EP_SXTB16_ROR8(v), f = EP_SXTB16(u); /* (x1, x3), (x2, x4) */
                a0 = EP_SMLATB(f, kr[2], EP_SMLAD(d, kr[1], EP_SMLAD(EP_SXTB16(v), kr[0], a0)));
                a1 = EP_SMLATB(EP_SXTB16_ROR8(u), kr[2], EP_SMLAD(f, kr[1], EP_SMLAD(d, kr[0], a1)));
            }
            acc[ox] = a0;
            acc[ox + 1] = a1;
        }
        for (; ox < ow; ox++) {
            const int8_t *x = row + ox * sw;
            const uint32_t *kr = k;
            int32_t a = bias_raw;
            for (r = 0; r < kh; r++, x += wp, kr += 4) {
                const uint32_t v = ep_read32(x);
                a = EP_SMLAD(EP_SXTB16_ROR8(v), kr[1], EP_SMLAD(EP_SXTB16(v), kr[0], a));
                a = EP_SMLABB((uint32_t)(int32_t)x[4], kr[2], a);
            }
            acc[ox] = a;
        }
    }
}

/* Depthwise (depth multiplier 1) of any window up to 8x8 and any strides and pads: MobileNetV3's 5x5 layers
 * (3x3 ones keep ep_depthwise_fast / ep_depthwise_small_fast). As ep_depthwise_small_fast: the zero-point frame
 * written once per layer, per channel its interior copied in, the raw sums of the plane formed (ep_sums_kxk; the
 * zero point folded into the bias), then requantized in one pass (ep_rq_run). Scratch: EP_DW_KXK_FAST_SCRATCH. */
void ep_depthwise_kxk_fast(const ep_layer *l, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t ih = l->in_h, iw = l->in_w, plane = ih * iw, oh = l->out_h, ow = l->out_w, kh = l->kh, kw = l->kw;
    const int32_t wp = l->pad_left + iw + l->pad_right, hp = l->pad_top + ih + l->pad_bottom, zp = l->in_zp;
    const int32_t nq = (kw + 3) / 4;
    int8_t *xp = (int8_t *)scratch, *interior = xp + l->pad_top * wp + l->pad_left;
    int32_t *acc = (int32_t *)scratch + (hp * wp + 8 + 3) / 4;
    int32_t c;
    if (kh > 8 || kw > 8 || l->out_c != l->in_c) {
        ep_depthwise(l, in, out);
        return;
    }
    memset(xp, (int)(int8_t)zp, (size_t)(hp * wp + 8));
    for (c = 0; c < l->out_c; c++, in += plane, out += oh * ow) {
        uint32_t k[8 * 2 * 2];
        const int32_t bias_raw = l->bias[c] - zp * ep_split_rows(l->weight + c * kh * kw, kh, kw, nq, k);
        ep_copy_interior(in, ih, iw, wp, interior);
        if (kh == 5 && kw == 5 && l->sh == 1 && l->sw == 1) { /* MobileNetV3's: constant loops unroll */
            ep_sums_5wide(xp, wp, 1, 1, oh, ow, 5, k, bias_raw, acc);
        } else if (kh == 5 && kw == 5 && l->sh == 2 && l->sw == 2) {
            ep_sums_5wide(xp, wp, 2, 2, oh, ow, 5, k, bias_raw, acc);
        } else if (kw == 5) {
            ep_sums_5wide(xp, wp, l->sh, l->sw, oh, ow, kh, k, bias_raw, acc);
        } else if (nq == 1) {
            ep_sums_kxk(xp, wp, l->sh, l->sw, oh, ow, kh, 1, k, bias_raw, acc);
        } else {
            ep_sums_kxk(xp, wp, l->sh, l->sw, oh, ow, kh, 2, k, bias_raw, acc);
        }
        ep_rq_run(l, c, acc, oh * ow, out);
    }
}

/* ---------------------------------------------------------------- mul (the SE gate) */

/* ep_rq_apply's short path for a value already scaled by pow2 (acc * 2^(max(shift, 0) + 1)) */
EP_INLINE int8_t ep_rq_scaled(const ep_rq *r, int32_t scaled)
{
    int32_t x = ep_smmulr(scaled, r->multiplier);
    x = ((x + r->round + ((x >> 31) & r->sign)) >> r->exponent) + r->out_zp;
    x = x < r->act_min ? r->act_min : x;
    return (int8_t)(x > r->act_max ? r->act_max : x);
}

/* A mul's requantization (one multiplier and shift). The short path is exact when every product, shifted left,
 * stays below 2^29 (proof 2 at ep_rq_apply): |(a - in_zp)(b - in2_zp)| <= max|a - in_zp| * max|b - in2_zp|, with
 * max|q - zp| = zp + 128 (zp >= 0) or 127 - zp; the product is below 2^16 and the shift at most 15 (the generator's
 * MUL_MAX_LEFT_SHIFT), so the test fits uint32. Returns 0 when the short path does not apply. */
EP_INLINE int ep_mul_rq(const ep_layer *l, ep_rq *q)
{
    const uint32_t ma = (uint32_t)(l->in_zp >= 0 ? l->in_zp + 128 : 127 - l->in_zp);
    const uint32_t mb = (uint32_t)(l->in2_zp >= 0 ? l->in2_zp + 128 : 127 - l->in2_zp);
    ep_rq_init(q, l, 0);
    return ((ma * mb) << (q->shift > 0 ? q->shift : 0)) < ((uint32_t)1 << 29);
}

/* TFLite's int8 MUL of two tensors of one shape in 32-bit arithmetic (SMMULR), bit-exact with ep_mul */
void ep_mul_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t n = l->out_c * l->out_h * l->out_w, za = l->in_zp, zb = l->in2_zp;
    ep_rq q;
    int32_t i, pow2;
    if (!ep_mul_rq(l, &q)) {
        ep_mul(l, a, b, out);
        return;
    }
    pow2 = q.pow2;
    for (i = 0; i < n; i++) {
        out[i] = ep_rq_scaled(&q, ((int32_t)a[i] - za) * pow2 * ((int32_t)b[i] - zb));
    }
}

/* the SE gate: a (C, 1, 1) gate times a (C, H, W) map, bit-exact with ep_mul_channel. Per channel the centred gate
 * is scaled by pow2 once; per value one multiply, SMMULR and the rounding shift (no 64-bit ep_output). */
void ep_mul_channel_fast(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t plane = l->out_h * l->out_w, gate_is_a = l->in_h * l->in_w == 1;
    const int8_t *gate = gate_is_a ? a : b, *map = gate_is_a ? b : a;
    const int32_t zg = gate_is_a ? l->in_zp : l->in2_zp, zm = gate_is_a ? l->in2_zp : l->in_zp;
    ep_rq q;
    int32_t c, p;
    if (!ep_mul_rq(l, &q)) {
        ep_mul_channel(l, a, b, out);
        return;
    }
    for (c = 0; c < l->out_c; c++, map += plane, out += plane) {
        const int32_t g = ((int32_t)gate[c] - zg) * q.pow2;
        for (p = 0; p < plane; p++) {
            out[p] = ep_rq_scaled(&q, g * ((int32_t)map[p] - zm));
        }
    }
}
