/* test_smallm.c — the small-row kernels against double-precision loops: linear layers over both
 * weight layouts, every row count, ragged K and N (masked tails), with and without bias;
 * attention over strided cache views, grouped heads, masked keys, shared or per-row bias.
 * Results must not depend on the thread count or on the other rows of the batch. Then the
 * shim's dispatch: which calls take the kernels and which stay with libtorch. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smallm.h"
#include "torch_shim.h"

static float *random_floats(int64_t n, unsigned *seed)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
    return p;
}

/* y = x · Wᵀ + b in double, with W (N, K) or (K, N); also how far each f32 result may be off:
 * 4·sqrt(K) f32 epsilons of the sum of |x·w| (the typical growth of a rounded sum, with margin). */
static void reference(const float *x, int64_t M, int64_t K, const float *w, apl_smallm_layout lay,
                      const float *b, int64_t N, double *y, double *tol)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0, a = b ? fabs(b[n]) : 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)x[m * K + k] * (lay == APL_SMALLM_NK ? w[n * K + k] : w[k * N + n]);
                s += p;
                a += fabs(p);
            }
            y[m * N + n] = s;
            tol[m * N + n] = 4 * sqrt((double)K + 1) * 6e-8 * a;
        }
}

static void check_shape(int64_t M, int64_t K, int64_t N, apl_smallm_layout lay, int bias)
{
    unsigned seed = (unsigned)(M * 7919 + K * 104729 + N * 13 + lay * 2 + bias);
    float *x = random_floats(M * K, &seed), *w = random_floats(K * N, &seed);
    float *b = bias ? random_floats(N, &seed) : NULL;
    float *y1 = malloc(sizeof(float) * (size_t)(M * N)), *y2 = malloc(sizeof(float) * (size_t)(M * N));
    float *row = malloc(sizeof(float) * (size_t)N);
    double *ref = malloc(sizeof(double) * (size_t)(M * N)), *tol = malloc(sizeof(double) * (size_t)(M * N));
    reference(x, M, K, w, lay, b, N, ref, tol);
    apl_smallm_linear(x, M, K, w, lay, b, y1, N, 1);
    apl_smallm_linear(x, M, K, w, lay, b, y2, N, 2);
    int64_t worst = 0;
    double excess = -1;
    for (int64_t i = 0; i < M * N; i++)
        if (fabs(y1[i] - ref[i]) - tol[i] > excess) excess = fabs(y1[i] - ref[i]) - tol[i], worst = i;
    CHECK(excess <= 0, "M=%lld K=%lld N=%lld %s bias=%d: y[%lld] = %.7g, reference %.7g",
          (long long)M, (long long)K, (long long)N, lay == APL_SMALLM_NK ? "NK" : "KN", bias,
          (long long)worst, (double)y1[worst], ref[worst]);
    CHECK(memcmp(y1, y2, sizeof(float) * (size_t)(M * N)) == 0,
          "M=%lld K=%lld N=%lld: 1 and 2 threads differ", (long long)M, (long long)K, (long long)N);
    // the last row computed alone gives the same bits as within the batch
    apl_smallm_linear(x + (M - 1) * K, 1, K, w, lay, b, row, N, 2);
    CHECK(memcmp(row, y1 + (M - 1) * N, sizeof(float) * (size_t)N) == 0,
          "M=%lld K=%lld N=%lld: a row's result depends on the batch", (long long)M, (long long)K,
          (long long)N);
    free(x), free(w), free(b), free(y1), free(y2), free(row), free(ref), free(tol);
}

static void test_kernels(void)
{
    // K: under one vector, a ragged tail, exact vectors, GPT-2's 768 and 3072.
    // N: a single column, not a multiple of 3 columns or of 16 lanes, several chunks and strips.
    const int64_t Ks[] = {1, 5, 16, 37, 768, 3072}, Ns[] = {1, 7, 16, 50, 113, 400};
    for (int64_t M = 1; M <= APL_SMALLM_MAX_ROWS; M++)
        for (size_t i = 0; i < sizeof Ks / sizeof *Ks; i++)
            for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
                for (int lay = 0; lay < 2; lay++)
                    check_shape(M, Ks[i], Ns[j], (apl_smallm_layout)lay, (int)((M + i + j) % 2));
}

/* ------------------------------------------------------------------------------------------ */
/* Attention for a few queries */

