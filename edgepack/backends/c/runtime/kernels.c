/* edgepack portable int8 kernels: the C reference of the arithmetic contract (see kernels.h).
 *
 * Written for clarity, not speed: they mirror edgepack/plan/reference.py term by term and are
 * the reference the fast kernels (kernels_fast.c) are tested against.
 *
 * Why no accumulator can overflow int32
 * -------------------------------------
 * Inputs are int8 and zero points are in [-128, 127], so |x - in_zp| <= 255; weights are int8,
 * |w| <= 128. One product is at most 255 * 128 = 32640 < 2^15 in magnitude. A layer's output
 * channel c sums K products (K = in_c * kh * kw for conv, kh * kw for depthwise, in_c for pointwise
 * and fc) and adds bias[c]; the accumulation order here is bias first, then products, so every
 * partial sum is bounded by
 *     B(c) = |bias[c]| + max|x - in_zp| * sum_k |w[c][k]|.
 * edgepack's code generator (edgepack/backends/c/codegen.py, check_accumulators) evaluates B(c)
 * exactly for every channel of every layer with the actual weights, biases and input zero
 * point, and refuses to generate code unless B(c) <= 2^31 - 1. So no partial sum, in any
 * order, leaves int32. (Without bias, K <= 65793 products always fit: 65793 * 32640 < 2^31;
 * MobileNet's largest K is 1024.) The fast kernels sum the same terms in other orders and
 * with SMLAD pairs, which is covered by the same bound; where they fold the zero point into
 * the bias (bias - in_zp * sum w) the folded constant is bounded by B(c) as well.
 * Global average pooling sums count terms of at most 255: count < 2^23 is checked by the
 * generator too. Requantization works in int64 where a product of two int32 is formed.
 *
 * Implementation-defined behaviour relied on: >> of a negative signed integer is an arithmetic
 * shift (gcc, clang, armcc, IAR all do this); the typedef below refuses to compile otherwise.
 */
#include "kernels.h"

typedef char ep_requires_arithmetic_right_shift[((-8) >> 1) == -4 ? 1 : -1];

#define EP_INT32_MIN (-2147483647 - 1)
#define EP_INT32_MAX 2147483647

int32_t ep_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == EP_INT32_MIN && b == EP_INT32_MIN) {
        return EP_INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C99 integer division truncates toward zero, as gemmlowp's does */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t ep_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t remainder = (int64_t)x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

int32_t ep_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* |acc| <= 2^31 and left <= 31 (checked by the generator): the product fits int64 */
    int64_t shifted = (int64_t)acc * ((int64_t)1 << left);
    if (shifted > EP_INT32_MAX) {
        shifted = EP_INT32_MAX;
    } else if (shifted < EP_INT32_MIN) {
        shifted = EP_INT32_MIN;
    }
    return ep_rounding_divide_by_pot(ep_srdhm((int32_t)shifted, multiplier), right);
}

int32_t ep_requantize_single(int32_t acc, int32_t multiplier, int32_t shift)
{
    /* shift in [-31, 30]: total in [1, 62]; |acc * M0| < 2^62, so the sum fits int64 */
    const int32_t total = 31 - shift;
    return (int32_t)(((int64_t)acc * multiplier + ((int64_t)1 << (total - 1))) >> total);
}

int8_t ep_output(const ep_layer *l, int32_t channel, int32_t acc)
{
    int64_t v = (int64_t)((l->flags & EP_FLAG_SINGLE_ROUNDING)
                              ? ep_requantize_single(acc, l->multiplier[channel], l->shift[channel])
                              : ep_requantize(acc, l->multiplier[channel], l->shift[channel])) + l->out_zp;
    if (v < l->act_min) {
        v = l->act_min;
    }
    if (v > l->act_max) {
        v = l->act_max;
    }
    return (int8_t)v;
}

