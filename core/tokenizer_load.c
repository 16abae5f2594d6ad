/* tokenizer_load.c — building a tokenizer from tokenizer.json, or from GPT-2's vocab.json +
 * merges.txt, with tokenizer_config.json's special tokens (tokenizer_impl.h, tokenizer.h). */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8

#include "fileio.h"
#include "tokenizer_impl.h"

#include <cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------ */
/* Pre-tokenizer stages */

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Adds a stage that splits pieces where `pattern` matches, keeping what `split` says (SPLIT_*);
 * pattern NULL adds a stage without a split. */
static apl_status add_stage(apl_tokenizer *tok, const char *pattern, int literal, int split,
                            int prefix_space, const char *field)
{
    if (tok->n_stages == MAX_STAGES)
        return apl_fail(APL_EUNSUPPORTED, "%s: %s: more than %d splitting stages", tok->path, field,
                        MAX_STAGES);
    stage *st = &tok->stages[tok->n_stages++];
    st->split = split;
    st->add_prefix_space = prefix_space;
    if (!pattern) return APL_OK;
    buf pat = { 0 };
    if (literal ? tok_buf_put(&pat, pattern, strlen(pattern)) : tok_translate_ws(pattern, &pat)) {
        free(pat.p);
        return tok_oom();
    }
    int err;
    PCRE2_SIZE erroff;
    /* PCRE2_LITERAL refuses PCRE2_UCP (it has no classes for UCP to change) */
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    st->re = pcre2_compile((PCRE2_SPTR)pat.p, pat.n, opts, &err, &erroff, NULL);
    free(pat.p);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return apl_fail(APL_EFORMAT, "%s: %s: regex does not compile at offset %zu: %s", tok->path,
                        field, (size_t)erroff, (char *)msg);
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0; /* else interpreted, slower */
    st->md = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (!st->md) return tok_oom();
    if (!tok->mctx) {
        /* A bigger JIT stack than the 32 KiB default, for patterns that backtrack a lot. */
        tok->mctx = pcre2_match_context_create(NULL);
        tok->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
        if (!tok->mctx || !tok->jit_stack) return tok_oom();
        pcre2_jit_stack_assign(tok->mctx, NULL, tok->jit_stack);
    }
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading files and JSON */

/* The largest tokenizer files are tens of MB (Gemma's tokenizer.json: 34 MB). */
#define MAX_FILE (1u << 30)

/* Token spellings are kept as C strings, so a "\u0000" escape in a key or a token would cut it
 * there and silently stand for another token: refused. (A backslash escaping a backslash is
 * stepped over, so "\\u0000" is not one.) */
static apl_status check_no_nul(const char *path, const char *text, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\') continue;
        if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0)
            return apl_fail(APL_EFORMAT, "%s: a string holds \\u0000 (byte %zu): a token cannot"
                            " hold a NUL", path, i);
        i++;
    }
    return APL_OK;
}

/* strict: tokenizer.json and vocab.json, whose strings are tokens (no NUL escapes). */
static apl_status read_json(const char *path, int strict, cJSON **out)
{
    char *text;
    size_t len;
    apl_status st = apl_read_text(path, MAX_FILE, &text, &len);
    if (st == APL_OK && strict) st = check_no_nul(path, text, len);
    if (st != APL_OK) {
        free(text);
        return st;
    }
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        free(text);
        return apl_fail(APL_EFORMAT, "%s: not valid JSON (error near byte %zu)", path, at);
    }
    free(text);
    return APL_OK;
}

static const cJSON *field(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNull(v) ? NULL : v;
}

