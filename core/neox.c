/* neox.c — GPT-NeoX (Pythia): rotary embeddings on the first rotary_pct of each head, a fused
 * query_key_value laid out per head, and either the parallel residual
 * x + attn(ln1(x)) + mlp(ln2(x)) or the sequential one, with an untied embed_out head. */
#include "config_impl.h"
#include "model_impl.h"

enum { EMBED, LN_F_W, LN_F_B, HEAD };
enum { LN1_W, LN1_B, LN2_W, LN2_B, QKV_W, QKV_B, DENSE_W, DENSE_B, UP_W, UP_B, DOWN_W, DOWN_B };

static apl_status parse_neox(const apl_cfg_src *s, apl_config *c)
{
    double pct;
    APL_TRY(apl_cfg_sizes(s, c));
    APL_TRY(apl_cfg_nonneg(s, "layer_norm_eps", 1e-5, 0, &c->norm_eps));
    APL_TRY(apl_cfg_act(s, "hidden_act", "gelu", &c->act));
    APL_TRY(apl_cfg_bool(s, "tie_word_embeddings", 0, &c->tie_embeddings));
    APL_TRY(apl_cfg_bool(s, "use_parallel_residual", 1, &c->parallel_residual));
    APL_TRY(apl_cfg_bool(s, "attention_bias", 1, &c->qkv_bias));
    /* newer transformers write rope_theta / partial_rotary_factor for the same knobs */
    APL_TRY(apl_cfg_nonneg(s, "rotary_emb_base", 10000, 1, &c->rope_theta));
    APL_TRY(apl_cfg_nonneg(s, "rope_theta", c->rope_theta, 1, &c->rope_theta));
    APL_TRY(apl_cfg_num(s, "rotary_pct", 0.25, &pct));
    APL_TRY(apl_cfg_num(s, "partial_rotary_factor", pct, &pct));
    if (pct < 0 || pct > 1)
        return apl_fail(APL_EFORMAT, "%s: \"rotary_pct\" must be in [0, 1]", s->where);
    c->n_kv_head = c->n_head;
    c->o_bias = c->qkv_bias;
    c->mlp_bias = 1;
    APL_TRY(apl_cfg_head_dim(s, c));
    c->rot_dims = (int64_t)(c->head_dim * pct);
    return APL_OK;
}

