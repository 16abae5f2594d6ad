/* config.c — config.json → apl_config, with messages that name the file and the field. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "config_impl.h"
#include "model_impl.h"

#define APL_CONFIG_MAX_INT 2147483647

const cJSON *apl_cfg_field(const apl_cfg_src *s, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->j, k);
    return cJSON_IsNull(v) ? NULL : v;
}

/* required: no default, an absent field is an error. Sizes must be positive. */
apl_status apl_cfg_int(const apl_cfg_src *s, const char *k, int required, int64_t def, int64_t *out)
{
    const cJSON *v = apl_cfg_field(s, k);
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
apl_status apl_cfg_num(const apl_cfg_src *s, const char *k, double def, double *out)
{
    const cJSON *v = apl_cfg_field(s, k);
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
apl_status apl_cfg_nonneg(const apl_cfg_src *s, const char *k, double def, int positive, double *out)
{
    apl_status st = apl_cfg_num(s, k, def, out);
    if (st != APL_OK) return st;
    if (*out < 0 || (positive && *out == 0))
        return apl_fail(APL_EFORMAT, "%s: \"%s\" must be %s, got %g", s->where, k,
                        positive ? "positive" : "non-negative", *out);
    return APL_OK;
}

apl_status apl_cfg_bool(const apl_cfg_src *s, const char *k, int def, int *out)
{
    const cJSON *v = apl_cfg_field(s, k);
    if (!v) {
        *out = def;
        return APL_OK;
    }
    if (!cJSON_IsBool(v)) return apl_fail(APL_EFORMAT, "%s: \"%s\" must be true or false", s->where, k);
    *out = cJSON_IsTrue(v);
    return APL_OK;
}

apl_status apl_cfg_act(const apl_cfg_src *s, const char *k, const char *def, apl_act *out)
{
    static const struct { const char *name; apl_act act; } ACTS[] = {
        {"gelu", APL_ACT_GELU},          {"gelu_new", APL_ACT_GELU_TANH},
        {"gelu_pytorch_tanh", APL_ACT_GELU_TANH}, {"gelu_fast", APL_ACT_GELU_TANH},
        {"silu", APL_ACT_SILU},          {"swish", APL_ACT_SILU}, {"relu", APL_ACT_RELU},
    };
    const cJSON *v = apl_cfg_field(s, k);
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
static apl_status get_eos(const apl_cfg_src *s, int64_t vocab, int64_t *out)
{
    const cJSON *v = apl_cfg_field(s, "eos_token_id"), *one;
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

apl_status apl_cfg_sizes(const apl_cfg_src *s, apl_config *c)
{
    APL_TRY(apl_cfg_int(s, "vocab_size", 1, 0, &c->vocab));
    APL_TRY(apl_cfg_int(s, "hidden_size", 1, 0, &c->hidden));
    APL_TRY(apl_cfg_int(s, "num_hidden_layers", 1, 0, &c->n_layer));
    APL_TRY(apl_cfg_int(s, "num_attention_heads", 1, 0, &c->n_head));
    APL_TRY(apl_cfg_int(s, "intermediate_size", 1, 0, &c->inter));
    return apl_cfg_int(s, "max_position_embeddings", 0, 2048, &c->max_pos);
}

apl_status apl_cfg_head_dim(const apl_cfg_src *s, apl_config *c)
{
    if (c->hidden % c->n_head != 0)
        return apl_fail(APL_EFORMAT, "%s: hidden size %lld is not a multiple of the %lld heads",
                        s->where, (long long)c->hidden, (long long)c->n_head);
    c->head_dim = c->hidden / c->n_head;
    return APL_OK;
}

/* The family that reads this model_type, and which of its types it is; NULL if none. */
static const apl_arch_type *find_type(const char *name, const apl_arch **arch)
{
    for (const apl_arch *const *a = apl_archs; *a; a++)
        for (const apl_arch_type *t = (*a)->types; t->type; t++)
            if (strcmp(t->type, name) == 0) return *arch = *a, t;
    return NULL;
}

static apl_status unsupported_type(const char *where, const char *name)
{
    char known[256] = "";
    for (const apl_arch *const *a = apl_archs; *a; a++)
        for (const apl_arch_type *t = (*a)->types; t->type; t++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", *known ? ", " : "",
                     t->type);
    return apl_fail(APL_EUNSUPPORTED, "%s: \"model_type\": \"%s\" is not supported (%s)", where,
                    name, known);
}

static apl_status check_sizes(const char *where, apl_config *c)
{
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
    apl_cfg_src s = {j, where};
    apl_status st = APL_OK;
    const cJSON *mt = apl_cfg_field(&s, "model_type");
    const apl_arch_type *t = NULL;
    if (!cJSON_IsString(mt)) {
        st = apl_fail(APL_EFORMAT, "%s: missing \"model_type\"", where);
        goto done;
    }
    if (!(t = find_type(mt->valuestring, &out->arch))) {
        st = unsupported_type(where, mt->valuestring);
        goto done;
    }
    out->hf_class = t->hf_class;
    snprintf(out->model_type, sizeof out->model_type, "%s", t->type);
    if ((st = out->arch->parse(&s, out)) != APL_OK) goto done;
    if ((st = apl_cfg_nonneg(&s, "initializer_range", 0.02, 0, &out->init_range)) != APL_OK) goto done;
    if ((st = get_eos(&s, out->vocab, &out->eos_id)) != APL_OK) goto done;
    st = check_sizes(where, out);
done:
    cJSON_Delete(j);
    return st;
}
