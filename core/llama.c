/* llama.c — Llama and the models built the same way (Mistral, Qwen2): RMSNorm, rotary embeddings
 * on whole heads (Llama 3's frequency rescaling is in model.c), grouped-query attention, a SwiGLU
 * MLP down(silu(gate(x)) * up(x)), optional q/k/v/o and MLP biases, optionally tied head. */
#include <stdio.h>
#include <string.h>

#include "config_impl.h"
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

static apl_status parse_rope_scaling(const apl_cfg_src *s, apl_config *c)
{
    const cJSON *rs = apl_cfg_field(s, "rope_scaling");
    if (!rs) return APL_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t))
        return apl_fail(APL_EFORMAT, "%s: \"rope_scaling\": missing \"rope_type\"", s->where);
    if (strcmp(t->valuestring, "default") == 0) return APL_OK;
    if (strcmp(t->valuestring, "llama3") != 0)
        return apl_fail(APL_EUNSUPPORTED, "%s: \"rope_scaling\": rope_type \"%s\" is not supported"
                        " (llama3)", s->where, t->valuestring);
    char where[512];
    snprintf(where, sizeof where, "%s: \"rope_scaling\"", s->where);
    apl_cfg_src sub = {rs, where};
    c->llama3_rope = 1;
    APL_TRY(apl_cfg_num(&sub, "factor", 8, &c->rs_factor));
    APL_TRY(apl_cfg_num(&sub, "low_freq_factor", 1, &c->rs_low_freq));
    APL_TRY(apl_cfg_num(&sub, "high_freq_factor", 4, &c->rs_high_freq));
    APL_TRY(apl_cfg_int(&sub, "original_max_position_embeddings", 0, 8192, &c->rs_orig_max_pos));
    if (c->rs_factor <= 0 || c->rs_high_freq <= c->rs_low_freq || c->rs_low_freq <= 0)
        return apl_fail(APL_EFORMAT, "%s: factors must be positive, high_freq_factor >"
                        " low_freq_factor", where);
    return APL_OK;
}

/* apl attends over the whole causal past; a model trained with a sliding window gives the same
 * results only up to the window, so sequences are capped there instead of silently diverging. */
static apl_status cap_sliding_window(const apl_cfg_src *s, apl_config *c)
{
    int use = strcmp(c->model_type, "mistral") == 0;
    int64_t win;
    if (!use) APL_TRY(apl_cfg_bool(s, "use_sliding_window", 0, &use));
    if (!use) return APL_OK;
    APL_TRY(apl_cfg_int(s, "sliding_window", 0, c->max_pos, &win));
    if (win < c->max_pos) c->max_pos = win;
    return APL_OK;
}

static apl_status parse_llama(const apl_cfg_src *s, apl_config *c)
{
    int bias;
    APL_TRY(apl_cfg_sizes(s, c));
    APL_TRY(apl_cfg_int(s, "num_key_value_heads", 0, c->n_head, &c->n_kv_head));
    APL_TRY(apl_cfg_int(s, "head_dim", 0, c->hidden / c->n_head, &c->head_dim));
    APL_TRY(apl_cfg_nonneg(s, "rms_norm_eps", 1e-6, 0, &c->norm_eps));
    APL_TRY(apl_cfg_nonneg(s, "rope_theta", 10000, 1, &c->rope_theta));
    APL_TRY(apl_cfg_act(s, "hidden_act", "silu", &c->act));
    APL_TRY(apl_cfg_bool(s, "tie_word_embeddings", 0, &c->tie_embeddings));
    APL_TRY(apl_cfg_bool(s, "attention_bias", 0, &bias));
    APL_TRY(apl_cfg_bool(s, "mlp_bias", 0, &c->mlp_bias));
    APL_TRY(parse_rope_scaling(s, c));
    APL_TRY(cap_sliding_window(s, c));
    /* Qwen2 has q/k/v biases and no o_proj bias; Llama's attention_bias covers all four. */
    int qwen2 = strcmp(c->model_type, "qwen2") == 0;
    c->qkv_bias = bias || qwen2;
    c->o_bias = bias && !qwen2;
    c->rot_dims = c->head_dim;
    if (c->n_head % c->n_kv_head != 0)
        return apl_fail(APL_EFORMAT, "%s: \"num_attention_heads\" (%lld) is not a multiple of"
                        " \"num_key_value_heads\" (%lld)", s->where, (long long)c->n_head,
                        (long long)c->n_kv_head);
    return APL_OK;
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

/* linear_spec puts a projection's bias in the slot after its weight. */
static apl_tensor *proj(const apl_model *m, int l, int slot, apl_tensor *x)
{
    return apl_model_proj(m, l, slot, slot + 1, x);
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
    apl_tensor *x = apl_t_embedding(apl_model_w(m, -1, EMBED), f->ids); // (B, T, C)
    apl_tensor *h = apl_model_tail(f, apl_model_layers(m, f, x, llama_block));
    apl_tensor *y = apl_t_rms_norm(h, apl_model_w(m, -1, NORM), m->cfg.norm_eps);
    apl_t_free(h);
    return apl_model_head(m, y); // (B, tail or T, V)
}

/* PEFT's default target_modules for the family */
static const char *const lora_targets[] = {"q_proj", "v_proj", NULL};
static const apl_arch_type llama_types[] = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                      {"qwen2", "Qwen2ForCausalLM"}, {NULL, NULL}};

const apl_arch apl_arch_llama = {
    .types = llama_types,
    .parse = parse_llama,
    .optional_prefix = NULL,
    .embed_slot = EMBED,
    .head_slot = HEAD,
    .lora_targets = lora_targets,
    .head_module = "lm_head",
    .specs = llama_specs,
    .forward = llama_forward,
};
