/* llama.c — Llama and the models built the same way (Mistral, Qwen2): RMSNorm, rotary embeddings
 * on whole heads (Llama 3's frequency rescaling is in model.c), grouped-query attention, a SwiGLU
 * MLP down(silu(gate(x)) * up(x)), optional q/k/v/o and MLP biases, optionally tied head. */
#include <stdio.h>

#include "model_impl.h"

enum { EMBED, NORM, HEAD };
enum { LN1, LN2, Q_W, Q_B, K_W, K_B, V_W, V_B, O_W, O_B, GATE_W, GATE_B, UP_W, UP_B, DOWN_W, DOWN_B };

static void linear_spec(apl_pspec *o, int *n, int l, int slot, const char *name,
                        int64_t out, int64_t in, int bias)
{
    char fmt[96];
    snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.weight", name);
    apl_pspec_add(o, n, l, slot, fmt, 2, out, in, APL_INIT_NORMAL);
    if (!bias) return;
    snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.bias", name);
    apl_pspec_add(o, n, l, slot + 1, fmt, 1, out, 0, APL_INIT_ZEROS);
}

static int llama_specs(const apl_config *c, apl_pspec *o)
{
    int n = 0;
    int64_t C = c->hidden, I = c->inter, QD = c->n_head * c->head_dim, KD = c->n_kv_head * c->head_dim;
    apl_pspec_add(o, &n, -1, EMBED, "model.embed_tokens.weight", 2, c->vocab, C, APL_INIT_NORMAL);
    for (int l = 0; l < c->n_layer; l++) {
        apl_pspec_add(o, &n, l, LN1, "model.layers.%d.input_layernorm.weight", 1, C, 0, APL_INIT_ONES);
        linear_spec(o, &n, l, Q_W, "self_attn.q_proj", QD, C, c->qkv_bias);
        linear_spec(o, &n, l, K_W, "self_attn.k_proj", KD, C, c->qkv_bias);
        linear_spec(o, &n, l, V_W, "self_attn.v_proj", KD, C, c->qkv_bias);
        linear_spec(o, &n, l, O_W, "self_attn.o_proj", C, QD, c->o_bias);
        apl_pspec_add(o, &n, l, LN2, "model.layers.%d.post_attention_layernorm.weight", 1, C, 0,
                      APL_INIT_ONES);
        linear_spec(o, &n, l, GATE_W, "mlp.gate_proj", I, C, c->mlp_bias);
        linear_spec(o, &n, l, UP_W, "mlp.up_proj", I, C, c->mlp_bias);
        linear_spec(o, &n, l, DOWN_W, "mlp.down_proj", C, I, c->mlp_bias);
    }
    apl_pspec_add(o, &n, -1, NORM, "model.norm.weight", 1, C, 0, APL_INIT_ONES);
    if (!c->tie_embeddings)
        apl_pspec_add(o, &n, -1, HEAD, "lm_head.weight", 2, c->vocab, C, APL_INIT_NORMAL);
    return n;
}

static apl_tensor *proj(const apl_model *m, int l, int slot, apl_tensor *x)
{
    return apl_t_linear(x, apl_model_w(m, l, slot), apl_model_w(m, l, slot + 1));
}

static apl_tensor *llama_block(const apl_model *m, const apl_fwd *f, int l, apl_tensor *x)
{
    const apl_config *c = &m->cfg;
    int64_t D = c->head_dim;
    apl_tensor *h = apl_t_rms_norm(x, apl_model_w(m, l, LN1), c->norm_eps);       // (B, T, C)
    apl_tensor *q = apl_model_rope(f, apl_model_heads(proj(m, l, Q_W, h), c->n_head, D));
    apl_tensor *k = apl_model_rope(f, apl_model_heads(proj(m, l, K_W, h), c->n_kv_head, D));
    apl_tensor *v = apl_model_heads(proj(m, l, V_W, h), c->n_kv_head, D);          // (B, Hkv, T, D)
    x = apl_t_binary(APL_ADD, apl_model_queries(m, f, l, x), proj(m, l, O_W, apl_model_attend(m, f, l, q, k, v)));
    h = apl_t_rms_norm(x, apl_model_w(m, l, LN2), c->norm_eps);
    apl_tensor *g = apl_model_act(c->act, proj(m, l, GATE_W, h));                 // (B, T, I)
    return apl_t_binary(APL_ADD, x, proj(m, l, DOWN_W, apl_t_binary(APL_MUL, g, proj(m, l, UP_W, h))));
}

static apl_tensor *llama_forward(const apl_model *m, const apl_fwd *f)
{
    apl_tensor *emb = apl_model_w(m, -1, EMBED);
    apl_tensor *h = apl_model_tail(f, apl_model_layers(m, f, apl_t_embedding(emb, f->ids), llama_block));
    apl_tensor *y = apl_t_rms_norm(h, apl_model_w(m, -1, NORM), m->cfg.norm_eps);
    apl_t_free(h);
    apl_tensor *head = m->cfg.tie_embeddings ? emb : apl_model_w(m, -1, HEAD);
    return apl_t_linear(y, head, NULL); // (B, tail or T, V)
}

const apl_arch apl_arch_llama = {
    .id = APL_ARCH_LLAMA,
    .optional_prefix = NULL,
    .specs = llama_specs,
    .forward = llama_forward,
};
