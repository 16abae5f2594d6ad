/* attention.c — softmax attention over f32 views (see attention.h). */
#include "attention.h"

#include "vecmath.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

enum { QB = LANES }; /* queries per block, and keys per tile */

int apl_attention_usable(void) { return __builtin_cpu_supports("avx512f"); }

static int64_t round16(int64_t n) { return (n + LANES - 1) / LANES * LANES; }

int64_t apl_attention_scratch(int64_t B, int64_t T, int64_t S, int64_t D, int threads)
{
    if (T <= APL_ATTENTION_FEW) return threads * S;
    int64_t S16 = round16(S);
    return B * S16 * round16(T) + threads * (2 * D * S16 + S16 * QB + D * QB);
}

/* ------------------------------------------------------------------------------------------ */
/* A few queries: one (row, head, query) per task */

INLINE_KERNEL float dot(const float *a, const float *b, int64_t D)
{
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += LANES) {
        __mmask16 m = lanes_below(D - d);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* y += p · x over D floats. */
INLINE_KERNEL void axpy(float *y, float p, const float *x, int64_t D)
{
    __m512 pv = _mm512_set1_ps(p);
    for (int64_t d = 0; d < D; d += LANES) {
        __mmask16 m = lanes_below(D - d);
        __m512 r = _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(m, x + d), _mm512_maskz_loadu_ps(m, y + d));
        _mm512_mask_storeu_ps(y + d, m, r);
    }
}

/* One query: scores into sc (S floats), their softmax, the weighted sum of values into y (D). */
KERNEL static void attend_one(const float *qv, const float *kb, int64_t kst, const float *vb, int64_t vst,
                              const float *bias, int64_t S, int64_t D, float scale, float *sc, float *y)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < S; j++) {
        sc[j] = scale * dot(qv, kb + j * kst, D) + bias[j];
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0;
    for (int64_t j = 0; j < S; j++) sum += sc[j] = expf(sc[j] - mx);
    for (int64_t d = 0; d < D; d++) y[d] = 0;
    for (int64_t j = 0; j < S; j++) axpy(y, sc[j], vb + j * vst, D);
    for (int64_t d = 0; d < D; d++) y[d] /= sum;
}

static void attend_few(apl_attention_view q, apl_attention_view k, apl_attention_view v,
                       const float *bias, int64_t bias_b, int64_t B, int64_t H, int64_t H_kv, int64_t T,
                       int64_t S, int64_t D, float scale, float *out, float *scratch, int threads)
{
    int64_t group = H / H_kv, tasks = B * H * T;
    int team = team_for(tasks, 4, threads);
#pragma omp parallel for schedule(dynamic, 4) num_threads(team) if (team > 1)
    for (int64_t i = 0; i < tasks; i++) {
        int64_t b = i / (H * T), h = i / T % H, t = i % T, hk = h / group;
        float *sc = scratch + (int64_t)omp_get_thread_num() * S;
        attend_one(q.p + b * q.sb + h * q.sh + t * q.st, k.p + b * k.sb + hk * k.sh, k.st,
                   v.p + b * v.sb + hk * v.sh, v.st, bias + b * bias_b + t * S, S, D, scale, sc,
                   out + ((b * T + t) * H + h) * D);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Many queries: blocks of 16 queries, the 16 lanes of every vector below.
 *
 * Per (row, head): the keys transposed, kt (D, S16), zero past S. Per block: its queries
 * transposed, qt (D, 16), and the scores st (S16, 16), key-major, so that a tile's scores are 16
 * accumulators (one per key, a lane per query) fed by one load of qt and 16 broadcasts of kt per
 * step of d, and the softmax runs down the keys with no lane crossing. The bias is read the same
 * way, transposed once per call into bt (B or 1, S16, T16): -inf at keys past S (they vanish from
 * the softmax), the lowest value at queries past T (they are computed and never stored). */

/* bt[j][t] = bias[t][j], padded as above. */
static void transpose_bias(const float *bias, int64_t T, int64_t S, int64_t T16, float *bt)
{
    for (int64_t j = 0; j < round16(S); j++)
        for (int64_t t = 0; t < T16; t++)
            bt[j * T16 + t] = j >= S ? -INFINITY : t >= T ? -FLT_MAX : bias[t * S + j];
}

/* A tile is skipped when every entry of its bias is masked: such a score is the bias itself
 * (-FLT_MAX + s rounds back to -FLT_MAX for any |s| < 2^103), whatever the keys hold. */
INLINE_KERNEL int tile_masked(const float *bt, int64_t T16)
{
    const __m512 lowest = _mm512_set1_ps(-FLT_MAX);
    __mmask16 open = 0;
#pragma GCC unroll 16
    for (int j = 0; j < QB; j++) open |= _mm512_cmp_ps_mask(_mm512_loadu_ps(bt + j * T16), lowest, _CMP_GT_OQ);
    return open == 0;
}

/* st[j][i] = scale · q_i · k_j + bias[i][j] for the tile's 16 keys (kt, bt at the tile). */
INLINE_KERNEL void score_tile(const float *qt, const float *kt, int64_t S16, int64_t D, const float *bt,
                              int64_t T16, float scale, float *st)
{
    if (tile_masked(bt, T16)) {
#pragma GCC unroll 16
        for (int j = 0; j < QB; j++) _mm512_storeu_ps(st + j * QB, _mm512_loadu_ps(bt + j * T16));
        return;
    }
    __m512 acc[QB];
#pragma GCC unroll 16
    for (int j = 0; j < QB; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d++) {
        __m512 qv = _mm512_loadu_ps(qt + d * QB);
        const float *kd = kt + d * S16;
#pragma GCC unroll 16
        for (int j = 0; j < QB; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(kd[j]), qv, acc[j]);
    }
    const __m512 sv = _mm512_set1_ps(scale);
#pragma GCC unroll 16
    for (int j = 0; j < QB; j++)
        _mm512_storeu_ps(st + j * QB, _mm512_fmadd_ps(acc[j], sv, _mm512_loadu_ps(bt + j * T16)));
}

/* Scores to unnormalised probabilities in place; returns 1 / (sum per query). live[tile] says
 * whether any of the tile's probabilities is non-zero (the others add nothing to the output). */
INLINE_KERNEL __m512 softmax_down(float *st, int64_t S16, unsigned char *live)
{
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < S16; j++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + j * QB));
    for (int64_t tile = 0; tile < S16 / QB; tile++) {
        __mmask16 any = 0;
#pragma GCC unroll 16
        for (int j = 0; j < QB; j++) {
            float *row = st + (tile * QB + j) * QB;
            __m512 p = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(row), mx));
            _mm512_storeu_ps(row, p);
            sum = _mm512_add_ps(sum, p);
            any |= _mm512_cmp_ps_mask(p, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        }
        live[tile] = any != 0;
    }
    return _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
}

