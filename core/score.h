/* score.h — log-probabilities of completions given prompts, batched over (prompt, completion) pairs.
 *
 *   apl_seq p[2] = {{pa, 3}, {pb, 5}}, c[2] = {{ca, 4}, {cb, 2}};   // token ids
 *   float sums[2];
 *   apl_score_opts o = { .batch_size = 8, .pad_id = 0 };
 *   if (apl_score_logprobs(m, p, c, 2, &o, sums, NULL) != APL_OK) die(apl_last_error());
 *   // sums[i] = sum over completion tokens t of log p(c_t | p, c_<t)
 *
 * Each pair becomes one left-padded row `prompt ++ completion`; the model's head runs only on the
 * completion span, and the log-probs of the targets are read from it without a softmax tensor
 * over the vocabulary (apl_t_target_logprobs). apl_score_batch and apl_score_pairs keep the
 * autograd graph when grad mode is on (the trainers use them); the batched apl_score_logprobs
 * and apl_score_pair_logprobs run without gradients and return plain floats.
 *
 * Ownership: the caller owns the input arrays and the output buffers; apl_score_batch,
 * apl_score_pairs and apl_score_upload return new tensor handles the caller frees.
 * Statuses: APL_EINVAL (empty prompt, a token id outside the vocabulary, a sequence longer than
 * the model's positions, bad option), APL_ETORCH (libtorch error, e.g. out of memory), APL_EINTR
 * (Ctrl-C between batches).
 */
#ifndef APL_SCORE_H
#define APL_SCORE_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A token sequence, borrowed. */
typedef struct { const int64_t *ids; int64_t len; } apl_seq;

typedef struct {
    int64_t batch_size;       /* pairs per forward, >= 1 */
    int64_t pad_id;           /* id written at padded positions (masked out); < 0: use 0 */
    apl_progress_fn progress; /* may be NULL; called after each batch with pairs done */
    void *progress_ud;
    const char *phase;        /* the name progress is given; NULL: "score" */
} apl_score_opts;

/* Scores n pairs in one forward. *sums is (n), the summed completion log-probs (f32, or f64 for
 * an f64 model); per_token, when not NULL, receives (n, C) with C the longest completion: row i
 * holds its values in its last len_i columns (right-aligned) and zeros before. Both on the
 * model's device. */
apl_status apl_score_batch(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                           int64_t n, int64_t pad_id, apl_tensor **sums, apl_tensor **per_token);

/* Summed log-probs of the chosen and the rejected completions of n preference pairs (n each,
 * f32 or f64 like apl_score_batch, differentiable when grad mode is on), from one forward of n
 * rows: row i packs prompt_i ++ chosen_i ++ rejected_i, the rejected tokens placed at the
 * positions that follow the prompt and attending to the prompt and to themselves, never to the
 * chosen ones. The prompt runs once per pair instead of once per completion (TRL's concatenated
 * forward runs it twice), and the values equal scoring the two sequences separately. */
apl_status apl_score_pairs(apl_model *m, const apl_seq *prompts, const apl_seq *chosen,
                           const apl_seq *rejected, int64_t n, int64_t pad_id, apl_tensor **sum_chosen,
                           apl_tensor **sum_rejected);

/* Scores n pairs in batches, longest first, without gradients. sums: (n) floats. per_token may be
 * NULL, else it receives the completions' per-token values back to back, in pair order (sum of
 * completion lengths floats). */
apl_status apl_score_logprobs(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                              int64_t n, const apl_score_opts *o, float *sums, float *per_token);

/* apl_score_pairs in batches of o->batch_size pairs, longest first, without gradients: the
 * summed log-probs of completions a and b of each prompt (n floats each), the prompt run once. */
apl_status apl_score_pair_logprobs(apl_model *m, const apl_seq *prompts, const apl_seq *a,
                                   const apl_seq *b, int64_t n, const apl_score_opts *o,
                                   float *sums_a, float *sums_b);

/* A (rows, width) tensor of dtype dt on dev, copied from a dense host buffer (generate.c and
 * train.c build their batches with it too). NULL on failure, like the tensor ops. */
apl_tensor *apl_score_upload(const void *data, int64_t rows, int64_t width, apl_dtype dt,
                             apl_device dev);

#ifdef __cplusplus
}
#endif
#endif
