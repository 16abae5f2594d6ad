/* config.c — config.json → apl_config, with messages that name the file and the field. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "config.h"

#define APL_CONFIG_MAX_INT 2147483647

typedef struct {
    const cJSON *j;
    const char *where;
} cfg_src;

static const cJSON *field(const cfg_src *s, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->j, k);
    return cJSON_IsNull(v) ? NULL : v;
}

/* required: no default, an absent field is an error. Sizes must be positive. */
static apl_status get_int(const cfg_src *s, const char *k, int required, int64_t def, int64_t *out)
{
    const cJSON *v = field(s, k);
    if (!v) {
        if (required) return apl_fail(APL_EFORMAT, "%s: missing \"%s\"", s->where, k);
        *out = def;
        return APL_OK;
    }
    /* Below 2^31: the product of two sizes (n_head x head_dim, a matrix's elements) then fits an
     * int64, and no real model has a dimension or a layer count near it. */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > APL_CONFIG_MAX_INT)
        return apl_fail(APL_EFORMAT, "%s: \"%s\" must be a positive integer (at most %d)", s->where,
                        k, APL_CONFIG_MAX_INT);
    *out = (int64_t)v->valuedouble;
    return APL_OK;
}

/* Finite numbers only: 1e999 parses as an infinity. */
static apl_status get_num(const cfg_src *s, const char *k, double def, double *out)
{
    const cJSON *v = field(s, k);
    if (!v) {
        *out = def;
        return APL_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return apl_fail(APL_EFORMAT, "%s: \"%s\" must be a finite number", s->where, k);
    *out = v->valuedouble;
    return APL_OK;
}

/* A number that must be >= 0 (> 0 when positive is set): epsilons, scales, bases. */
static apl_status get_nonneg(const cfg_src *s, const char *k, double def, int positive, double *out)
{
    apl_status st = get_num(s, k, def, out);
    if (st != APL_OK) return st;
    if (*out < 0 || (positive && *out == 0))
        return apl_fail(APL_EFORMAT, "%s: \"%s\" must be %s, got %g", s->where, k,
                        positive ? "positive" : "non-negative", *out);
    return APL_OK;
}

static apl_status get_bool(const cfg_src *s, const char *k, int def, int *out)
{
    const cJSON *v = field(s, k);
    if (!v) {
        *out = def;
        return APL_OK;
    }
    if (!cJSON_IsBool(v)) return apl_fail(APL_EFORMAT, "%s: \"%s\" must be true or false", s->where, k);
    *out = cJSON_IsTrue(v);
    return APL_OK;
}

static apl_status get_act(const cfg_src *s, const char *k, const char *def, apl_act *out)
{
    static const struct { const char *name; apl_act act; } ACTS[] = {
        {"gelu", APL_ACT_GELU},          {"gelu_new", APL_ACT_GELU_TANH},
        {"gelu_pytorch_tanh", APL_ACT_GELU_TANH}, {"gelu_fast", APL_ACT_GELU_TANH},
        {"silu", APL_ACT_SILU},          {"swish", APL_ACT_SILU}, {"relu", APL_ACT_RELU},
    };
    const cJSON *v = field(s, k);
    const char *name = def;
    if (v && !cJSON_IsString(v)) return apl_fail(APL_EFORMAT, "%s: \"%s\" must be a string", s->where, k);
    if (v) name = v->valuestring;
    for (size_t i = 0; i < sizeof ACTS / sizeof *ACTS; i++) {
        if (strcmp(ACTS[i].name, name) == 0) {
            *out = ACTS[i].act;
            return APL_OK;
        }
    }
    return apl_fail(APL_EUNSUPPORTED, "%s: \"%s\": unknown activation \"%s\"", s->where, k, name);
}

/* eos_token_id may be a number or (Llama 3.1) a list; the first one ends generation. Each must
 * be an integer id inside the vocabulary: 1e300 or 50257 in a 50257-token model would otherwise
 * mean "no eos" or an id the head never predicts, and generation would run to its length limit. */
static apl_status get_eos(const cfg_src *s, int64_t vocab, int64_t *out)
{
    const cJSON *v = field(s, "eos_token_id"), *one;
    *out = -1;
    if (!v) return APL_OK;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)
        return apl_fail(APL_EFORMAT, "%s: \"eos_token_id\" is an empty list", s->where);
    int first = 1;
    for (one = cJSON_IsArray(v) ? v->child : v; one; one = cJSON_IsArray(v) ? one->next : NULL) {
        double d = cJSON_IsNumber(one) ? one->valuedouble : -1;
        if (!(d >= 0 && d < (double)vocab && d == floor(d)))
            return apl_fail(APL_EFORMAT, "%s: \"eos_token_id\" must be token ids below vocab_size"
                            " (%lld)", s->where, (long long)vocab);
        if (first) *out = (int64_t)d;
        first = 0;
    }
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Per architecture */

#define TRY(x) do { apl_status st_ = (x); if (st_ != APL_OK) return st_; } while (0)

static apl_status parse_gpt2(const cfg_src *s, apl_config *c)
{
    TRY(get_int(s, "vocab_size", 1, 0, &c->vocab));
    TRY(get_int(s, "n_embd", 1, 0, &c->hidden));
    TRY(get_int(s, "n_layer", 1, 0, &c->n_layer));
    TRY(get_int(s, "n_head", 1, 0, &c->n_head));
    TRY(get_int(s, "n_positions", 0, 1024, &c->max_pos));
    TRY(get_int(s, "n_inner", 0, 4 * c->hidden, &c->inter));
    TRY(get_nonneg(s, "layer_norm_epsilon", 1e-5, 0, &c->norm_eps));
    TRY(get_act(s, "activation_function", "gelu_new", &c->act));
    TRY(get_bool(s, "tie_word_embeddings", 1, &c->tie_embeddings));
    if (!c->tie_embeddings)
        return apl_fail(APL_EUNSUPPORTED, "%s: \"tie_word_embeddings\": GPT-2 ties its lm_head",
                        s->where);
    c->n_kv_head = c->n_head;
    c->qkv_bias = c->o_bias = c->mlp_bias = 1;
    return APL_OK;
}

static apl_status parse_neox(const cfg_src *s, apl_config *c)
{
    double pct;
    TRY(get_int(s, "vocab_size", 1, 0, &c->vocab));
    TRY(get_int(s, "hidden_size", 1, 0, &c->hidden));
    TRY(get_int(s, "num_hidden_layers", 1, 0, &c->n_layer));
    TRY(get_int(s, "num_attention_heads", 1, 0, &c->n_head));
    TRY(get_int(s, "intermediate_size", 1, 0, &c->inter));
    TRY(get_int(s, "max_position_embeddings", 0, 2048, &c->max_pos));
    TRY(get_nonneg(s, "layer_norm_eps", 1e-5, 0, &c->norm_eps));
    TRY(get_act(s, "hidden_act", "gelu", &c->act));
    TRY(get_bool(s, "tie_word_embeddings", 0, &c->tie_embeddings));
    TRY(get_bool(s, "use_parallel_residual", 1, &c->parallel_residual));
    TRY(get_bool(s, "attention_bias", 1, &c->qkv_bias));
    /* newer transformers write rope_theta / partial_rotary_factor for the same knobs */
    TRY(get_nonneg(s, "rotary_emb_base", 10000, 1, &c->rope_theta));
    TRY(get_nonneg(s, "rope_theta", c->rope_theta, 1, &c->rope_theta));
    TRY(get_num(s, "rotary_pct", 0.25, &pct));
    TRY(get_num(s, "partial_rotary_factor", pct, &pct));
    if (pct < 0 || pct > 1)
        return apl_fail(APL_EFORMAT, "%s: \"rotary_pct\" must be in [0, 1]", s->where);
    c->n_kv_head = c->n_head;
    c->o_bias = c->qkv_bias;
    c->mlp_bias = 1;
    c->head_dim = c->n_head ? c->hidden / c->n_head : 0;
    c->rot_dims = (int64_t)(c->head_dim * pct);
    return APL_OK;
}

static apl_status parse_rope_scaling(const cfg_src *s, apl_config *c)
{
    const cJSON *rs = field(s, "rope_scaling");
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
    cfg_src sub = {rs, where};
    c->llama3_rope = 1;
    TRY(get_num(&sub, "factor", 8, &c->rs_factor));
    TRY(get_num(&sub, "low_freq_factor", 1, &c->rs_low_freq));
    TRY(get_num(&sub, "high_freq_factor", 4, &c->rs_high_freq));
    TRY(get_int(&sub, "original_max_position_embeddings", 0, 8192, &c->rs_orig_max_pos));
    if (c->rs_factor <= 0 || c->rs_high_freq <= c->rs_low_freq || c->rs_low_freq <= 0)
        return apl_fail(APL_EFORMAT, "%s: factors must be positive, high_freq_factor >"
                        " low_freq_factor", where);
    return APL_OK;
}

/* apl attends over the whole causal past; a model trained with a sliding window gives the same
 * results only up to the window, so sequences are capped there instead of silently diverging. */
static apl_status cap_sliding_window(const cfg_src *s, apl_config *c)
{
    int use = strcmp(c->model_type, "mistral") == 0;
    int64_t win;
    if (!use) TRY(get_bool(s, "use_sliding_window", 0, &use));
    if (!use) return APL_OK;
    TRY(get_int(s, "sliding_window", 0, c->max_pos, &win));
    if (win < c->max_pos) c->max_pos = win;
    return APL_OK;
}

static apl_status parse_llama(const cfg_src *s, apl_config *c)
{
    int bias;
    TRY(get_int(s, "vocab_size", 1, 0, &c->vocab));
    TRY(get_int(s, "hidden_size", 1, 0, &c->hidden));
    TRY(get_int(s, "num_hidden_layers", 1, 0, &c->n_layer));
    TRY(get_int(s, "num_attention_heads", 1, 0, &c->n_head));
    TRY(get_int(s, "intermediate_size", 1, 0, &c->inter));
    TRY(get_int(s, "num_key_value_heads", 0, c->n_head, &c->n_kv_head));
    TRY(get_int(s, "head_dim", 0, c->hidden / c->n_head, &c->head_dim));
    TRY(get_int(s, "max_position_embeddings", 0, 2048, &c->max_pos));
    TRY(get_nonneg(s, "rms_norm_eps", 1e-6, 0, &c->norm_eps));
    TRY(get_nonneg(s, "rope_theta", 10000, 1, &c->rope_theta));
    TRY(get_act(s, "hidden_act", "silu", &c->act));
    TRY(get_bool(s, "tie_word_embeddings", 0, &c->tie_embeddings));
    TRY(get_bool(s, "attention_bias", 0, &bias));
    TRY(get_bool(s, "mlp_bias", 0, &c->mlp_bias));
    TRY(parse_rope_scaling(s, c));
    TRY(cap_sliding_window(s, c));
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

static const struct {
    const char *type, *hf_class;
    apl_arch_id arch;
    apl_status (*parse)(const cfg_src *, apl_config *);
} TYPES[] = {
    {"gpt2", "GPT2LMHeadModel", APL_ARCH_GPT2, parse_gpt2},
    {"gpt_neox", "GPTNeoXForCausalLM", APL_ARCH_NEOX, parse_neox},
    {"llama", "LlamaForCausalLM", APL_ARCH_LLAMA, parse_llama},
    {"mistral", "MistralForCausalLM", APL_ARCH_LLAMA, parse_llama},
    {"qwen2", "Qwen2ForCausalLM", APL_ARCH_LLAMA, parse_llama},
};

static apl_status check_sizes(const char *where, apl_config *c)
{
    if (c->arch != APL_ARCH_LLAMA) {
        if (c->hidden % c->n_head != 0)
            return apl_fail(APL_EFORMAT, "%s: hidden size %lld is not a multiple of the %lld heads",
                            where, (long long)c->hidden, (long long)c->n_head);
        c->head_dim = c->hidden / c->n_head;
    }
    if (c->rot_dims % 2 != 0)
        return apl_fail(APL_EFORMAT, "%s: rotary dims (%lld) must be even", where,
                        (long long)c->rot_dims);
    return APL_OK;
}

apl_status apl_config_parse(const char *json, const char *where, apl_config *out)
{
    memset(out, 0, sizeof *out);
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return apl_fail(APL_EFORMAT, "%s: not a JSON object", where);
    }
    cfg_src s = {j, where};
    apl_status st = APL_OK;
    const cJSON *mt = field(&s, "model_type");
    size_t i = 0, n = sizeof TYPES / sizeof *TYPES;
    if (!cJSON_IsString(mt)) {
        st = apl_fail(APL_EFORMAT, "%s: missing \"model_type\"", where);
        goto done;
    }
    while (i < n && strcmp(TYPES[i].type, mt->valuestring) != 0) i++;
    if (i == n) {
        st = apl_fail(APL_EUNSUPPORTED, "%s: \"model_type\": \"%s\" is not supported (gpt2, gpt_neox,"
                      " llama, mistral, qwen2)", where, mt->valuestring);
        goto done;
    }
    out->arch = TYPES[i].arch;
    out->hf_class = TYPES[i].hf_class;
    snprintf(out->model_type, sizeof out->model_type, "%s", TYPES[i].type);
    if ((st = TYPES[i].parse(&s, out)) != APL_OK) goto done;
    if ((st = get_nonneg(&s, "initializer_range", 0.02, 0, &out->init_range)) != APL_OK) goto done;
    if ((st = get_eos(&s, out->vocab, &out->eos_id)) != APL_OK) goto done;
    st = check_sizes(where, out);
done:
    cJSON_Delete(j);
    return st;
}
