/* edgepack test harness: streams int8 images through edgepack_invoke().
 *
 *   edgepack_run [input.bin [output.bin]]     (defaults: input.bin, output.bin in the cwd)
 *
 * input.bin holds N images of EDGEPACK_INPUT_SIZE int8 values (NCHW) back to back, output.bin
 * receives N x EDGEPACK_OUTPUT_SIZE int8 values. On Cortex-M the files are host files reached
 * by semihosting (newlib's rdimon: fopen/fread/fwrite), main's return value becomes QEMU's exit
 * code, and with EDGEPACK_CORTEX_M every inference and every layer is timed with SysTick
 * (deterministic under `qemu-system-arm -icount shift=0`) and the stack high-water mark of
 * edgepack_invoke is measured by painting. Lines on stdout, for the edgepack runner:
 *   EDGEPACK image <i> ticks <n>      EDGEPACK layer <l> ticks <n> (first image)
 *   EDGEPACK stack <bytes> (the deepest point below main's stack pointer that any edgepack_invoke
 *                           reached; a SysTick exception frame only if one happened to land there:
 *                           compile adds the worst case, see backends/c/lower.py stack_margin)
 *   EDGEPACK images <N>
 * Exit codes: 0 ok, 2 cannot open input, 3 truncated input, 4 cannot write output,
 * 5 edgepack_invoke failed.
 */
#include <stdint.h>
#include <stdio.h>

#include "model.h"

static int8_t input_buf[EDGEPACK_INPUT_SIZE];
static int8_t output_buf[EDGEPACK_OUTPUT_SIZE];

#ifdef EDGEPACK_CORTEX_M
extern volatile uint32_t edgepack_systick_wraps; /* startup_cortexm.c */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define EP_STACK_PAINT 0x5AA5C33Cu
#define EP_STACK_WORDS (64u * 1024u / 4u) /* measure up to 64 KB of stack below main's frame */
#ifndef EDGEPACK_SYSTICK_RELOAD /* SysTick wraps (interrupts) every 2^24 ticks; a test build interrupts far more often */
#define EDGEPACK_SYSTICK_RELOAD 0xFFFFFFu
#endif

static uint64_t ticks(void)
{
    uint32_t wraps, value;
    do { /* a wrap between the two reads is seen as a change of the wrap count */
        wraps = edgepack_systick_wraps;
        value = SYST_CVR;
    } while (wraps != edgepack_systick_wraps);
    return (uint64_t)wraps * ((uint64_t)EDGEPACK_SYSTICK_RELOAD + 1u) + (EDGEPACK_SYSTICK_RELOAD - value);
}

static uint64_t layer_ticks[EDGEPACK_LAYERS + 1];
static int profile_on;
static uint64_t layer_start;

void edgepack_layer_done(int layer)
{
    if (profile_on && layer >= 0 && layer < EDGEPACK_LAYERS) {
        uint64_t now = ticks();
        layer_ticks[layer] = now - layer_start;
        layer_start = now;
    }
}

/* bytes between main's stack pointer and the lowest painted word overwritten (the unpainted words just
 * below sp count as used: an upper bound when the call stayed inside them) */
static uint32_t stack_used(volatile uint32_t *bottom, uint32_t sp)
{
    uint32_t i = 0;
    while (i < EP_STACK_WORDS && bottom[i] == EP_STACK_PAINT) {
        i++;
    }
    return sp - (uint32_t)(uintptr_t)(bottom + i);
}
#else
void edgepack_layer_done(int layer)
{
    (void)layer;
}
#endif

int main(int argc, char **argv)
{
    const char *in_name = argc > 1 ? argv[1] : "input.bin";
    const char *out_name = argc > 2 ? argv[2] : "output.bin";
    FILE *fin, *fout;
    unsigned long n = 0;
    int rc = 0;
#ifdef EDGEPACK_CORTEX_M
    volatile uint32_t *bottom;
    uint32_t sp, stack_max = 0, i;
    __asm volatile("mov %0, sp" : "=r"(sp));
    /* the stack below this frame that is painted before each inference (64 bytes of margin) */
    bottom = (volatile uint32_t *)((sp - 64u - EP_STACK_WORDS * 4u) & ~7u);
    SYST_RVR = EDGEPACK_SYSTICK_RELOAD;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
#endif
    fin = fopen(in_name, "rb");
    if (!fin) {
        printf("EDGEPACK error cannot open %s\n", in_name);
        return 2;
    }
    fout = fopen(out_name, "wb");
    if (!fout) {
        printf("EDGEPACK error cannot create %s\n", out_name);
        fclose(fin);
        return 4;
    }
    for (;;) {
        size_t got = fread(input_buf, 1, sizeof input_buf, fin);
        if (got == 0) {
            break;
        }
        if (got != sizeof input_buf) {
            printf("EDGEPACK error truncated image %lu (%lu bytes)\n", n, (unsigned long)got);
            rc = 3;
            break;
        }
#ifdef EDGEPACK_CORTEX_M
        {
            uint64_t t0, t1;
            uint32_t used;
            for (i = 0; i < EP_STACK_WORDS; i++) { /* inline: a call would paint its own frame */
                bottom[i] = EP_STACK_PAINT;
            }
            profile_on = n == 0;
            t0 = ticks();
            layer_start = t0;
            if (edgepack_invoke(input_buf, output_buf) != 0) {
                rc = 5;
                break;
            }
            t1 = ticks();
            used = stack_used(bottom, sp);
            stack_max = used > stack_max ? used : stack_max;
            printf("EDGEPACK image %lu ticks %lu\n", n, (unsigned long)(t1 - t0));
            if (n == 0) {
                int l;
                for (l = 0; l < EDGEPACK_LAYERS; l++) {
                    printf("EDGEPACK layer %d ticks %lu\n", l, (unsigned long)layer_ticks[l]);
                }
            }
        }
#else
        if (edgepack_invoke(input_buf, output_buf) != 0) {
            rc = 5;
            break;
        }
#endif
        if (fwrite(output_buf, 1, sizeof output_buf, fout) != sizeof output_buf) {
            rc = 4;
            break;
        }
        n++;
    }
    fclose(fin);
    if (fclose(fout) != 0 && rc == 0) {
        rc = 4;
    }
#ifdef EDGEPACK_CORTEX_M
    printf("EDGEPACK stack %lu\n", (unsigned long)stack_max);
#endif
    printf("EDGEPACK images %lu\n", n);
    return rc;
}
