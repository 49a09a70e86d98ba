/*
 * The type-traits table, the one place that says which kernel serves which
 * element type, and the run-time dispatch between the scalar reference and
 * the x86 SIMD kernels.
 *
 * Dispatch happens once, at first use, under pthread_once: if the CPU has
 * AVX2, FMA and F16C (and MEMFIT_NO_SIMD is not 1) the active table is the
 * scalar one with the x86 entries laid over it. Kernels compiled with
 * -mavx2 are never reached before that check. AVX-VNNI (vpdpbusd) is one
 * more check on top, for the Q8_0 integer tile (MEMFIT_NO_VNNI=1 turns it
 * off, so benchmarks can show the AVX2 figure on the same machine), and
 * AVX-512F one more, for the float panels' micro-kernel (MEMFIT_NO_AVX512=1);
 * with AVX-512BW as well, the NF4 row kernel uses 512-bit vectors too, and
 * with AVX-512 VNNI on top of that vpdpbusd (x86/nf4_vnni512.c).
 * With AVX-512 BW, VL, VNNI and VBMI (and MEMFIT_NO_AVX512 not 1) the Q4_0
 * and Q8_0 dot products (x86/dot_avx512.c: one and several rows) are laid
 * over the x86 table: the decode path's matrix-vector kernels.
 */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tensor/kernels.h"

#define TYPE_SLOTS 256 /* every id memfit knows is below this */

struct traits_row {
    enum memfit_type type;
    struct mf_type_traits traits;
};