static int neox_specs(const apl_config *c, apl_pspec *o)
{
    int n = 0;
    int64_t C = c->hidden, I = c->inter;
    apl_pspec_add(o, &n, -1, EMBED, "gpt_neox.embed_in.weight", 2, c->vocab, C, APL_INIT_NORMAL);
    for (int l = 0; l < c->n_layer; l++) {
#define L "gpt_neox.layers.%d."
        apl_pspec_add(o, &n, l, LN1_W, L "input_layernorm.weight", 1, C, 0, APL_INIT_ONES);
        apl_pspec_add(o, &n, l, LN1_B, L "input_layernorm.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, LN2_W, L "post_attention_layernorm.weight", 1, C, 0, APL_INIT_ONES);
        apl_pspec_add(o, &n, l, LN2_B, L "post_attention_layernorm.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, QKV_W, L "attention.query_key_value.weight", 2, 3 * C, C, APL_INIT_NORMAL);
        if (c->qkv_bias)
            apl_pspec_add(o, &n, l, QKV_B, L "attention.query_key_value.bias", 1, 3 * C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, DENSE_W, L "attention.dense.weight", 2, C, C, APL_INIT_NORMAL);
        if (c->o_bias)
            apl_pspec_add(o, &n, l, DENSE_B, L "attention.dense.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, UP_W, L "mlp.dense_h_to_4h.weight", 2, I, C, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, UP_B, L "mlp.dense_h_to_4h.bias", 1, I, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, DOWN_W, L "mlp.dense_4h_to_h.weight", 2, C, I, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, DOWN_B, L "mlp.dense_4h_to_h.bias", 1, C, 0, APL_INIT_ZEROS);
#undef L
    }
    apl_pspec_add(o, &n, -1, LN_F_W, "gpt_neox.final_layer_norm.weight", 1, C, 0, APL_INIT_ONES);
    apl_pspec_add(o, &n, -1, LN_F_B, "gpt_neox.final_layer_norm.bias", 1, C, 0, APL_INIT_ZEROS);
    if (!c->tie_embeddings)
        apl_pspec_add(o, &n, -1, HEAD, "embed_out.weight", 2, c->vocab, C, APL_INIT_NORMAL);
    return n;
}

static apl_tensor *neox_attention(const apl_model *m, const apl_fwd *f, int l, apl_tensor *h)
{
    const apl_config *c = &m->cfg;
    int64_t H = c->n_head, D = c->head_dim;
    apl_tensor *qkv = apl_model_proj(m, l, QKV_W, QKV_B, h);
    int64_t shape[4] = {f->B, f->T, H, 3 * D};
    qkv = apl_t_transpose(apl_t_view(qkv, shape, 4), 1, 2);            // (B, H, T, 3D)
    apl_tensor *q = apl_model_rope(f, apl_t_narrow(qkv, 3, 0, D));     // (B, H, T, D)
    apl_tensor *k = apl_model_rope(f, apl_t_narrow(qkv, 3, D, D));
    apl_tensor *v = apl_t_narrow(qkv, 3, 2 * D, D);
    apl_tensor *y = apl_model_attend(m, f, l, q, k, v);                // (B, T, C)
    return apl_model_proj(m, l, DENSE_W, DENSE_B, y);
}

static apl_tensor *neox_mlp(const apl_model *m, int l, apl_tensor *h)
{
    h = apl_model_proj(m, l, UP_W, UP_B, h); // (B, T, I)
    return apl_model_proj(m, l, DOWN_W, DOWN_B, apl_model_act(m->cfg.act, h));
}

static apl_tensor *neox_block(const apl_model *m, const apl_fwd *f, int l, apl_tensor *x)
{
    double eps = m->cfg.norm_eps;
    apl_tensor *a = neox_attention(m, f, l,
                                   apl_t_layer_norm(x, apl_model_w(m, l, LN1_W), apl_model_w(m, l, LN1_B), eps));
    x = apl_model_queries(m, f, l, x); // (B, T or tail, C)
    if (m->cfg.parallel_residual) {
        apl_tensor *h = apl_t_layer_norm(x, apl_model_w(m, l, LN2_W), apl_model_w(m, l, LN2_B), eps);
        return apl_t_binary(APL_ADD, apl_t_binary(APL_ADD, x, a), neox_mlp(m, l, h));
    }
    x = apl_t_binary(APL_ADD, x, a);
    apl_tensor *h = apl_t_layer_norm(x, apl_model_w(m, l, LN2_W), apl_model_w(m, l, LN2_B), eps);
    return apl_t_binary(APL_ADD, x, neox_mlp(m, l, h));
}

static apl_tensor *neox_forward(const apl_model *m, const apl_fwd *f)
{
    apl_tensor *x = apl_t_embedding(apl_model_w(m, -1, EMBED), f->ids); // (B, T, C)
    apl_tensor *h = apl_model_tail(f, apl_model_layers(m, f, x, neox_block));
    apl_tensor *y = apl_t_layer_norm(h, apl_model_w(m, -1, LN_F_W), apl_model_w(m, -1, LN_F_B),
                                     m->cfg.norm_eps);
    apl_t_free(h);
    return apl_model_head(m, y); // (B, tail or T, V)
}

/* PEFT's default target_modules for the family */
static const char *const lora_targets[] = {"query_key_value", NULL};
static const apl_arch_type neox_types[] = {{"gpt_neox", "GPTNeoXForCausalLM"}, {NULL, NULL}};

const apl_arch apl_arch_neox = {
    .types = neox_types,
    .parse = parse_neox,
    .optional_prefix = NULL,
    .embed_slot = EMBED,
    .head_slot = HEAD,
    .lora_targets = lora_targets,
    .head_module = "embed_out",
    .specs = neox_specs,
    .forward = neox_forward,
};