/* out[i] = inv[i] · Σ_j st[j][i] v_j for the block's nq queries (out rows ost apart). */
INLINE_KERNEL void weigh_values(const float *st, const unsigned char *live, int64_t S, const float *vb,
                                int64_t vst, int64_t D, __m512 inv, float *out, int64_t ost, int64_t nq)
{
    float invs[QB];
    _mm512_storeu_ps(invs, inv);
    for (int64_t dv = 0; dv < D; dv += LANES) {
        __mmask16 m = lanes_below(D - dv);
        __m512 acc[QB];
#pragma GCC unroll 16
        for (int i = 0; i < QB; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t tile = 0; tile * QB < S; tile++) {
            if (!live[tile]) continue;
            int64_t j1 = (tile + 1) * QB < S ? (tile + 1) * QB : S;
            for (int64_t j = tile * QB; j < j1; j++) {
                __m512 vv = _mm512_maskz_loadu_ps(m, vb + j * vst + dv);
                const float *pj = st + j * QB;
#pragma GCC unroll 16
                for (int i = 0; i < QB; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(pj[i]), vv, acc[i]);
            }
        }
        // a constant trip count keeps acc in registers (a variable one spilled it every step)
#pragma GCC unroll 16
        for (int i = 0; i < QB; i++)
            if (i < nq) _mm512_mask_storeu_ps(out + i * ost + dv, m, _mm512_mul_ps(acc[i], _mm512_set1_ps(invs[i])));
    }
}

/* Rows 0..16 of x (stride xst, only the first n exist) as columns: y[d][r] = x[r][d], y's rows
 * yst apart, zero for r >= n. */
INLINE_KERNEL void gather_rows(const float *x, int64_t xst, int64_t n, int64_t D, float *y, int64_t yst)
{
    __mmask16 m = lanes_below(n);
    __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32((int)xst));
    for (int64_t d = 0; d < D; d++)
        _mm512_storeu_ps(y + d * yst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x + d, 4));
}

typedef struct {
    apl_attention_view q, k, v;
    const float *bt; /* the transposed bias */
    int64_t bt_b, B, H, H_kv, T, S, D, S16, T16;
    float scale;
    float *out;
} blocked;

static void prefetch_rows(const float *p, int64_t st, int64_t r0, int64_t r1, int64_t D)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t d = 0; d < D; d += LANES) _mm_prefetch((const char *)(p + r * st + d), _MM_HINT_T1);
}

