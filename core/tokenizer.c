/* tokenizer.c — byte-level BPE: loading tokenizer.json / vocab.json + merges.txt, encoding with a
 * PCRE2 pre-tokenizer and a heap-driven merge loop, decoding with U+FFFD for broken UTF-8.
 * See tokenizer.h for what is supported. */
#define _GNU_SOURCE /* qsort_r */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "fileio.h"
#include "tokenizer.h"

#include <cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <libgen.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#if __has_include(<unicode/unorm2.h>)
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#define HAVE_ICU 1
#endif

#define MAX_IDS (1 << 24)        /* ids beyond this are a malformed file, not a real vocabulary */
#define MAX_STAGES 4             /* regex splits run one after another */
#define CACHE_MAX_WORDS (1 << 17) /* the word cache is emptied when it grows past this */
#define CACHE_MAX_BYTES 256      /* longer pieces are not cached (they rarely repeat) */
#define NONE UINT32_MAX
/* A regex split gets at most this much CPU time per encode: REGEX_BASE_S seconds, plus
 * REGEX_S_PER_MB per MB of text (500 KB/s, 20x slower than GPT-2's pattern runs here; CPU time,
 * so a busy machine does not trip it). A pattern whose every match
 * stays under PCRE2's match limit can still backtrack for seconds per KB ("(x+x+)+y|."); without
 * this bound one encode could run for hours. Checked, with Ctrl-C, every REGEX_CHECK matches. */
#define REGEX_BASE_S 1.0
#define REGEX_S_PER_MB 2.0
#define REGEX_CHECK 64

/* ------------------------------------------------------------------------------------------ */
/* Growable byte buffers and id arrays */

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static int buf_reserve(buf *b, size_t extra)
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

static int buf_put(buf *b, const void *s, size_t n)
{
    if (buf_reserve(b, n + 1)) return -1;
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

static int ids_push(apl_ids *a, const int32_t *v, size_t n)
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

static apl_status oom(void) { return apl_fail(APL_ENOMEM, "tokenizer: out of memory"); }

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

typedef struct {
    uint64_t hash;
    uint32_t off, len; /* key in the arena; off == NONE marks an empty slot */
    uint32_t v0, v1;
} smap_slot;

typedef struct {
    smap_slot *slots;
    size_t cap, n; /* cap is a power of two, kept at most half full */
    buf keys;
} smap;

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
    if (buf_put(&m->keys, k, len) || buf_put(&m->keys, "", 0)) return NULL;
    m->keys.n++; /* keep the NUL: id_to_token hands out these keys as C strings */
    uint64_t h = hash_bytes(k, len);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].off != NONE) i = (i + 1) & (m->cap - 1);
    m->slots[i] = (smap_slot){ h, off, (uint32_t)len, NONE, NONE };
    m->n++;
    return &m->slots[i];
}

/* Merges: key (left id << 32 | right id), value (rank << 32 | merged id). Ids are < 2^24, so an
 * all-ones key never occurs and marks empty slots. */
typedef struct {
    uint64_t *keys, *vals;
    size_t cap, n;
} pmap;

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static size_t pair_slot(uint64_t k, size_t cap)
{
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k ^ (k >> 31)) & (cap - 1);
}

static int pmap_init(pmap *m, size_t n)
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
static void pmap_set(pmap *m, uint64_t k, uint64_t v)
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
/* GPT-2's byte-level alphabet: each byte is spelled by one printable code point, so that a
 * vocabulary of strings can hold arbitrary bytes ("Ġ" is the space byte 0x20). */

static int byte_cp[256];  /* byte -> code point */
static int cp_byte[324];  /* code point -> byte, -1 for code points outside the alphabet */

static void init_alphabet(void)
{
    int n = 0;
    for (int i = 0; i < 324; i++) cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_cp[b] = printable ? b : 256 + n++;
        cp_byte[byte_cp[b]] = b;
    }
}