/* The case: q stored (B, T, H, D) and seen as (B, H, T, D); k and v inside a cache of CAP
 * positions per head, (B, H_kv, CAP, D), of which the first S are used. */
typedef struct { int64_t B, H, H_kv, T, S, D, shared_bias; } att_case;
enum { CAP = 40 };

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
                    sc[j] = d * 0.3 + bb[j];
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

static void check_attention(const att_case *c)
{
    unsigned seed = (unsigned)(c->H_kv * 31 + c->T * 7 + c->S * 131 + c->D * 3 + c->shared_bias);
    int64_t nq = c->B * c->T * c->H * c->D, nkv = c->B * c->H_kv * CAP * c->D;
    int64_t nb = (c->shared_bias ? 1 : c->B) * c->T * c->S;
    float *q = random_floats(nq, &seed), *k = random_floats(nkv, &seed), *v = random_floats(nkv, &seed);
    float *bias = random_floats(nb, &seed), *o1 = malloc(sizeof(float) * (size_t)nq);
    float *o2 = malloc(sizeof(float) * (size_t)nq), *scratch = malloc(sizeof(float) * 2 * (size_t)c->S);
    double *ref = malloc(sizeof(double) * (size_t)nq);
    for (int64_t i = 0; i < nb; i++)
        if (i % 5 == 3 && i % c->S != 0) bias[i] = -FLT_MAX; // masked keys, never a whole row
    apl_smallm_view qv = {q, c->T * c->H * c->D, c->D, c->H * c->D};
    apl_smallm_view kv = {k, c->H_kv * CAP * c->D, CAP * c->D, c->D}, vv = {v, kv.sb, kv.sh, kv.st};
    int64_t bias_b = c->shared_bias ? 0 : c->T * c->S;
    attention_reference(c, q, k, v, bias, ref);
    apl_smallm_attention(qv, kv, vv, bias, bias_b, c->B, c->H, c->H_kv, c->T, c->S, c->D, 0.3f, o1, scratch, 1);
    apl_smallm_attention(qv, kv, vv, bias, bias_b, c->B, c->H, c->H_kv, c->T, c->S, c->D, 0.3f, o2, scratch, 2);
    double worst = 0;
    for (int64_t i = 0; i < nq; i++) worst = fmax(worst, fabs(o1[i] - ref[i]));
    CHECK(worst < 2e-6, "attention H=%lld H_kv=%lld T=%lld S=%lld D=%lld shared=%lld: off by %g",
          (long long)c->H, (long long)c->H_kv, (long long)c->T, (long long)c->S, (long long)c->D,
          (long long)c->shared_bias, worst);
    CHECK(memcmp(o1, o2, sizeof(float) * (size_t)nq) == 0, "attention: 1 and 2 threads differ");
    free(q), free(k), free(v), free(bias), free(o1), free(o2), free(scratch), free(ref);
}

static void test_attention(void)
{
    const int64_t kv_heads[] = {4, 2, 1}, Ts[] = {1, 3}, Ss[] = {1, 5, 37}, Ds[] = {8, 20, 64};
    for (size_t a = 0; a < 3; a++)
        for (size_t t = 0; t < 2; t++)
            for (size_t s = 0; s < 3; s++)
                for (size_t d = 0; d < 3; d++) {
                    att_case c = {3, 4, kv_heads[a], Ts[t], Ss[s], Ds[d], (int64_t)((a + s + d) % 2)};
                    if (c.S >= c.T) check_attention(&c);
                }
}

/* ------------------------------------------------------------------------------------------ */
/* The shim's dispatch */

static float max_abs_diff(apl_tensor *a, apl_tensor *b, int64_t n)
{
    float *pa = malloc(sizeof(float) * (size_t)n), *pb = malloc(sizeof(float) * (size_t)n);
    float d = INFINITY;
    if (apl_t_read(a, APL_F32, pa, sizeof(float) * (size_t)n) == APL_OK &&
        apl_t_read(b, APL_F32, pb, sizeof(float) * (size_t)n) == APL_OK) {
        d = 0;
        for (int64_t i = 0; i < n; i++) d = fmaxf(d, fabsf(pa[i] - pb[i]));
    }
    free(pa), free(pb);
    return d;
}

