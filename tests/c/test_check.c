/* test_check.c — the harness's own comparisons see a failure: a NaN or an infinity among the
 * differences makes the maximum fail a tolerance check, for plain arrays and for tensors read
 * through the shim (an all-NaN result once passed every parity check as "0 apart"). */
#include "check.h"
#include "shim_check.h"
#include "torch_shim.h"

static void test_fold(void)
{
    const double ds[][3] = {{0.5, NAN, 0.1}, {NAN, 0, 0}, {0, 0, NAN}, {0, INFINITY, 0}};
    for (size_t c = 0; c < sizeof ds / sizeof *ds; c++) {
        double worst = 0;
        for (int i = 0; i < 3; i++) worst = fold_max(worst, ds[c][i]);
        CHECK(!(worst <= 1e-3), "case %zu: %g passes a tolerance", c, worst);
    }
    CHECK(fold_max(fold_max(0, 2e-7), 1e-7) == 2e-7, "the largest finite difference is kept");
    CHECK(worse(NAN, 1) && !worse(1, NAN) && !worse(0.5, 1) && worse(2, 1), "worse(): larger or NaN, first NaN kept");
}

static void test_tensors(void)
{
    float good[4] = {1, 2, 3, 4}, bad[4] = {1, NAN, 3, 4}, nans[4] = {NAN, NAN, NAN, NAN};
    int64_t s[1] = {4};
    apl_tensor *a = apl_t_from_data(good, s, 1, APL_F32), *b = apl_t_from_data(bad, s, 1, APL_F32);
    apl_tensor *c = apl_t_from_data(nans, s, 1, APL_F32);
    CHECK(max_abs_diff(a, a, 4) == 0, "equal tensors are 0 apart");
    CHECK(!(max_abs_diff(a, b, 4) < 1e-6), "one NaN: %g", (double)max_abs_diff(a, b, 4));
    CHECK(!(max_abs_diff(c, c, 4) < 1e-6), "all NaN against itself: %g", (double)max_abs_diff(c, c, 4));
    apl_t_free(a), apl_t_free(b), apl_t_free(c);
}

int main(void)
{
    test_fold();
    test_tensors();
    DONE();
}