void ep_conv(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t kh = l->kh, kw = l->kw, plane = l->in_h * l->in_w;
    int32_t co, oy, ox, ci, ky, kx;
    for (co = 0; co < l->out_c; co++) {
        const int8_t *wc = l->weight + co * l->in_c * kh * kw;
        for (oy = 0; oy < l->out_h; oy++) {
            for (ox = 0; ox < l->out_w; ox++) {
                int32_t acc = l->bias[co];
                for (ci = 0; ci < l->in_c; ci++) {
                    for (ky = 0; ky < kh; ky++) {
                        const int32_t iy = oy * l->sh - l->pad_top + ky;
                        if (iy < 0 || iy >= l->in_h) {
                            continue; /* zero padding of the centred input */
                        }
                        for (kx = 0; kx < kw; kx++) {
                            const int32_t ix = ox * l->sw - l->pad_left + kx;
                            if (ix < 0 || ix >= l->in_w) {
                                continue;
                            }
                            acc += ((int32_t)in[ci * plane + iy * l->in_w + ix] - l->in_zp)
                                   * (int32_t)wc[(ci * kh + ky) * kw + kx];
                        }
                    }
                }
                out[(co * l->out_h + oy) * l->out_w + ox] = ep_output(l, co, acc);
            }
        }
    }
}

void ep_depthwise(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t kh = l->kh, kw = l->kw, plane = l->in_h * l->in_w, multiplier = l->out_c / l->in_c;
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < l->out_c; c++) { /* depth multiplier m: output c reads input c / m (TFLite's order) */
        const int8_t *wc = l->weight + c * kh * kw;
        const int8_t *xc = in + (c / multiplier) * plane;
        for (oy = 0; oy < l->out_h; oy++) {
            for (ox = 0; ox < l->out_w; ox++) {
                int32_t acc = l->bias[c];
                for (ky = 0; ky < kh; ky++) {
                    const int32_t iy = oy * l->sh - l->pad_top + ky;
                    if (iy < 0 || iy >= l->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        const int32_t ix = ox * l->sw - l->pad_left + kx;
                        if (ix < 0 || ix >= l->in_w) {
                            continue;
                        }
                        acc += ((int32_t)xc[iy * l->in_w + ix] - l->in_zp) * (int32_t)wc[ky * kw + kx];
                    }
                }
                out[(c * l->out_h + oy) * l->out_w + ox] = ep_output(l, c, acc);
            }
        }
    }
}

void ep_pointwise(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t plane = l->in_h * l->in_w;
    int32_t co, oy, ox, ci;
    for (co = 0; co < l->out_c; co++) {
        const int8_t *wc = l->weight + co * l->in_c;
        for (oy = 0; oy < l->out_h; oy++) {
            for (ox = 0; ox < l->out_w; ox++) {
                const int8_t *x = in + oy * l->sh * l->in_w + ox * l->sw;
                int32_t acc = l->bias[co];
                for (ci = 0; ci < l->in_c; ci++) {
                    acc += ((int32_t)x[ci * plane] - l->in_zp) * (int32_t)wc[ci];
                }
                out[(co * l->out_h + oy) * l->out_w + ox] = ep_output(l, co, acc);
            }
        }
    }
}

