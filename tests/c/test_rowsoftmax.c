/* test_rowsoftmax.c — log-probabilities at targets, one pass per row, against a double-precision
 * log-softmax: vocabulary-sized rows, a strided view (scoring's completion span), rows of very
 * different scales, masked -inf entries, NaN, and targets out of range; then apl_t_target_logprobs
 * with the kernel and with libtorch's log_softmax + gather. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rowsoftmax.h"
#include "shim_check.h"
#include "torch_shim.h"

static double ref_logprob(const float *row, int64_t V, int64_t t)
{
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; j++) m = fmax(m, row[j]);
    for (int64_t j = 0; j < V; j++) s += exp((double)row[j] - m);
    return row[t] - m - log(s);
}

/* B = 3 rows of T = 4 positions inside a (3, 5, V) buffer: the span skips position 4. */
static void test_kernel(int64_t V)
{
    int64_t B = 3, T = 4, span = 5;
    float *x = malloc(sizeof(float) * (size_t)(B * span * V)), out[12];
    int64_t tgt[12];
    unsigned seed = (unsigned)V;
    for (int64_t i = 0; i < B * span * V; i++) {
        double scale = (i / V) % 3 == 0 ? 30.0 : (i / V) % 3 == 1 ? 1.0 : 1e-3; // peaked .. flat
        x[i] = (float)(scale * ((double)rand_r(&seed) / RAND_MAX - 0.5));
    }
    for (int64_t j = 0; V >= 3 && j < V; j += 3) x[span * V + j] = -INFINITY; // row (1, 0): a masked third
    for (int64_t i = 0; i < B * T; i++) tgt[i] = (i * 7919 + 1) % V;
    tgt[4] = 1 % V; // (1, 0)'s target is not masked
    CHECK(apl_row_target_logprobs(x, B, T, V, span * V, V, tgt, out, 2) == -1, "targets in range");
    double worst = 0;
    for (int64_t i = 0; i < B * T; i++) {
        const float *row = x + (i / T) * span * V + (i % T) * V;
        worst = fold_max(worst, fabs(out[i] - ref_logprob(row, V, tgt[i])));
    }
    CHECK(worst < 2e-5, "V=%lld: off by %g", (long long)V, worst);
    x[2 * V + 5 % V] = NAN; // row (0, 2)
    apl_row_target_logprobs(x, B, T, V, span * V, V, tgt, out, 1);
    CHECK(isnan(out[2]), "a NaN logit makes its row's result NaN, as log_softmax does");
    tgt[7] = V;
    CHECK(apl_row_target_logprobs(x, B, T, V, span * V, V, tgt, out, 1) == 7, "target V is reported");
    free(x);
}

static void test_shim(void)
{
    apl_gen *g = apl_gen_new(2);
    int64_t xs[3] = {2, 5, 1000}, ts[2] = {2, 5};
    int64_t tv[10] = {0, 999, 5, 17, 300, 1, 2, 3, 4, 500};
    apl_tensor *x = apl_t_randn(xs, 3, APL_F32, APL_CPU, g), *t = apl_t_from_data(tv, ts, 2, APL_I64);
    apl_tensor *span = apl_t_narrow(x, 1, 0, 4), *tspan = apl_t_narrow(t, 1, 0, 4);
    apl_tensor *slow, *fast;
    KERNEL_AND_LIBTORCH(fast, slow, apl_t_target_logprobs(span, tspan));
    float d = max_abs_diff(fast, slow, 8); // infinite if either failed
    CHECK(d < 1e-5, "kernel and log_softmax + gather differ by %g", (double)d);
    tv[3] = 1000;
    apl_tensor *bad_t = apl_t_from_data(tv, ts, 2, APL_I64), *bad = apl_t_target_logprobs(x, bad_t);
    CHECK(!bad && strstr(apl_last_error(), "target 1000 is outside the 1000 classes"), "%s", apl_last_error());
    apl_tensor *all[] = {x, t, span, tspan, slow, fast, bad_t};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) apl_t_free(all[i]);
    apl_gen_free(g);
}

int main(void)
{
    if (!apl_rowsoftmax_usable()) SKIP_ALL("rowsoftmax kernel: this CPU has no AVX-512");
    const int64_t Vs[] = {1, 15, 16, 17, 1000, 50257};
    for (size_t i = 0; i < sizeof Vs / sizeof *Vs; i++) test_kernel(Vs[i]);
    test_shim();
    DONE();
}
