/* test_model.c — for each architecture (f64 tiny models, every parameter a leaf that requires
 * grad): gradients through apl_model_forward against central finite differences (the trainers
 * rely on them, and a tied embedding gets gradient from both of its uses); and preference pairs
 * packed one per row (apl_score_pairs) against scoring each sequence on its own; logits of the
 * last positions only against the full forward's. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "score.h"

static const char *CONFIGS[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":23,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,"
    "\"n_positions\":16}",
    "{\"model_type\":\"gpt_neox\",\"vocab_size\":23,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"intermediate_size\":32,\"rotary_pct\":0.5,"
    "\"max_position_embeddings\":16}",
    "{\"model_type\":\"llama\",\"vocab_size\":23,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":32,"
    "\"max_position_embeddings\":16,\"tie_word_embeddings\":true}",
};

/* loss = sum(logits * probe): a fixed linear function of every logit */
static double loss_of(apl_model *m, apl_tensor *ids, apl_tensor *mask, apl_tensor *probe,
                      apl_tensor **loss)
{
    apl_tensor *logits = NULL;
    double v = NAN;
    if (apl_model_forward(m, ids, mask, NULL, &logits) != APL_OK) return v;
    apl_tensor *l = apl_t_reduce(APL_SUM, apl_t_binary(APL_MUL, logits, probe), APL_ALL_DIMS, 0);
    apl_t_item(l, &v);
    apl_t_free(logits);
    if (loss) *loss = l;
    return v;
}

static void check_arch(const char *cfg)
{
    apl_model *m;
    CHECK(apl_model_init(cfg, 3, APL_F64, APL_CPU, &m) == APL_OK, "%s", apl_last_error());
    int mark = apl_scope_push();
    /* noise on every parameter, so that biases and norms matter */
    apl_gen *g = apl_gen_new(5);
    for (int i = 0; i < apl_model_num_tensors(m); i++) {
        apl_tensor *p = apl_model_tensor(m, i);
        int64_t shape[APL_MAX_DIMS];
        int nd = apl_t_shape(p, shape);
        apl_t_add_(p, apl_t_randn(shape, nd, APL_F64, APL_CPU, g), 0.3);
        apl_t_requires_grad_(p, 1);
    }
    int64_t ids_v[] = {0, 4, 9, 2, 7, 1, 12, 5}, mask_v[] = {1, 1, 1, 1, 1, 1, 1, 1}, shape[2] = {2, 4};
    apl_tensor *ids = apl_t_from_data(ids_v, shape, 2, APL_I64);
    apl_tensor *mask = apl_t_from_data(mask_v, shape, 2, APL_I64);
    int64_t pshape[3] = {2, 4, 23};
    apl_tensor *probe = apl_t_randn(pshape, 3, APL_F64, APL_CPU, g);
    apl_tensor *loss = NULL;
    loss_of(m, ids, mask, probe, &loss);
    CHECK(apl_t_backward(loss) == APL_OK, "%s", apl_last_error());
    double worst = 0;
    for (int i = 0; i < apl_model_num_tensors(m); i++) {
        apl_tensor *p = apl_model_tensor(m, i), *grad = NULL;
        apl_t_grad(p, &grad);
        CHECK(grad != NULL, "%s has no gradient", apl_model_tensor_name(m, i));
        if (!grad) continue;
        /* the first entry of the flattened parameter, and one in its middle */
        int64_t n = apl_t_numel(p), picks[2] = {1 % n, n / 2 + (n > 2 ? 1 : 0)};
        if (i == 0) picks[0] = 4 * apl_t_size(p, 1) + 3; /* a token the batch uses */
        for (int k = 0; k < 2; k++) {
            int64_t flat[1] = {n};
            apl_tensor *pf = apl_t_reshape(p, flat, 1), *gf = apl_t_reshape(grad, flat, 1);
            apl_tensor *pe = apl_t_narrow(pf, 0, picks[k], 1);
            double x0, gv, eps = 1e-3;
            apl_t_item(pe, &x0);
            apl_t_item(apl_t_narrow(gf, 0, picks[k], 1), &gv);
            int prev = apl_set_grad_enabled(0);
            apl_t_fill_(pe, x0 + eps);
            double lp = loss_of(m, ids, mask, probe, NULL);
            apl_t_fill_(pe, x0 - eps);
            double lm = loss_of(m, ids, mask, probe, NULL);
            apl_t_fill_(pe, x0);
            apl_set_grad_enabled(prev);
            double fd = (lp - lm) / (2 * eps), d = fabs(fd - gv) / (1 + fabs(fd));
            if (d > worst) worst = d;
            /* loose: the shim runs softmax and RMSNorm in f32 even for f64 models, and that
             * rounding over a 1e-3 step is ~1e-3; a wrong or missing path is off by O(1) */
            CHECK(d < 1e-2, "%s[%lld]: grad %g, finite difference %g", apl_model_tensor_name(m, i),
                  (long long)picks[k], gv, fd);
        }
        apl_t_free(grad);
    }
    printf("    %s: max relative gradient error %.2g\n", apl_model_type(m), worst);
    apl_gen_free(g);
    apl_scope_pop(mark);
    apl_model_free(m);
}