void ep_avgpool(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t count = l->in_h * l->in_w;
    int32_t c, i;
    for (c = 0; c < l->in_c; c++) {
        int32_t total = 0, mean, v;
        for (i = 0; i < count; i++) {
            total += (int32_t)in[c * count + i] - l->in_zp;
        }
        /* round half away from zero */
        mean = total >= 0 ? (total + count / 2) / count : -((-total + count / 2) / count);
        v = mean + l->out_zp;
        out[c] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

void ep_mean_pool(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t count = l->in_h * l->in_w;
    int32_t c, i;
    for (c = 0; c < l->in_c; c++) {
        int32_t total = 0;
        for (i = 0; i < count; i++) {
            total += (int32_t)in[c * count + i] - l->in_zp;
        }
        out[c] = ep_output(l, c, total);
    }
}

void ep_fc(const ep_layer *l, const int8_t *in, int8_t *out)
{
    int32_t o, i;
    for (o = 0; o < l->out_c; o++) {
        const int8_t *wo = l->weight + o * l->in_c;
        int32_t acc = l->bias[o];
        for (i = 0; i < l->in_c; i++) {
            acc += ((int32_t)in[i] - l->in_zp) * (int32_t)wo[i];
        }
        out[o] = ep_output(l, o, acc);
    }
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp for |x| < 2^29 (shift <= 0): SRDHM cannot
 * saturate there, and its division by 2^31 truncating toward zero is done with shifts */
static int32_t ep_add_rescale(int32_t x, int32_t multiplier, int32_t shift)
{
    const int64_t ab = (int64_t)x * (int64_t)multiplier;
    const int64_t v = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
    const int32_t high = (int32_t)(v >= 0 ? v >> 31 : -((-v) >> 31));
    return ep_rounding_divide_by_pot(high, -shift);
}

void ep_add(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    /* |q - zp| <= 255, times 2^20 < 2^28; each rescaled input is at most half of that (its real
     * multiplier is <= 1/2), so the sum stays below 2^28: int32 throughout */
    const int32_t n = l->out_c * l->out_h * l->out_w;
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t wide_a = ((int32_t)a[i] - l->in_zp) * (1 << 20);
        const int32_t wide_b = ((int32_t)b[i] - l->in2_zp) * (1 << 20);
        const int32_t sum = ep_add_rescale(wide_a, l->multiplier[0], l->shift[0])
                            + ep_add_rescale(wide_b, l->multiplier[1], l->shift[1]);
        int32_t v = ep_add_rescale(sum, l->multiplier[2], l->shift[2]) + l->out_zp;
        v = v < l->act_min ? l->act_min : v;
        out[i] = (int8_t)(v > l->act_max ? l->act_max : v);
    }
}

void ep_concat(const ep_layer *l, int32_t count, const int8_t *const in[], const int32_t channels[], int8_t *out)
{
    const int32_t plane = l->in_h * l->in_w;
    int32_t k, n;
    for (k = 0; k < count; k++) {
        const int32_t size = channels[k] * plane;
        for (n = 0; n < size; n++) {
            out[n] = in[k][n];
        }
        out += size;
    }
}

void ep_mul(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    /* |(a - in_zp) * (b - in2_zp)| <= 255 * 255 and the shift is <= 15 (checked by the generator): the
     * product, left-shifted, stays in int32 as TFLite's x * (1 << left_shift) does */
    const int32_t n = l->out_c * l->out_h * l->out_w;
    int32_t i;
    for (i = 0; i < n; i++) {
        out[i] = ep_output(l, 0, ((int32_t)a[i] - l->in_zp) * ((int32_t)b[i] - l->in2_zp));
    }
}

void ep_mul_channel(const ep_layer *l, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t plane = l->out_h * l->out_w;
    const int32_t gate_is_a = l->in_h * l->in_w == 1;
    int32_t c, p;
    for (c = 0; c < l->out_c; c++) {
        for (p = 0; p < plane; p++) {
            const int32_t i = c * plane + p;
            const int32_t va = (int32_t)a[gate_is_a ? c : i] - l->in_zp;
            const int32_t vb = (int32_t)b[gate_is_a ? i : c] - l->in2_zp;
            out[i] = ep_output(l, 0, va * vb);
        }
    }
}

void ep_maxpool(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t kh = l->kh, kw = l->kw, plane = l->in_h * l->in_w;
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < l->out_c; c++) {
        const int8_t *xc = in + c * plane;
        for (oy = 0; oy < l->out_h; oy++) {
            for (ox = 0; ox < l->out_w; ox++) {
                /* the generator proved every window holds an input value: the max is one of them */
                int32_t best = -128, v;
                for (ky = 0; ky < kh; ky++) {
                    const int32_t iy = oy * l->sh - l->pad_top + ky;
                    if (iy < 0 || iy >= l->in_h) {
                        continue; /* padding takes no part in the max */
                    }
                    for (kx = 0; kx < kw; kx++) {
                        const int32_t ix = ox * l->sw - l->pad_left + kx;
                        if (ix >= 0 && ix < l->in_w && xc[iy * l->in_w + ix] > best) {
                            best = xc[iy * l->in_w + ix];
                        }
                    }
                }
                v = best < l->act_min ? l->act_min : best;
                out[(c * l->out_h + oy) * l->out_w + ox] = (int8_t)(v > l->act_max ? l->act_max : v);
            }
        }
    }
}

void ep_resize_nearest(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t plane = l->in_h * l->in_w;
    int32_t c, y, x;
    for (c = 0; c < l->out_c; c++) {
        for (y = 0; y < l->out_h; y++) {
            const int8_t *row = in + c * plane + l->bias[y] * l->in_w;
            for (x = 0; x < l->out_w; x++) {
                *out++ = row[l->multiplier[x]];
            }
        }
    }
}

void ep_lut(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t n = l->in_c * l->in_h * l->in_w;
    int32_t i;
    for (i = 0; i < n; i++) {
        out[i] = l->weight[(int32_t)in[i] + 128];
    }
}

void ep_pad(const ep_layer *l, int32_t value, const int8_t *in, int8_t *out)
{
    int32_t c, y, x;
    for (c = 0; c < l->out_c; c++) {
        const int8_t *xc = in + c * l->in_h * l->in_w;
        for (y = 0; y < l->out_h; y++) {
            const int32_t iy = y - l->pad_top;
            for (x = 0; x < l->out_w; x++) {
                const int32_t ix = x - l->pad_left;
                const int inside = iy >= 0 && iy < l->in_h && ix >= 0 && ix < l->in_w;
                *out++ = inside ? xc[iy * l->in_w + ix] : (int8_t)value;
            }
        }
    }
}

/* ---- TFLite's int8 SOFTMAX (reference_ops::Softmax<int8_t, int8_t>): gemmlowp's fixed point, no float */

static int32_t ep_saturating_shift_left(int32_t x, int32_t n)
{
    const int64_t v = (int64_t)x * ((int64_t)1 << n);
    return (int32_t)(v > EP_INT32_MAX ? EP_INT32_MAX : v < EP_INT32_MIN ? EP_INT32_MIN : v);
}

/* exp_on_interval_between_negative_one_quarter_and_0_excl: Q0.31 in and out, Taylor around -1/8 */
static int32_t ep_exp_quarter(int32_t a)
{
    const int32_t c = 1895147668; /* exp(-1/8) */
    const int32_t x = a + (1 << 28);
    const int32_t x2 = ep_srdhm(x, x), x3 = ep_srdhm(x2, x);
    const int32_t x4_over_4 = ep_rounding_divide_by_pot(ep_srdhm(x2, x2), 2);
    const int32_t poly = ep_rounding_divide_by_pot(ep_srdhm(x4_over_4 + x3, 715827883) + x2, 1);
    return c + ep_srdhm(c, x + poly);
}

/* exp_on_negative_values: a Q5.26 value <= 0 in, Q0.31 out (the barrel shifter of exp(-2^k)) */
static int32_t ep_exp_on_negative(int32_t a)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    const int32_t a_mod = (a & (quarter - 1)) - quarter;
    const int32_t remainder = a_mod - a;
    int32_t result = ep_exp_quarter(ep_saturating_shift_left(a_mod, 5));
    int32_t k;
    for (k = 0; k < 7; k++) {
        if (remainder & ((int32_t)1 << (24 + k))) {
            result = ep_srdhm(result, barrel[k]);
        }
    }
    return a == 0 ? EP_INT32_MAX : result;
}