/* Linear of x (rows, 40) by a (60, 40) weight, or the transposed view of a (40, 60) one. */
static void test_dispatch(void)
{
    apl_gen *g = apl_gen_new(3);
    int64_t xs[3] = {2, 3, 40}, ws[2] = {60, 40}, wt[2] = {40, 60}, bs[1] = {60};
    apl_tensor *x = apl_t_randn(xs, 3, APL_F32, APL_CPU, g), *b = apl_t_randn(bs, 1, APL_F32, APL_CPU, g);
    apl_tensor *w_nk = apl_t_randn(ws, 2, APL_F32, APL_CPU, g);
    apl_tensor *w_kn_store = apl_t_randn(wt, 2, APL_F32, APL_CPU, g);
    apl_tensor *w_kn = apl_t_transpose(w_kn_store, 0, 1);
    apl_tensor *ws_[2] = {w_nk, w_kn};
    for (int i = 0; i < 2; i++) {
        int was = apl_set_fast_kernels(0);
        apl_tensor *slow = apl_t_linear(x, ws_[i], b);
        apl_set_fast_kernels(1);
        apl_tensor *fast = apl_t_linear(x, ws_[i], b);
        apl_set_fast_kernels(was);
        CHECK(fast && apl_t_size(fast, 0) == 2 && apl_t_size(fast, 1) == 3 && apl_t_size(fast, 2) == 60,
              "output shape (2, 3, 60)");
        float d = max_abs_diff(fast, slow, 2 * 3 * 60);
        CHECK(d < 1e-5, "layout %d: kernel and BLAS differ by %g", i, (double)d);
        apl_t_free(slow), apl_t_free(fast);
    }
    // A product autograd must record stays with libtorch: its output carries the graph.
    apl_t_requires_grad_(w_nk, 1);
    int prev = apl_set_grad_enabled(1);
    apl_tensor *y = apl_t_linear(x, w_nk, b);
    CHECK(apl_t_requires_grad(y), "a linear of a weight that requires grad keeps the graph");
    apl_set_grad_enabled(0);
    apl_tensor *y0 = apl_t_linear(x, w_nk, b);
    CHECK(y0 && !apl_t_requires_grad(y0), "without grad mode the same product records nothing");
    apl_set_grad_enabled(prev);
    apl_tensor *all[] = {x, b, w_nk, w_kn_store, w_kn, y, y0};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

/* Decoding attention over a KV cache view with grouped heads: the kernel and libtorch agree, and
 * the kernel's output merges its heads without a copy. */
static void test_attention_dispatch(void)
{
    apl_gen *g = apl_gen_new(4);
    int64_t qs[4] = {2, 6, 1, 16}, cs[4] = {2, 3, 10, 16}, ms[2] = {2, 7};
    float mask[14] = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}; // row 0 starts with padding
    apl_tensor *q = apl_t_randn(qs, 4, APL_F32, APL_CPU, g);
    apl_tensor *ck = apl_t_randn(cs, 4, APL_F32, APL_CPU, g), *cv = apl_t_randn(cs, 4, APL_F32, APL_CPU, g);
    apl_tensor *k = apl_t_narrow(ck, 2, 0, 7), *v = apl_t_narrow(cv, 2, 0, 7);
    apl_tensor *m = apl_t_from_data(mask, ms, 2, APL_F32);
    apl_tensor *bias = apl_t_attention_bias(m, 1, 7, APL_F32, APL_CPU);
    int was = apl_set_fast_kernels(0);
    apl_tensor *slow = apl_t_attention(q, k, v, bias, 0.25);
    apl_set_fast_kernels(1);
    apl_tensor *fast = apl_t_attention(q, k, v, bias, 0.25);
    apl_set_fast_kernels(was);
    float d = max_abs_diff(fast, slow, 2 * 6 * 16);
    CHECK(d < 1e-6, "grouped-query decoding attention: kernel and libtorch differ by %g", (double)d);
    apl_tensor *merged = apl_t_transpose(fast, 1, 2);
    CHECK(merged && apl_t_is_contiguous(merged), "(B, T, H, D) underneath: heads merge as a view");
    apl_tensor *all[] = {q, ck, cv, k, v, m, bias, slow, fast, merged};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

int main(void)
{
    if (!apl_smallm_usable(1)) {
        printf("skip    smallm kernels: this CPU has no AVX-512\n");
        DONE();
    }
    test_kernels();
    test_attention();
    test_dispatch();
    test_attention_dispatch();
    DONE();
}