static size_t put_utf8(char *o, int cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* For a lead byte c: how many continuation bytes follow and the range allowed for the first
 * one, per the Unicode table of well-formed sequences (no overlongs, surrogates, > U+10FFFF).
 * Returns 0 when c cannot start a multi-byte sequence. */
static size_t utf8_lead(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 3;
    }
    return 0;
}

/* How many bytes at s match the start of a well-formed sequence (stops at the first bad byte). */
static size_t utf8_prefix(const unsigned char *s, size_t n, size_t need, unsigned lo, unsigned hi)
{
    size_t k = 1;
    for (; k <= need && k < n && s[k] >= lo && s[k] <= hi; k++) lo = 0x80, hi = 0xBF;
    return k;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s[0..n) does not start with one. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    unsigned lo, hi;
    size_t need = utf8_lead(s[0], &lo, &hi);
    if (!need) return 0;
    return utf8_prefix(s, n, need, lo, hi) == need + 1 ? need + 1 : 0;
}

/* How many bytes at s form the maximal prefix of a valid sequence (at least 1): the unit that
 * one U+FFFD replaces. */
static size_t utf8_bad_len(const unsigned char *s, size_t n)
{
    unsigned lo, hi;
    size_t need = utf8_lead(s[0], &lo, &hi);
    return need ? utf8_prefix(s, n, need, lo, hi) : 1;
}

