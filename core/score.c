/* score.c — summed and per-token log-probs of completions given prompts (see score.h). */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "score.h"

apl_tensor *apl_score_upload(const void *data, int64_t rows, int64_t width, apl_dtype dt,
                             apl_device dev)
{
    int64_t shape[2] = {rows, width};
    apl_tensor *cpu = apl_t_from_data(data, shape, 2, dt);
    apl_tensor *t = apl_t_to(cpu, dt, dev);
    apl_t_free(cpu);
    return t;
}

/* The first id of s outside [0, vocab), or -1. */
static int64_t bad_id(const apl_seq *s, int64_t vocab)
{
    for (int64_t t = 0; t < s->len; t++)
        if (s->ids[t] < 0 || s->ids[t] >= vocab) return t;
    return -1;
}

/* Pairs are numbered from 1 in messages, as the Lua caller numbers them. Ids are checked here,
 * where they are still on the host: inside a forward an id outside the vocabulary is only
 * libtorch's "index out of range". */
static apl_status check_pairs(const apl_model *m, const apl_seq *p, const apl_seq *c, int64_t n)
{
    int64_t V = apl_model_vocab_size(m);
    for (int64_t i = 0; i < n; i++) {
        if (p[i].len < 1)
            return apl_fail(APL_EINVAL, "pair %lld of %lld: empty prompt (a completion needs at "
                            "least one token before it)", (long long)i + 1, (long long)n);
        if (c[i].len < 0)
            return apl_fail(APL_EINVAL, "pair %lld of %lld: negative length", (long long)i + 1,
                            (long long)n);
        for (int k = 0; k < 2; k++) {
            const apl_seq *s = k ? &c[i] : &p[i];
            int64_t t = bad_id(s, V);
            if (t >= 0)
                return apl_fail(APL_EINVAL, "pair %lld of %lld: %s token %lld is id %lld, outside"
                                " the model's vocabulary of %lld", (long long)i + 1, (long long)n,
                                k ? "completion" : "prompt", (long long)t + 1,
                                (long long)s->ids[t], (long long)V);
        }
    }
    return APL_OK;
}

/* The left-padded batch: ids and mask (n, T), and the completion mask (n, C), where row i is
 * prompt_i ++ completion_i right-aligned and C is the longest completion (at least 1). */
typedef struct {
    int64_t n, T, C;
    int64_t *ids, *mask;
    float *cmask;
} padded;

static apl_status build_padded(const apl_model *m, const apl_seq *p, const apl_seq *c, int64_t n,
                               int64_t pad_id, padded *b)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->C = 1;
    apl_status st = check_pairs(m, p, c, n);
    if (st != APL_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        if (p[i].len + c[i].len > b->T) b->T = p[i].len + c[i].len;
        if (c[i].len > b->C) b->C = c[i].len;
    }
    int64_t maxpos = apl_model_max_positions(m);
    if (maxpos > 0 && b->T > maxpos)
        return apl_fail(APL_EINVAL, "sequence of %lld tokens exceeds the model's %lld positions",
                        (long long)b->T, (long long)maxpos);
    if (pad_id < 0 || pad_id >= apl_model_vocab_size(m)) pad_id = 0;
    b->ids = malloc(sizeof(int64_t) * n * b->T);
    b->mask = calloc(n * b->T, sizeof(int64_t));
    b->cmask = calloc(n * b->C, sizeof(float));
    if (!b->ids || !b->mask || !b->cmask) return apl_fail(APL_ENOMEM, "score: out of memory");
    for (int64_t i = 0; i < n; i++) {
        int64_t *row = b->ids + i * b->T, *mrow = b->mask + i * b->T;
        int64_t off = b->T - p[i].len - c[i].len;
        for (int64_t t = 0; t < off; t++) row[t] = pad_id;
        memcpy(row + off, p[i].ids, sizeof(int64_t) * p[i].len);
        memcpy(row + off + p[i].len, c[i].ids, sizeof(int64_t) * c[i].len);
        for (int64_t t = off; t < b->T; t++) mrow[t] = 1;
        for (int64_t j = b->C - c[i].len; j < b->C; j++) b->cmask[i * b->C + j] = 1.0f;
    }
    return APL_OK;
}