/* The largest |a - b| over two tensors of the same shape. */
static double max_diff(apl_tensor *a, apl_tensor *b)
{
    double d = INFINITY;
    apl_t_item(apl_t_reduce(APL_AMAX, apl_t_unary(APL_ABS, apl_t_binary(APL_SUB, a, b)), APL_ALL_DIMS, 0), &d);
    return d;
}

/* sum(chosen) + 2 sum(rejected), backward: the weights make a mix-up of the two visible. */
static apl_tensor *pair_loss(apl_tensor *sc, apl_tensor *sr)
{
    apl_tensor *two_r = apl_t_binary_s(APL_MUL, apl_t_reduce(APL_SUM, sr, APL_ALL_DIMS, 0), 2.0);
    apl_tensor *loss = apl_t_binary(APL_ADD, apl_t_reduce(APL_SUM, sc, APL_ALL_DIMS, 0), two_r);
    CHECK(apl_t_backward(loss) == APL_OK, "%s", apl_last_error());
    return loss;
}

/* Four pairs of different lengths (left padding), two with an empty completion. Two copies of
 * the model (the same seed) take the two paths, so their gradients can be compared. */
static void check_packed(const char *cfg)
{
    static const int64_t P[] = {3, 5, 7, 1, 2, 9, 4, 4, 8, 6}, C[] = {2, 11, 13, 1, 5, 7};
    static const int64_t R[] = {6, 6, 20, 9, 3, 10};
    apl_seq prompts[8] = {{P, 3}, {P + 3, 1}, {P + 4, 2}, {P + 6, 4}};
    apl_seq comps[8] = {{C, 2}, {C, 0}, {C + 2, 3}, {C + 5, 1}, {R, 3}, {R + 3, 2}, {R, 0}, {R + 5, 1}};
    memcpy(prompts + 4, prompts, 4 * sizeof *prompts);
    apl_model *m[2];
    for (int k = 0; k < 2; k++) {
        CHECK(apl_model_init(cfg, 7, APL_F64, APL_CPU, &m[k]) == APL_OK, "%s", apl_last_error());
        for (int i = 0; i < apl_model_num_tensors(m[k]); i++) apl_t_requires_grad_(apl_model_tensor(m[k], i), 1);
    }
    int mark = apl_scope_push();
    int prev = apl_set_grad_enabled(1);
    apl_tensor *sc = NULL, *sr = NULL, *sums = NULL;
    CHECK(apl_score_pairs(m[0], prompts, comps, comps + 4, 4, 0, &sc, &sr) == APL_OK, "%s", apl_last_error());
    CHECK(apl_score_batch(m[1], prompts, comps, 8, 0, &sums, NULL) == APL_OK, "%s", apl_last_error());
    pair_loss(sc, sr);
    pair_loss(apl_t_narrow(sums, 0, 0, 4), apl_t_narrow(sums, 0, 4, 4));
    double dv = fmax(max_diff(sc, apl_t_narrow(sums, 0, 0, 4)), max_diff(sr, apl_t_narrow(sums, 0, 4, 4)));
    CHECK(dv < 1e-9, "%s: packed pairs' log-probs differ from separate rows by %g", apl_model_type(m[0]), dv);
    double dg = 0;
    for (int i = 0; i < apl_model_num_tensors(m[0]); i++) {
        apl_tensor *g0 = NULL, *g1 = NULL;
        apl_t_grad(apl_model_tensor(m[0], i), &g0);
        apl_t_grad(apl_model_tensor(m[1], i), &g1);
        dg = fmax(dg, g0 && g1 ? max_diff(g0, g1) : INFINITY);
        apl_t_free(g0);
        apl_t_free(g1);
    }
    // 1e-6, not 1e-9: Llama's RMSNorm normalises in f32 even in an f64 model (as HF's does), and
    // the two paths sum its gradient in different orders; a path mix-up is off by O(1e-2)
    CHECK(dg < 1e-6, "%s: packed pairs' gradients differ from separate rows by %g", apl_model_type(m[0]), dg);
    apl_set_grad_enabled(prev);
    apl_t_free(sc);
    apl_t_free(sr);
    apl_t_free(sums);
    apl_scope_pop(mark);
    apl_model_free(m[0]);
    apl_model_free(m[1]);
}

/* Logits of the last positions only (apl_model_forward_tail, where the last layer computes just
 * those queries) against the full forward's, in f64 (libtorch's attention) and f32 (apl's
 * kernel, over a bias view narrowed to the tail): row 0 starts with padding; then through a KV
 * cache, a prefill of 4 positions keeping 1 and a step of 2. */