static int utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
    *len = utf8_valid_len(s, n);
    switch (*len) {
    case 1: return s[0];
    case 2: return (s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (s[0] & 0x0F) << 12 | (s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    case 4: return (s[0] & 0x07) << 18 | (s[1] & 0x3F) << 12 | (s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
    return -1;
}

/* The bytes a vocabulary string stands for. Like HF's ByteLevel decoder, a string with a code
 * point outside the alphabet stands for its own UTF-8 bytes. */
static int alphabet_to_bytes(const char *tok, size_t n, buf *out)
{
    size_t start = out->n;
    const unsigned char *s = (const unsigned char *)tok;
    for (size_t i = 0, l; i < n; i += l) {
        int cp = utf8_decode(s + i, n - i, &l);
        if (cp < 0 || cp >= 324 || cp_byte[cp] < 0) {
            out->n = start;
            return buf_put(out, tok, n);
        }
        unsigned char b = (unsigned char)cp_byte[cp];
        if (buf_put(out, &b, 1)) return -1;
    }
    return 0;
}

/* Unicode White_Space (what HF's Oniguruma and Python's GPT-2 regex mean by \s; PCRE2's \s also
 * takes U+180E, and JavaScript's takes U+FEFF but not U+0085). */
static int is_white_space(int cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}
#define WS_CLASS \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
    "\\x{202F}\\x{205F}\\x{3000}"

/* ------------------------------------------------------------------------------------------ */
/* The tokenizer */

typedef struct {
    int32_t id;
    uint32_t off, len; /* content in added_text */
    int special, lstrip, rstrip;
} added_token;

typedef struct {
    pcre2_code *re;          /* NULL: the stage only adds the prefix space */
    pcre2_match_data *md;
    int jit;                 /* JIT-compiled: matched by pcre2_jit_match, which skips checks */
    int add_prefix_space;
    buf scratch;             /* the piece with its prefix space */
} stage;

typedef struct {
    int32_t id;
    int32_t prev, next;
} symbol;

/* A node of the added tokens' trie: its first child and next sibling (lists: most nodes have one
 * child), the byte leading to it, and the added token that ends here (-1 when none). */
typedef struct {
    int32_t child, sibling, token;
    unsigned char byte;
} trie_node;

typedef struct {
    uint32_t rank, pos;
} heap_item;

struct apl_tokenizer {
    char *path;                         /* for messages */
    int32_t n_ids;                      /* largest id + 1 */
    uint32_t *tok_off;                  /* id -> key offset in vocab.keys (the spelling), or NONE */
    uint32_t *byte_off, *byte_len;      /* id -> the bytes it decodes to, in bytes */
    unsigned char *special;             /* id -> 1 for special added tokens */
    buf bytes;
    smap vocab;                         /* spelling -> id (v0) */
    pmap merges;
    int32_t byte_id[256];               /* the one-byte tokens, -1 when missing */
    int32_t unk_id;
    int fuse_unk, ignore_merges;

    added_token *added;
    int n_added;
    buf added_text;
    int32_t added_root[256];            /* byte -> trie node of that one-byte prefix, -1 */
    trie_node *trie;                    /* the added tokens' contents, byte by byte */
    int32_t n_trie;

    int norm;                           /* NORM_NONE, NORM_NFC, NORM_NFKC */
    buf normalized;                     /* scratch: a segment after normalization */
    void *u16[2];                       /* scratch: UTF-16 for ICU */
    size_t u16_cap[2];

    stage stages[MAX_STAGES];
    int n_stages;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;

    apl_ids prefix, suffix;             /* post-processor: ids around the text when add_special */
    int32_t eos_id, pad_id, bos_id;

    double regex_deadline;              /* this encode's bound on regex work (thread CPU s) */
    unsigned regex_calls;               /* regex matches in this encode, for the periodic check */

    smap cache;                         /* piece bytes -> (offset in cache_ids, count) */
    apl_ids cache_ids;
    symbol *syms;
    heap_item *heap;
    size_t sym_cap, heap_cap;
    buf spell;                          /* scratch: a piece in the alphabet (ignore_merges) */
};

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

static apl_status tok_new(const char *path, apl_tokenizer **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_alphabet);
    apl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok || !(tok->path = strdup(path))) {
        free(tok);
        return oom();
    }
    tok->unk_id = tok->eos_id = tok->pad_id = tok->bos_id = -1;
    *out = tok;
    return APL_OK;
}

/* Sizes the per-id tables for ids below n. */
static apl_status tok_alloc_ids(apl_tokenizer *tok, int32_t n)
{
    tok->n_ids = n;
    tok->tok_off = malloc((size_t)n * sizeof *tok->tok_off);
    tok->byte_off = malloc((size_t)n * sizeof *tok->byte_off);
    tok->byte_len = calloc((size_t)n, sizeof *tok->byte_len);
    tok->special = calloc((size_t)n, 1);
    if (!tok->tok_off || !tok->byte_off || !tok->byte_len || !tok->special) return oom();
    memset(tok->tok_off, 0xff, (size_t)n * sizeof *tok->tok_off);
    return APL_OK;
}

/* Records token `s` with id `id`; raw: the token stands for its own bytes (added tokens, so that
 * decode(encode(x)) == x for text that contains them). */
static apl_status tok_set(apl_tokenizer *tok, const char *s, size_t n, int32_t id, int raw)
{
    smap_slot *slot = smap_put(&tok->vocab, s, n);
    if (!slot) return oom();
    slot->v0 = (uint32_t)id;
    tok->tok_off[id] = slot->off;
    size_t at = tok->bytes.n;
    if ((raw ? buf_put(&tok->bytes, s, n) : alphabet_to_bytes(s, n, &tok->bytes)) ||
        tok->bytes.n - at >= NONE || at >= NONE)
        return oom();
    tok->byte_off[id] = (uint32_t)at;
    tok->byte_len[id] = (uint32_t)(tok->bytes.n - at);
    return APL_OK;
}

static int32_t lookup(const apl_tokenizer *tok, const char *s, size_t n)
{
    smap_slot *slot = smap_find(&tok->vocab, s, n);
    return slot ? (int32_t)slot->v0 : -1;
}

/* The one-byte tokens, found by their spelling in the alphabet. */
static void tok_find_bytes(apl_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char s[4];
        tok->byte_id[b] = lookup(tok, s, put_utf8(s, byte_cp[b]));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Normalizers (NFC, NFKC: GPT-NeoX and Qwen2 use NFC) through ICU. ICU is opened with dlopen on
 * first use, so that the apl binary does not depend on it and only tokenizers with a normalizer
 * need it; the names come from ICU's headers, whose version matches the installed library. */

enum { NORM_NONE, NORM_NFC, NORM_NFKC };

#ifdef HAVE_ICU
#define ICU_STR2(x) #x
#define ICU_STR(x) ICU_STR2(x) /* expands ICU's versioned names: "unorm2_normalize_72" */
static struct {
    const UNormalizer2 *(*get[3])(UErrorCode *);
    __typeof__(&unorm2_normalize) normalize;
    __typeof__(&u_strFromUTF8) from_utf8;
    __typeof__(&u_strToUTF8) to_utf8;
    char error[256];
} icu;

static void icu_open(void)
{
    const char *lib = "libicuuc.so." U_ICU_VERSION_SHORT;
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(icu.error, sizeof icu.error, "cannot load ICU (%s): %s", lib, dlerror());
        return;
    }
    *(void **)&icu.get[NORM_NFC] = dlsym(h, ICU_STR(unorm2_getNFCInstance));
    *(void **)&icu.get[NORM_NFKC] = dlsym(h, ICU_STR(unorm2_getNFKCInstance));
    *(void **)&icu.normalize = dlsym(h, ICU_STR(unorm2_normalize));
    *(void **)&icu.from_utf8 = dlsym(h, ICU_STR(u_strFromUTF8));
    *(void **)&icu.to_utf8 = dlsym(h, ICU_STR(u_strToUTF8));
    if (!icu.get[NORM_NFC] || !icu.get[NORM_NFKC] || !icu.normalize || !icu.from_utf8 ||
        !icu.to_utf8)
        snprintf(icu.error, sizeof icu.error, "%s lacks the normalization functions", lib);
}

static const UNormalizer2 *icu_normalizer(int kind)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, icu_open);
    if (icu.error[0]) return NULL;
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *n = icu.get[kind](&err);
    if (U_FAILURE(err)) snprintf(icu.error, sizeof icu.error, "ICU: error %d", (int)err);
    return U_FAILURE(err) ? NULL : n;
}

