/* gpt2.c — GPT-2: learned positions, pre-LayerNorm blocks, GELU (tanh) MLP, lm_head tied to the
 * token embedding. HF stores its projections as Conv1D, weight (in, out), kept in that layout so
 * that saved checkpoints are HF's. */
#include "config_impl.h"
#include "model_impl.h"

enum { WTE, WPE, LN_F_W, LN_F_B };
enum { LN1_W, LN1_B, QKV_W, QKV_B, PROJ_W, PROJ_B, LN2_W, LN2_B, FC_W, FC_B, FC2_W, FC2_B };

static apl_status parse_gpt2(const apl_cfg_src *s, apl_config *c)
{
    APL_TRY(apl_cfg_int(s, "vocab_size", 1, 0, &c->vocab));
    APL_TRY(apl_cfg_int(s, "n_embd", 1, 0, &c->hidden));
    APL_TRY(apl_cfg_int(s, "n_layer", 1, 0, &c->n_layer));
    APL_TRY(apl_cfg_int(s, "n_head", 1, 0, &c->n_head));
    APL_TRY(apl_cfg_int(s, "n_positions", 0, 1024, &c->max_pos));
    APL_TRY(apl_cfg_int(s, "n_inner", 0, 4 * c->hidden, &c->inter));
    APL_TRY(apl_cfg_nonneg(s, "layer_norm_epsilon", 1e-5, 0, &c->norm_eps));
    APL_TRY(apl_cfg_act(s, "activation_function", "gelu_new", &c->act));
    APL_TRY(apl_cfg_bool(s, "tie_word_embeddings", 1, &c->tie_embeddings));
    if (!c->tie_embeddings)
        return apl_fail(APL_EUNSUPPORTED, "%s: \"tie_word_embeddings\": GPT-2 ties its lm_head",
                        s->where);
    c->n_kv_head = c->n_head;
    c->qkv_bias = c->o_bias = c->mlp_bias = 1;
    return apl_cfg_head_dim(s, c);
}

static int gpt2_specs(const apl_config *c, apl_pspec *o)
{
    int n = 0;
    int64_t C = c->hidden, I = c->inter;
    apl_pspec_add(o, &n, -1, WTE, "transformer.wte.weight", 2, c->vocab, C, APL_INIT_NORMAL);
    apl_pspec_add(o, &n, -1, WPE, "transformer.wpe.weight", 2, c->max_pos, C, APL_INIT_NORMAL);
    for (int l = 0; l < c->n_layer; l++) {
        apl_pspec_add(o, &n, l, LN1_W, "transformer.h.%d.ln_1.weight", 1, C, 0, APL_INIT_ONES);
        apl_pspec_add(o, &n, l, LN1_B, "transformer.h.%d.ln_1.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, QKV_W, "transformer.h.%d.attn.c_attn.weight", 2, C, 3 * C, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, QKV_B, "transformer.h.%d.attn.c_attn.bias", 1, 3 * C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, PROJ_W, "transformer.h.%d.attn.c_proj.weight", 2, C, C, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, PROJ_B, "transformer.h.%d.attn.c_proj.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, LN2_W, "transformer.h.%d.ln_2.weight", 1, C, 0, APL_INIT_ONES);
        apl_pspec_add(o, &n, l, LN2_B, "transformer.h.%d.ln_2.bias", 1, C, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, FC_W, "transformer.h.%d.mlp.c_fc.weight", 2, C, I, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, FC_B, "transformer.h.%d.mlp.c_fc.bias", 1, I, 0, APL_INIT_ZEROS);
        apl_pspec_add(o, &n, l, FC2_W, "transformer.h.%d.mlp.c_proj.weight", 2, I, C, APL_INIT_NORMAL);
        apl_pspec_add(o, &n, l, FC2_B, "transformer.h.%d.mlp.c_proj.bias", 1, C, 0, APL_INIT_ZEROS);
    }
    apl_pspec_add(o, &n, -1, LN_F_W, "transformer.ln_f.weight", 1, C, 0, APL_INIT_ONES);
    apl_pspec_add(o, &n, -1, LN_F_B, "transformer.ln_f.bias", 1, C, 0, APL_INIT_ZEROS);
    return n;
}

static apl_tensor *gpt2_block(const apl_model *m, const apl_fwd *f, int l, apl_tensor *x)
{
    const apl_config *c = &m->cfg;
    int64_t C = c->hidden, H = c->n_head, D = c->head_dim;
#define W(s) apl_model_w(m, l, s)
    apl_tensor *h = apl_t_layer_norm(x, W(LN1_W), W(LN1_B), c->norm_eps);
    apl_tensor *qkv = apl_model_proj(m, l, QKV_W, QKV_B, h);                  // (B, T, 3C)
    apl_tensor *q = apl_model_heads(apl_t_narrow(qkv, 2, 0, C), H, D); // (B, H, T, D)
    apl_tensor *k = apl_model_heads(apl_t_narrow(qkv, 2, C, C), H, D);
    apl_tensor *v = apl_model_heads(apl_t_narrow(qkv, 2, 2 * C, C), H, D);
    apl_tensor *a = apl_model_proj(m, l, PROJ_W, PROJ_B, apl_model_attend(m, f, l, q, k, v));
    x = apl_t_binary(APL_ADD, apl_model_queries(m, f, l, x), a);        // (B, T or tail, C)
    h = apl_t_layer_norm(x, W(LN2_W), W(LN2_B), c->norm_eps);
    h = apl_model_act(c->act, apl_model_proj(m, l, FC_W, FC_B, h));            // (B, T, I)
    return apl_t_binary(APL_ADD, x, apl_model_proj(m, l, FC2_W, FC2_B, h));
#undef W
}

static apl_tensor *gpt2_forward(const apl_model *m, const apl_fwd *f)
{
    apl_tensor *x = apl_t_binary(APL_ADD, apl_t_embedding(apl_model_w(m, -1, WTE), f->ids),
                                 apl_t_embedding(apl_model_w(m, -1, WPE), f->pos)); // (B, T, C)
    apl_tensor *h = apl_model_tail(f, apl_model_layers(m, f, x, gpt2_block));
    apl_tensor *y = apl_t_layer_norm(h, apl_model_w(m, -1, LN_F_W), apl_model_w(m, -1, LN_F_B),
                                     m->cfg.norm_eps);
    apl_t_free(h);
    return apl_model_head(m, y); // (B, tail or T, V), tied head
}

/* PEFT's default target_modules for the family */
static const char *const lora_targets[] = {"c_attn", NULL};
static const apl_arch_type gpt2_types[] = {{"gpt2", "GPT2LMHeadModel"}, {NULL, NULL}};

const apl_arch apl_arch_gpt2 = {
    .types = gpt2_types,
    .parse = parse_gpt2,
    .optional_prefix = "transformer.",
    .conv1d = 1,
    .embed_slot = WTE,
    .head_slot = WTE,
    .lora_targets = lora_targets,
    .head_module = "lm_head",
    .specs = gpt2_specs,
    .forward = gpt2_forward,
};