static int json_bool(const cJSON *obj, const char *name, int def)
{
    const cJSON *v = field(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* An id: an integral number in [0, MAX_IDS). */
static int json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return 0;
    *id = (int32_t)v->valuedouble;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizer.json */

/* One token of the vocabulary, its id already checked. A spelling given twice (JSON allows it)
 * would leave one of its ids unreachable, and an id given twice would decode as the other
 * token's text: both are refused. */
static apl_status vocab_entry(apl_tokenizer *tok, const char *fld, const cJSON *e)
{
    int32_t id = (int32_t)e->valuedouble, other = tok_lookup(tok, e->string, strlen(e->string));
    if (other >= 0)
        return apl_fail(APL_EFORMAT, "%s: %s[\"%s\"]: the token appears twice (ids %d and %d)",
                        tok->path, fld, e->string, other, id);
    if (tok->tok_off[id] != NONE)
        return apl_fail(APL_EFORMAT, "%s: %s[\"%s\"]: id %d is also \"%s\"'s", tok->path, fld,
                        e->string, id, tok->vocab.keys.p + tok->tok_off[id]);
    return tok_set(tok, e->string, strlen(e->string), id, 0);
}

/* fld names the vocabulary in messages: "model.vocab" in tokenizer.json, "vocab" in vocab.json. */
static apl_status load_vocab(apl_tokenizer *tok, const cJSON *vocab, const cJSON *added,
                             const char *fld)
{
    if (!cJSON_IsObject(vocab))
        return apl_fail(APL_EFORMAT, "%s: %s: %s", tok->path, fld,
                        vocab ? "must be an object of token -> id" : "missing");
    int32_t max_id = -1, id;
    int i = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, i++) {
        if (!json_id(e, &id))
            return apl_fail(APL_EFORMAT, "%s: %s[\"%s\"]: id must be an integer in [0, %d)",
                            tok->path, fld, e->string, MAX_IDS);
        if (id > max_id) max_id = id;
    }
    i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++) {
        if (!json_id(field(a, "id"), &id))
            return apl_fail(APL_EFORMAT, "%s: added_tokens[%d].id: must be an integer in [0, %d)",
                            tok->path, i, MAX_IDS);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return apl_fail(APL_EFORMAT, "%s: %s: empty", tok->path, fld);
    apl_status st = tok_alloc_ids(tok, max_id + 1);
    for (const cJSON *e = vocab->child; e && st == APL_OK; e = e->next)
        st = vocab_entry(tok, fld, e);
    return st;
}

static apl_status merge_parts(const apl_tokenizer *tok, const cJSON *m, int i, const char **a,
                              size_t *na, const char **b, size_t *nb)
{
    if (cJSON_IsString(m)) {
        /* "a b": exactly one space, as HF requires (byte-level tokens hold none). */
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return apl_fail(APL_EFORMAT, "%s: model.merges[%d]: \"%s\" is not two tokens joined by "
                            "one space", tok->path, i, s);
        *a = s, *na = (size_t)(sp - s), *b = sp + 1, *nb = strlen(sp + 1);
        return APL_OK;
    }
    if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring, *na = strlen(*a);
        *b = m->child->next->valuestring, *nb = strlen(*b);
        return APL_OK;
    }
    return apl_fail(APL_EFORMAT, "%s: model.merges[%d]: must be \"a b\" or [\"a\", \"b\"]",
                    tok->path, i);
}

/* Records merge number `rank` of tokens a and b; src names the file and field for messages. */
static apl_status add_merge(apl_tokenizer *tok, const char *a, size_t na, const char *b, size_t nb,
                            uint32_t rank, const char *src, buf *tmp)
{
    int32_t ia = tok_lookup(tok, a, na), ib = tok_lookup(tok, b, nb);
    tmp->n = 0;
    if (tok_buf_put(tmp, a, na) || tok_buf_put(tmp, b, nb)) return tok_oom();
    int32_t im = tok_lookup(tok, tmp->p, tmp->n);
    const char *missing = ia < 0 ? a : ib < 0 ? b : im < 0 ? tmp->p : NULL;
    if (missing) {
        int len = (int)(ia < 0 ? na : ib < 0 ? nb : tmp->n);
        return apl_fail(APL_EFORMAT, "%s[%u]: token \"%.*s\" is not in the vocabulary", src, rank,
                        len, missing);
    }
    tok_pmap_set(&tok->merges, tok_pair_key(ia, ib), (uint64_t)rank << 32 | (uint32_t)im);
    return APL_OK;
}