/* Grows a UTF-16 scratch array to hold n units. */
static int u16_reserve(UChar **p, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    UChar *q = realloc(*p, n * sizeof *q);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Appends the normalization of valid UTF-8 s[0..n) to out; u16 / cap: the tokenizer's UTF-16
 * scratch arrays. */
static apl_status icu_run(int kind, const char *s, size_t n, buf *out, void **u16, size_t *cap)
{
    UChar **a = (UChar **)&u16[0], **b = (UChar **)&u16[1];
    size_t *ca = &cap[0], *cb = &cap[1];
    const UNormalizer2 *norm = icu_normalizer(kind);
    if (!norm) return apl_fail(APL_EUNSUPPORTED, "normalizer: %s", icu.error);
    if (n > INT32_MAX / 4) return apl_fail(APL_EINVAL, "normalizer: text too long");
    UErrorCode err = U_ZERO_ERROR;
    int32_t la, lb, l8;
    if (u16_reserve(a, ca, n + 1)) return oom();
    icu.from_utf8(*a, (int32_t)*ca, &la, s, (int32_t)n, &err);
    /* NFKC can expand a character into many (U+FDFA into 18): retry with the size ICU asks for. */
    for (int tries = 0; U_SUCCESS(err) && tries < 2; tries++) {
        if (u16_reserve(b, cb, tries ? (size_t)lb + 1 : 2 * (size_t)la + 16)) return oom();
        lb = icu.normalize(norm, *a, la, *b, (int32_t)*cb, &err);
        if (err != U_BUFFER_OVERFLOW_ERROR) break;
        err = U_ZERO_ERROR;
    }
    if (U_SUCCESS(err) && buf_reserve(out, 3 * (size_t)lb + 1)) return oom();
    if (U_SUCCESS(err))
        icu.to_utf8(out->p + out->n, (int32_t)(out->cap - out->n), &l8, *b, lb, &err);
    if (U_FAILURE(err)) return apl_fail(APL_EINVAL, "normalizer: ICU error %d", (int)err);
    out->n += (size_t)l8;
    return APL_OK;
}
#endif

/* Whether s can change under normalization `kind`. Code points below U+0300 never change under NFC
 * nor combine with what follows (the first combining mark is U+0300), and ASCII never changes
 * under NFKC: most text skips ICU. */
static int may_change(int kind, const unsigned char *s, size_t n)
{
    unsigned char limit = kind == NORM_NFC ? 0xCC : 0x80;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= limit) return 1;
    return 0;
}

