/*
 * The entry point of the Q8_0/Q4_0 integer tiles (gemm_q8.c, gemm_q8_vnni.c,
 * gemm_q8_avx512.c) on the shared loop nest (tile.h's mf_tile_run). The
 * includer defines NR and MR (weight rows per panel, activations per kernel
 * call), struct panel, struct q8_act (one activation's MF_GEMM_KC slice),
 * q8_act_quantize(x, kc, act), pack(panel, src, rb, k0, nr, kb),
 * kernel(panel, kb, acts, nc, y, ldy, nr, add), and Q8_ENTRY, the name of
 * the entry point (the mf_avx2_gemm_int8 contract).
 */

/* One call's state. */
struct run {
    struct panel p;
    struct q8_act acts[MF_GEMM_Q8_TB];
    struct mf_q8_src src;
    size_t kb;
};

static void quantize_cb(void *ctx, size_t c, const float *x, size_t kc)
{
    struct run *r = ctx;
    q8_act_quantize(x, kc, &r->acts[c]);
}

static void pack_cb(void *ctx, size_t rb, size_t nr, size_t k0, size_t kc)
{
    struct run *r = ctx;
    r->kb = kc / MF_QK;
    pack(&r->p, &r->src, rb, k0, nr, r->kb);
}

static void kernel_cb(void *ctx, size_t c, size_t nc, float *y, size_t ldy, size_t nr, bool add)
{
    struct run *r = ctx;
    kernel(&r->p, r->kb, &r->acts[c], nc, y, ldy, nr, add);
}

void Q8_ENTRY(enum memfit_type type, const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
              const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    struct run r; /* (not zeroed: its buffers are written before they are read) */
    r.src = (struct mf_q8_src){type, w, w_stride, NULL};
    if (type == MEMFIT_TYPE_NF4) /* w is the struct memfit_nf4_matrix */
        r.src = (struct mf_q8_src){type, NULL, 0, w};
    const struct mf_tile_loop l = {NR, MR, MF_GEMM_KC, &r, quantize_cb, pack_cb, kernel_cb};
    mf_tile_run(&l, n, r0, r1, x, xs, n_cols, y, ldy);
}
