/* test_smallm.c — the small-row kernels against double-precision loops: linear layers over both
 * weight layouts, every row count, ragged K and N (masked tails), with and without bias.
 * Results must not depend on the thread count or on the other rows of the batch. Then the
 * shim's dispatch: which calls take the kernels and which stay with libtorch. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "shim_check.h"
#include "smallm.h"
#include "torch_shim.h"

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
    for (int64_t i = 0; i < M * N; i++) {
        double e = fabs(y1[i] - ref[i]) - tol[i];
        if (worse(e, excess)) excess = e, worst = i;
    }
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
/* The shim's dispatch */

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
        apl_tensor *slow, *fast;
        KERNEL_AND_LIBTORCH(fast, slow, apl_t_linear(x, ws_[i], b));
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

int main(void)
{
    if (!apl_smallm_usable(1)) SKIP_ALL("smallm kernels: this CPU has no AVX-512");
    test_kernels();
    test_dispatch();
    DONE();
}
