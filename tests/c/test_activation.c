/* test_activation.c — GELU (tanh form) against its definition in double: random inputs over
 * the range where it bends, every length's tail, chunks shared by threads, signed zeros, huge
 * and infinite inputs and NaN; in place; then apl_t_unary's kernel against libtorch's gelu, and
 * a call autograd must record. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "check.h"
#include "shim_check.h"
#include "torch_shim.h"

/* 2u, where gelu(x) = 0.5·x·(1 + tanh u) = x / (1 + e^-2u): the second form in double, because
 * the first cancels to 0 in the negative tail. */
static double two_u(double x) { return 2 * 0.7978845608028654 * (x + 0.044715 * x * x * x); }
static double gelu_ref(double x) { return x / (1 + exp(-two_u(x))); }

/* What f32 allows: 2u itself carries a few f32 roundings, and e^-2u turns its absolute error
 * into a relative one; 1e-37 absolute where y underflows. */
static double tolerance(double x) { return 6e-8 * (8 + 4 * fabs(two_u(x))) * fabs(gelu_ref(x)) + 1e-37; }

/* n inputs in [-12, 12] (GELU's bend and both tails), y against the reference. */
static void check_length(int64_t n)
{
    unsigned seed = (unsigned)n;
    float *x = random_floats(n, &seed), *y1 = malloc(sizeof(float) * (size_t)(n ? n : 1));
    float *y2 = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] *= 24.0f;
    apl_gelu_tanh(x, y1, n, 1);
    apl_gelu_tanh(x, y2, n, 2);
    double excess = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(y1[i] - gelu_ref(x[i])) - tolerance(x[i]);
        if (worse(e, excess)) excess = e, worst = i;
    }
    CHECK(excess <= 0, "n=%lld: gelu(%.9g) = %.9g, reference %.9g", (long long)n, (double)x[worst],
          (double)y1[worst], gelu_ref(x[worst]));
    CHECK(memcmp(y1, y2, sizeof(float) * (size_t)n) == 0, "n=%lld: 1 and 2 threads differ", (long long)n);
    apl_gelu_tanh(x, x, n, 2);
    CHECK(memcmp(x, y1, sizeof(float) * (size_t)n) == 0, "n=%lld: in place differs", (long long)n);
    free(x), free(y1), free(y2);
}

static void test_lengths(void)
{
    const int64_t ns[] = {0, 1, 15, 16, 17, 1000, 200003}; // 200003: several chunks and a tail
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) check_length(ns[i]);
}

/* x as libtorch's gelu(x, "tanh") takes it: 0.5·x·(1 + tanh u). */
static void test_special_values(void)
{
    float x[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 1e10f, -1e10f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN};
    int64_t n = sizeof x / sizeof *x;
    float y[sizeof x / sizeof *x];
    apl_gelu_tanh(x, y, n, 1);
    CHECK(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]), "gelu(±0) = ±0: %g %g", (double)y[0], (double)y[1]);
    NEAR(y[2], 0.5e-30, 1e-37);
    NEAR(y[3], -0.5e-30, 1e-37);
    CHECK(y[4] == 20.0f && y[5] <= 0 && y[5] > -1e-30f, "gelu(±20) = %g, %g", (double)y[4], (double)y[5]);
    CHECK(y[6] == 1e10f && y[7] == 0 && y[8] == FLT_MAX && y[9] == 0, "huge inputs: %g %g %g %g",
          (double)y[6], (double)y[7], (double)y[8], (double)y[9]);
    CHECK(y[10] == INFINITY && isnan(y[11]) && isnan(y[12]), "gelu(inf) = inf, gelu(-inf) and gelu(NaN) NaN: %g %g %g",
          (double)y[10], (double)y[11], (double)y[12]);
}

/* apl_t_unary(APL_GELU_TANH): the kernel and libtorch agree; with grad to record it stays with
 * libtorch. */
static void test_dispatch(void)
{
    apl_gen *g = apl_gen_new(5);
    int64_t s[3] = {2, 3, 50};
    apl_tensor *x0 = apl_t_randn(s, 3, APL_F32, APL_CPU, g), *x = apl_t_binary_s(APL_MUL, x0, 4.0);
    apl_tensor *slow, *fast;
    KERNEL_AND_LIBTORCH(fast, slow, apl_t_unary(APL_GELU_TANH, x));
    float d = max_abs_diff(fast, slow, 300);
    CHECK(d < 2e-6, "gelu: kernel and libtorch differ by %g", (double)d);
    apl_t_requires_grad_(x0, 1);
    int prev = apl_set_grad_enabled(1);
    apl_tensor *y = apl_t_unary(APL_GELU_TANH, x0);
    CHECK(y && apl_t_requires_grad(y), "gelu of a tensor that requires grad keeps the graph");
    apl_set_grad_enabled(prev);
    apl_tensor *all[] = {x0, x, slow, fast, y};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

int main(void)
{
    if (!apl_activation_usable()) SKIP_ALL("activation kernels: this CPU has no AVX-512");
    test_lengths();
    test_special_values();
    test_dispatch();
    DONE();
}
