/* shim_check.h — the C tests' comparisons of apl's kernels with libtorch through the shim. */
#ifndef APL_SHIM_CHECK_H
#define APL_SHIM_CHECK_H
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "torch_shim.h"

/* The largest |a - b| over the first n elements (NaN if any is NaN, see check.h's worse());
 * infinity when either cannot be read. */
static inline float max_abs_diff(apl_tensor *a, apl_tensor *b, int64_t n)
{
    float *pa = malloc(sizeof(float) * (size_t)n), *pb = malloc(sizeof(float) * (size_t)n);
    float d = INFINITY;
    if (apl_t_read(a, APL_F32, pa, sizeof(float) * (size_t)n) == APL_OK &&
        apl_t_read(b, APL_F32, pb, sizeof(float) * (size_t)n) == APL_OK) {
        d = 0;
        for (int64_t i = 0; i < n; i++) d = (float)fold_max(d, fabsf(pa[i] - pb[i]));
    }
    free(pa), free(pb);
    return d;
}
/* slow = EXPR with apl's own kernels off (libtorch), fast = EXPR with them on; the setting is
 * restored. */
#define KERNEL_AND_LIBTORCH(fast, slow, expr)                                                      \
    do {                                                                                           \
        int was_ = apl_set_fast_kernels(0);                                                        \
        (slow) = (expr);                                                                           \
        apl_set_fast_kernels(1);                                                                   \
        (fast) = (expr);                                                                           \
        apl_set_fast_kernels(was_);                                                                \
    } while (0)
#endif