/* one_over_one_plus_x_for_x_in_0_1: Q0.31 in and out, three Newton-Raphson steps in Q2.29 */
static int32_t ep_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + EP_INT32_MAX;
    const int32_t half = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum */
    int32_t x = 1515870810 + ep_srdhm(half, -1010580540);
    int32_t k;
    for (k = 0; k < 3; k++) {
        const int32_t one_minus = (1 << 29) - ep_srdhm(half, x);
        x = x + ep_saturating_shift_left(ep_srdhm(x, one_minus), 2);
    }
    return ep_saturating_shift_left(x, 1);
}

static int32_t ep_softmax_exp(const ep_layer *l, int32_t diff)
{
    /* diff >= diff_min: diff * 2^left_shift stays in int32 (CalculateInputRadius) */
    return ep_exp_on_negative(ep_srdhm((int32_t)((int64_t)diff * ((int64_t)1 << l->bias[1])), l->bias[0]));
}

void ep_softmax(const ep_layer *l, const int8_t *in, int8_t *out)
{
    const int32_t n = l->in_c * l->in_h * l->in_w, diff_min = l->bias[2];
    int32_t i, max = -128, sum = 0, headroom = 0, scale, exponent;
    for (i = 0; i < n; i++) {
        max = in[i] > max ? in[i] : max;
    }
    for (i = 0; i < n; i++) { /* Q12.19: n <= 4096 exps of at most 2^19 each */
        if (in[i] - max >= diff_min) {
            sum += ep_rounding_divide_by_pot(ep_softmax_exp(l, in[i] - max), 12);
        }
    }
    while (!(((uint32_t)sum << headroom) & 0x80000000u)) { /* sum >= 2^19: the max's exp is one */
        headroom++;
    }
    scale = ep_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - 0x80000000u)); /* GetReciprocal */
    exponent = 12 - headroom + 31 - 8;
    for (i = 0; i < n; i++) {
        int32_t v = -128;
        if (in[i] - max >= diff_min) {
            v = ep_rounding_divide_by_pot(ep_srdhm(scale, ep_softmax_exp(l, in[i] - max)), exponent) - 128;
            v = v > 127 ? 127 : v < -128 ? -128 : v;
        }
        out[i] = (int8_t)v;
    }
}
