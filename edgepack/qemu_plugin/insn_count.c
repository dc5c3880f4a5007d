/*
 * edgepack insn_count: a QEMU TCG plugin (API version 1, QEMU 7.2 user mode) counting the guest
 * instructions a program executes, in total and "vector" (AArch64 SIMD&FP).
 *
 *   qemu-aarch64 -cpu cortex-a72 -plugin libinsn_count.so,outfile=/tmp/counts PROGRAM ...
 *
 * At exit it writes two lines to OUTFILE (without outfile=, through qemu_plugin_outs: QEMU's log,
 * shown with `-d plugin`):
 *   instructions N
 *   vector_instructions M
 *
 * With blocks=PATH it also writes, for llvm-mca's cycle estimate (edgepack/devices/mca.py), one line per
 * executed translation of a block to PATH:  START_ADDRESS_HEX EXECUTIONS GUEST_BYTES_HEX
 * (a block translated twice, e.g. after a flush, has two lines; the reader adds them up).
 *
 * Cost: nothing per instruction. When a translation block (TB) is translated, its instructions
 * are classified once; every execution of the TB then adds its two counts with inline adds that
 * TCG emits into the block itself (no callback, no helper call). blocks= adds one more inline add per
 * TB execution (its own counter) and keeps a copy of the TB's guest bytes, taken at translation.
 *
 * "Vector" rule (Arm ARM, A64 top-level encoding, op0 = bits [28:25]):
 *   - op0 = x111: Data Processing -- Scalar Floating-Point and Advanced SIMD;
 *   - op0 = x1x0 with bit 26 (V) = 1, i.e. bits [27:25] = 110: loads/stores of SIMD&FP registers
 *     (LDR/STR/LDP/STP of B/H/S/D/Q registers, LD1..LD4/ST1..ST4).
 *   Both mean bits [27:26] == 11, which no other A64 class has. Scalar FP counts as vector (it runs
 *   on the same pipes); SVE (op0 = 0010) does not (no Cortex-A72/A53/A76 has it).
 *
 * Exactness: a TB counts all its instructions when it starts, so a block left early (a fault, a
 * signal) over-counts by the rest of the block; inline adds are not atomic, so counts are exact for
 * one guest thread only (run TVM with TVM_NUM_THREADS=1).
 *
 * Debian's QEMU ships no qemu-plugin.h: the few declarations used are copied below from
 * include/qemu/qemu-plugin.h (QEMU_PLUGIN_VERSION 1). Build: gcc -shared -fPIC -O2 insn_count.c
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- from qemu-plugin.h, API version 1 ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
/* ---- end of qemu-plugin.h ---- */

static uint64_t total_insns;
static uint64_t vector_insns;
static char *outfile;
static char *blocksfile;

/* one translation of a block (blocks=): its start, guest bytes and how often it ran */
struct block {
    uint64_t vaddr;
    uint64_t executions;
    size_t size;
    uint8_t *bytes;
    struct block *next;
};
static struct block *blocks;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

/* keeps the TB's guest bytes and counts its executions with an inline add (translation may run on
 * several guest threads: the list is locked; the counter is exact for one guest thread, as above) */
static void record_block(struct qemu_plugin_tb *tb, size_t n) {
    struct block *b = calloc(1, sizeof *b);
    if (b == NULL || (b->bytes = malloc(4 * n + 1)) == NULL) {
        free(b);
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t len = qemu_plugin_insn_size(insn);
        if (len != 4)
            break; /* A64 only: a block is kept up to its first odd-sized instruction */
        memcpy(b->bytes + b->size, qemu_plugin_insn_data(insn), len);
        b->size += len;
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
    pthread_mutex_lock(&blocks_lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&blocks_lock);
}

static void write_blocks(void) {
    FILE *f = fopen(blocksfile, "w");
    if (f == NULL) {
        qemu_plugin_outs("insn_count: cannot write the blocks file\n");
        return;
    }
    int bad = 0;
    for (struct block *b = blocks; b != NULL && !bad; b = b->next) {
        if (b->executions == 0 || b->size == 0)
            continue;
        bad |= fprintf(f, "%" PRIx64 " %" PRIu64 " ", b->vaddr, b->executions) < 0;
        for (size_t i = 0; i < b->size && !bad; ++i)
            bad |= fprintf(f, "%02x", b->bytes[i]) < 0;
        bad |= fputc('\n', f) == EOF;
    }
    if (fclose(f) != 0 || bad)
        qemu_plugin_outs("insn_count: cannot write the blocks file\n");
}

/* bits [27:26] == 11: SIMD&FP data processing (op0 x111) or SIMD&FP load/store (op0 x110) */
static bool is_vector(uint32_t insn) { return ((insn >> 26) & 3u) == 3u; }

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb), vec = 0;
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint8_t *b = qemu_plugin_insn_data(insn);
        if (qemu_plugin_insn_size(insn) == 4) {  /* A64 instructions are 4 bytes, little-endian */
            uint32_t word = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            vec += is_vector(word);
        }
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total_insns, n);
    if (vec)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &vector_insns, vec);
    if (blocksfile != NULL)
        record_block(tb, n);
}

static void at_exit(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    if (blocksfile != NULL)
        write_blocks();
    char text[96];
    snprintf(text, sizeof text, "instructions %" PRIu64 "\nvector_instructions %" PRIu64 "\n", total_insns, vector_insns);
    if (outfile == NULL) {
        qemu_plugin_outs(text);
        return;
    }
    FILE *f = fopen(outfile, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        qemu_plugin_outs("insn_count: cannot write the outfile\n");
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    if (strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "insn_count: the vector rule is for aarch64 guests, not %s\n", info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            outfile = strdup(argv[i] + 8);
        } else if (strncmp(argv[i], "blocks=", 7) == 0) {
            blocksfile = strdup(argv[i] + 7);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (only outfile=PATH, blocks=PATH)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