/* The normalized text of s: s itself, or tok->normalized. Bytes that are not valid UTF-8 are kept
 * as they are, between the normalized runs around them. */
static apl_status normalize(apl_tokenizer *tok, const unsigned char **s, size_t *n)
{
    if (tok->norm == NORM_NONE || !may_change(tok->norm, *s, *n)) return APL_OK;
#ifdef HAVE_ICU
    buf *out = &tok->normalized;
    out->n = 0;
    for (size_t i = 0; i < *n;) {
        size_t j = i, l;
        while (j < *n && (l = utf8_valid_len(*s + j, *n - j)) > 0) j += l;
        apl_status st = APL_OK;
        if (j > i)
            st = icu_run(tok->norm, (const char *)*s + i, j - i, out, tok->u16, tok->u16_cap);
        if (st != APL_OK) return st;
        for (i = j; i < *n && !utf8_valid_len(*s + i, *n - i); i++)
            if (buf_put(out, *s + i, 1)) return oom();
    }
    *s = (const unsigned char *)out->p;
    *n = out->n;
    return APL_OK;
#else
    return apl_fail(APL_EUNSUPPORTED, "normalizer: apl was built without ICU (libicu-dev)");
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Pre-tokenizer stages */

/* Rewrites \s and \S to Unicode White_Space (WS_CLASS) so that PCRE2 splits exactly where HF's
 * Oniguruma does; inside a [...] class, \s becomes the class's members. */
static int translate_ws(const char *pat, buf *out)
{
    int in_class = 0;
    for (const char *p = pat; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            const char *rep = NULL;
            if (p[1] == 's') rep = in_class ? WS_CLASS : "[" WS_CLASS "]";
            else if (p[1] == 'S' && !in_class) rep = "[^" WS_CLASS "]";
            if (rep ? buf_put(out, rep, strlen(rep)) : buf_put(out, p, 2)) return -1;
            p++;
            continue;
        }
        if (!in_class && p[0] == '[') {
            in_class = 1;
            if (buf_put(out, p, 1)) return -1;
            if (p[1] == '^') { if (buf_put(out, ++p, 1)) return -1; }
            if (p[1] == ']') { if (buf_put(out, ++p, 1)) return -1; } /* a leading ] is literal */
            continue;
        }
        if (in_class && p[0] == ']') in_class = 0;
        if (buf_put(out, p, 1)) return -1;
    }
    return 0;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Adds a stage that splits pieces where `pattern` matches (HF's behavior "Isolated": matches and
 * the text between them become pieces); pattern NULL adds a stage without a split. */
static apl_status add_stage(apl_tokenizer *tok, const char *pattern, int literal, int prefix_space,
                            const char *field)
{
    if (tok->n_stages == MAX_STAGES)
        return apl_fail(APL_EUNSUPPORTED, "%s: %s: more than %d splitting stages", tok->path, field,
                        MAX_STAGES);
    stage *st = &tok->stages[tok->n_stages++];
    st->add_prefix_space = prefix_space;
    if (!pattern) return APL_OK;
    buf pat = { 0 };
    if (literal ? buf_put(&pat, pattern, strlen(pattern)) : translate_ws(pattern, &pat)) {
        free(pat.p);
        return oom();
    }
    int err;
    PCRE2_SIZE erroff;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
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
    if (!st->md) return oom();
    if (!tok->mctx) {
        /* A bigger JIT stack than the 32 KiB default, for patterns that backtrack a lot. */
        tok->mctx = pcre2_match_context_create(NULL);
        tok->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
        if (!tok->mctx || !tok->jit_stack) return oom();
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
    int32_t id = (int32_t)e->valuedouble, other = lookup(tok, e->string, strlen(e->string));
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
    int32_t ia = lookup(tok, a, na), ib = lookup(tok, b, nb);
    tmp->n = 0;
    if (buf_put(tmp, a, na) || buf_put(tmp, b, nb)) return oom();
    int32_t im = lookup(tok, tmp->p, tmp->n);
    const char *missing = ia < 0 ? a : ib < 0 ? b : im < 0 ? tmp->p : NULL;
    if (missing) {
        int len = (int)(ia < 0 ? na : ib < 0 ? nb : tmp->n);
        return apl_fail(APL_EFORMAT, "%s[%u]: token \"%.*s\" is not in the vocabulary", src, rank,
                        len, missing);
    }
    pmap_set(&tok->merges, pair_key(ia, ib), (uint64_t)rank << 32 | (uint32_t)im);
    return APL_OK;
}

static apl_status load_merges(apl_tokenizer *tok, const cJSON *merges)
{
    if (!cJSON_IsArray(merges))
        return apl_fail(APL_EFORMAT, "%s: model.merges: %s", tok->path,
                        merges ? "must be an array" : "missing");
    if (pmap_init(&tok->merges, (size_t)cJSON_GetArraySize(merges))) return oom();
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
        tok->unk_id = lookup(tok, unk->valuestring, strlen(unk->valuestring));
    if (cJSON_IsString(unk) && tok->unk_id < 0)
        return apl_fail(APL_EFORMAT, "%s: model.unk_token: \"%s\" is not in the vocabulary",
                        tok->path, unk->valuestring);
    return APL_OK;
}

static apl_status add_added(apl_tokenizer *tok, const char *s, size_t n, int32_t id, int special,
                            int lstrip, int rstrip)
{
    added_token *a = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *a);
    if (!a) return oom();
    tok->added = a;
    a = &tok->added[tok->n_added];
    *a = (added_token){ id, (uint32_t)tok->added_text.n, (uint32_t)n, special, lstrip, rstrip };
    if (buf_put(&tok->added_text, s, n)) return oom();
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

/* ByteLevel, or Sequence of Split (regex or string, behavior Isolated) and ByteLevel steps. */
static apl_status load_pre_one(apl_tokenizer *tok, const cJSON *p, const char *name, int *bytelevel)
{
    const cJSON *type = field(p, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "ByteLevel") == 0) {
        *bytelevel = 1;
        const char *pat = json_bool(p, "use_regex", 1) ? GPT2_PATTERN : NULL;
        return add_stage(tok, pat, 0, json_bool(p, "add_prefix_space", 0), name);
    }
    if (strcmp(t, "Split") == 0) {
        const cJSON *pat = field(p, "pattern"), *behavior = field(p, "behavior");
        const cJSON *re = field(pat, "Regex"), *str = field(pat, "String");
        if (!cJSON_IsString(re) && !cJSON_IsString(str))
            return apl_fail(APL_EFORMAT, "%s: %s.pattern: needs \"Regex\" or \"String\"", tok->path,
                            name);
        if (!cJSON_IsString(behavior) || strcmp(behavior->valuestring, "Isolated") != 0 ||
            json_bool(p, "invert", 0))
            return apl_fail(APL_EUNSUPPORTED, "%s: %s.behavior: only \"Isolated\" without invert "
                            "is supported", tok->path, name);
        return add_stage(tok, re ? re->valuestring : str->valuestring, !re, 0, name);
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
            if (ids_push(to, &id, 1)) return oom();
        }
        return APL_OK;
    }
    int32_t id = lookup(tok, name->valuestring, strlen(name->valuestring));
    if (id < 0)
        return apl_fail(APL_EFORMAT, "%s: %s: \"%s\" is not in the vocabulary", tok->path, fld,
                        name->valuestring);
    return ids_push(to, &id, 1) ? oom() : APL_OK;
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
            if (st == APL_OK && (ids_push(&qpre, pre->v, pre->n))) st = oom();
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
    apl_status st = normalize(tok, &probe, &n);
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
    if (pmap_init(&tok->merges, lines)) {
        free(text);
        return oom();
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
    if (st == APL_OK) st = add_stage(tok, GPT2_PATTERN, 0, 0, "pre_tokenizer");
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
        int32_t id = s ? lookup(tok, s, strlen(s)) : -1;
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
        ids[0] = lookup(tok, eos_names[i], strlen(eos_names[i]));
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

static int32_t trie_child(const apl_tokenizer *tok, int32_t node, unsigned char c)
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
    if (!tok->trie) return oom();
    for (int i = 0; i < tok->n_added; i++) {
        const added_token *t = &tok->added[i];
        const unsigned char *c = (const unsigned char *)tok->added_text.p + t->off;
        int32_t node = tok->added_root[c[0]];
        if (node < 0) node = tok->added_root[c[0]] = trie_add_child(tok, -1, c[0]);
        for (uint32_t j = 1; j < t->len; j++) {
            int32_t next = trie_child(tok, node, c[j]);
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
    if (pmap_get(&tok->merges, pair_key(sy[i].id, sy[sy[i].next].id), &v))
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
    if (scratch_reserve(tok, n)) return oom();
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
        if (sy[i].id < 0 || j < 0 || !pmap_get(&tok->merges, pair_key(sy[i].id, sy[j].id), &v) ||
            (uint32_t)(v >> 32) != it.rank)
            continue; /* stale: one of the two symbols was merged into another pair since */
        sy[i].id = (int32_t)(uint32_t)v;
        sy[i].next = sy[j].next;
        if (sy[j].next >= 0) sy[sy[j].next].prev = i;
        sy[j].id = -1;
        push_pair(tok, sy, sy[i].prev, tok->heap, &nh);
        push_pair(tok, sy, i, tok->heap, &nh);
    }
    if (ids_reserve(out, (size_t)m)) return oom();
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
            if (buf_put(&tok->spell, c, put_utf8(c, byte_cp[s[i]]))) return oom();
        }
        int32_t id = lookup(tok, tok->spell.p, tok->spell.n);
        if (id >= 0) return ids_push(out, &id, 1) ? oom() : APL_OK;
    }
    if (n == 1 && tok->byte_id[s[0]] >= 0)
        return ids_push(out, &tok->byte_id[s[0]], 1) ? oom() : APL_OK;
    if (n > CACHE_MAX_BYTES) return bpe_merge(tok, s, n, out);
    smap_slot *hit = smap_find(&tok->cache, s, n);
    /* a piece may have no ids (bytes the vocabulary lacks, no unk): then cache_ids may be NULL */
    if (hit) return hit->v1 && ids_push(out, tok->cache_ids.v + hit->v0, hit->v1) ? oom() : APL_OK;
    size_t start = out->n;
    apl_status st = bpe_merge(tok, s, n, out);
    if (st != APL_OK) return st;
    if (tok->cache.n >= CACHE_MAX_WORDS) {
        smap_clear(&tok->cache);
        tok->cache_ids.n = 0;
    }
    smap_slot *slot = smap_put(&tok->cache, s, n);
    if (!slot) return oom();
    size_t k = out->n - start; /* 0 ids: out->v may still be NULL */
    slot->v0 = (uint32_t)tok->cache_ids.n;
    slot->v1 = (uint32_t)k;
    return k && ids_push(&tok->cache_ids, out->v + start, k) ? oom() : APL_OK;
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

/* Splits s by the regex of stage k (matches and the text between them are pieces) and hands the
 * pieces to stage k + 1; past the last stage, to BPE. */
static apl_status pretokenize(apl_tokenizer *tok, int k, const unsigned char *s, size_t n,
                              apl_ids *out)
{
    if (k == tok->n_stages) return bpe_piece(tok, s, n, out);
    stage *st = &tok->stages[k];
    if (st->add_prefix_space && s[0] != ' ') {
        st->scratch.n = 0;
        if (buf_put(&st->scratch, " ", 1) || buf_put(&st->scratch, s, n)) return oom();
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
            size_t l = utf8_valid_len(s + a, n - a);
            b = a + (l ? l : 1);
            a = b;
        }
        apl_status r = APL_OK;
        /* The text before the match (bytes that are not UTF-8, say) is a piece too. */
        if (a > at) r = pretokenize(tok, k + 1, s + at, a - at, out);
        if (r == APL_OK && b > a) r = pretokenize(tok, k + 1, s + a, b - a, out);
        if (r != APL_OK) return r;
        at = b;
    }
    return at < n ? pretokenize(tok, k + 1, s + at, n - at, out) : APL_OK;
}

