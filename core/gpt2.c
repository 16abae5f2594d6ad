/* gpt2.c — GPT-2: learned positions, pre-LayerNorm blocks, GELU (tanh) MLP, lm_head tied to the
 * token embedding. HF stores its projections as Conv1D, weight (in, out), kept in that layout so
 * that saved checkpoints are HF's. */
#include "model_impl.h"

enum { WTE, WPE, LN_F_W, LN_F_B };
enum { LN1_W, LN1_B, QKV_W, QKV_B, PROJ_W, PROJ_B, LN2_W, LN2_B, FC_W, FC_B, FC2_W, FC2_B };

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

/* HF's Conv1D: x (..., in) @ w (in, out) + b (out). As a linear layer over the transposed view,
 * libtorch fuses the bias into the matmul (addmm) and multiplies by w as stored, without a copy. */
static apl_tensor *conv1d(apl_tensor *x, apl_tensor *w, apl_tensor *b)
{
    return apl_t_linear(x, apl_t_transpose(w, 0, 1), b);
}

static apl_tensor *gpt2_block(const apl_model *m, const apl_fwd *f, int l, apl_tensor *x)
{
    const apl_config *c = &m->cfg;
    int64_t C = c->hidden, H = c->n_head, D = c->head_dim;
#define W(s) apl_model_w(m, l, s)
    apl_tensor *h = apl_t_layer_norm(x, W(LN1_W), W(LN1_B), c->norm_eps);
    apl_tensor *qkv = conv1d(h, W(QKV_W), W(QKV_B));                  // (B, T, 3C)
    apl_tensor *q = apl_model_heads(apl_t_narrow(qkv, 2, 0, C), H, D); // (B, H, T, D)
    apl_tensor *k = apl_model_heads(apl_t_narrow(qkv, 2, C, C), H, D);
    apl_tensor *v = apl_model_heads(apl_t_narrow(qkv, 2, 2 * C, C), H, D);
    apl_tensor *a = conv1d(apl_model_attend(m, f, l, q, k, v), W(PROJ_W), W(PROJ_B));
    x = apl_t_binary(APL_ADD, apl_model_queries(m, f, l, x), a);        // (B, T or tail, C)
    h = apl_t_layer_norm(x, W(LN2_W), W(LN2_B), c->norm_eps);
    h = apl_model_act(c->act, conv1d(h, W(FC_W), W(FC_B)));            // (B, T, I)
    return apl_t_binary(APL_ADD, x, conv1d(h, W(FC2_W), W(FC2_B)));
#undef W
}

static apl_tensor *gpt2_forward(const apl_model *m, const apl_fwd *f)
{
    apl_tensor *wte = apl_model_w(m, -1, WTE);
    apl_tensor *x = apl_t_binary(APL_ADD, apl_t_embedding(wte, f->ids),
                                 apl_t_embedding(apl_model_w(m, -1, WPE), f->pos)); // (B, T, C)
    apl_tensor *h = apl_model_tail(f, apl_model_layers(m, f, x, gpt2_block));
    apl_tensor *y = apl_t_layer_norm(h, apl_model_w(m, -1, LN_F_W), apl_model_w(m, -1, LN_F_B),
                                     m->cfg.norm_eps);
    apl_t_free(h);
    return apl_t_linear(y, wte, NULL); // (B, tail or T, V), tied head
}

const apl_arch apl_arch_gpt2 = {
    .id = APL_ARCH_GPT2,
    .optional_prefix = "transformer.",
    .specs = gpt2_specs,
    .forward = gpt2_forward,
};