static apl_status load_merges(apl_tokenizer *tok, const cJSON *merges)
{
    if (!cJSON_IsArray(merges))
        return apl_fail(APL_EFORMAT, "%s: model.merges: %s", tok->path,
                        merges ? "must be an array" : "missing");
    if (tok_pmap_init(&tok->merges, (size_t)cJSON_GetArraySize(merges))) return tok_oom();
    char src[PATH_MAX + 32];
    snprintf(src, sizeof src, "%s: model.merges", tok->path);
    buf tmp = { 0 };
    apl_status st = APL_OK;
    int i = 0;
    for (const cJSON *m = merges->child; m && st == APL_OK; m = m->next, i++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        st = merge_parts(tok, m, i, &a, &na, &b, &nb);
        if (st == APL_OK) st = add_merge(tok, a, na, b, nb, (uint32_t)i, src, &tmp);
    }
    free(tmp.p);
    return st;
}

static apl_status load_model(apl_tokenizer *tok, const cJSON *model, const cJSON *added)
{
    if (!model) return apl_fail(APL_EFORMAT, "%s: model: missing", tok->path);
    const cJSON *type = field(model, "type");
    if (!cJSON_IsString(type))
        return apl_fail(APL_EFORMAT, "%s: model.type: missing (expected \"BPE\")", tok->path);
    if (strcmp(type->valuestring, "BPE") != 0)
        return apl_fail(APL_EUNSUPPORTED, "%s: model.type: \"%s\" is not supported (only \"BPE\")",
                        tok->path, type->valuestring);
    static const char *const unsupported[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        const cJSON *v = field(model, unsupported[i]);
        if (v && !(cJSON_IsString(v) && !v->valuestring[0]))
            return apl_fail(APL_EUNSUPPORTED, "%s: model.%s: not supported with byte-level BPE",
                            tok->path, unsupported[i]);
    }
    const cJSON *dropout = field(model, "dropout");
    if (dropout && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return apl_fail(APL_EUNSUPPORTED, "%s: model.dropout: BPE dropout is not supported",
                        tok->path);
    if (json_bool(model, "byte_fallback", 0))
        return apl_fail(APL_EUNSUPPORTED, "%s: model.byte_fallback: not supported", tok->path);
    tok->fuse_unk = json_bool(model, "fuse_unk", 0);
    tok->ignore_merges = json_bool(model, "ignore_merges", 0);
    apl_status st = load_vocab(tok, field(model, "vocab"), added, "model.vocab");
    if (st == APL_OK) st = load_merges(tok, field(model, "merges"));
    if (st != APL_OK) return st;
    const cJSON *unk = field(model, "unk_token");
    if (unk && !cJSON_IsString(unk)) /* a number here was ignored: unknown bytes went missing */
        return apl_fail(APL_EFORMAT, "%s: model.unk_token: must be a token (a string)", tok->path);
    if (cJSON_IsString(unk))
        tok->unk_id = tok_lookup(tok, unk->valuestring, strlen(unk->valuestring));
    if (cJSON_IsString(unk) && tok->unk_id < 0)
        return apl_fail(APL_EFORMAT, "%s: model.unk_token: \"%s\" is not in the vocabulary",
                        tok->path, unk->valuestring);
    return APL_OK;
}

static apl_status add_added(apl_tokenizer *tok, const char *s, size_t n, int32_t id, int special,
                            int lstrip, int rstrip)
{
    added_token *a = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *a);
    if (!a) return tok_oom();
    tok->added = a;
    a = &tok->added[tok->n_added];
    *a = (added_token){ id, (uint32_t)tok->added_text.n, (uint32_t)n, special, lstrip, rstrip };
    if (tok_buf_put(&tok->added_text, s, n)) return tok_oom();
    tok->n_added++;
    tok->special[id] = (unsigned char)special;
    return tok_set(tok, s, n, id, 1);
}

