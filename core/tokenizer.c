/* tokenizer.c — byte-level BPE: the tokenizer object, encoding with a PCRE2 pre-tokenizer and a
 * heap-driven merge loop, decoding with U+FFFD for broken UTF-8. Loading is in tokenizer_load.c,
 * text and Unicode in tokenizer_text.c (tokenizer_impl.h). See tokenizer.h for what is supported. */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tokenizer_impl.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------ */
/* Growable byte buffers and id arrays */

int tok_buf_reserve(buf *b, size_t extra)
{
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_put(buf *b, const void *s, size_t n)
{
    if (tok_buf_reserve(b, n + 1)) return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0; /* kept NUL-terminated so arena strings can be handed out */
    return 0;
}

static int ids_reserve(apl_ids *a, size_t extra)
{
    if (a->n + extra <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->n + extra) cap *= 2;
    int32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

int tok_ids_push(apl_ids *a, const int32_t *v, size_t n)
{
    if (!n) return 0; /* v may be NULL then (an empty post-processor list) */
    if (ids_reserve(a, n)) return -1;
    memcpy(a->v + a->n, v, n * sizeof *v);
    a->n += n;
    return 0;
}

apl_status apl_ids_reserve(apl_ids *ids, size_t extra)
{
    return ids_reserve(ids, extra) ? apl_fail(APL_ENOMEM, "tokenizer: out of memory") : APL_OK;
}

void apl_ids_free(apl_ids *ids)
{
    if (!ids) return;
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

apl_status tok_oom(void) { return apl_fail(APL_ENOMEM, "tokenizer: out of memory"); }

/* ------------------------------------------------------------------------------------------ */
/* Hash maps: byte strings -> two u32 values (vocabulary, word cache), id pairs -> merge */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static void smap_free(smap *m)
{
    free(m->slots);
    free(m->keys.p);
    memset(m, 0, sizeof *m);
}

static void smap_clear(smap *m)
{
    if (m->slots) memset(m->slots, 0xff, m->cap * sizeof *m->slots);
    m->n = 0;
    m->keys.n = 0;
}

static smap_slot *smap_find(const smap *m, const void *k, size_t len)
{
    if (!m->cap) return NULL;
    uint64_t h = hash_bytes(k, len);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        smap_slot *s = &m->slots[i];
        if (s->off == NONE) return NULL;
        if (s->hash == h && s->len == len && memcmp(m->keys.p + s->off, k, len) == 0) return s;
    }
}

static int smap_grow(smap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    smap_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t j = 0; j < m->cap; j++) {
        if (m->slots[j].off == NONE) continue;
        size_t i = m->slots[j].hash & (cap - 1);
        while (slots[i].off != NONE) i = (i + 1) & (cap - 1);
        slots[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

/* Returns the slot of key k, inserting it (values NONE) when absent; NULL on out-of-memory. */
static smap_slot *smap_put(smap *m, const void *k, size_t len)
{
    smap_slot *s = smap_find(m, k, len);
    if (s) return s;
    if ((m->n + 1) * 2 > m->cap && smap_grow(m)) return NULL;
    if (len >= NONE || m->keys.n + len + 1 >= NONE) return NULL;
    uint32_t off = (uint32_t)m->keys.n;
    if (tok_buf_put(&m->keys, k, len) || tok_buf_put(&m->keys, "", 0)) return NULL;
    m->keys.n++; /* keep the NUL: id_to_token hands out these keys as C strings */
    uint64_t h = hash_bytes(k, len);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].off != NONE) i = (i + 1) & (m->cap - 1);
    m->slots[i] = (smap_slot){ h, off, (uint32_t)len, NONE, NONE };
    m->n++;
    return &m->slots[i];
}

uint64_t tok_pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static size_t pair_slot(uint64_t k, size_t cap)
{
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k ^ (k >> 31)) & (cap - 1);
}

int tok_pmap_init(pmap *m, size_t n)
{
    m->cap = 1024;
    while (m->cap < n * 2) m->cap *= 2;
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    if (!m->keys || !m->vals) return -1;
    memset(m->keys, 0xff, m->cap * sizeof *m->keys);
    m->n = 0;
    return 0;
}

/* n was sized by pmap_init; a later entry for the same pair replaces the earlier one, as in HF. */
void tok_pmap_set(pmap *m, uint64_t k, uint64_t v)
{
    size_t i = pair_slot(k, m->cap);
    while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & (m->cap - 1);
    if (m->keys[i] == UINT64_MAX) m->n++;
    m->keys[i] = k;
    m->vals[i] = v;
}

static int pmap_get(const pmap *m, uint64_t k, uint64_t *v)
{
    for (size_t i = pair_slot(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == k) {
            *v = m->vals[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX) return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The tokenizer */

void apl_tokenizer_free(apl_tokenizer *tok)
{
    if (!tok) return;
    free(tok->path);
    free(tok->tok_off);
    free(tok->byte_off);
    free(tok->byte_len);
    free(tok->special);
    free(tok->bytes.p);
    smap_free(&tok->vocab);
    free(tok->merges.keys);
    free(tok->merges.vals);
    free(tok->added);
    free(tok->added_text.p);
    free(tok->trie);
    for (int i = 0; i < tok->n_stages; i++) {
        pcre2_code_free(tok->stages[i].re);
        pcre2_match_data_free(tok->stages[i].md);
        free(tok->stages[i].scratch.p);
    }
    free(tok->normalized.p);
    free(tok->u16[0]);
    free(tok->u16[1]);
    pcre2_match_context_free(tok->mctx);
    pcre2_jit_stack_free(tok->jit_stack);
    apl_ids_free(&tok->prefix);
    apl_ids_free(&tok->suffix);
    smap_free(&tok->cache);
    apl_ids_free(&tok->cache_ids);
    free(tok->syms);
    free(tok->heap);
    free(tok->spell.p);
    free(tok);
}

apl_status tok_new(const char *path, apl_tokenizer **out)
{
    tok_init_alphabet();
    apl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok || !(tok->path = strdup(path))) {
        free(tok);
        return tok_oom();
    }
    tok->unk_id = tok->eos_id = tok->pad_id = tok->bos_id = -1;
    *out = tok;
    return APL_OK;
}

/* Sizes the per-id tables for ids below n. */
apl_status tok_alloc_ids(apl_tokenizer *tok, int32_t n)
{
    tok->n_ids = n;
    tok->tok_off = malloc((size_t)n * sizeof *tok->tok_off);
    tok->byte_off = malloc((size_t)n * sizeof *tok->byte_off);
    tok->byte_len = calloc((size_t)n, sizeof *tok->byte_len);
    tok->special = calloc((size_t)n, 1);
    if (!tok->tok_off || !tok->byte_off || !tok->byte_len || !tok->special) return tok_oom();
    memset(tok->tok_off, 0xff, (size_t)n * sizeof *tok->tok_off);
    return APL_OK;
}

/* Records token `s` with id `id`; raw: the token stands for its own bytes (added tokens, so that
 * decode(encode(x)) == x for text that contains them). */
apl_status tok_set(apl_tokenizer *tok, const char *s, size_t n, int32_t id, int raw)
{
    smap_slot *slot = smap_put(&tok->vocab, s, n);
    if (!slot) return tok_oom();
    slot->v0 = (uint32_t)id;
    tok->tok_off[id] = slot->off;
    size_t at = tok->bytes.n;
    if ((raw ? tok_buf_put(&tok->bytes, s, n) : tok_alphabet_to_bytes(s, n, &tok->bytes)) ||
        tok->bytes.n - at >= NONE || at >= NONE)
        return tok_oom();
    tok->byte_off[id] = (uint32_t)at;
    tok->byte_len[id] = (uint32_t)(tok->bytes.n - at);
    return APL_OK;
}

int32_t tok_lookup(const apl_tokenizer *tok, const char *s, size_t n)
{
    smap_slot *slot = smap_find(&tok->vocab, s, n);
    return slot ? (int32_t)slot->v0 : -1;
}

/* The one-byte tokens, found by their spelling in the alphabet. */
void tok_find_bytes(apl_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char s[4];
        tok->byte_id[b] = tok_lookup(tok, s, tok_byte_spelling(s, (unsigned char)b));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* BPE of one piece */

static int heap_less(heap_item a, heap_item b)
{
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i && heap_less(it, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Pushes the merge of symbols i and i.next when the pair has one. */
static void push_pair(const apl_tokenizer *tok, const symbol *sy, int32_t i, heap_item *h,
                      size_t *n)
{
    uint64_t v;
    if (i < 0 || sy[i].next < 0) return;
    if (pmap_get(&tok->merges, tok_pair_key(sy[i].id, sy[sy[i].next].id), &v))
        heap_push(h, n, (heap_item){ (uint32_t)(v >> 32), (uint32_t)i });
}

static int scratch_reserve(apl_tokenizer *tok, size_t n)
{
    if (n <= tok->sym_cap) return 0;
    size_t cap = tok->sym_cap ? tok->sym_cap : 64;
    while (cap < n) cap *= 2;
    symbol *s = realloc(tok->syms, cap * sizeof *s);
    if (s) tok->syms = s;
    /* At most one live heap entry per symbol plus one per merge: 2n bounds it. */
    heap_item *h = realloc(tok->heap, 2 * cap * sizeof *h);
    if (h) tok->heap = h;
    if (!s || !h) return -1;
    tok->sym_cap = cap;
    return 0;
}

/* The merge loop of HF's BPE: always apply the pair of lowest rank (leftmost on ties), found with a
 * heap whose stale entries are skipped when popped. O(n log n) in the piece length. */
static apl_status bpe_merge(apl_tokenizer *tok, const unsigned char *s, size_t n, apl_ids *out)
{
    if (scratch_reserve(tok, n)) return tok_oom();
    symbol *sy = tok->syms;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[s[i]];
        if (id < 0) {
            /* A byte the vocabulary cannot spell: unk, fused with a previous unk, or dropped. */
            if (tok->unk_id < 0 || (tok->fuse_unk && m && sy[m - 1].id == tok->unk_id)) continue;
            id = tok->unk_id;
        }
        sy[m] = (symbol){ id, m - 1, -1 };
        if (m) sy[m - 1].next = m;
        m++;
    }
    size_t nh = 0;
    for (int32_t i = 0; i < m; i++) push_pair(tok, sy, i, tok->heap, &nh);
    while (nh) {
        heap_item it = heap_pop(tok->heap, &nh);
        int32_t i = (int32_t)it.pos, j = sy[i].next;
        uint64_t v;
        if (sy[i].id < 0 || j < 0 || !pmap_get(&tok->merges, tok_pair_key(sy[i].id, sy[j].id), &v) ||
            (uint32_t)(v >> 32) != it.rank)
            continue; /* stale: one of the two symbols was merged into another pair since */
        sy[i].id = (int32_t)(uint32_t)v;
        sy[i].next = sy[j].next;
        if (sy[j].next >= 0) sy[sy[j].next].prev = i;
        sy[j].id = -1;
        push_pair(tok, sy, sy[i].prev, tok->heap, &nh);
        push_pair(tok, sy, i, tok->heap, &nh);
    }
    if (ids_reserve(out, (size_t)m)) return tok_oom();
    for (int32_t i = m ? 0 : -1; i >= 0; i = sy[i].next) out->v[out->n++] = sy[i].id;
    return APL_OK;
}

/* Appends the ids of one pre-tokenized piece, through the word cache. */
static apl_status bpe_piece(apl_tokenizer *tok, const unsigned char *s, size_t n, apl_ids *out)
{
    if (tok->ignore_merges) {
        /* Llama-3 style: a piece that is a whole vocabulary token is that token. */
        tok->spell.n = 0;
        for (size_t i = 0; i < n; i++) {
            char c[4];
            if (tok_buf_put(&tok->spell, c, tok_byte_spelling(c, s[i]))) return tok_oom();
        }
        int32_t id = tok_lookup(tok, tok->spell.p, tok->spell.n);
        if (id >= 0) return tok_ids_push(out, &id, 1) ? tok_oom() : APL_OK;
    }
    if (n == 1 && tok->byte_id[s[0]] >= 0)
        return tok_ids_push(out, &tok->byte_id[s[0]], 1) ? tok_oom() : APL_OK;
    if (n > CACHE_MAX_BYTES) return bpe_merge(tok, s, n, out);
    smap_slot *hit = smap_find(&tok->cache, s, n);
    /* a piece may have no ids (bytes the vocabulary lacks, no unk): then cache_ids may be NULL */
    if (hit) return hit->v1 && tok_ids_push(out, tok->cache_ids.v + hit->v0, hit->v1) ? tok_oom() : APL_OK;
    size_t start = out->n;
    apl_status st = bpe_merge(tok, s, n, out);
    if (st != APL_OK) return st;
    if (tok->cache.n >= CACHE_MAX_WORDS) {
        smap_clear(&tok->cache);
        tok->cache_ids.n = 0;
    }
    smap_slot *slot = smap_put(&tok->cache, s, n);
    if (!slot) return tok_oom();
    size_t k = out->n - start; /* 0 ids: out->v may still be NULL */
    slot->v0 = (uint32_t)tok->cache_ids.n;
    slot->v1 = (uint32_t)k;
    return k && tok_ids_push(&tok->cache_ids, out->v + start, k) ? tok_oom() : APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding */

/* This thread's CPU time: the bound holds however busy the machine is. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every REGEX_CHECK matches: Ctrl-C, and the encode's time bound on regex work. */
static apl_status regex_budget(apl_tokenizer *tok)
{
    if (++tok->regex_calls % REGEX_CHECK) return APL_OK;
    apl_status st = apl_check_interrupt();
    if (st != APL_OK) return st;
    if (now_s() <= tok->regex_deadline) return APL_OK;
    return apl_fail(APL_EINVAL, "%s: a pre-tokenizer regex backtracks too much: this text took it"
                    " past its bound of %.0f s + %.0f s per MB", tok->path, REGEX_BASE_S,
                    REGEX_S_PER_MB);
}

static apl_status pretokenize(apl_tokenizer *tok, int k, const unsigned char *s, size_t n,
                              apl_ids *out);

/* Text between two matches of stage k: a piece, unless the stage keeps only its matches. Bytes
 * that are not UTF-8 never match; they stay pieces even then, so that no input byte is lost (HF's
 * tokenizers, whose behavior this follows, only ever see valid UTF-8). */
static apl_status between(apl_tokenizer *tok, int k, const unsigned char *s, size_t n, apl_ids *out)
{
    if (tok->stages[k].split != SPLIT_KEEP_MATCHES) return pretokenize(tok, k + 1, s, n, out);
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_valid_len(s + i, n - i), j = i;
        if (l) {
            i += l;
            continue;
        }
        while (j < n && !tok_utf8_valid_len(s + j, n - j)) j += tok_utf8_bad_len(s + j, n - j);
        apl_status r = pretokenize(tok, k + 1, s + i, j - i, out);
        if (r != APL_OK) return r;
        i = j;
    }
    return APL_OK;
}

/* Splits s by the regex of stage k (the matches and the text between them are pieces, as the
 * stage's SPLIT_* keeps them) and hands the pieces to stage k + 1; past the last stage, to BPE. */
static apl_status pretokenize(apl_tokenizer *tok, int k, const unsigned char *s, size_t n,
                              apl_ids *out)
{
    if (k == tok->n_stages) return bpe_piece(tok, s, n, out);
    stage *st = &tok->stages[k];
    if (st->add_prefix_space && s[0] != ' ') {
        st->scratch.n = 0;
        if (tok_buf_put(&st->scratch, " ", 1) || tok_buf_put(&st->scratch, s, n)) return tok_oom();
        s = (const unsigned char *)st->scratch.p;
        n = st->scratch.n;
    }
    if (!st->re) return pretokenize(tok, k + 1, s, n, out);
    size_t at = 0;
    while (at < n) {
        int rc = st->jit ? pcre2_jit_match(st->re, s, n, at, 0, st->md, tok->mctx)
                         : pcre2_match(st->re, s, n, at, 0, st->md, tok->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        apl_status bst = regex_budget(tok);
        if (bst != APL_OK) return bst;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return apl_fail(APL_EINVAL, "tokenizer: pre-tokenizer regex failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* an empty match splits nothing; step over one character */
            size_t l = tok_utf8_valid_len(s + a, n - a);
            b = a + (l ? l : 1);
            a = b;
        }
        apl_status r = APL_OK;
        /* The text before the match (bytes that are not UTF-8, say) is a piece too. */
        if (a > at) r = between(tok, k, s + at, a - at, out);
        if (r == APL_OK && b > a && st->split != SPLIT_KEEP_GAPS)
            r = pretokenize(tok, k + 1, s + a, b - a, out);
        if (r != APL_OK) return r;
        at = b;
    }
    return at < n ? between(tok, k, s + at, n - at, out) : APL_OK;
}

static int is_ws_at(const unsigned char *s, size_t n, size_t *len)
{
    int cp = tok_utf8_decode(s, n, len);
    return cp >= 0 && tok_is_white_space(cp);
}

/* The longest added token that starts at s[i], or -1; *end is where it ends. */
static int added_at(const apl_tokenizer *tok, const unsigned char *s, size_t n, size_t i,
                    size_t *end)
{
    int best = -1;
    int32_t node = tok->added_root[s[i]];
    for (size_t j = i; node >= 0;) {
        if (tok->trie[node].token >= 0) {
            best = tok->trie[node].token;
            *end = j + 1;
        }
        if (++j == n) break;
        node = tok_trie_child(tok, node, s[j]);
    }
    return best;
}

/* The leftmost, then longest, added token in s[from..n): its index, and [*a, *b) including the
 * white space it strips. -1 when none. */
static int find_added(const apl_tokenizer *tok, const unsigned char *s, size_t n, size_t from,
                      size_t *a, size_t *b)
{
    for (size_t i = from; i < n; i++) {
        if (tok->added_root[s[i]] < 0) continue;
        int k = added_at(tok, s, n, i, b);
        if (k < 0) continue;
        const added_token *t = &tok->added[k];
        *a = i;
        size_t l;
        while (t->rstrip && *b < n && is_ws_at(s + *b, n - *b, &l)) *b += l;
        while (t->lstrip && *a > from) {
            size_t p = *a - 1;
            while (p > from && (s[p] & 0xC0) == 0x80) p--;
            if (!is_ws_at(s + p, *a - p, &l) || p + l != *a) break;
            *a = p;
        }
        return k;
    }
    return -1;
}

/* Text between added tokens: normalized, then split. Added tokens were matched in the text as
 * given, which is what HF does for those marked normalized=false (special tokens, as a rule). */
static apl_status encode_segment(apl_tokenizer *tok, const unsigned char *s, size_t n, apl_ids *out)
{
    apl_status st = tok_normalize(tok, &s, &n);
    return st != APL_OK ? st : n ? pretokenize(tok, 0, s, n, out) : APL_OK;
}

apl_status apl_tokenizer_encode(apl_tokenizer *tok, const char *text, size_t len, int add_special,
                                apl_ids *out)
{
    const unsigned char *s = (const unsigned char *)text;
    apl_status st = APL_OK;
    if (add_special && tok_ids_push(out, tok->prefix.v, tok->prefix.n)) return tok_oom();
    tok->regex_deadline = now_s() + REGEX_BASE_S + REGEX_S_PER_MB * (double)len / 1e6;
    size_t at = 0;
    while (at < len && st == APL_OK) {
        size_t a = len, b = len;
        int k = tok->n_added ? find_added(tok, s, len, at, &a, &b) : -1;
        if (a > at) st = encode_segment(tok, s + at, a - at, out);
        if (st == APL_OK && k >= 0 && tok_ids_push(out, &tok->added[k].id, 1)) st = tok_oom();
        at = b;
    }
    if (st == APL_OK && add_special && tok_ids_push(out, tok->suffix.v, tok->suffix.n)) st = tok_oom();
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding */

apl_status apl_tokenizer_decode(const apl_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *out_len)
{
    buf raw = { 0 }, text = { 0 };
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == NONE) {
            free(raw.p);
            return apl_fail(APL_EINVAL, "id %d (at %zu) is not in the vocabulary (size %d)",
                            (int)id, i + 1, (int)tok->n_ids);
        }
        if (skip_special && tok->special[id]) continue;
        if (tok_buf_put(&raw, tok->bytes.p + tok->byte_off[id], tok->byte_len[id])) goto nomem;
    }
    if (tok_buf_reserve(&text, raw.n + 1)) goto nomem;
    text.p[0] = 0; /* the result is a C string even when empty */
    const unsigned char *s = (const unsigned char *)raw.p;
    for (size_t i = 0, l; i < raw.n; i += l) {
        l = tok_utf8_valid_len(s + i, raw.n - i);
        if (l) {
            if (tok_buf_put(&text, s + i, l)) goto nomem;
            continue;
        }
        l = tok_utf8_bad_len(s + i, raw.n - i);
        if (tok_buf_put(&text, "\xEF\xBF\xBD", 3)) goto nomem; /* U+FFFD */
    }
    free(raw.p);
    *out = text.p;
    *out_len = text.n;
    return APL_OK;
nomem:
    free(raw.p);
    free(text.p);
    return tok_oom();
}

/* ------------------------------------------------------------------------------------------ */
/* Batches */

void apl_tok_batch_free(apl_tok_batch *b)
{
    if (!b) return;
    free(b->ids);
    free(b->mask);
    free(b->lens);
    memset(b, 0, sizeof *b);
}

apl_status apl_tokenizer_encode_batch(apl_tokenizer *tok, int64_t n, const char *const *texts,
                                      const size_t *lens, const apl_tok_batch_opts *o,
                                      apl_tok_batch *out)
{
    apl_ids all = { 0 };
    size_t *start = malloc((size_t)(n + 1) * sizeof *start);
    apl_tok_batch b = { .B = n, .T = 0 };
    apl_status st = APL_OK;
    b.lens = calloc((size_t)n + 1, sizeof *b.lens);
    if (!start || !b.lens) goto nomem;
    for (int64_t i = 0; i < n && st == APL_OK; i++) {
        start[i] = all.n;
        st = apl_tokenizer_encode(tok, texts[i], lens[i], o->add_special, &all);
        int64_t len = (int64_t)(all.n - start[i]);
        if (o->max_length > 0 && len > o->max_length) {
            if (o->truncate_left) start[i] += (size_t)(len - o->max_length);
            len = o->max_length;
        }
        b.lens[i] = len;
        if (len > b.T) b.T = len;
        if (st == APL_OK) st = apl_check_interrupt();
    }
    if (st != APL_OK) goto fail;
    size_t cells = (size_t)(n * b.T) + 1;
    b.ids = malloc(cells * sizeof *b.ids);
    b.mask = calloc(cells, sizeof *b.mask);
    if (!b.ids || !b.mask) goto nomem;
    int64_t pad = tok->pad_id >= 0 ? tok->pad_id : 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t *row = b.ids + i * b.T, *mrow = b.mask + i * b.T;
        int64_t off = o->pad_left ? b.T - b.lens[i] : 0;
        for (int64_t t = 0; t < b.T; t++) row[t] = pad;
        for (int64_t t = 0; t < b.lens[i]; t++) {
            row[off + t] = all.v[start[i] + (size_t)t];
            mrow[off + t] = 1;
        }
    }
    free(start);
    apl_ids_free(&all);
    *out = b;
    return APL_OK;
nomem:
    st = tok_oom();
fail:
    free(start);
    apl_ids_free(&all);
    apl_tok_batch_free(&b);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Lookups */

int32_t apl_tokenizer_vocab_size(const apl_tokenizer *tok) { return tok->n_ids; }

const char *apl_tokenizer_id_to_token(const apl_tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == NONE) return NULL;
    return tok->vocab.keys.p + tok->tok_off[id];
}

int32_t apl_tokenizer_token_to_id(const apl_tokenizer *tok, const char *s, size_t len)
{
    return tok_lookup(tok, s, len);
}

int32_t apl_tokenizer_eos_id(const apl_tokenizer *tok) { return tok->eos_id; }
int32_t apl_tokenizer_pad_id(const apl_tokenizer *tok) { return tok->pad_id; }
int32_t apl_tokenizer_bos_id(const apl_tokenizer *tok) { return tok->bos_id; }
