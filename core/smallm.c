/* smallm.c — register-blocked AVX-512 linear layers for 1–8 rows (see smallm.h).
 *
 * Each kernel is written once over the row count M and the strip width, then instantiated for
 * every M by the switch at the bottom: with M a constant the loops unroll and the accumulators
 * live in the 32 zmm registers (8 rows × 3 vectors or columns, leaving room for the weights). */
#include "smallm.h"

#include "vecmath.h"

enum { KN_VECS = 3, NK_COLS = 3, PREFETCH_ROWS = 24 };

int apl_smallm_usable(int64_t rows)
{
    // cpu_supports is a read of libgcc's table, filled before main: cheap enough per call.
    return rows >= 1 && rows <= APL_SMALLM_MAX_ROWS && __builtin_cpu_supports("avx512f");
}

/* ------------------------------------------------------------------------------------------ */
/* Weight (N, K): each output is a dot product of an x row with a weight row, both contiguous. */

/* acc[m][j] += x[m][k:k+16] · w[j][k:k+16] for NC weight rows, lanes outside `mask` skipped.
 * The next NC rows are prefetched as these are read: the weight is then read in one sequential
 * sweep with the loads already in flight, which is what reaches memory bandwidth. */
INLINE_KERNEL void nk_step(int M, int NC, const float *x, int64_t K, const float *w, int64_t k,
                           __mmask16 mask, __m512 acc[][NK_COLS])
{
    __m512 wv[NK_COLS];
#pragma GCC unroll 3
    for (int j = 0; j < NC; j++) _mm_prefetch((const char *)(w + (j + NC) * K + k), _MM_HINT_T0);
#pragma GCC unroll 3
    for (int j = 0; j < NC; j++) wv[j] = _mm512_maskz_loadu_ps(mask, w + j * K + k);
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
        __m512 xm = _mm512_maskz_loadu_ps(mask, x + m * K + k);
#pragma GCC unroll 3
        for (int j = 0; j < NC; j++) acc[m][j] = _mm512_fmadd_ps(xm, wv[j], acc[m][j]);
    }
}

/* Columns n .. n+NC of y (y already points at column n). */
INLINE_KERNEL void nk_cols(int M, int NC, const float *x, int64_t K, const float *w,
                           const float *b, float *y, int64_t N)
{
    __m512 acc[APL_SMALLM_MAX_ROWS][NK_COLS];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 3
        for (int j = 0; j < NC; j++) acc[m][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + LANES <= K; k += LANES) nk_step(M, NC, x, K, w, k, 0xFFFF, acc);
    if (k < K) nk_step(M, NC, x, K, w, k, lanes_below(K - k), acc);
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 3
        for (int j = 0; j < NC; j++) y[m * N + j] = _mm512_reduce_add_ps(acc[m][j]) + (b ? b[j] : 0.0f);
}

INLINE_KERNEL void nk_range(int M, const float *x, int64_t K, const float *w, const float *b,
                            float *y, int64_t N, int64_t n0, int64_t n1)
{
    int64_t n = n0;
    for (; n + NK_COLS <= n1; n += NK_COLS)
        nk_cols(M, NK_COLS, x, K, w + n * K, b ? b + n : NULL, y + n, N);
    for (; n < n1; n++) nk_cols(M, 1, x, K, w + n * K, b ? b + n : NULL, y + n, N);
}

/* ------------------------------------------------------------------------------------------ */
/* Weight (K, N): a strip of NV × 16 columns accumulates x[m][k] · w[k][strip] down the K rows. */

/* The strip's last vector is masked to `last`. The rows are N floats apart, too far for the
 * hardware prefetcher to follow, so the kernel prefetches PREFETCH_ROWS rows ahead itself, into
 * L2: that many lines in flight would overflow the L1's fill buffers (measured: 19.5 GB/s to
 * L2 at 24 rows, 15-17 GB/s to L1 at 12-20 rows). */
INLINE_KERNEL void kn_strip(int M, int NV, const float *x, int64_t K, const float *w,
                            const float *b, float *y, int64_t N, __mmask16 last)
{
    __m512 acc[APL_SMALLM_MAX_ROWS][KN_VECS];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[m][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const float *row = w + k * N;
        if (k + PREFETCH_ROWS < K)
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
                _mm_prefetch((const char *)(row + PREFETCH_ROWS * N + v * LANES), _MM_HINT_T1);
        __m512 wv[KN_VECS];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            wv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, row + v * LANES);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            __m512 xb = _mm512_set1_ps(x[m * K + k]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) acc[m][v] = _mm512_fmadd_ps(xb, wv[v], acc[m][v]);
        }
    }
#pragma GCC unroll 3
    for (int v = 0; v < NV; v++) {
        __mmask16 mask = v == NV - 1 ? last : 0xFFFF;
        __m512 bias = b ? _mm512_maskz_loadu_ps(mask, b + v * LANES) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int m = 0; m < M; m++)
            _mm512_mask_storeu_ps(y + m * N + v * LANES, mask, _mm512_add_ps(acc[m][v], bias));
    }
}

INLINE_KERNEL void kn_range(int M, const float *x, int64_t K, const float *w, const float *b,
                            float *y, int64_t N, int64_t n0, int64_t n1)
{
    int64_t n = n0;
    for (; n + KN_VECS * LANES <= n1; n += KN_VECS * LANES)
        kn_strip(M, KN_VECS, x, K, w + n, b ? b + n : NULL, y + n, N, 0xFFFF);
    for (; n < n1; n += LANES)
        kn_strip(M, 1, x, K, w + n, b ? b + n : NULL, y + n, N, lanes_below(n1 - n));
}

/* ------------------------------------------------------------------------------------------ */

#define ROWS_CASE(R)                                                                               \
    case R:                                                                                        \
        if (layout == APL_SMALLM_NK) nk_range(R, x, K, w, b, y, N, n0, n1);                       \
        else kn_range(R, x, K, w, b, y, N, n0, n1);                                                \
        break;

/* Columns [n0, n1) of y; n0 a multiple of 16. */
KERNEL static void linear_cols(const float *x, int64_t M, int64_t K, const float *w,
                               apl_smallm_layout layout, const float *b, float *y, int64_t N,
                               int64_t n0, int64_t n1)
{
    switch (M) {
        ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(3) ROWS_CASE(4)
        ROWS_CASE(5) ROWS_CASE(6) ROWS_CASE(7) ROWS_CASE(8)
    }
}

/* Threads take chunks of CHUNK columns as they come free (dynamic schedule) rather than a fixed
 * half each: a sleeping OpenMP worker can take tens of microseconds to wake, and with a static
 * split the first thread would wait for it at the end of every product. */
enum { CHUNK = 6 * LANES };

void apl_smallm_linear(const float *x, int64_t M, int64_t K, const float *w,
                       apl_smallm_layout layout, const float *b, float *y, int64_t N, int threads)
{
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    int team = team_for(chunks, 1, threads);
#pragma omp parallel for schedule(dynamic, 1) num_threads(team) if (team > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n1 = (c + 1) * CHUNK;
        linear_cols(x, M, K, w, layout, b, y, N, c * CHUNK, n1 < N ? n1 : N);
    }
}