static apl_status load_added(apl_tokenizer *tok, const cJSON *added)
{
    if (!added) return APL_OK;
    if (!cJSON_IsArray(added))
        return apl_fail(APL_EFORMAT, "%s: added_tokens: must be an array", tok->path);
    int i = 0;
    for (const cJSON *a = added->child; a; a = a->next, i++) {
        const cJSON *content = field(a, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return apl_fail(APL_EFORMAT, "%s: added_tokens[%d].content: must be a non-empty string",
                            tok->path, i);
        if (json_bool(a, "single_word", 0))
            return apl_fail(APL_EUNSUPPORTED, "%s: added_tokens[%d].single_word: not supported",
                            tok->path, i);
        apl_status st = add_added(tok, content->valuestring, strlen(content->valuestring),
                                  (int32_t)field(a, "id")->valuedouble, json_bool(a, "special", 0),
                                  json_bool(a, "lstrip", 0), json_bool(a, "rstrip", 0));
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

/* ByteLevel, or Sequence of Split (regex or string; behavior Isolated, or Removed with or
 * without invert) and ByteLevel steps. */
static apl_status load_pre_one(apl_tokenizer *tok, const cJSON *p, const char *name, int *bytelevel)
{
    const cJSON *type = field(p, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "ByteLevel") == 0) {
        *bytelevel = 1;
        const char *pat = json_bool(p, "use_regex", 1) ? GPT2_PATTERN : NULL;
        return add_stage(tok, pat, 0, SPLIT_ISOLATED, json_bool(p, "add_prefix_space", 0), name);
    }
    if (strcmp(t, "Split") == 0) {
        const cJSON *pat = field(p, "pattern"), *behavior = field(p, "behavior");
        const cJSON *re = field(pat, "Regex"), *str = field(pat, "String");
        if (!cJSON_IsString(re) && !cJSON_IsString(str))
            return apl_fail(APL_EFORMAT, "%s: %s.pattern: needs \"Regex\" or \"String\"", tok->path,
                            name);
        const char *b = cJSON_IsString(behavior) ? behavior->valuestring : "";
        int split, invert = json_bool(p, "invert", 0);
        if (strcmp(b, "Isolated") == 0) split = SPLIT_ISOLATED; /* invert: every span a piece still */
        else if (strcmp(b, "Removed") == 0) split = invert ? SPLIT_KEEP_MATCHES : SPLIT_KEEP_GAPS;
        else
            return apl_fail(APL_EUNSUPPORTED, "%s: %s.behavior: \"%s\" is not supported (Isolated, "
                            "Removed)", tok->path, name, b);
        return add_stage(tok, re ? re->valuestring : str->valuestring, !re, split, 0, name);
    }
    return apl_fail(APL_EUNSUPPORTED, "%s: %s.type: \"%s\" is not supported (ByteLevel, Split, "
                    "Sequence)", tok->path, name, t);
}

static apl_status load_pre(apl_tokenizer *tok, const cJSON *pre)
{
    if (!pre)
        return apl_fail(APL_EUNSUPPORTED, "%s: pre_tokenizer: missing (byte-level BPE needs "
                        "ByteLevel)", tok->path);
    int bytelevel = 0;
    const cJSON *type = field(pre, "type");
    apl_status st;
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = field(pre, "pretokenizers");
        int i = 0;
        st = APL_OK;
        if (!cJSON_IsArray(list))
            st = apl_fail(APL_EFORMAT, "%s: pre_tokenizer.pretokenizers: must be an array",
                          tok->path);
        for (const cJSON *p = list ? list->child : NULL; p && st == APL_OK; p = p->next, i++) {
            char name[64];
            snprintf(name, sizeof name, "pre_tokenizer.pretokenizers[%d]", i);
            st = load_pre_one(tok, p, name, &bytelevel);
        }
    } else {
        st = load_pre_one(tok, pre, "pre_tokenizer", &bytelevel);
    }
    if (st == APL_OK && !bytelevel)
        return apl_fail(APL_EUNSUPPORTED, "%s: pre_tokenizer: no ByteLevel step (only byte-level "
                        "BPE is supported)", tok->path);
    return st;
}

static apl_status load_decoder(apl_tokenizer *tok, const cJSON *dec)
{
    if (!dec) return APL_OK;
    const cJSON *type = field(dec, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "ByteLevel") == 0) return APL_OK;
    return apl_fail(APL_EUNSUPPORTED, "%s: decoder.type: \"%s\" is not supported (only ByteLevel)",
                    tok->path, t);
}