static int is_ws_at(const unsigned char *s, size_t n, size_t *len)
{
    int cp = utf8_decode(s, n, len);
    return cp >= 0 && is_white_space(cp);
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
        node = trie_child(tok, node, s[j]);
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
    apl_status st = normalize(tok, &s, &n);
    return st != APL_OK ? st : n ? pretokenize(tok, 0, s, n, out) : APL_OK;
}

apl_status apl_tokenizer_encode(apl_tokenizer *tok, const char *text, size_t len, int add_special,
                                apl_ids *out)
{
    const unsigned char *s = (const unsigned char *)text;
    apl_status st = APL_OK;
    if (add_special && ids_push(out, tok->prefix.v, tok->prefix.n)) return oom();
    tok->regex_deadline = now_s() + REGEX_BASE_S + REGEX_S_PER_MB * (double)len / 1e6;
    size_t at = 0;
    while (at < len && st == APL_OK) {
        size_t a = len, b = len;
        int k = tok->n_added ? find_added(tok, s, len, at, &a, &b) : -1;
        if (a > at) st = encode_segment(tok, s + at, a - at, out);
        if (st == APL_OK && k >= 0 && ids_push(out, &tok->added[k].id, 1)) st = oom();
        at = b;
    }
    if (st == APL_OK && add_special && ids_push(out, tok->suffix.v, tok->suffix.n)) st = oom();
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
        if (buf_put(&raw, tok->bytes.p + tok->byte_off[id], tok->byte_len[id])) goto nomem;
    }
    if (buf_reserve(&text, raw.n + 1)) goto nomem;
    text.p[0] = 0; /* the result is a C string even when empty */
    const unsigned char *s = (const unsigned char *)raw.p;
    for (size_t i = 0, l; i < raw.n; i += l) {
        l = utf8_valid_len(s + i, raw.n - i);
        if (l) {
            if (buf_put(&text, s + i, l)) goto nomem;
            continue;
        }
        l = utf8_bad_len(s + i, raw.n - i);
        if (buf_put(&text, "\xEF\xBF\xBD", 3)) goto nomem; /* U+FFFD */
    }
    free(raw.p);
    *out = text.p;
    *out_len = text.n;
    return APL_OK;
nomem:
    free(raw.p);
    free(text.p);
    return oom();
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
    st = oom();
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
    return lookup(tok, s, len);
}

int32_t apl_tokenizer_eos_id(const apl_tokenizer *tok) { return tok->eos_id; }
int32_t apl_tokenizer_pad_id(const apl_tokenizer *tok) { return tok->pad_id; }
int32_t apl_tokenizer_bos_id(const apl_tokenizer *tok) { return tok->bos_id; }
