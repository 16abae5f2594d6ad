/* test_attention.c — attention.h's kernels against a double-precision loop: both ways (a few
 * queries, and blocks of 16) over strided cache views, grouped heads, ragged T, S and D, random
 * masks with a shared or per-row bias, and causal masks with left padding, where whole tiles are
 * skipped and padded queries may attend to nothing (then they average all values, as libtorch
 * does). Results must not depend on the thread count. Then the shim's dispatch against
 * libtorch's attention for decoding and for a prompt, and a call autograd must record. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "check.h"
#include "shim_check.h"
#include "torch_shim.h"

/* The case: q stored (B, T, H, D) and seen as (B, H, T, D); k and v inside a cache of CAP
 * positions per head, (B, H_kv, CAP, D), of which the first S are used. */
typedef enum { RANDOM_MASK, CAUSAL_PADDED } mask_kind;
typedef struct { int64_t B, H, H_kv, T, S, D; int shared_bias; mask_kind mask; } att_case;
enum { CAP = 80, PAD = 5 };

/* A masked score is the f32 lowest value whatever q·k is (f32 absorbs it), as in the kernel and
 * in libtorch; everything else is exact in double. */
static double score(double qk, float bias) { return bias == -FLT_MAX ? -FLT_MAX : qk * 0.3 + bias; }

static void attention_reference(const att_case *c, const float *q, const float *k, const float *v,
                                const float *bias, double *out)
{
    double *sc = malloc(sizeof(double) * (size_t)c->S);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t t = 0; t < c->T; t++) {
                const float *qv = q + ((b * c->T + t) * c->H + h) * c->D;
                int64_t hk = h / (c->H / c->H_kv);
                const float *kb = k + (b * c->H_kv + hk) * CAP * c->D, *vb = v + (b * c->H_kv + hk) * CAP * c->D;
                const float *bb = bias + (c->shared_bias ? 0 : b) * c->T * c->S + t * c->S;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < c->S; j++) {
                    double d = 0;
                    for (int64_t e = 0; e < c->D; e++) d += (double)qv[e] * kb[j * c->D + e];
                    sc[j] = score(d, bb[j]);
                    mx = fmax(mx, sc[j]);
                }
                for (int64_t j = 0; j < c->S; j++) sum += sc[j] = exp(sc[j] - mx);
                for (int64_t e = 0; e < c->D; e++) {
                    double y = 0;
                    for (int64_t j = 0; j < c->S; j++) y += sc[j] * vb[j * c->D + e];
                    out[((b * c->T + t) * c->H + h) * c->D + e] = y / sum;
                }
            }
    free(sc);
}

/* RANDOM_MASK: random scores with every fifth key masked, never a whole row. CAUSAL_PADDED:
 * query t sees keys up to its position S - T + t, and row 0 starts with PAD padding keys. */
static float *make_bias(const att_case *c, unsigned *seed)
{
    int64_t rows = c->shared_bias ? 1 : c->B, n = rows * c->T * c->S;
    float *bias = random_floats(n, seed);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i / (c->T * c->S), t = i / c->S % c->T, j = i % c->S;
        int masked = c->mask == RANDOM_MASK ? i % 5 == 3 && j != 0
                                            : j > c->S - c->T + t || (r == 0 && j < PAD);
        bias[i] = masked ? -FLT_MAX : c->mask == RANDOM_MASK ? bias[i] : 0.0f;
    }
    return bias;
}

static void check_attention(const att_case *c)
{
    unsigned seed = (unsigned)(c->H_kv * 31 + c->T * 7 + c->S * 131 + c->D * 3 + c->shared_bias + c->mask * 5);
    int64_t nq = c->B * c->T * c->H * c->D, nkv = c->B * c->H_kv * CAP * c->D;
    float *q = random_floats(nq, &seed), *k = random_floats(nkv, &seed), *v = random_floats(nkv, &seed);
    float *bias = make_bias(c, &seed);
    float *o1 = malloc(sizeof(float) * (size_t)nq), *o2 = malloc(sizeof(float) * (size_t)nq);
    float *scratch = malloc(sizeof(float) * (size_t)apl_attention_scratch(c->B, c->T, c->S, c->D, 2));
    double *ref = malloc(sizeof(double) * (size_t)nq);
    apl_attention_view qv = {q, c->T * c->H * c->D, c->D, c->H * c->D};
    apl_attention_view kv = {k, c->H_kv * CAP * c->D, CAP * c->D, c->D}, vv = {v, kv.sb, kv.sh, kv.st};
    int64_t bias_b = c->shared_bias ? 0 : c->T * c->S;
    attention_reference(c, q, k, v, bias, ref);
    apl_attention(qv, kv, vv, bias, bias_b, c->B, c->H, c->H_kv, c->T, c->S, c->D, 0.3f, o1, scratch, 1);
    apl_attention(qv, kv, vv, bias, bias_b, c->B, c->H, c->H_kv, c->T, c->S, c->D, 0.3f, o2, scratch, 2);
    double worst = 0;
    for (int64_t i = 0; i < nq; i++) worst = fold_max(worst, fabs(o1[i] - ref[i]));
    CHECK(worst < 2e-6, "H=%lld H_kv=%lld T=%lld S=%lld D=%lld shared=%d mask=%d: off by %g",
          (long long)c->H, (long long)c->H_kv, (long long)c->T, (long long)c->S, (long long)c->D,
          c->shared_bias, (int)c->mask, worst);
    CHECK(memcmp(o1, o2, sizeof(float) * (size_t)nq) == 0, "T=%lld S=%lld: 1 and 2 threads differ",
          (long long)c->T, (long long)c->S);
    free(q), free(k), free(v), free(bias), free(o1), free(o2), free(scratch), free(ref);
}