/* Part `part` of `parts` of task i's query, key and value rows, into L2. The rows are a tensor
 * row apart (9 KB in GPT-2's fused QKV output), too far for the hardware prefetchers: read cold,
 * they stalled the kernel for a third of its time. */
static void prefetch_task(const blocked *a, int64_t i, int64_t part, int64_t parts)
{
    if (i >= a->B * a->H) return;
    int64_t b = i / a->H, h = i % a->H, hk = h / (a->H / a->H_kv), T = a->T, S = a->S;
    prefetch_rows(a->q.p + b * a->q.sb + h * a->q.sh, a->q.st, T * part / parts, T * (part + 1) / parts, a->D);
    prefetch_rows(a->k.p + b * a->k.sb + hk * a->k.sh, a->k.st, S * part / parts, S * (part + 1) / parts, a->D);
    prefetch_rows(a->v.p + b * a->v.sb + hk * a->v.sh, a->v.st, S * part / parts, S * (part + 1) / parts, a->D);
}

/* Task i, one (row, head): its keys transposed into kt and its values copied together into vc
 * (rows a tensor row apart fall into a few L1 sets and evict each other: read in place, every
 * block's value loads missed L1), then its query blocks, during which the next task's rows are
 * prefetched (threads take consecutive tasks). */
KERNEL static void attend_head(const blocked *a, int64_t i, float *kt, float *vc, float *st, float *qt)
{
    int64_t b = i / a->H, h = i % a->H, hk = h / (a->H / a->H_kv), D = a->D, S16 = a->S16, T16 = a->T16;
    const float *kb = a->k.p + b * a->k.sb + hk * a->k.sh, *vb = a->v.p + b * a->v.sb + hk * a->v.sh;
    const float *qb = a->q.p + b * a->q.sb + h * a->q.sh;
    for (int64_t j0 = 0; j0 < S16; j0 += QB) gather_rows(kb + j0 * a->k.st, a->k.st, a->S - j0, D, kt + j0, S16);
    for (int64_t j = 0; j < a->S; j++) memcpy(vc + j * D, vb + j * a->v.st, sizeof(float) * (size_t)D);
    unsigned char live[S16 / QB];
    int64_t blocks = (a->T + QB - 1) / QB;
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t t0 = blk * QB, nq = a->T - t0 < QB ? a->T - t0 : QB;
        prefetch_task(a, i + 1, blk, blocks);
        gather_rows(qb + t0 * a->q.st, a->q.st, nq, D, qt, QB);
        const float *bt = a->bt + b * a->bt_b + t0;
        for (int64_t j0 = 0; j0 < S16; j0 += QB)
            score_tile(qt, kt + j0, S16, D, bt + j0 * T16, T16, a->scale, st + j0 * QB);
        __m512 inv = softmax_down(st, S16, live);
        weigh_values(st, live, a->S, vc, D, D, inv, a->out + ((b * a->T + t0) * a->H + h) * D,
                     a->H * D, nq);
    }
}

static void attend_blocked(apl_attention_view q, apl_attention_view k, apl_attention_view v,
                           const float *bias, int64_t bias_b, int64_t B, int64_t H, int64_t H_kv,
                           int64_t T, int64_t S, int64_t D, float scale, float *out, float *scratch,
                           int threads)
{
    int64_t S16 = round16(S), T16 = round16(T), rows = bias_b ? B : 1;
    blocked a = {q, k, v, scratch, bias_b ? S16 * T16 : 0, B, H, H_kv, T, S, D, S16, T16, scale, out};
    float *own = scratch + rows * S16 * T16;
    int team = team_for(B * H, 1, threads);
#pragma omp parallel num_threads(team) if (team > 1)
    {
        float *kt = own + (int64_t)omp_get_thread_num() * (2 * D * S16 + S16 * QB + D * QB), *vc = kt + D * S16;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) transpose_bias(bias + r * bias_b, T, S, T16, scratch + r * S16 * T16);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * H; i++) attend_head(&a, i, kt, vc, vc + D * S16, vc + D * S16 + S16 * QB);
    }
}

/* ------------------------------------------------------------------------------------------ */

void apl_attention(apl_attention_view q, apl_attention_view k, apl_attention_view v,
                   const float *bias, int64_t bias_b, int64_t B, int64_t H, int64_t H_kv, int64_t T,
                   int64_t S, int64_t D, float scale, float *out, float *scratch, int threads)
{
    if (T <= APL_ATTENTION_FEW)
        attend_few(q, k, v, bias, bias_b, B, H, H_kv, T, S, D, scale, out, scratch, threads);
    else
        attend_blocked(q, k, v, bias, bias_b, B, H, H_kv, T, S, D, scale, out, scratch, threads);
}
