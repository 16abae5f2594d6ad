/* test_shim.c — the shim's contract: scopes free what is not kept, errors become statuses with
 * the op's name, failed inputs propagate, and the core ops compute known values. */
#include <string.h>

#include "check.h"
#include "torch_shim.h"

static void test_errors(void)
{
    int64_t s23[] = {2, 3}, s45[] = {4, 5};
    apl_tensor *a = apl_t_full(s23, 2, 1.0, APL_F32, APL_CPU);
    apl_tensor *b = apl_t_full(s45, 2, 1.0, APL_F32, APL_CPU);
    apl_tensor *c = apl_t_matmul(a, b);
    CHECK(c == NULL, "matmul of (2,3) and (4,5) must fail");
    CHECK(strstr(apl_last_error(), "matmul") != NULL, "message: %s", apl_last_error());
    /* a failed input propagates without replacing the first message */
    apl_tensor *d = apl_t_unary(APL_EXP, c);
    CHECK(d == NULL, "op on a failed input fails");
    CHECK(strstr(apl_last_error(), "matmul") != NULL, "first message kept: %s", apl_last_error());
    CHECK(apl_t_ok(d) == APL_ETORCH, "ok() reports the failure");
    apl_tensor *e = apl_t_to(a, APL_F32, 0);
    if (!apl_cuda_available()) CHECK(e == NULL && strstr(apl_last_error(), "CUDA"), "%s", apl_last_error());
    apl_t_free(e);
    apl_t_free(a);
    apl_t_free(b);
}

static void test_scope(void)
{
    int64_t s[] = {4};
    int mark = apl_scope_push();
    apl_tensor *x = apl_t_arange(0, 4, 1, APL_F32, APL_CPU);
    apl_tensor *y = apl_t_binary_s(APL_MUL, x, 2.0);
    apl_tensor *z = apl_keep(apl_t_binary(APL_ADD, x, y)); /* 3 * x */
    apl_t_free(y); /* freeing inside a scope is allowed */
    apl_scope_pop(mark);
    float out[4];
    CHECK(apl_t_read(z, APL_F32, out, sizeof out) == APL_OK, "%s", apl_last_error());
    for (int i = 0; i < 4; i++) NEAR(out[i], 3.0 * i, 0);
    CHECK(apl_t_read(z, APL_F32, out, 8) == APL_ETORCH, "short buffer refused");
    apl_t_free(z);
    (void)s;
}

static void test_attention(void)
{
    /* One head, T=2 queries, S=3 keys (one cached): query 0 sees keys 0..1, query 1 sees all.
     * With a padding mask hiding key 0, query 0 sees only key 1. */
    float q[] = {1, 0, 0, 1}, k[] = {1, 0, 0, 1, 1, 1}, v[] = {1, 2, 3};
    int64_t sq[] = {1, 1, 2, 2}, sk[] = {1, 1, 3, 2}, sv[] = {1, 1, 3, 1}, sm[] = {1, 3};
    apl_tensor *Q = apl_t_from_data(q, sq, 4, APL_F32), *K = apl_t_from_data(k, sk, 4, APL_F32);
    apl_tensor *V = apl_t_from_data(v, sv, 4, APL_F32);
    float m[] = {0, 1, 1};
    apl_tensor *M = apl_t_from_data(m, sm, 2, APL_F32);
    apl_tensor *B = apl_t_attention_bias(NULL, 2, 3, APL_F32, APL_CPU);
    apl_tensor *BM = apl_t_attention_bias(M, 2, 3, APL_F32, APL_CPU);
    apl_tensor *o = apl_t_attention(Q, K, V, B, 1.0);
    apl_tensor *om = apl_t_attention(Q, K, V, BM, 1.0);
    float out[2], outm[2];
    CHECK(apl_t_read(o, APL_F32, out, sizeof out) == APL_OK, "%s", apl_last_error());
    CHECK(apl_t_read(om, APL_F32, outm, sizeof outm) == APL_OK, "%s", apl_last_error());
    /* query 0 = (1,0): scores k0=1, k1=0 -> softmax (e, 1)/(e+1) over values (1, 2) */
    double e = exp(1.0);
    NEAR(out[0], (e * 1 + 1 * 2) / (e + 1), 1e-6);
    /* query 1 = (0,1): scores 0, 1, 1 over values 1, 2, 3 */
    NEAR(out[1], (1 * 1 + e * 2 + e * 3) / (1 + 2 * e), 1e-6);
    NEAR(outm[0], 2.0, 1e-6);
    NEAR(outm[1], (e * 2 + e * 3) / (2 * e), 1e-6);
    apl_tensor *all[] = {Q, K, V, M, B, BM, o, om};
    for (int i = 0; i < 8; i++) apl_t_free(all[i]);
}

static void test_adam(void)
{
    /* One Adam step from zero state moves each weight by -lr * sign(grad) (bias-corrected). */
    int64_t s[] = {3};
    float w0[] = {1, 2, 3};
    apl_tensor *w = apl_t_from_data(w0, s, 1, APL_F32);
    apl_t_requires_grad_(w, 1);
    apl_tensor *loss = apl_t_reduce(APL_SUM, apl_keep(apl_t_binary(APL_MUL, w, w)), APL_ALL_DIMS, 0);
    CHECK(apl_t_backward(loss) == APL_OK, "%s", apl_last_error());
    apl_tensor *m = apl_t_full(s, 1, 0, APL_F32, APL_CPU), *v = apl_t_full(s, 1, 0, APL_F32, APL_CPU);
    double norm;
    CHECK(apl_clip_grad_norm(&w, 1, 0, &norm) == APL_OK, "%s", apl_last_error());
    NEAR(norm, sqrt(4 + 16 + 36), 1e-5);
    apl_adam_opts o = {0.1, 0.9, 0.999, 1e-8, 0};
    CHECK(apl_adam_step(&w, &m, &v, 1, 1, &o) == APL_OK, "%s", apl_last_error());
    float w1[3];
    apl_t_read(w, APL_F32, w1, sizeof w1);
    for (int i = 0; i < 3; i++) NEAR(w1[i], w0[i] - 0.1, 1e-5);
    apl_t_free(loss);
    apl_t_free(w);
    apl_t_free(m);
    apl_t_free(v);
}

int main(void)
{
    test_errors();
    test_scope();
    test_attention();
    test_adam();
    DONE();
}
