/* tokenizer_text.c — text and Unicode for the tokenizer (tokenizer_impl.h): GPT-2's byte-level
 * alphabet, UTF-8, Unicode White_Space, NFC/NFKC normalizers through ICU. */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tokenizer_impl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if __has_include(<unicode/unorm2.h>)
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#define HAVE_ICU 1
#endif

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

void tok_init_alphabet(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_alphabet);
}

size_t tok_put_utf8(char *o, int cp)
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

size_t tok_byte_spelling(char *o, unsigned char b) { return tok_put_utf8(o, byte_cp[b]); }

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
size_t tok_utf8_valid_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    unsigned lo, hi;
    size_t need = utf8_lead(s[0], &lo, &hi);
    if (!need) return 0;
    return utf8_prefix(s, n, need, lo, hi) == need + 1 ? need + 1 : 0;
}

/* How many bytes at s form the maximal prefix of a valid sequence (at least 1): the unit that
 * one U+FFFD replaces. */
size_t tok_utf8_bad_len(const unsigned char *s, size_t n)
{
    unsigned lo, hi;
    size_t need = utf8_lead(s[0], &lo, &hi);
    return need ? utf8_prefix(s, n, need, lo, hi) : 1;
}

int tok_utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
    *len = tok_utf8_valid_len(s, n);
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
int tok_alphabet_to_bytes(const char *tok, size_t n, buf *out)
{
    size_t start = out->n;
    const unsigned char *s = (const unsigned char *)tok;
    for (size_t i = 0, l; i < n; i += l) {
        int cp = tok_utf8_decode(s + i, n - i, &l);
        if (cp < 0 || cp >= 324 || cp_byte[cp] < 0) {
            out->n = start;
            return tok_buf_put(out, tok, n);
        }
        unsigned char b = (unsigned char)cp_byte[cp];
        if (tok_buf_put(out, &b, 1)) return -1;
    }
    return 0;
}

/* Unicode White_Space (what HF's Oniguruma and Python's GPT-2 regex mean by \s; PCRE2's \s also
 * takes U+180E, and JavaScript's takes U+FEFF but not U+0085). */
int tok_is_white_space(int cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}
#define WS_CLASS \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
    "\\x{202F}\\x{205F}\\x{3000}"

/* ------------------------------------------------------------------------------------------ */
/* Normalizers (NFC, NFKC: GPT-NeoX and Qwen2 use NFC) through ICU. ICU is opened with dlopen on
 * first use, so that the apl binary does not depend on it and only tokenizers with a normalizer
 * need it; the names come from ICU's headers, whose version matches the installed library. */

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
    if (u16_reserve(a, ca, n + 1)) return tok_oom();
    icu.from_utf8(*a, (int32_t)*ca, &la, s, (int32_t)n, &err);
    /* NFKC can expand a character into many (U+FDFA into 18): retry with the size ICU asks for. */
    for (int tries = 0; U_SUCCESS(err) && tries < 2; tries++) {
        if (u16_reserve(b, cb, tries ? (size_t)lb + 1 : 2 * (size_t)la + 16)) return tok_oom();
        lb = icu.normalize(norm, *a, la, *b, (int32_t)*cb, &err);
        if (err != U_BUFFER_OVERFLOW_ERROR) break;
        err = U_ZERO_ERROR;
    }
    if (U_SUCCESS(err) && tok_buf_reserve(out, 3 * (size_t)lb + 1)) return tok_oom();
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
apl_status tok_normalize(apl_tokenizer *tok, const unsigned char **s, size_t *n)
{
    if (tok->norm == NORM_NONE || !may_change(tok->norm, *s, *n)) return APL_OK;
#ifdef HAVE_ICU
    buf *out = &tok->normalized;
    out->n = 0;
    for (size_t i = 0; i < *n;) {
        size_t j = i, l;
        while (j < *n && (l = tok_utf8_valid_len(*s + j, *n - j)) > 0) j += l;
        apl_status st = APL_OK;
        if (j > i)
            st = icu_run(tok->norm, (const char *)*s + i, j - i, out, tok->u16, tok->u16_cap);
        if (st != APL_OK) return st;
        for (i = j; i < *n && !tok_utf8_valid_len(*s + i, *n - i); i++)
            if (tok_buf_put(out, *s + i, 1)) return tok_oom();
    }
    *s = (const unsigned char *)out->p;
    *n = out->n;
    return APL_OK;
#else
    return apl_fail(APL_EUNSUPPORTED, "normalizer: apl was built without ICU (libicu-dev)");
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Regex patterns: \s as Unicode White_Space */

/* Rewrites \s and \S to Unicode White_Space (WS_CLASS) so that PCRE2 splits exactly where HF's
 * Oniguruma does; inside a [...] class, \s becomes the class's members. */
int tok_translate_ws(const char *pat, buf *out)
{
    int in_class = 0;
    for (const char *p = pat; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            const char *rep = NULL;
            if (p[1] == 's') rep = in_class ? WS_CLASS : "[" WS_CLASS "]";
            else if (p[1] == 'S' && !in_class) rep = "[^" WS_CLASS "]";
            if (rep ? tok_buf_put(out, rep, strlen(rep)) : tok_buf_put(out, p, 2)) return -1;
            p++;
            continue;
        }
        if (!in_class && p[0] == '[') {
            in_class = 1;
            if (tok_buf_put(out, p, 1)) return -1;
            if (p[1] == '^') { if (tok_buf_put(out, ++p, 1)) return -1; }
            if (p[1] == ']') { if (tok_buf_put(out, ++p, 1)) return -1; } /* a leading ] is literal */
            continue;
        }
        if (in_class && p[0] == ']') in_class = 0;
        if (tok_buf_put(out, p, 1)) return -1;
    }
    return 0;
}