/* T: 1 and 3 take the few-query way; 9 (one short block), 16 (exactly one), 33 (two and a
 * query) the blocked one. S: equal to T, a few more (a cache), 70 (ragged tiles). D: under one
 * vector, ragged, GPT-2's 64, and past 128 (Pythia-1B has 256). */
static void test_kernels(void)
{
    const int64_t kv_heads[] = {4, 2, 1}, Ts[] = {1, 3, 9, 16, 33}, Ds[] = {8, 20, 64, 136};
    for (size_t a = 0; a < 3; a++)
        for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++)
            for (int64_t extra = 0; extra < 3; extra++)
                for (size_t d = 0; d < sizeof Ds / sizeof *Ds; d++)
                    for (int mask = 0; mask < 2; mask++) {
                        int64_t S = extra == 0 ? Ts[t] : extra == 1 ? Ts[t] + 4 : 70;
                        int shared = mask == RANDOM_MASK && (a + t + d) % 2;
                        att_case c = {3, 4, kv_heads[a], Ts[t], S, Ds[d], shared, (mask_kind)mask};
                        if (S >= c.T) check_attention(&c);
                    }
}

/* ------------------------------------------------------------------------------------------ */
/* The shim's dispatch */

/* q (2, 6, T, 16) as the model makes it, a transposed view of (2, T, 6, 16); k and v in a
 * 3-head cache of 40 positions, the first S in use; row 0 starts with 3 padding positions.
 * The kernels and libtorch agree, and the output merges its heads without a copy. */
static void check_dispatch(int64_t T, int64_t S)
{
    apl_gen *g = apl_gen_new((uint64_t)(T * 100 + S));
    int64_t qs[4] = {2, T, 6, 16}, cs[4] = {2, 3, 40, 16}, ms[2] = {2, S};
    float mask[2 * 40];
    for (int64_t i = 0; i < 2 * S; i++) mask[i] = i >= 3;
    apl_tensor *qstore = apl_t_randn(qs, 4, APL_F32, APL_CPU, g), *q = apl_t_transpose(qstore, 1, 2);
    apl_tensor *ck = apl_t_randn(cs, 4, APL_F32, APL_CPU, g), *cv = apl_t_randn(cs, 4, APL_F32, APL_CPU, g);
    apl_tensor *k = apl_t_narrow(ck, 2, 0, S), *v = apl_t_narrow(cv, 2, 0, S);
    apl_tensor *m = apl_t_from_data(mask, ms, 2, APL_F32);
    apl_tensor *bias = apl_t_attention_bias(m, T, S, APL_F32, APL_CPU);
    apl_tensor *slow, *fast;
    KERNEL_AND_LIBTORCH(fast, slow, apl_t_attention(q, k, v, bias, 0.25));
    float d = max_abs_diff(fast, slow, 2 * 6 * T * 16);
    CHECK(d < 1e-6, "T=%lld S=%lld grouped-query attention: kernel and libtorch differ by %g", (long long)T,
          (long long)S, (double)d);
    apl_tensor *merged = apl_t_transpose(fast, 1, 2);
    CHECK(merged && apl_t_is_contiguous(merged), "(B, T, H, D) underneath: heads merge as a view");
    apl_tensor *all[] = {qstore, q, ck, cv, k, v, m, bias, slow, fast, merged};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

/* Attention over a query that requires grad, in grad mode, stays with libtorch (the kernels
 * record no graph); without grad mode the same call records nothing. */
static void test_grad_stays_with_libtorch(void)
{
    apl_gen *g = apl_gen_new(9);
    int64_t s[4] = {1, 2, 12, 8};
    apl_tensor *q = apl_t_randn(s, 4, APL_F32, APL_CPU, g), *k = apl_t_randn(s, 4, APL_F32, APL_CPU, g);
    apl_tensor *bias = apl_t_attention_bias(NULL, 12, 12, APL_F32, APL_CPU);
    apl_t_requires_grad_(q, 1);
    int prev = apl_set_grad_enabled(1);
    apl_tensor *y = apl_t_attention(q, k, k, bias, 0.3);
    CHECK(y && apl_t_requires_grad(y), "attention of a query that requires grad keeps the graph");
    apl_set_grad_enabled(0);
    apl_tensor *y0 = apl_t_attention(q, k, k, bias, 0.3);
    CHECK(y0 && !apl_t_requires_grad(y0), "without grad mode the same attention records nothing");
    apl_set_grad_enabled(prev);
    float d = max_abs_diff(y, y0, 2 * 12 * 8);
    CHECK(d < 1e-6, "libtorch and the kernel differ by %g", (double)d);
    apl_tensor *all[] = {q, k, bias, y, y0};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

int main(void)
{
    if (!apl_attention_usable()) SKIP_ALL("attention kernels: this CPU has no AVX-512");
    test_kernels();
    check_dispatch(1, 7);   // decoding over a cache
    check_dispatch(20, 20); // a prompt: causal, padded, one full block and a short one
    check_dispatch(12, 30); // a prompt after cached positions
    test_grad_stays_with_libtorch();
    DONE();
}
