/* check.h — the C unit tests' tiny harness: CHECK counts, NEAR compares with a tolerance, and
 * DONE() prints the "N passed, N failed" line that tests/run.lua adds up. */
#ifndef APL_CHECK_H
#define APL_CHECK_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            printf("NOT OK  %s:%d: %s: ", __FILE__, __LINE__, #cond);                              \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

#define NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g", (double)(a), (double)(b))

/* Whether the difference d is worse than the worst so far: larger, or NaN. fmax and `d > worst`
 * both drop a NaN, so a fold over an all-NaN result stayed at its start and passed; here the
 * first NaN is kept, and any `worst <= tol` check after it fails. */
static inline int worse(double d, double worst) { return !isnan(worst) && (isnan(d) || d > worst); }

/* The running maximum of differences, NaN-aware: worst = fold_max(worst, fabs(a - b)). */
static inline double fold_max(double worst, double d) { return worse(d, worst) ? d : worst; }

/* Skips the rest of a test binary with the reason: tests/run.lua counts and names every line
 * that starts with "skipped ". */
#define SKIP_ALL(...)                                                                              \
    do {                                                                                           \
        printf("skipped ");                                                                        \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        DONE();                                                                                    \
    } while (0)

/* n uniform floats in [-0.5, 0.5], from rand_r's sequence (free()). */
static inline float *random_floats(int64_t n, unsigned *seed)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
    return p;
}

#define DONE()                                                                                     \
    do {                                                                                           \
        printf("%d passed, %d failed\n", check_passed, check_failed);                              \
        return check_failed ? 1 : 0;                                                               \
    } while (0)
#endif
