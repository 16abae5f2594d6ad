/* noarch/kernels.c — the kernels' entry points where the AVX-512 kernels are not compiled (every
 * CPU but x86-64: arm64 hosts such as Grace Hopper and Graviton).
 *
 * Each *_usable() answers 0, so the shim sends every op to libtorch, as it does on an x86 CPU
 * without AVX-512. The kernel functions exist only so that the shim links; no caller reaches
 * them once usable() said no, and reaching one is a bug, which is why they stop loudly. */
#include "activation.h"
#include "attention.h"
#include "rowsoftmax.h"
#include "smallm.h"

#include <stdio.h>
#include <stdlib.h>

static void unreachable(const char *fn)
{
    fprintf(stderr, "apl: %s called on a CPU without apl's kernels (its usable() is 0)\n", fn);
    abort();
}

int apl_activation_usable(void) { return 0; }
int apl_attention_usable(void) { return 0; }
int apl_rowsoftmax_usable(void) { return 0; }
int apl_smallm_usable(int64_t rows) { (void)rows; return 0; }

void apl_gelu_tanh(const float *x, float *y, int64_t n, int threads)
{
    (void)x, (void)y, (void)n, (void)threads;
    unreachable(__func__);
}

int64_t apl_attention_scratch(int64_t B, int64_t T, int64_t S, int64_t D, int threads)
{
    (void)B, (void)T, (void)S, (void)D, (void)threads;
    unreachable(__func__);
    return 0;
}

void apl_attention(apl_attention_view q, apl_attention_view k, apl_attention_view v,
                   const float *bias, int64_t bias_b, int64_t B, int64_t H, int64_t H_kv, int64_t T,
                   int64_t S, int64_t D, float scale, float *out, float *scratch, int threads)
{
    (void)q, (void)k, (void)v, (void)bias, (void)bias_b, (void)B, (void)H, (void)H_kv, (void)T;
    (void)S, (void)D, (void)scale, (void)out, (void)scratch, (void)threads;
    unreachable(__func__);
}

int64_t apl_row_target_logprobs(const float *x, int64_t B, int64_t T, int64_t V, int64_t sb,
                                int64_t st, const int64_t *target, float *out, int threads)
{
    (void)x, (void)B, (void)T, (void)V, (void)sb, (void)st, (void)target, (void)out, (void)threads;
    unreachable(__func__);
    return -1;
}

void apl_smallm_linear(const float *x, int64_t M, int64_t K, const float *w,
                       apl_smallm_layout layout, const float *b, float *y, int64_t N, int threads)
{
    (void)x, (void)M, (void)K, (void)w, (void)layout, (void)b, (void)y, (void)N, (void)threads;
    unreachable(__func__);
}
