/* test_model.c — gradients through apl_model_forward against central finite differences, for
 * each architecture (f64 tiny models, every parameter a leaf that requires grad): the trainers
 * rely on them, and a tied embedding gets gradient from both of its uses. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "model.h"

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

int main(void)
{
    for (size_t i = 0; i < sizeof CONFIGS / sizeof *CONFIGS; i++) check_arch(CONFIGS[i]);
    DONE();
}