/* The id of a special token named in a post-processor, checked against the vocabulary. */
static apl_status post_token(apl_tokenizer *tok, const cJSON *name, const cJSON *specials,
                             const char *fld, apl_ids *to)
{
    const cJSON *ids = specials ? field(field(specials, name->valuestring), "ids") : NULL;
    if (ids && (!cJSON_IsArray(ids) || !ids->child)) /* "ids": 1 once dropped the BOS silently */
        return apl_fail(APL_EFORMAT, "%s: %s: the ids of \"%s\" must be a non-empty list", tok->path,
                        fld, name->valuestring);
    if (ids) {
        for (const cJSON *e = ids->child; e; e = e->next) {
            int32_t id;
            /* an id in a gap of the vocabulary would be one decode rejects */
            if (!json_id(e, &id) || id >= tok->n_ids || tok->tok_off[id] == NONE)
                return apl_fail(APL_EFORMAT, "%s: %s: the ids of \"%s\" must be ids of the"
                                " vocabulary", tok->path, fld, name->valuestring);
            if (tok_ids_push(to, &id, 1)) return tok_oom();
        }
        return APL_OK;
    }
    int32_t id = tok_lookup(tok, name->valuestring, strlen(name->valuestring));
    if (id < 0)
        return apl_fail(APL_EFORMAT, "%s: %s: \"%s\" is not in the vocabulary", tok->path, fld,
                        name->valuestring);
    return tok_ids_push(to, &id, 1) ? tok_oom() : APL_OK;
}

