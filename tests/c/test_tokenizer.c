/* test_tokenizer.c — core/tokenizer.c without Lua: a byte-level tokenizer.json written here (all
 * 256 byte tokens and a few merges), merge order, random bytes (valid or not) never failing and
 * keeping their bytes through merges, U+FFFD decoding, batches, and error statuses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tokenizer.h"

static char dir[64];

/* GPT-2's spelling of byte b (see tokenizer.c), as a JSON string body. */
static void spell(int b, char *out)
{
    static int map[256];
    if (!map['A']) {
        int n = 0;
        for (int c = 0; c < 256; c++) {
            int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
            map[c] = printable ? c : 256 + n++;
        }
    }
    int cp = map[b];
    if (cp == '"' || cp == '\\') sprintf(out, "\\%c", cp);
    else if (cp < 0x80) sprintf(out, "%c", cp);
    else sprintf(out, "%c%c", 0xC0 | cp >> 6, 0x80 | (cp & 0x3F));
}

/* Writes dir/tokenizer.json: 256 byte tokens (ids 0..255 in byte order), then the merged tokens of
 * `merges` (pairs of byte strings), then <|endoftext|>. */
static const char *write_tokenizer(const char *const merges[][2], int n_merges, const char *extra)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{%s\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
               "\"decoder\":{\"type\":\"ByteLevel\"},"
               "\"added_tokens\":[{\"id\":%d,\"content\":\"<|endoftext|>\",\"special\":true}],"
               "\"model\":{\"type\":\"BPE\",\"vocab\":{", extra, 256 + n_merges);
    char s[8];
    for (int b = 0; b < 256; b++) {
        spell(b, s);
        fprintf(f, "%s\"%s\":%d", b ? "," : "", s, b);
    }
    for (int i = 0; i < n_merges; i++) {
        fprintf(f, ",\"");
        for (int k = 0; k < 2; k++)
            for (const char *p = merges[i][k]; *p; p++) spell((unsigned char)*p, s), fputs(s, f);
        fprintf(f, "\":%d", 256 + i);
    }
    fprintf(f, "},\"merges\":[");
    for (int i = 0; i < n_merges; i++) {
        fprintf(f, "%s[\"", i ? "," : "");
        for (const char *p = merges[i][0]; *p; p++) spell((unsigned char)*p, s), fputs(s, f);
        fprintf(f, "\",\"");
        for (const char *p = merges[i][1]; *p; p++) spell((unsigned char)*p, s), fputs(s, f);
        fprintf(f, "\"]");
    }
    fprintf(f, "]}}");
    fclose(f);
    return path;
}

static const char *const MERGES[][2] = {
    { " ", "t" }, { "h", "e" }, { " t", "he" }, { "i", "n" }, { "in", "g" }, { "a", "a" },
    { "\xC3", "\xA9" }, { "\xE2\x82", "\xAC" }, { "\xE2", "\x82" }, { " ", "a" }, { "r", "e" },
};
enum { N_MERGES = sizeof MERGES / sizeof *MERGES };

static int same_ids(const apl_ids *a, const int32_t *b, size_t n)
{
    return a->n == n && memcmp(a->v, b, n * sizeof *b) == 0;
}

static void test_merges(apl_tokenizer *tok)
{
    apl_ids ids = { 0 };
    CHECK(apl_tokenizer_encode(tok, " the", 4, 1, &ids) == APL_OK, "%s", apl_last_error());
    CHECK(same_ids(&ids, (int32_t[]){ 258 }, 1), "\" the\" -> %zu ids", ids.n);
    ids.n = 0;
    apl_tokenizer_encode(tok, "aaa", 3, 1, &ids); /* "aa" (rank 5) at the left first */
    CHECK(same_ids(&ids, (int32_t[]){ 261, 'a' }, 2), "aaa");
    ids.n = 0;
    apl_tokenizer_encode(tok, "caf\xC3\xA9 \xE2\x82\xAC<|endoftext|>", 22, 1, &ids);
    CHECK(same_ids(&ids, (int32_t[]){ 'c', 'a', 'f', 262, ' ', 263, 256 + N_MERGES }, 7), "cafe euro");
    CHECK(apl_tokenizer_token_to_id(tok, "<|endoftext|>", 13) == 256 + N_MERGES, "eos id");
    CHECK(apl_tokenizer_eos_id(tok) == 256 + N_MERGES, "eos found by name");
    CHECK(apl_tokenizer_vocab_size(tok) == 257 + N_MERGES, "vocab size");
    CHECK(strcmp(apl_tokenizer_id_to_token(tok, 258), "\xC4\xA0the") == 0, "spelling of \" the\"");
    apl_ids_free(&ids);
}

/* Random byte strings: encoding never fails, and the ids stand for the same bytes with or without
 * merges (decoded the same way, U+FFFD included). Valid UTF-8 comes back exactly. */