static const struct traits_row scalar_rows[] = {
    {MEMFIT_TYPE_F32,
     {mf_f32_to_float, mf_f32_from_float, mf_dot_f32, MEMFIT_TYPE_F32, NULL, NULL, NULL}},
    {MEMFIT_TYPE_F16,
     {mf_f16_to_float, mf_f16_from_float, mf_dot_f16, MEMFIT_TYPE_F32, NULL, NULL,
      mf_f16_axpy_rows_scalar}},
    {MEMFIT_TYPE_BF16,
     {mf_bf16_to_float, mf_bf16_from_float, mf_dot_bf16, MEMFIT_TYPE_F32, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q4_0,
     {mf_dequant_q4_0, mf_quant_q4_0, mf_dot_q4_0, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q4_1, {mf_dequant_q4_1, NULL, mf_dot_q4_1, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q5_0, {mf_dequant_q5_0, NULL, mf_dot_q5_0, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q5_1, {mf_dequant_q5_1, NULL, mf_dot_q5_1, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q8_0,
     {mf_dequant_q8_0, mf_quant_q8_0, mf_dot_q8_0, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q2_K, {mf_dequant_q2_k, NULL, mf_dot_q2_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q3_K, {mf_dequant_q3_k, NULL, mf_dot_q3_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q4_K,
     {mf_dequant_q4_k, mf_quant_q4_k, mf_dot_q4_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q5_K, {mf_dequant_q5_k, NULL, mf_dot_q5_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q6_K,
     {mf_dequant_q6_k, mf_quant_q6_k, mf_dot_q6_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q8_K, {mf_dequant_q8_k, mf_quant_q8_k, NULL, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
};

#if defined(__x86_64__)
/* Only the entries with a SIMD version; the rest stay scalar. */
static const struct traits_row x86_rows[] = {
    {MEMFIT_TYPE_F32, {NULL, NULL, mf_avx2_dot_f32, MEMFIT_TYPE_F32, NULL, NULL, NULL}},
    {MEMFIT_TYPE_F16,
     {mf_avx2_f16_to_float, mf_avx2_f16_from_float, mf_avx2_dot_f16, MEMFIT_TYPE_F32,
      mf_avx2_dot_f16_rows, NULL, mf_avx2_f16_axpy_rows}},
    {MEMFIT_TYPE_BF16, {NULL, NULL, mf_avx2_dot_bf16, MEMFIT_TYPE_F32, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q4_0,
     {NULL, NULL, mf_avx2_dot_q4_0, MEMFIT_TYPE_Q8_0, mf_avx2_dot_q4_0_rows,
      mf_avx2_dot_q4_0_rows_cols, NULL}},
    {MEMFIT_TYPE_Q8_0,
     {NULL, mf_avx2_quant_q8_0, mf_avx2_dot_q8_0, MEMFIT_TYPE_Q8_0, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q4_K, {NULL, NULL, mf_avx2_dot_q4_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q6_K, {NULL, NULL, mf_avx2_dot_q6_k, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
    {MEMFIT_TYPE_Q8_K, {NULL, mf_avx2_quant_q8_k, NULL, MEMFIT_TYPE_Q8_K, NULL, NULL, NULL}},
};

/* Laid over x86_rows where the AVX-512 dot kernels run (cpu_has_avx512_dot). */
static const struct traits_row avx512_rows[] = {
    {MEMFIT_TYPE_Q4_0,
     {NULL, NULL, mf_avx512_dot_q4_0, MEMFIT_TYPE_Q8_0, mf_avx512_dot_q4_0_rows_t,
      mf_avx512_dot_q4_0_rows_cols, NULL}},
    {MEMFIT_TYPE_Q8_0,
     {NULL, NULL, mf_avx512_dot_q8_0, MEMFIT_TYPE_Q8_0, mf_avx512_dot_q8_0_rows,
      mf_avx512_dot_q8_0_rows_cols, NULL}},
    {MEMFIT_TYPE_Q4_K,
     {NULL, NULL, NULL, MEMFIT_TYPE_Q8_K, NULL, mf_avx512_dot_q4_k_rows_cols, NULL}},
    {MEMFIT_TYPE_Q6_K,
     {NULL, NULL, NULL, MEMFIT_TYPE_Q8_K, mf_avx512_dot_q6_k_rows, mf_avx512_dot_q6_k_rows_cols,
      NULL}},
};
#endif

static struct mf_type_traits scalar_table[TYPE_SLOTS];
static struct mf_type_traits simd_table[TYPE_SLOTS];
static bool simd_available;
static bool simd_active;
static bool vnni_active;
static bool avx512_active;
static bool avx512vnni_active;
static bool avx512bw_available; /* AVX-512F and BW, whatever the environment says */
static bool avx512_dot_nf4;     /* x86/nf4_vnni512.c in use (what dot_avx512.c needs) */
static pthread_once_t dispatch_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
/* The register states the OS saves (XCR0, low half); only after CPUID said OSXSAVE. */
static unsigned xcr0(void)
{
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}
#endif

/* AVX2, FMA and F16C from CPUID, and the OS saving the YMM registers
 * (XGETBV). Read directly: clang's __builtin_cpu_supports has no "f16c". */
static bool cpu_has_avx2(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c))
        return false;
    if ((xcr0() & 6u) != 6u)
        return false; /* XMM and YMM state not enabled by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return b & (1u << 5);
#else
    return false;
#endif
}

/* AVX-VNNI (CPUID leaf 7, sub-leaf 1, EAX bit 4), VEX-encoded on YMM; call
 * after cpu_has_avx2 said yes (it checked the OS saves YMM). */
static bool cpu_has_avx_vnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1)
        return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d))
        return false;
    return a & (1u << 4);
#else
    return false;
#endif
}

/* AVX-512F (CPUID leaf 7 EBX bit 16) with the OS saving the opmask and ZMM
 * state (XCR0 bits 5-7); call after cpu_has_avx2 said yes. */
static bool cpu_has_avx512f(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)))
        return false;
    return (xcr0() & 0xe6u) == 0xe6u;
#else
    return false;
#endif
}

/* AVX-512BW (leaf 7 EBX bit 30) and AVX-512 VNNI (ECX bit 11); call after
 * cpu_has_avx512f said yes. */
static bool cpu_has_avx512vnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & (1u << 30)) && (c & (1u << 11));
#else
    return false;
#endif
}

/* AVX-512BW (CPUID leaf 7 EBX bit 30); call after cpu_has_avx512f said yes. */
static bool cpu_has_avx512bw(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 30));
#else
    return false;
#endif
}

/* What x86/dot_avx512.c is compiled for: AVX-512F (with the OS's ZMM state)
 * plus BW and VL (leaf 7 EBX bits 30, 31), VBMI and VNNI (ECX bits 1, 11). */
static bool cpu_has_avx512_dot(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!cpu_has_avx512f() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & (1u << 30)) && (b & (1u << 31)) && (c & (1u << 1)) && (c & (1u << 11));
#else
    return false;
#endif
}

/* True unless the environment variable is "1". */
static bool not_disabled(const char *name)
{
    const char *v = memfit_config_get(name);
    return !(v && strcmp(v, "1") == 0);
}

static void fill(struct mf_type_traits *table, const struct traits_row *rows, size_t n_rows)
{
    for (size_t i = 0; i < n_rows; i++) {
        struct mf_type_traits *t = &table[rows[i].type];
        const struct mf_type_traits *r = &rows[i].traits;
        if (r->to_float)
            t->to_float = r->to_float;
        if (r->from_float)
            t->from_float = r->from_float;
        if (r->vec_dot)
            t->vec_dot = r->vec_dot;
        if (r->vec_dot_rows)
            t->vec_dot_rows = r->vec_dot_rows;
        if (r->vec_dot_rows_cols)
            t->vec_dot_rows_cols = r->vec_dot_rows_cols;
        if (r->axpy_rows)
            t->axpy_rows = r->axpy_rows;
        t->vec_dot_type = r->vec_dot_type;
    }
}

static void dispatch_init(void)
{
    fill(scalar_table, scalar_rows, sizeof(scalar_rows) / sizeof(scalar_rows[0]));
    simd_available = cpu_has_avx2();
    memcpy(simd_table, scalar_table, sizeof(simd_table));
#if defined(__x86_64__)
    if (simd_available)
        fill(simd_table, x86_rows, sizeof(x86_rows) / sizeof(x86_rows[0]));
    /* Also under MEMFIT_NO_SIMD (the SIMD table is what tests compare), not under
     * MEMFIT_NO_AVX512 (so the AVX2 kernels can be tested and timed here). */
    if (simd_available && cpu_has_avx512_dot() && not_disabled("MEMFIT_NO_AVX512"))
        fill(simd_table, avx512_rows, sizeof(avx512_rows) / sizeof(avx512_rows[0]));
#endif
    /* Read once: tests and benches set it before the first kernel call. */
    simd_active = simd_available && not_disabled("MEMFIT_NO_SIMD");
    vnni_active = simd_active && cpu_has_avx_vnni() && not_disabled("MEMFIT_NO_VNNI");
    avx512bw_available = simd_available && cpu_has_avx512f() && cpu_has_avx512bw();
    avx512_active = simd_active && cpu_has_avx512f() && not_disabled("MEMFIT_NO_AVX512");
    avx512vnni_active = avx512_active && cpu_has_avx512vnni();
    avx512_dot_nf4 = avx512_active && cpu_has_avx512_dot();
}

static const struct mf_type_traits *lookup(const struct mf_type_traits *table,
                                           enum memfit_type type)
{
    if ((unsigned)type >= TYPE_SLOTS)
        return NULL;
    const struct mf_type_traits *t = &table[type];
    return t->to_float || t->from_float || t->vec_dot ? t : NULL;
}

const struct mf_type_traits *mf_type_traits(enum memfit_type type)
{
    pthread_once(&dispatch_once, dispatch_init);
    return lookup(simd_active ? simd_table : scalar_table, type);
}

const struct mf_type_traits *mf_type_traits_scalar(enum memfit_type type)
{
    pthread_once(&dispatch_once, dispatch_init);
    return lookup(scalar_table, type);
}

const struct mf_type_traits *mf_type_traits_simd(enum memfit_type type)
{
    pthread_once(&dispatch_once, dispatch_init);
    return simd_available ? lookup(simd_table, type) : NULL;
}

bool mf_tensor_simd_active(void)
{
    pthread_once(&dispatch_once, dispatch_init);
    return simd_active;
}

bool mf_tensor_vnni_active(void)
{
    pthread_once(&dispatch_once, dispatch_init);
    return vnni_active;
}

bool mf_tensor_avx512_active(void)
{
    pthread_once(&dispatch_once, dispatch_init);
    return avx512_active;
}

bool mf_tensor_avx512vnni_active(void)
{
    pthread_once(&dispatch_once, dispatch_init);
    return avx512vnni_active;
}

/* The multi-column dots: scalar, AVX2, AVX-VNNI (in that order), by weight type. */
static const struct {
    enum memfit_type type;
    mf_vec_dot_cols_fn fn[3];
} cols_rows[] = {
#if defined(__x86_64__)
    {MEMFIT_TYPE_Q4_0, {mf_dot_cols_q4_0, mf_avx2_dot_cols_q4_0, mf_avxvnni_dot_cols_q4_0}},
    {MEMFIT_TYPE_Q8_0, {mf_dot_cols_q8_0, mf_avx2_dot_cols_q8_0, mf_avxvnni_dot_cols_q8_0}},
#else
    {MEMFIT_TYPE_Q4_0, {mf_dot_cols_q4_0, NULL, NULL}},
    {MEMFIT_TYPE_Q8_0, {mf_dot_cols_q8_0, NULL, NULL}},
#endif
};

/* Kernel `which` (0 scalar, 1 AVX2, 2 AVX-VNNI) for a type, NULL where it has none. */
static mf_vec_dot_cols_fn dot_cols(enum memfit_type type, int which)
{
    for (size_t i = 0; i < sizeof(cols_rows) / sizeof(cols_rows[0]); i++)
        if (cols_rows[i].type == type)
            return cols_rows[i].fn[which];
    return NULL;
}

mf_vec_dot_cols_fn mf_type_dot_cols(enum memfit_type type)
{
    pthread_once(&dispatch_once, dispatch_init);
    return dot_cols(type, vnni_active ? 2 : simd_active ? 1 : 0);
}

mf_vec_dot_cols_fn mf_type_dot_cols_scalar(enum memfit_type type)
{
    return dot_cols(type, 0);
}

mf_vec_dot_cols_fn mf_type_dot_cols_simd(enum memfit_type type)
{
    pthread_once(&dispatch_once, dispatch_init);
    return simd_available ? dot_cols(type, 1) : NULL;
}

mf_nf4_dot_fn mf_nf4_dot_kernel(void)
{
#if defined(__x86_64__)
    if (avx512_dot_nf4)
        return mf_avx512vnni_nf4_dot;
    if (mf_tensor_avx512_active() && avx512bw_available)
        return mf_avx512_nf4_dot;
    if (mf_tensor_simd_active())
        return mf_avx2_nf4_dot;
#endif
    return mf_nf4_dot_scalar;
}

mf_nf4_dot_fn mf_nf4_dot_kernel_simd(void)
{
    pthread_once(&dispatch_once, dispatch_init);
#if defined(__x86_64__)
    if (simd_available)
        return mf_avx2_nf4_dot;
#endif
    return NULL;
}

mf_nf4_dot_fn mf_nf4_dot_kernel_avx512(void)
{
    pthread_once(&dispatch_once, dispatch_init);
#if defined(__x86_64__)
    if (avx512bw_available)
        return mf_avx512_nf4_dot;
#endif
    return NULL;
}

mf_nf4_dot_fn mf_nf4_dot_kernel_vnni512(void)
{
    pthread_once(&dispatch_once, dispatch_init);
#if defined(__x86_64__)
    if (simd_available && cpu_has_avx512_dot())
        return mf_avx512vnni_nf4_dot;
#endif
    return NULL;
}

const char *memfit_tensor_isa(void)
{
    if (!mf_tensor_simd_active())
        return "scalar";
    static const char *const names[2][2] = {
        {"avx2+fma+f16c", "avx2+fma+f16c+avxvnni"},
        {"avx2+fma+f16c+avx512f", "avx2+fma+f16c+avx512f+avxvnni"}};
    return names[mf_tensor_avx512_active()][mf_tensor_vnni_active()];
}

/* The type's info, with E_UNSUPPORTED and E_FORMAT checks shared by the entry points. */
static enum memfit_status check_row(enum memfit_type type, uint64_t n, const char *what,
                                    const struct memfit_type_info **out_info)
{
    const struct memfit_type_info *info = memfit_type_get_info(type);
    if (!info)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: unknown element type id %d", what, (int)type);
    if (n % info->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: row of %llu %s elements: not a multiple of %u",
                           what, (unsigned long long)n, info->name, info->block_size);
    if (n > SIZE_MAX / sizeof(float))
        return memfit_fail(MEMFIT_E_RANGE, "%s: row of %llu elements is too long", what,
                           (unsigned long long)n);
    *out_info = info;
    return MEMFIT_OK;
}

enum memfit_status memfit_type_dequantize_row(enum memfit_type type, const void *src, float *dst,
                                              uint64_t n)
{
    const struct memfit_type_info *info = NULL;
    enum memfit_status st = check_row(type, n, "dequantize", &info);
    if (st != MEMFIT_OK)
        return st;
    const struct mf_type_traits *t = mf_type_traits(type);
    if (!t || !t->to_float)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "dequantize: no %s row reader", info->name);
    t->to_float(src, dst, (size_t)n);
    return MEMFIT_OK;
}

enum memfit_status memfit_type_quantize_row(enum memfit_type type, const float *src, void *dst,
                                            uint64_t n)
{
    const struct memfit_type_info *info = NULL;
    enum memfit_status st = check_row(type, n, "quantize", &info);
    if (st != MEMFIT_OK)
        return st;
    const struct mf_type_traits *t = mf_type_traits(type);
    if (!t || !t->from_float)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "quantize: no %s quantizer", info->name);
    t->from_float(src, dst, (size_t)n);
    return MEMFIT_OK;
}

enum memfit_status memfit_type_dot_type(enum memfit_type type, enum memfit_type *out)
{
    const struct mf_type_traits *t = mf_type_traits(type);
    if (!t || !t->vec_dot) {
        const struct memfit_type_info *info = memfit_type_get_info(type);
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "no dot product for element type %s",
                           info ? info->name : "(unknown)");
    }
    *out = t->vec_dot_type;
    return MEMFIT_OK;
}

enum memfit_status memfit_vec_dot(enum memfit_type type, uint64_t n, const void *w_row,
                                  const void *act_row, float *out)
{
    const struct memfit_type_info *info = NULL;
    enum memfit_status st = check_row(type, n, "dot", &info);
    if (st != MEMFIT_OK)
        return st;
    const struct mf_type_traits *t = mf_type_traits(type);
    if (!t || !t->vec_dot)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "dot: no dot product for %s", info->name);
    /* The activation row has the dot type's blocks: check its length too. */
    const struct memfit_type_info *act = memfit_type_get_info(t->vec_dot_type);
    if (n % act->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "dot: %s activations need a multiple of %u, got %llu",
                           act->name, act->block_size, (unsigned long long)n);
    *out = t->vec_dot((size_t)n, w_row, act_row);
    return MEMFIT_OK;
}