static apl_status load_template(apl_tokenizer *tok, const cJSON *p, apl_ids *pre, apl_ids *suf)
{
    const cJSON *single = field(p, "single"), *specials = field(p, "special_tokens");
    if (!cJSON_IsArray(single))
        return apl_fail(APL_EFORMAT, "%s: post_processor.single: must be an array", tok->path);
    int seen_seq = 0;
    for (const cJSON *it = single->child; it; it = it->next) {
        const cJSON *sp = field(it, "SpecialToken");
        if (field(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *id = field(sp, "id");
        if (!cJSON_IsString(id))
            return apl_fail(APL_EFORMAT, "%s: post_processor.single: items must be SpecialToken "
                            "or Sequence", tok->path);
        apl_ids *to = seen_seq ? suf : pre;
        apl_status st = post_token(tok, id, specials, "post_processor.single", to);
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

/* Fills pre/suf with the ids that processor p puts around a single text. */
static apl_status load_post_one(apl_tokenizer *tok, const cJSON *p, apl_ids *pre, apl_ids *suf)
{
    const cJSON *type = field(p, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "ByteLevel") == 0) return APL_OK;
    if (strcmp(t, "TemplateProcessing") == 0) return load_template(tok, p, pre, suf);
    if (strcmp(t, "RobertaProcessing") == 0 || strcmp(t, "BertProcessing") == 0) {
        const cJSON *cls = cJSON_GetArrayItem(field(p, "cls"), 0);
        const cJSON *sep = cJSON_GetArrayItem(field(p, "sep"), 0);
        if (!cJSON_IsString(cls) || !cJSON_IsString(sep))
            return apl_fail(APL_EFORMAT, "%s: post_processor: cls and sep must be [token, id]",
                            tok->path);
        apl_status st = post_token(tok, cls, NULL, "post_processor.cls", pre);
        return st ? st : post_token(tok, sep, NULL, "post_processor.sep", suf);
    }
    if (strcmp(t, "Sequence") == 0) {
        /* Each processor wraps the output of the previous one. */
        const cJSON *list = field(p, "processors");
        for (const cJSON *q = list ? list->child : NULL; q; q = q->next) {
            apl_ids qpre = { 0 };
            apl_status st = load_post_one(tok, q, &qpre, suf);
            if (st == APL_OK && (tok_ids_push(&qpre, pre->v, pre->n))) st = tok_oom();
            apl_ids_free(pre);
            *pre = qpre;
            if (st != APL_OK) return st;
        }
        return APL_OK;
    }
    return apl_fail(APL_EUNSUPPORTED, "%s: post_processor.type: \"%s\" is not supported",
                    tok->path, t);
}

static apl_status load_normalizer(apl_tokenizer *tok, const cJSON *norm)
{
    const cJSON *type = field(norm, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "NFC") == 0) tok->norm = NORM_NFC;
    else if (strcmp(t, "NFKC") == 0) tok->norm = NORM_NFKC;
    else
        return apl_fail(APL_EUNSUPPORTED, "%s: normalizer.type: \"%s\" is not supported (NFC, "
                        "NFKC)", tok->path, t);
    /* Normalizing "é" now makes a missing ICU fail the load rather than the first encode. */
    const unsigned char *probe = (const unsigned char *)"\xC3\xA9";
    size_t n = 2;
    apl_status st = tok_normalize(tok, &probe, &n);
    if (st == APL_OK) return APL_OK;
    char why[512];
    snprintf(why, sizeof why, "%s", apl_last_error());
    return apl_fail(st, "%s: %s", tok->path, why);
}

static apl_status load_json_tokenizer(const char *path, apl_tokenizer **out)
{
    cJSON *root = NULL;
    apl_tokenizer *tok = NULL;
    apl_status st = tok_new(path, &tok);
    if (st == APL_OK) st = read_json(path, 1, &root);
    if (st != APL_OK) goto fail;
    if (!cJSON_IsObject(root)) {
        st = apl_fail(APL_EFORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    const cJSON *norm = field(root, "normalizer"), *added = field(root, "added_tokens");
    if (norm && (st = load_normalizer(tok, norm)) != APL_OK) goto fail;
    if (added && !cJSON_IsArray(added)) {
        st = apl_fail(APL_EFORMAT, "%s: added_tokens: must be an array", path);
        goto fail;
    }
    st = load_model(tok, field(root, "model"), added);
    if (st == APL_OK) st = load_added(tok, added);
    if (st == APL_OK) st = load_pre(tok, field(root, "pre_tokenizer"));
    if (st == APL_OK) st = load_decoder(tok, field(root, "decoder"));
    if (st == APL_OK && field(root, "post_processor"))
        st = load_post_one(tok, field(root, "post_processor"), &tok->prefix, &tok->suffix);
    if (st != APL_OK) goto fail;
    cJSON_Delete(root);
    *out = tok;
    return APL_OK;
fail:
    cJSON_Delete(root);
    apl_tokenizer_free(tok);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* vocab.json + merges.txt (GPT-2's original files) */

static apl_status load_vocab_json(apl_tokenizer *tok, const char *path)
{
    cJSON *root;
    apl_status st = read_json(path, 1, &root);
    if (st != APL_OK) return st;
    st = load_vocab(tok, root, NULL, "vocab");
    cJSON_Delete(root);
    return st;
}

static apl_status load_merges_txt(apl_tokenizer *tok, const char *path)
{
    char *text;
    size_t len;
    apl_status st = apl_read_text(path, MAX_FILE, &text, &len);
    if (st != APL_OK) return st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (tok_pmap_init(&tok->merges, lines)) {
        free(text);
        return tok_oom();
    }
    char src[PATH_MAX + 16];
    snprintf(src, sizeof src, "%s: merge", path);
    buf tmp = { 0 };
    uint32_t rank = 0;
    size_t lineno = 0;
    for (char *line = text; line < text + len && st == APL_OK; lineno++) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *end = nl ? nl : text + len;
        size_t n = (size_t)(end - line);
        if (n && line[n - 1] == '\r') n--;
        if (n && !(lineno == 0 && strncmp(line, "#version", 8) == 0)) {
            char *sp = memchr(line, ' ', n);
            if (!sp || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1)))
                st = apl_fail(APL_EFORMAT, "%s:%zu: \"%.*s\" is not two tokens joined by one space",
                              path, lineno + 1, (int)n, line);
            else
                st = add_merge(tok, line, (size_t)(sp - line), sp + 1, (size_t)(line + n - sp - 1),
                               rank++, src, &tmp);
        }
        line = end + 1;
    }
    free(tmp.p);
    free(text);
    return st;
}

static apl_status from_files(const char *vocab_json, const char *merges_txt, apl_tokenizer **out)
{
    apl_tokenizer *tok = NULL;
    apl_status st = tok_new(vocab_json, &tok);
    if (st == APL_OK) st = load_vocab_json(tok, vocab_json);
    if (st == APL_OK) st = load_merges_txt(tok, merges_txt);
    if (st == APL_OK) st = add_stage(tok, GPT2_PATTERN, 0, SPLIT_ISOLATED, 0, "pre_tokenizer");
    if (st != APL_OK) {
        apl_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* eos / bos / pad, and the index of added tokens by first byte */

/* The content of a special token in tokenizer_config.json: "..." or {"content": "..."}. */
static const char *config_token(const cJSON *root, const char *name)
{
    const cJSON *v = field(root, name);
    if (cJSON_IsObject(v)) v = field(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static apl_status read_config(apl_tokenizer *tok, const char *dir, const char *file, int32_t *ids)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat sb;
    if (stat(path, &sb) != 0) return APL_OK;
    cJSON *root;
    apl_status st = read_json(path, 0, &root);
    if (st != APL_OK) return st;
    static const char *const names[3] = { "eos_token", "bos_token", "pad_token" };
    for (int k = 0; k < 3; k++) {
        const char *s = config_token(root, names[k]);
        int32_t id = s ? tok_lookup(tok, s, strlen(s)) : -1;
        if (ids[k] < 0 && id >= 0) ids[k] = id;
    }
    cJSON_Delete(root);
    return APL_OK;
}

static apl_status find_specials(apl_tokenizer *tok, const char *dir, int from_files)
{
    int32_t ids[3] = { -1, -1, -1 }; /* eos, bos, pad */
    apl_status st = read_config(tok, dir, "tokenizer_config.json", ids);
    if (st == APL_OK) st = read_config(tok, dir, "special_tokens_map.json", ids);
    if (st != APL_OK) return st;
    static const char *const eos_names[] = { "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>" };
    for (size_t i = 0; ids[0] < 0 && i < sizeof eos_names / sizeof *eos_names; i++)
        ids[0] = tok_lookup(tok, eos_names[i], strlen(eos_names[i]));
    tok->eos_id = ids[0];
    tok->bos_id = ids[1];
    tok->pad_id = ids[2] >= 0 ? ids[2] : ids[0];
    /* vocab.json does not mark special tokens; GPT-2's slow tokenizer matches these in text. */
    for (int k = 0; from_files && k < 3; k++) {
        int32_t id = ids[k];
        int dup = 0;
        for (int j = 0; j < tok->n_added; j++) dup |= tok->added[j].id == id;
        if (id < 0 || dup) continue;
        const char *s = tok->vocab.keys.p + tok->tok_off[id];
        st = add_added(tok, s, strlen(s), id, 1, 0, 0);
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

int32_t tok_trie_child(const apl_tokenizer *tok, int32_t node, unsigned char c)
{
    int32_t k = tok->trie[node].child;
    while (k >= 0 && tok->trie[k].byte != c) k = tok->trie[k].sibling;
    return k;
}

static int32_t trie_add_child(apl_tokenizer *tok, int32_t parent, unsigned char c)
{
    int32_t k = tok->n_trie++;
    tok->trie[k] = (trie_node){ -1, -1, -1, c };
    if (parent >= 0) {
        tok->trie[k].sibling = tok->trie[parent].child;
        tok->trie[parent].child = k;
    }
    return k;
}

/* The trie of the added tokens' contents: matching at a position walks it once, however many
 * added tokens there are (a scan of every token sharing the first byte took 59 s for 20,000
 * tokens over 3 MB). A walk goes only as far as the text spells some token's prefix, so the cost
 * is at most the text's length times the longest added token. Of two tokens with the same
 * content, the first listed wins. */
static apl_status index_added(apl_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) tok->added_root[b] = -1;
    size_t cap = tok->added_text.n + 1; /* at most one node per byte of content */
    tok->trie = malloc(cap * sizeof *tok->trie);
    if (!tok->trie) return tok_oom();
    for (int i = 0; i < tok->n_added; i++) {
        const added_token *t = &tok->added[i];
        const unsigned char *c = (const unsigned char *)tok->added_text.p + t->off;
        int32_t node = tok->added_root[c[0]];
        if (node < 0) node = tok->added_root[c[0]] = trie_add_child(tok, -1, c[0]);
        for (uint32_t j = 1; j < t->len; j++) {
            int32_t next = tok_trie_child(tok, node, c[j]);
            node = next >= 0 ? next : trie_add_child(tok, node, c[j]);
        }
        if (tok->trie[node].token < 0) tok->trie[node].token = i;
    }
    return APL_OK;
}

static apl_status finish(apl_tokenizer *tok, const char *dir, int from_files)
{
    tok_find_bytes(tok);
    apl_status st = find_specials(tok, dir, from_files);
    return st == APL_OK ? index_added(tok) : st;
}

static void dir_of(const char *path, char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, PATH_MAX, "%s", dirname(tmp)); /* dirname may return a pointer into tmp */
}

apl_status apl_tokenizer_from_files(const char *vocab_json, const char *merges_txt,
                                    apl_tokenizer **out)
{
    apl_tokenizer *tok;
    char dir[PATH_MAX];
    apl_status st = from_files(vocab_json, merges_txt, &tok);
    if (st != APL_OK) return st;
    dir_of(vocab_json, dir);
    if ((st = finish(tok, dir, 1)) != APL_OK) {
        apl_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return APL_OK;
}

apl_status apl_tokenizer_load(const char *path, apl_tokenizer **out)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
    char dir[PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32];
    apl_tokenizer *tok;
    apl_status st;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(a, sizeof a, "%s/tokenizer.json", path);
        if (stat(a, &sb) == 0) {
            st = load_json_tokenizer(a, &tok);
        } else {
            snprintf(a, sizeof a, "%s/vocab.json", path);
            snprintf(b, sizeof b, "%s/merges.txt", path);
            if (stat(a, &sb) != 0 || stat(b, &sb) != 0)
                return apl_fail(APL_ENOTFOUND, "%s: no tokenizer.json, nor vocab.json + merges.txt",
                                path);
            return apl_tokenizer_from_files(a, b, out);
        }
    } else {
        dir_of(path, dir);
        st = load_json_tokenizer(path, &tok);
    }
    if (st != APL_OK) return st;
    if ((st = finish(tok, dir, 0)) != APL_OK) {
        apl_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return APL_OK;
}
