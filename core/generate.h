/* generate.h — batched sampling of completions with a preallocated KV cache.
 *
 *   apl_seq prompts[2] = {{pa, 5}, {pb, 9}};
 *   apl_seq eos = {&eos_id, 1};
 *   apl_generate_opts o = apl_generate_defaults();
 *   o.n = 4; o.max_new_tokens = 32; o.temperature = 0.7; o.top_p = 0.9; o.seed = 7;
 *   o.stops = &eos; o.n_stops = 1;
 *   apl_generate_result r;
 *   if (apl_generate(m, prompts, 2, &o, &r) != APL_OK) die(apl_last_error());
 *   // row k = prompt k / n, sample k % n: r.ids + k * r.width holds r.len[k] tokens
 *   apl_generate_result_free(&r);
 *
 * Rows (prompt x sample) are run batch_size at a time, left-padded; the samples of a prompt share
 * one prefill (its cache rows are copied). Each step samples one token
 * per live row; rows that end (a stop sequence or max_new_tokens) are dropped from the batch and
 * the KV cache (apl_kv_cache_select_rows) once they are a quarter of it, so finished rows stop
 * costing compute without a cache copy for every row that ends.
 *
 * Reproducibility: row (p, s) draws its uniforms from a private generator seeded from
 * (seed, prompt p's ids, s), and sampling is inverse-CDF on those uniforms, so a completion does
 * not depend on batch_size, on the other prompts in the call, on the prompt's position among them,
 * or on n (sample s of prompt p is the same for every n > s). A prompt given twice gets the same
 * samples twice.
 *
 * Log-probs: logprobs[k][t] is the log-probability of the chosen token under the model itself
 * (temperature 1, no top-k/top-p filtering), so it equals what apl_score_logprobs gives for the
 * same tokens; a stop sequence's tokens are part of the completion.
 *
 * Ownership: the caller owns the inputs; the result's arrays are freed by
 * apl_generate_result_free (safe on a zeroed or already-freed result).
 * Statuses: APL_EINVAL (bad option, empty prompt, too long for the model), APL_ENOMEM,
 * APL_ETORCH, APL_EINTR (Ctrl-C; nothing is returned).
 */
#ifndef APL_GENERATE_H
#define APL_GENERATE_H

#include "score.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t n;                /* completions per prompt, >= 1 */
    int64_t max_new_tokens;   /* >= 1 */
    double temperature;       /* 0: greedy (argmax) */
    int64_t top_k;            /* 0: off */
    double top_p;             /* in (0, 1]; 1: off */
    uint64_t seed;
    const apl_seq *stops;     /* a row ends once its tokens end with one of these (EOS = {eos}) */
    int64_t n_stops;
    int64_t batch_size;       /* rows (prompt x sample) per forward, >= 1 */
    int64_t pad_id;           /* < 0: use 0 (padding is masked out anyway) */
    apl_progress_fn progress; /* may be NULL; called with rows finished so far */
    void *progress_ud;
} apl_generate_opts;

apl_generate_opts apl_generate_defaults(void);

typedef struct {
    int64_t rows;       /* n_prompts * n */
    int64_t width;      /* max_new_tokens */
    int64_t *len;       /* (rows) tokens generated per row, 1..width */
    int64_t *ids;       /* (rows, width), row k's first len[k] entries are valid */
    float *logprobs;    /* (rows, width) */
} apl_generate_result;

apl_status apl_generate(apl_model *m, const apl_seq *prompts, int64_t n_prompts,
                        const apl_generate_opts *o, apl_generate_result *out);
void apl_generate_result_free(apl_generate_result *r);

#ifdef __cplusplus
}
#endif
#endif