static void free_padded(padded *b)
{
    free(b->ids);
    free(b->mask);
    free(b->cmask);
}

apl_status apl_score_batch(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                           int64_t n, int64_t pad_id, apl_tensor **sums, apl_tensor **per_token)
{
    padded b;
    apl_tensor *logits = NULL;
    int mark = apl_scope_push();
    apl_status st = build_padded(m, prompts, completions, n, pad_id, &b);
    if (st != APL_OK) goto fail;
    apl_device dev = apl_model_device(m);
    apl_tensor *ids = apl_score_upload(b.ids, n, b.T, APL_I64, dev);  // (n, T)
    apl_tensor *mask = apl_score_upload(b.mask, n, b.T, APL_I64, dev); // (n, T)
    apl_tensor *cmask = apl_score_upload(b.cmask, n, b.C, APL_F32, dev);        // (n, C)
    if ((st = apl_t_ok(ids)) != APL_OK || (st = apl_t_ok(mask)) != APL_OK ||
        (st = apl_t_ok(cmask)) != APL_OK) goto fail;
    // Left padding puts every completion at the end: position t predicts token t + 1, so the
    // last C + 1 positions hold every logit the completion needs (the very last one is unused).
    if ((st = apl_model_forward_tail(m, ids, mask, NULL, b.C + 1, &logits)) != APL_OK) goto fail;
    apl_tensor *span = apl_t_narrow(logits, 1, 0, b.C);                              // (n, C, V)
    // f32 at least (bf16 log-probs are too coarse to sum); f64 models keep f64 (gradient checks).
    apl_dtype cdt = apl_model_dtype(m) == APL_F64 ? APL_F64 : APL_F32;
    apl_tensor *target = apl_t_narrow(ids, 1, b.T - b.C, b.C);                     // (n, C)
    apl_tensor *tok = apl_t_target_logprobs(apl_t_to(span, cdt, dev), target);      // (n, C)
    apl_tensor *masked = apl_t_binary(APL_MUL, tok, cmask);
    apl_tensor *sum = apl_t_reduce(APL_SUM, masked, 1, 0);                           // (n)
    if ((st = apl_t_ok(sum)) != APL_OK) goto fail;
    *sums = apl_keep(sum);
    if (per_token) *per_token = apl_keep(masked);
fail:
    apl_t_free(logits);
    apl_scope_pop(mark);
    free_padded(&b);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Preference pairs packed in one row each */

/* Row i, left-padded to T: prompt ++ chosen ++ rejected. The logits wanted are W = Cw + Rw per
 * pair (Cw, Rw: the longest completions, at least 1): column j < Cw predicts chosen[j], column
 * Cw + j predicts rejected[j]; unused columns point at any real row and are masked out. */
typedef struct {
    int64_t n, T, Cw, Rw;
    int64_t *ids, *pos, *rows, *targets;
    float *allowed, *tmask; /* (n, T, T) 1 = may attend; (n, W) */
} packed;

static void free_packed(packed *b)
{
    free(b->ids), free(b->pos), free(b->rows), free(b->targets), free(b->allowed), free(b->tmask);
}

/* Which keys a query may see: earlier real tokens, except that rejected never sees chosen. */
static void pack_attention(packed *b, int64_t i, int64_t off, int64_t P, int64_t C)
{
    float *a = b->allowed + i * b->T * b->T;
    int64_t rejected_from = off + P + C;
    for (int64_t q = off; q < b->T; q++)
        for (int64_t k = off; k <= q; k++)
            a[q * b->T + k] = !(q >= rejected_from && k >= off + P && k < rejected_from);
}

/* Pair i's tokens, positions, attention and the columns of its logits. */
static void pack_pair(packed *b, int64_t i, const apl_seq *p, const apl_seq *c, const apl_seq *r,
                      int64_t pad_id)
{
    int64_t T = b->T, W = b->Cw + b->Rw, off = T - p->len - c->len - r->len;
    int64_t *ids = b->ids + i * T, *pos = b->pos + i * T, base = i * T + off;
    for (int64_t t = 0; t < off; t++) ids[t] = pad_id, pos[t] = 0;
    const apl_seq *seg[3] = {p, c, r};
    int64_t t = off;
    for (int s = 0; s < 3; s++)
        for (int64_t j = 0; j < seg[s]->len; j++, t++) {
            ids[t] = seg[s]->ids[j];
            pos[t] = (s == 0 ? 0 : p->len) + j;
        }
    pack_attention(b, i, off, p->len, c->len);
    int64_t last_prompt = base + p->len - 1;
    for (int64_t j = 0; j < W; j++) {
        int chosen = j < b->Cw;
        const apl_seq *comp = chosen ? c : r;
        int64_t k = chosen ? j : j - b->Cw, start = base + p->len + (chosen ? 0 : c->len);
        int used = k < comp->len;
        b->rows[i * W + j] = !used ? i * T + T - 1 : k == 0 ? last_prompt : start + k - 1;
        b->targets[i * W + j] = used ? comp->ids[k] : 0;
        b->tmask[i * W + j] = (float)used;
    }
}

static apl_status build_packed(const apl_model *m, const apl_seq *p, const apl_seq *c,
                               const apl_seq *r, int64_t n, int64_t pad_id, packed *b)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->Cw = b->Rw = 1;
    apl_status st = check_pairs(m, p, c, n);
    if (st == APL_OK) st = check_pairs(m, p, r, n);
    if (st != APL_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        if (p[i].len + c[i].len + r[i].len > b->T) b->T = p[i].len + c[i].len + r[i].len;
        if (c[i].len > b->Cw) b->Cw = c[i].len;
        if (r[i].len > b->Rw) b->Rw = r[i].len;
    }
    int64_t W = b->Cw + b->Rw, T = b->T;
    if (pad_id < 0 || pad_id >= apl_model_vocab_size(m)) pad_id = 0;
    b->ids = malloc(sizeof(int64_t) * n * T);
    b->pos = malloc(sizeof(int64_t) * n * T);
    b->allowed = calloc((size_t)(n * T * T), sizeof(float));
    b->rows = malloc(sizeof(int64_t) * n * W);
    b->targets = malloc(sizeof(int64_t) * n * W);
    b->tmask = malloc(sizeof(float) * n * W);
    if (!b->ids || !b->pos || !b->allowed || !b->rows || !b->targets || !b->tmask)
        return apl_fail(APL_ENOMEM, "score: out of memory");
    for (int64_t i = 0; i < n; i++) pack_pair(b, i, &p[i], &c[i], &r[i], pad_id);
    return APL_OK;
}