static void check_tail(const char *cfg, apl_dtype dt)
{
    apl_model *m;
    CHECK(apl_model_init(cfg, 11, dt, APL_CPU, &m) == APL_OK, "%s", apl_last_error());
    int mark = apl_scope_push();
    int64_t ids_v[] = {0, 4, 9, 2, 7, 1, 3, 12, 5, 8, 6, 10}, mask_v[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t shape[2] = {2, 6};
    apl_tensor *ids = apl_t_from_data(ids_v, shape, 2, APL_I64), *mask = apl_t_from_data(mask_v, shape, 2, APL_I64);
    apl_tensor *full = NULL, *part = NULL, *pre = NULL, *step = NULL;
    double tol = dt == APL_F64 ? 1e-12 : 1e-5;
    CHECK(apl_model_forward(m, ids, mask, NULL, &full) == APL_OK, "%s", apl_last_error());
    for (int64_t tail = 1; tail < 6; tail += 2) {
        CHECK(apl_model_forward_tail(m, ids, mask, NULL, tail, &part) == APL_OK, "%s", apl_last_error());
        double d = max_diff(part, apl_t_narrow(full, 1, 6 - tail, tail));
        CHECK(d < tol, "%s: the last %lld positions differ from the full forward's by %g", apl_model_type(m),
              (long long)tail, d);
        apl_t_free(part);
    }
    apl_kv_cache *cache = NULL;
    CHECK(apl_kv_cache_new(m, 2, 8, &cache) == APL_OK, "%s", apl_last_error());
    apl_tensor *m4 = apl_t_narrow(mask, 1, 0, 4);
    CHECK(apl_model_forward_tail(m, apl_t_narrow(ids, 1, 0, 4), m4, cache, 1, &pre) == APL_OK, "%s", apl_last_error());
    CHECK(apl_model_forward_tail(m, apl_t_narrow(ids, 1, 4, 2), mask, cache, 2, &step) == APL_OK, "%s", apl_last_error());
    double d = fmax(max_diff(pre, apl_t_narrow(full, 1, 3, 1)), max_diff(step, apl_t_narrow(full, 1, 4, 2)));
    CHECK(d < tol, "%s: through the cache, logits differ from the full forward's by %g", apl_model_type(m), d);
    apl_t_free(full), apl_t_free(pre), apl_t_free(step);
    apl_kv_cache_free(cache);
    apl_scope_pop(mark);
    apl_model_free(m);
}

/* A packed forward whose embedding fails (an id outside the vocabulary) returns the error: the
 * head used to read the failed hidden states' size (apl_model_tail) and crash. */
static void check_packed_error(const char *cfg)
{
    apl_model *m;
    CHECK(apl_model_init(cfg, 5, APL_F32, APL_CPU, &m) == APL_OK, "%s", apl_last_error());
    int mark = apl_scope_push();
    int64_t ids_v[] = {1, 999, 2}, pos[] = {0, 1, 2}, rows_v[] = {2}, shape[2] = {1, 3}, one = 1;
    apl_tensor *ids = apl_t_from_data(ids_v, shape, 2, APL_I64);
    apl_tensor *rows = apl_t_from_data(rows_v, &one, 1, APL_I64);
    apl_tensor *bias = apl_t_attention_bias(NULL, 3, 3, APL_F32, APL_CPU);
    apl_tensor *logits = NULL;
    apl_status st = apl_model_forward_packed(m, ids, pos, bias, rows, &logits);
    CHECK(st == APL_ETORCH && !logits, "%s: an id outside the vocabulary gave status %d",
          apl_model_type(m), (int)st);
    ids_v[1] = 3;
    apl_tensor *good = apl_t_from_data(ids_v, shape, 2, APL_I64);
    CHECK(apl_model_forward_packed(m, good, pos, bias, rows, &logits) == APL_OK, "%s", apl_last_error());
    CHECK(apl_t_size(logits, 1) == 1, "packed logits: %lld rows", (long long)apl_t_size(logits, 1));
    apl_t_free(logits);
    apl_scope_pop(mark);
    apl_model_free(m);
}

int main(void)
{
    for (size_t i = 0; i < sizeof CONFIGS / sizeof *CONFIGS; i++) {
        check_packed_error(CONFIGS[i]);
        check_arch(CONFIGS[i]);
        check_packed(CONFIGS[i]);
        check_tail(CONFIGS[i], APL_F64);
        check_tail(CONFIGS[i], APL_F32);
    }
    // GPT-NeoX with the residual after attention, then the MLP (Pythia's is parallel)
    check_tail("{\"model_type\":\"gpt_neox\",\"vocab_size\":23,\"hidden_size\":16,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":2,\"intermediate_size\":32,\"rotary_pct\":0.5,"
               "\"max_position_embeddings\":16,\"use_parallel_residual\":false}", APL_F64);
    DONE();
}