static void test_random_bytes(apl_tokenizer *tok, apl_tokenizer *plain)
{
    static const char alphabet[] = "aa the in re\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 \n\t'<|endoftext|>\x80\xFF";
    uint64_t rng = 42;
    int bad = 0, exact = 0, valid = 0;
    apl_ids a = { 0 }, b = { 0 };
    for (int it = 0; it < 3000; it++) {
        char s[64];
        size_t n = (size_t)(it % 60);
        for (size_t i = 0; i < n; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            s[i] = alphabet[(rng >> 33) % (sizeof alphabet - 1)];
        }
        a.n = b.n = 0;
        char *x = NULL, *y = NULL;
        size_t nx, ny;
        if (apl_tokenizer_encode(tok, s, n, 1, &a) || apl_tokenizer_encode(plain, s, n, 1, &b) ||
            apl_tokenizer_decode(tok, a.v, a.n, 0, &x, &nx) ||
            apl_tokenizer_decode(plain, b.v, b.n, 0, &y, &ny) || nx != ny || memcmp(x, y, nx) != 0)
            bad++;
        int is_valid = x && !strstr(x, "\xEF\xBF\xBD");
        valid += is_valid;
        exact += is_valid && nx == n && memcmp(x, s, n) == 0;
        free(x);
        free(y);
    }
    CHECK(bad == 0, "%d random strings failed or decoded differently with merges", bad);
    CHECK(valid > 100 && exact == valid, "%d of %d valid strings round-trip", exact, valid);
    apl_ids_free(&a);
    apl_ids_free(&b);
}

static void test_decode(apl_tokenizer *tok)
{
    char *s;
    size_t n;
    int32_t ids[] = { 'a', 0xE2, 0x82, 'b', 0xFF, 0xF0, 0x80 };
    CHECK(apl_tokenizer_decode(tok, ids, 7, 0, &s, &n) == APL_OK, "%s", apl_last_error());
    CHECK(strcmp(s, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD") == 0, "U+FFFD per maximal subpart: %s", s);
    free(s);
    int32_t eos[] = { 'a', 256 + N_MERGES, 'b' };
    CHECK(apl_tokenizer_decode(tok, eos, 3, 1, &s, &n) == APL_OK && strcmp(s, "ab") == 0, "skip special");
    free(s);
    int32_t bad[] = { 'a', 99999 };
    CHECK(apl_tokenizer_decode(tok, bad, 2, 0, &s, &n) == APL_EINVAL, "bad id");
    CHECK(strstr(apl_last_error(), "99999") != NULL, "%s", apl_last_error());
}

static void test_batch(apl_tokenizer *tok)
{
    const char *texts[] = { " the", "abc", "" };
    size_t lens[] = { 4, 3, 0 };
    apl_tok_batch b;
    apl_tok_batch_opts o = { .pad_left = 1, .max_length = 2 };
    CHECK(apl_tokenizer_encode_batch(tok, 3, texts, lens, &o, &b) == APL_OK, "%s", apl_last_error());
    int64_t pad = apl_tokenizer_pad_id(tok);
    int64_t want_ids[] = { pad, 258, 'a', 'b', pad, pad }, want_mask[] = { 0, 1, 1, 1, 0, 0 };
    CHECK(b.B == 3 && b.T == 2, "shape %lld x %lld", (long long)b.B, (long long)b.T);
    CHECK(memcmp(b.ids, want_ids, sizeof want_ids) == 0, "ids");
    CHECK(memcmp(b.mask, want_mask, sizeof want_mask) == 0, "mask");
    apl_tok_batch_free(&b);
}

static void test_errors(void)
{
    static const struct { const char *json; apl_status st; const char *msg; } rows[] = {
        { "{", APL_EFORMAT, "not valid JSON" },
        { "{\"model\":{\"type\":\"Unigram\"}}", APL_EUNSUPPORTED, "model.type: \"Unigram\"" },
        { "{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", APL_EFORMAT, "model.vocab: missing" },
        { "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
          "\"merges\":[\"a b\"]}}", APL_EFORMAT, "model.merges[0]: token \"b\"" },
    };
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        FILE *f = fopen(path, "w");
        fputs(rows[i].json, f);
        fclose(f);
        apl_tokenizer *tok = NULL;
        apl_status st = apl_tokenizer_load(dir, &tok);
        CHECK(st == rows[i].st && !tok, "row %zu: status %s", i, apl_status_name(st));
        CHECK(strstr(apl_last_error(), rows[i].msg) && strstr(apl_last_error(), "tokenizer.json"),
              "row %zu: %s", i, apl_last_error());
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/apl-tok.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    apl_tokenizer *tok = NULL, *plain = NULL;
    CHECK(apl_tokenizer_load(write_tokenizer(MERGES, N_MERGES, ""), &tok) == APL_OK, "%s", apl_last_error());
    CHECK(apl_tokenizer_load(write_tokenizer(NULL, 0, ""), &plain) == APL_OK, "%s", apl_last_error());
    if (tok && plain) {
        test_merges(tok);
        test_random_bytes(tok, plain);
        test_decode(tok);
        test_batch(tok);
    }
    apl_tokenizer_free(tok);
    apl_tokenizer_free(plain);
    test_errors();
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    DONE();
}
