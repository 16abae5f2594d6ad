/* tokenizer_impl.h — private to the tokenizer's files; never included elsewhere. The tokenizer is
 * one object (struct apl_tokenizer) in three files, along its seams:
 *   tokenizer.c        the object, its buffers and hash maps, BPE of a piece, encode and decode
 *   tokenizer_load.c   reading tokenizer.json / vocab.json + merges.txt and the pre-tokenizer
 *   tokenizer_text.c   text and Unicode: GPT-2's byte alphabet, UTF-8, White_Space, NFC/NFKC
 * Functions here are named tok_*; they follow tokenizer.h's conventions (statuses carry the
 * message; tok_oom() is the out-of-memory status). Ints returned by the buffer helpers are 0 on
 * success and -1 when out of memory.
 */
#ifndef APL_TOKENIZER_IMPL_H
#define APL_TOKENIZER_IMPL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

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

typedef struct {
    char *p;
    size_t n, cap;
} buf;

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

/* Merges: key (left id << 32 | right id), value (rank << 32 | merged id). Ids are < 2^24, so an
 * all-ones key never occurs and marks empty slots. */
typedef struct {
    uint64_t *keys, *vals;
    size_t cap, n;
} pmap;

enum { NORM_NONE, NORM_NFC, NORM_NFKC };

typedef struct {
    int32_t id;
    uint32_t off, len; /* content in added_text */
    int special, lstrip, rstrip;
} added_token;

/* What a Split stage keeps (HF's behavior and invert): Isolated, every match and every stretch of
 * text between matches is a piece; Removed, the matches are dropped; Removed with invert (how
 * converted tiktoken vocabularies such as o200k are written), the matches are the pieces and the
 * text between them is dropped. */
enum { SPLIT_ISOLATED, SPLIT_KEEP_GAPS, SPLIT_KEEP_MATCHES };

typedef struct {
    pcre2_code *re;          /* NULL: the stage only adds the prefix space */
    pcre2_match_data *md;
    int jit;                 /* JIT-compiled: matched by pcre2_jit_match, which skips checks */
    int split;               /* SPLIT_* */
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


/* ------------------------------------------------------------------------------------------ */
/* tokenizer.c */

int tok_buf_reserve(buf *b, size_t extra);
int tok_buf_put(buf *b, const void *s, size_t n);
int tok_ids_push(apl_ids *a, const int32_t *v, size_t n);
apl_status tok_oom(void);
uint64_t tok_pair_key(int32_t a, int32_t b);
int tok_pmap_init(pmap *m, size_t n);
void tok_pmap_set(pmap *m, uint64_t k, uint64_t v);
apl_status tok_new(const char *path, apl_tokenizer **out);
apl_status tok_alloc_ids(apl_tokenizer *tok, int32_t n);
apl_status tok_set(apl_tokenizer *tok, const char *s, size_t n, int32_t id, int raw);
int32_t tok_lookup(const apl_tokenizer *tok, const char *s, size_t n); /* -1 when absent */
void tok_find_bytes(apl_tokenizer *tok);

/* ------------------------------------------------------------------------------------------ */
/* tokenizer_load.c */

int32_t tok_trie_child(const apl_tokenizer *tok, int32_t node, unsigned char c);

/* ------------------------------------------------------------------------------------------ */
/* tokenizer_text.c */

void tok_init_alphabet(void); /* once per process, thread-safe; before tok_byte_spelling */
size_t tok_byte_spelling(char *o, unsigned char b); /* byte b in the alphabet, UTF-8 at o */
size_t tok_put_utf8(char *o, int cp);
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);
size_t tok_utf8_bad_len(const unsigned char *s, size_t n);
int tok_utf8_decode(const unsigned char *s, size_t n, size_t *len);
int tok_alphabet_to_bytes(const char *tok, size_t n, buf *out);
int tok_is_white_space(int cp);
apl_status tok_normalize(apl_tokenizer *tok, const unsigned char **s, size_t *n);
int tok_translate_ws(const char *pat, buf *out);

#endif
