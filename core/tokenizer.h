/* tokenizer.h — byte-level BPE tokenizers (GPT-2, GPT-NeoX, Llama-3 and Qwen style) loaded from a
 * Hugging Face tokenizer.json or from the older vocab.json + merges.txt pair.
 *
 *   apl_tokenizer *tok;
 *   if (apl_tokenizer_load("gpt2/", &tok) != APL_OK) die(apl_last_error());
 *   apl_ids ids = {0};
 *   apl_tokenizer_encode(tok, "Hello world", 11, 1, &ids);   // ids.v[0..ids.n)
 *   char *text; size_t len;
 *   apl_tokenizer_decode(tok, ids.v, ids.n, 0, &text, &len); // "Hello world"
 *   free(text); apl_ids_free(&ids); apl_tokenizer_free(tok);
 *
 * What is implemented: model type BPE with its merges (ranks looked up in a hash map of id pairs,
 * a heap per word, a cache of words already seen), the ByteLevel pre-tokenizer (GPT-2's regex run
 * by PCRE2 with JIT; optional add_prefix_space), Split pre-tokenizers with a regex or a string
 * and behavior "Isolated" or "Removed", with or without invert (converted tiktoken vocabularies
 * such as o200k), before a ByteLevel one, the ByteLevel decoder, added tokens (matched in the text as
 * single ids, leftmost-longest, with lstrip / rstrip), the NFC and NFKC normalizers (by ICU, opened
 * on first use) and the TemplateProcessing, RobertaProcessing, BertProcessing and ByteLevel
 * post-processors (applied when add_special is set). Other components are refused with
 * APL_EUNSUPPORTED, naming the field.
 *
 * Text is bytes: invalid UTF-8 is never an error; bytes the regex cannot read become pieces of
 * their own, so the ids always spell the input's bytes, and decode(encode(x)) == x for valid UTF-8.
 * Decoding replaces each maximal invalid UTF-8 subpart with U+FFFD, as Rust's from_utf8_lossy and
 * Python's errors="replace" do.
 *
 * Ownership: the caller frees the tokenizer with apl_tokenizer_free, apl_ids with apl_ids_free,
 * decoded text with free(). Strings returned by apl_tokenizer_id_to_token belong to the tokenizer.
 * Threads: encoding uses the tokenizer's word cache and scratch space, so one tokenizer serves one
 * thread at a time; decoding and the lookups only read.
 * Statuses: APL_EIO (unreadable file), APL_EFORMAT (malformed file: the message names the file and
 * the field), APL_EUNSUPPORTED (a model, pre-tokenizer, normalizer... apl does not implement, or
 * ICU missing for a normalizer),
 * APL_EINVAL (an id out of range), APL_ENOMEM.
 */
#ifndef APL_TOKENIZER_H
#define APL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apl_tokenizer apl_tokenizer;

/* A growable array of token ids. Zero-initialise; reuse across calls to save allocations. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} apl_ids;
void apl_ids_free(apl_ids *ids);
apl_status apl_ids_reserve(apl_ids *ids, size_t extra); /* room for `extra` more ids */

/* path is a tokenizer.json file, or a folder holding tokenizer.json or vocab.json + merges.txt.
 * eos / pad ids come from tokenizer_config.json or special_tokens_map.json next to the files when
 * present, else from a well-known token in the vocabulary (<|endoftext|>, </s>, ...). */
apl_status apl_tokenizer_load(const char *path, apl_tokenizer **out);
apl_status apl_tokenizer_from_files(const char *vocab_json, const char *merges_txt,
                                    apl_tokenizer **out);
void apl_tokenizer_free(apl_tokenizer *tok);

/* Appends the ids of text[0..len) to out. add_special applies the post-processor (BOS/EOS
 * templates); added tokens that occur in the text are always matched as single ids. */
apl_status apl_tokenizer_encode(apl_tokenizer *tok, const char *text, size_t len, int add_special,
                                apl_ids *out);
/* *out is NUL-terminated and *out_len excludes the NUL. skip_special drops special added tokens. */
apl_status apl_tokenizer_decode(const apl_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *out_len);

/* A padded batch: ids and mask are (B, T) row-major; row b holds lens[b] real tokens. */
typedef struct {
    int64_t B, T;
    int64_t *ids, *mask, *lens;
} apl_tok_batch;
typedef struct {
    int add_special;
    int pad_left;        /* pad on the left (for generation) instead of the right */
    int64_t max_length;  /* 0: no limit; else rows are truncated to max_length ids */
    int truncate_left;   /* drop ids from the start instead of the end */
} apl_tok_batch_opts;
apl_status apl_tokenizer_encode_batch(apl_tokenizer *tok, int64_t n, const char *const *texts,
                                      const size_t *lens, const apl_tok_batch_opts *opts,
                                      apl_tok_batch *out);
void apl_tok_batch_free(apl_tok_batch *b);

int32_t apl_tokenizer_vocab_size(const apl_tokenizer *tok);   /* largest id + 1 */
/* The token as the vocabulary spells it ("Ġthe"), NULL when no token has that id. */
const char *apl_tokenizer_id_to_token(const apl_tokenizer *tok, int32_t id);
int32_t apl_tokenizer_token_to_id(const apl_tokenizer *tok, const char *s, size_t len); /* -1 */
int32_t apl_tokenizer_eos_id(const apl_tokenizer *tok);       /* -1 when unknown */
int32_t apl_tokenizer_pad_id(const apl_tokenizer *tok);       /* the eos id when none is named */
int32_t apl_tokenizer_bos_id(const apl_tokenizer *tok);       /* -1 when unknown */

#ifdef __cplusplus
}
#endif
#endif