apl_status apl_score_pairs(apl_model *m, const apl_seq *prompts, const apl_seq *chosen,
                           const apl_seq *rejected, int64_t n, int64_t pad_id, apl_tensor **sum_chosen,
                           apl_tensor **sum_rejected)
{
    packed b;
    apl_tensor *logits = NULL;
    int mark = apl_scope_push();
    apl_status st = build_packed(m, prompts, chosen, rejected, n, pad_id, &b);
    if (st != APL_OK) goto fail;
    apl_device dev = apl_model_device(m);
    int64_t W = b.Cw + b.Rw, shape4[4] = {n, 1, b.T, b.T};
    apl_tensor *ids = apl_score_upload(b.ids, n, b.T, APL_I64, dev);                 // (n, T)
    apl_tensor *rows = apl_t_reshape(apl_score_upload(b.rows, 1, n * W, APL_I64, dev), (int64_t[]){n * W}, 1);
    apl_tensor *bias = apl_t_attention_bias_of(apl_t_from_data(b.allowed, shape4, 4, APL_F32),
                                               apl_model_dtype(m), dev);             // (n, 1, T, T)
    if ((st = apl_t_ok(ids)) != APL_OK || (st = apl_t_ok(rows)) != APL_OK ||
        (st = apl_t_ok(bias)) != APL_OK)
        goto fail;
    if ((st = apl_model_forward_packed(m, ids, b.pos, bias, rows, &logits)) != APL_OK) goto fail;
    apl_dtype cdt = apl_model_dtype(m) == APL_F64 ? APL_F64 : APL_F32; // as apl_score_batch
    apl_tensor *logits2 = apl_t_reshape(apl_t_to(logits, cdt, dev), (int64_t[]){n, W, -1}, 3); // (n, W, V)
    apl_tensor *tok = apl_t_target_logprobs(logits2, apl_score_upload(b.targets, n, W, APL_I64, dev));
    apl_tensor *masked = apl_t_binary(APL_MUL, tok, apl_score_upload(b.tmask, n, W, APL_F32, dev));
    apl_tensor *sc = apl_t_reduce(APL_SUM, apl_t_narrow(masked, 1, 0, b.Cw), 1, 0);  // (n)
    apl_tensor *sr = apl_t_reduce(APL_SUM, apl_t_narrow(masked, 1, b.Cw, b.Rw), 1, 0);
    if ((st = apl_t_ok(sc)) != APL_OK || (st = apl_t_ok(sr)) != APL_OK) goto fail;
    *sum_chosen = apl_keep(sc);
    *sum_rejected = apl_keep(sr);
fail:
    apl_t_free(logits);
    apl_scope_pop(mark);
    free_packed(&b);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Batched scoring without gradients */

/* One batch: the items order[0..k) of the caller's lists. */
typedef apl_status (*batch_fn)(void *ctx, const int64_t *order, int64_t k);

static int by_length_desc(const void *a, const void *b, void *ctx)
{
    const int64_t *len = ctx, i = *(const int64_t *)a, j = *(const int64_t *)b;
    return len[i] < len[j] ? 1 : len[i] > len[j] ? -1 : (i > j) - (i < j);
}

/* Runs fn over batches of o->batch_size items, longest first (similar lengths share a batch, so
 * less padding, and memory errors come early), without gradients, with progress and Ctrl-C. */
static apl_status in_batches(int64_t n, const int64_t *len, const apl_score_opts *o, batch_fn fn,
                             void *ctx)
{
    if (o->batch_size < 1) return apl_fail(APL_EINVAL, "batch_size must be >= 1");
    int64_t *order = malloc(sizeof(int64_t) * (n + 1));
    if (!order) return apl_fail(APL_ENOMEM, "score: out of memory");
    for (int64_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, n, sizeof *order, by_length_desc, (void *)len);
    int was = apl_set_grad_enabled(0);
    apl_status st = APL_OK;
    for (int64_t start = 0; start < n && st == APL_OK; start += o->batch_size) {
        int64_t k = n - start < o->batch_size ? n - start : o->batch_size;
        if ((st = apl_check_interrupt()) == APL_OK) st = fn(ctx, order + start, k);
        if (st == APL_OK && o->progress)
            o->progress(o->progress_ud, o->phase ? o->phase : "score", start + k, n);
    }
    apl_set_grad_enabled(was);
    free(order);
    return st;
}

/* Reads a (k) tensor of sums into out[order[j]]. */
static apl_status scatter_sums(apl_tensor *sum, const int64_t *order, int64_t k, float *out)
{
    float *s = malloc(sizeof(float) * k);
    if (!s) return apl_fail(APL_ENOMEM, "score: out of memory");
    apl_status st = apl_t_read(sum, APL_F32, s, sizeof(float) * k);
    for (int64_t j = 0; st == APL_OK && j < k; j++) out[order[j]] = s[j];
    free(s);
    return st;
}

typedef struct {
    apl_model *m;
    const apl_seq *p, *c, *c2;  /* c2: the second completions (pairs), or NULL */
    int64_t pad_id;
    apl_seq *bp, *bc, *bc2;     /* a batch's lists */
    float *sums, *sums2, *per_token;
    const int64_t *offset;      /* per_token: where item i's values start */
} score_job;

/* Copies a batch's per-token values (k, C), right-aligned, into the caller's buffer. */
static apl_status scatter_per_token(const score_job *j, apl_tensor *per_tok, const int64_t *order,
                                    int64_t k)
{
    int64_t C = apl_t_size(per_tok, 1);
    float *pt = malloc(sizeof(float) * k * C);
    if (!pt) return apl_fail(APL_ENOMEM, "score: out of memory");
    apl_status st = apl_t_read(per_tok, APL_F32, pt, sizeof(float) * k * C);
    for (int64_t r = 0; st == APL_OK && r < k; r++) {
        int64_t i = order[r];
        memcpy(j->per_token + j->offset[i], pt + r * C + C - j->c[i].len, sizeof(float) * j->c[i].len);
    }
    free(pt);
    return st;
}

static void gather_batch(score_job *j, const int64_t *order, int64_t k)
{
    for (int64_t r = 0; r < k; r++) {
        j->bp[r] = j->p[order[r]];
        j->bc[r] = j->c[order[r]];
        if (j->c2) j->bc2[r] = j->c2[order[r]];
    }
}

static apl_status score_sequences(void *ctx, const int64_t *order, int64_t k)
{
    score_job *j = ctx;
    gather_batch(j, order, k);
    apl_tensor *sum = NULL, *pt = NULL;
    apl_status st = apl_score_batch(j->m, j->bp, j->bc, k, j->pad_id, &sum, j->per_token ? &pt : NULL);
    if (st == APL_OK) st = scatter_sums(sum, order, k, j->sums);
    if (st == APL_OK && pt) st = scatter_per_token(j, pt, order, k);
    apl_t_free(sum);
    apl_t_free(pt);
    return st;
}

static apl_status score_pairs(void *ctx, const int64_t *order, int64_t k)
{
    score_job *j = ctx;
    gather_batch(j, order, k);
    apl_tensor *sa = NULL, *sb = NULL;
    apl_status st = apl_score_pairs(j->m, j->bp, j->bc, j->bc2, k, j->pad_id, &sa, &sb);
    if (st == APL_OK) st = scatter_sums(sa, order, k, j->sums);
    if (st == APL_OK) st = scatter_sums(sb, order, k, j->sums2);
    apl_t_free(sa);
    apl_t_free(sb);
    return st;
}

/* Item lengths (n) for the batch order, and the job's batch lists (batch_size each). */
static apl_status job_new(score_job *j, int64_t n, const apl_score_opts *o, int64_t **len)
{
    int64_t b = o->batch_size > 0 ? o->batch_size : 1;
    *len = malloc(sizeof(int64_t) * (n + 1));
    j->bp = malloc(sizeof(apl_seq) * b);
    j->bc = malloc(sizeof(apl_seq) * b);
    j->bc2 = malloc(sizeof(apl_seq) * b);
    if (!*len || !j->bp || !j->bc || !j->bc2) return apl_fail(APL_ENOMEM, "score: out of memory");
    for (int64_t i = 0; i < n; i++)
        (*len)[i] = j->p[i].len + j->c[i].len + (j->c2 ? j->c2[i].len : 0);
    return APL_OK;
}

static void job_free(score_job *j, int64_t *len)
{
    free(len);
    free(j->bp);
    free(j->bc);
    free(j->bc2);
}

apl_status apl_score_logprobs(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                              int64_t n, const apl_score_opts *o, float *sums, float *per_token)
{
    apl_status st = check_pairs(m, prompts, completions, n); // here, to name pairs in caller order
    if (st != APL_OK) return st;
    int64_t *offset = malloc(sizeof(int64_t) * (n + 1)), *len = NULL;
    score_job j = {.m = m, .p = prompts, .c = completions, .pad_id = o->pad_id, .sums = sums,
                   .per_token = per_token, .offset = offset};
    if (!offset) return apl_fail(APL_ENOMEM, "score: out of memory");
    offset[0] = 0;
    for (int64_t i = 0; i < n; i++) offset[i + 1] = offset[i] + completions[i].len;
    if ((st = job_new(&j, n, o, &len)) == APL_OK) st = in_batches(n, len, o, score_sequences, &j);
    job_free(&j, len);
    free(offset);
    return st;
}

apl_status apl_score_pair_logprobs(apl_model *m, const apl_seq *prompts, const apl_seq *a,
                                   const apl_seq *b, int64_t n, const apl_score_opts *o,
                                   float *sums_a, float *sums_b)
{
    apl_status st = check_pairs(m, prompts, a, n);
    if (st == APL_OK) st = check_pairs(m, prompts, b, n);
    if (st != APL_OK) return st;
    int64_t *len = NULL;
    score_job j = {.m = m, .p = prompts, .c = a, .c2 = b, .pad_id = o->pad_id, .sums = sums_a,
                   .sums2 = sums_b};
    if ((st = job_new(&j, n, o, &len)) == APL_OK) st = in_batches(n, len, o, score_pairs, &j);
    job_free(&j, len);
    return st;
}
