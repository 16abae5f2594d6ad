/* vecmath.h — what apl's CPU kernels share: lane masks, e^x for x <= 0, OpenMP team sizes.
 *
 *   KERNEL static void f(...) { __m512 e = exp_nonpositive(_mm512_min_ps(x, zero)); }
 *
 * Every function that uses them carries KERNEL (the avx512f target) and is reached only after
 * its module's run-time check (__builtin_cpu_supports("avx512f")), so apl still runs on CPUs
 * without AVX-512; those take libtorch's path.
 */
#ifndef APL_VECMATH_H
#define APL_VECMATH_H

#include <immintrin.h>
#include <stdint.h>

#define KERNEL __attribute__((target("avx512f,fma")))
#define INLINE_KERNEL KERNEL __attribute__((always_inline)) static inline

enum { LANES = 16 };

/* The first n of 16 lanes (all of them for n >= 16). */
static inline __mmask16 lanes_below(int64_t n)
{
    return n >= LANES ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* OpenMP threads for `tasks` tasks of which each thread should get at least `per_thread`: no
 * idle threads are woken for small work (waking one costs tens of microseconds). */
static inline int team_for(int64_t tasks, int64_t per_thread, int threads)
{
    int64_t want = (tasks + per_thread - 1) / per_thread;
    return want < 1 ? 1 : want < threads ? (int)want : threads; // num_threads(0) is not allowed
}

/* e^x for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor polynomial to r^7 (Horner),
 * then scaled by 2^n (scalef underflows cleanly to 0 far below the f32 range). Relative error
 * ~2e-7. -inf gives 0. */
INLINE_KERNEL __m512 exp_nonpositive(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    // e^-104 is 0 in f32 and this keeps n finite; NaN passes through (max returns its second
    // operand when either is NaN), so a NaN input gives NaN
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    static const float c[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
    return _mm512_scalef_ps(p, n);
}

#endif
