/* generate.c — the sampling loop over apl_model_forward with a KV cache (see generate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "hash.h"

apl_generate_opts apl_generate_defaults(void)
{
    apl_generate_opts o = {.n = 1, .max_new_tokens = 64, .temperature = 1.0, .top_p = 1.0,
                           .batch_size = 16, .pad_id = -1};
    return o;
}

void apl_generate_result_free(apl_generate_result *r)
{
    free(r->len);
    free(r->ids);
    free(r->logprobs);
    memset(r, 0, sizeof *r);
}

/* The seed of row (prompt, sample s): a hash of the seed, the prompt's ids and s. Not of the
 * prompt's index: a prompt gets the same samples wherever it is in a call, so a predictive-entropy
 * estimate is a function of the prompt and not of the batch it came in. Hashing keeps the streams
 * of nearby seeds unrelated. */
static uint64_t row_seed(uint64_t seed, apl_seq prompt, int64_t s)
{
    uint64_t h = apl_splitmix64(seed);
    for (int64_t t = 0; t < prompt.len; t++) h = apl_splitmix64(h ^ (uint64_t)prompt.ids[t]);
    return apl_splitmix64(apl_splitmix64(h ^ (uint64_t)prompt.len) ^ (uint64_t)s);
}

/* One batch of rows in flight. Slot i of the batch holds result row row[i]. */
typedef struct {
    apl_model *m;
    const apl_generate_opts *o;
    apl_generate_result *out;
    apl_device dev;
    int64_t live;
    int64_t *row;          /* (live), -1 for a finished slot not yet dropped */
    apl_gen **gen;         /* (live), NULL entries when greedy */
    apl_kv_cache *cache;
    apl_tensor *mask;      /* (live, cache capacity) i64, 0 on left padding, owned */
    int64_t filled;        /* positions written in the cache */
    int64_t *rows_done;    /* rows finished in the whole call, for progress */
} batch;

/* ------------------------------------------------------------------------------------------ */
/* Sampling */

/* Temperature, then top-k, then top-p (nucleus): the usual order (HF's logits warpers). */
static apl_tensor *warp_logits(apl_tensor *x, const apl_generate_opts *o)   // (R, V) f32
{
    apl_tensor *z = apl_t_binary_s(APL_DIV, x, o->temperature);
    int64_t V = apl_t_size(x, 1);
    if (o->top_k > 0 && o->top_k < V) {
        apl_tensor *vals = NULL, *idx = NULL;
        if (apl_t_topk(z, o->top_k, 1, 1, &vals, &idx) != APL_OK) return NULL;
        apl_tensor *kth = apl_t_narrow(vals, 1, o->top_k - 1, 1);                 // (R, 1)
        z = apl_t_masked_fill(z, apl_t_binary(APL_LT, z, kth), -INFINITY);
    }
    if (o->top_p < 1.0) {
        apl_tensor *sv = NULL, *si = NULL;
        if (apl_t_sort(z, 1, 1, &sv, &si) != APL_OK) return NULL;
        apl_tensor *sp = apl_t_softmax(sv, 1);                                      // (R, V)
        apl_tensor *before = apl_t_binary(APL_SUB, apl_t_cumsum(sp, 1), sp);
        // Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before
        // it already does. The first token always stays (top_p > 0).
        apl_tensor *drop = apl_t_binary_s(APL_GE, before, o->top_p);
        apl_tensor *drop_orig = apl_t_scatter(drop, 1, si, drop);  // back to vocabulary order
        z = apl_t_masked_fill(z, drop_orig, -INFINITY);
    }
    return z;
}

/* (R, 1) f32 uniforms on the device, one from each row's own generator. */
static apl_tensor *draw_uniforms(const batch *b)
{
    float *u = malloc(sizeof(float) * b->live);
    if (!u) { apl_set_error("generate: out of memory"); return NULL; }
    int64_t one = 1;
    for (int64_t i = 0; i < b->live; i++) {
        apl_tensor *t = apl_t_rand(&one, 1, APL_F32, APL_CPU, b->gen[i]);
        double d = 0;
        apl_status st = t ? apl_t_item(t, &d) : APL_ETORCH;
        apl_t_free(t);
        if (st != APL_OK) { free(u); return NULL; }
        u[i] = (float)d;
    }
    apl_tensor *t = apl_score_upload(u, b->live, 1, APL_F32, b->dev);
    free(u);
    return t;
}

/* Picks one token per row of logits (R, V): argmax when greedy, else inverse-CDF sampling of the
 * warped distribution. *tok (R) i64 and *lp (R) f32, the token's log-prob under the model. */
static apl_status pick_tokens(const batch *b, apl_tensor *logits, apl_tensor **tok, apl_tensor **lp)
{
    int mark = apl_scope_push();
    apl_tensor *x = apl_t_to(logits, APL_F32, b->dev);                            // (R, V)
    apl_tensor *t;
    if (!x) {
        apl_scope_pop(mark);
        return APL_ETORCH;
    }
    if (b->o->temperature <= 0) {
        t = apl_t_reduce(APL_ARGMAX, x, 1, 0);
    } else {
        apl_tensor *probs = apl_t_softmax(warp_logits(x, b->o), 1);
        apl_tensor *cdf = apl_t_cumsum(probs, 1);                                   // (R, V)
        int64_t V = apl_t_size(x, 1);
        // u scaled by the row's total mass: the count of cdf entries below it is an index whose
        // probability is positive, even when the f32 cumsum does not end exactly at 1.
        apl_tensor *thr = apl_t_binary(APL_MUL, draw_uniforms(b), apl_t_narrow(cdf, 1, V - 1, 1));
        t = apl_t_reduce(APL_SUM, apl_t_binary(APL_LT, cdf, thr), 1, 0);
        t = apl_t_to(t, APL_I64, b->dev);
    }
    apl_tensor *l = apl_t_target_logprobs(x, t);                                    // (R)
    apl_status st = apl_t_ok(l);
    if (st == APL_OK) {
        *tok = apl_keep(t);
        *lp = apl_keep(l);
    }
    apl_scope_pop(mark);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Bookkeeping */

static int ends_with_stop(const apl_generate_opts *o, const int64_t *ids, int64_t len)
{
    for (int64_t s = 0; s < o->n_stops; s++) {
        int64_t k = o->stops[s].len;
        if (k > 0 && k <= len && !memcmp(ids + len - k, o->stops[s].ids, sizeof(int64_t) * k))
            return 1;
    }
    return 0;
}

/* Appends this step's tokens to the result rows of running slots; writes in keep[] the slots
 * still running. */
static apl_status record_step(batch *b, apl_tensor *tok, apl_tensor *lp, int64_t *keep,
                              int64_t *n_keep)
{
    int64_t *t = malloc(sizeof(int64_t) * b->live);
    float *l = malloc(sizeof(float) * b->live);
    apl_status st = APL_ENOMEM;
    if (!t || !l) { apl_set_error("generate: out of memory"); goto fail; }
    if ((st = apl_t_read(tok, APL_I64, t, sizeof(int64_t) * b->live)) != APL_OK) goto fail;
    if ((st = apl_t_read(lp, APL_F32, l, sizeof(float) * b->live)) != APL_OK) goto fail;
    *n_keep = 0;
    apl_generate_result *r = b->out;
    for (int64_t i = 0; i < b->live; i++) {
        int64_t k = b->row[i];
        if (k < 0) continue;
        int64_t n = r->len[k];
        r->ids[k * r->width + n] = t[i];
        r->logprobs[k * r->width + n] = l[i];
        r->len[k] = ++n;
        if (n < r->width && !ends_with_stop(b->o, r->ids + k * r->width, n)) {
            keep[(*n_keep)++] = i;
        } else {
            b->row[i] = -1;
            ++*b->rows_done;
        }
    }
fail:
    free(t);
    free(l);
    return st;
}

/* Keeps batch slots idx[0..n) (ascending to drop slots, repeated to copy them): the cache rows,
 * the mask rows and the rows of *x (R, ...), which is replaced. */
static apl_status select_slots(batch *b, const int64_t *idx, int64_t n, apl_tensor **x)
{
    int mark = apl_scope_push();
    apl_tensor *rows = apl_t_reshape(apl_score_upload(idx, n, 1, APL_I64, b->dev), &n, 1); // (n)
    apl_tensor *mask = apl_t_index_select(b->mask, 0, rows);                      // (n, cap)
    apl_tensor *t = apl_t_index_select(*x, 0, rows);
    apl_status st = apl_t_ok(t);
    if (st == APL_OK) st = apl_t_ok(mask);
    apl_tensor *kept_rows = NULL;
    if (st == APL_OK) {
        kept_rows = apl_keep(rows);
        apl_t_free(b->mask);
        b->mask = apl_keep(mask);
        apl_t_free(*x);
        *x = apl_keep(t);
    }
    apl_scope_pop(mark);
    if (st == APL_OK) st = apl_kv_cache_select_rows(b->cache, kept_rows);
    apl_t_free(kept_rows);
    return st;
}

/* Drops finished slots from the cache, the mask, the generators and the next input *tok. */
static apl_status compact(batch *b, const int64_t *keep, int64_t n_keep, apl_tensor **tok)
{
    apl_status st = select_slots(b, keep, n_keep, tok);
    if (st != APL_OK) return st;
    int64_t j = 0; // keep[] is ascending, so the slots move down in place
    for (int64_t i = 0; i < b->live; i++) {
        if (j < n_keep && keep[j] == i) {
            b->row[j] = b->row[i];
            b->gen[j++] = b->gen[i];
        } else if (b->gen[i]) {
            apl_gen_free(b->gen[i]);
        }
    }
    b->live = n_keep;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The loop */

/* Runs the distinct prompts of the batch (U of them, left-padded) through the model once, into a
 * new cache of U rows, and returns the logits at the last prompt position (U, V). Samples of one
 * prompt are consecutive rows; slot_of[i] receives the prompt row of slot i. */
static apl_status prefill_prompts(batch *b, const apl_seq *prompts, int64_t P, int64_t *slot_of,
                                  int64_t *U, apl_tensor **last)
{
    int64_t R = b->live, cap = P + b->o->max_new_tokens, V = apl_model_vocab_size(b->m);
    int64_t pad = b->o->pad_id >= 0 && b->o->pad_id < V ? b->o->pad_id : 0;
    int64_t *ids = malloc(sizeof(int64_t) * R * P), *mask = malloc(sizeof(int64_t) * R * cap);
    apl_tensor *logits = NULL;
    int mark = -1;
    apl_status st = APL_ENOMEM;
    if (!ids || !mask) { apl_set_error("generate: out of memory"); goto fail; }
    *U = 0;
    for (int64_t i = 0; i < R; i++) {
        int64_t pi = b->row[i] / b->o->n;
        if (i > 0 && pi == b->row[i - 1] / b->o->n) { slot_of[i] = *U - 1; continue; }
        int64_t u = slot_of[i] = (*U)++, off = P - prompts[pi].len;
        for (int64_t t = 0; t < off; t++) ids[u * P + t] = pad;
        memcpy(ids + u * P + off, prompts[pi].ids, sizeof(int64_t) * prompts[pi].len);
        for (int64_t t = 0; t < cap; t++) mask[u * cap + t] = t >= off;
    }
    if ((st = apl_kv_cache_new(b->m, *U, cap, &b->cache)) != APL_OK) goto fail;
    mark = apl_scope_push();
    apl_tensor *tids = apl_score_upload(ids, *U, P, APL_I64, b->dev);              // (U, P)
    apl_tensor *tmask = apl_score_upload(mask, *U, cap, APL_I64, b->dev);          // (U, cap)
    apl_tensor *pmask = apl_t_narrow(tmask, 1, 0, P);
    if ((st = apl_t_ok(tids)) != APL_OK || (st = apl_t_ok(pmask)) != APL_OK) goto fail;
    // the prefill needs only the last position's logits
    if ((st = apl_model_forward_tail(b->m, tids, pmask, b->cache, 1, &logits)) != APL_OK) goto fail;
    apl_tensor *l = apl_t_select(logits, 1, 0);                                    // (U, V)
    if ((st = apl_t_ok(l)) != APL_OK) goto fail;
    *last = apl_keep(l);
    b->mask = apl_keep(tmask);
    b->filled = P;
fail:
    apl_t_free(logits);
    if (mark >= 0) apl_scope_pop(mark);
    free(ids);
    free(mask);
    return st;
}

/* Fills the cache with the batch's prompts and returns the logits for the first new token of
 * every slot (R, V). A prompt's n samples share one prefill; its cache rows are then copied. */
static apl_status prefill(batch *b, const apl_seq *prompts, int64_t P, apl_tensor **last)
{
    int64_t U = 0, *slot_of = malloc(sizeof(int64_t) * b->live);
    if (!slot_of) return apl_fail(APL_ENOMEM, "generate: out of memory");
    apl_status st = prefill_prompts(b, prompts, P, slot_of, &U, last);
    if (st == APL_OK && U < b->live) st = select_slots(b, slot_of, b->live, last);
    free(slot_of);
    return st;
}

/* Feeds each live row's last token (R) and returns the next logits (R, V). */
static apl_status decode_step(batch *b, apl_tensor *tok, apl_tensor **last)
{
    int mark = apl_scope_push();
    int64_t shape[2] = {b->live, 1};
    apl_tensor *in = apl_t_reshape(tok, shape, 2);                                 // (R, 1)
    apl_tensor *mask = apl_t_narrow(b->mask, 1, 0, b->filled + 1);                 // (R, S + 1)
    apl_tensor *logits = NULL;
    apl_status st = apl_t_ok(in);
    if (st == APL_OK) st = apl_t_ok(mask);
    if (st == APL_OK) st = apl_model_forward(b->m, in, mask, b->cache, &logits);   // (R, 1, V)
    apl_tensor *l = st == APL_OK ? apl_t_select(logits, 1, 0) : NULL;
    if (st == APL_OK && (st = apl_t_ok(l)) == APL_OK) {
        *last = apl_keep(l);
        b->filled++;
    }
    apl_t_free(logits);
    apl_scope_pop(mark);
    return st;
}

/* Samples until every row of the batch has finished. */
static apl_status run_batch(batch *b, const apl_seq *prompts, int64_t P)
{
    int64_t *keep = malloc(sizeof(int64_t) * b->live), total = b->out->rows;
    apl_tensor *last = NULL, *tok = NULL, *lp = NULL;
    apl_status st = keep ? prefill(b, prompts, P, &last) : apl_fail(APL_ENOMEM, "generate: out of memory");
    while (st == APL_OK) {
        int64_t n_keep = 0, done_before = *b->rows_done;
        if ((st = pick_tokens(b, last, &tok, &lp)) != APL_OK) break;
        apl_t_free(last);
        last = NULL;
        if ((st = record_step(b, tok, lp, keep, &n_keep)) != APL_OK) break;
        if (b->o->progress && *b->rows_done > done_before)
            b->o->progress(b->o->progress_ud, "generate", *b->rows_done, total);
        if (n_keep == 0) break;
        if ((st = apl_check_interrupt()) != APL_OK) break;
        // Dropping slots copies the whole cache, so finished slots ride along (their tokens are
        // ignored) until they are a quarter of the batch.
        if (4 * (b->live - n_keep) >= b->live && (st = compact(b, keep, n_keep, &tok)) != APL_OK)
            break;
        st = decode_step(b, tok, &last);
        apl_t_free(tok);
        apl_t_free(lp);
        tok = lp = NULL;
    }
    apl_t_free(last);
    apl_t_free(tok);
    apl_t_free(lp);
    free(keep);
    return st;
}

static apl_status check_opts(const apl_model *m, const apl_seq *prompts, int64_t n_prompts,
                             const apl_generate_opts *o)
{
    if (o->n < 1) return apl_fail(APL_EINVAL, "n must be >= 1");
    if (o->max_new_tokens < 1) return apl_fail(APL_EINVAL, "max_new_tokens must be >= 1");
    if (o->batch_size < 1) return apl_fail(APL_EINVAL, "batch_size must be >= 1");
    if (o->top_k < 0) return apl_fail(APL_EINVAL, "top_k must be >= 0");
    if (!(o->top_p > 0 && o->top_p <= 1)) return apl_fail(APL_EINVAL, "top_p must be in (0, 1]");
    if (!(o->temperature >= 0)) return apl_fail(APL_EINVAL, "temperature must be >= 0");
    int64_t maxpos = apl_model_max_positions(m);
    for (int64_t i = 0; i < n_prompts; i++) {
        if (prompts[i].len < 1)
            return apl_fail(APL_EINVAL, "prompt %lld of %lld is empty", (long long)i + 1,
                            (long long)n_prompts);
        if (maxpos > 0 && prompts[i].len + o->max_new_tokens > maxpos)
            return apl_fail(APL_EINVAL, "prompt %lld: %lld tokens + max_new_tokens %lld exceed the "
                            "model's %lld positions", (long long)i + 1, (long long)prompts[i].len,
                            (long long)o->max_new_tokens, (long long)maxpos);
    }
    return APL_OK;
}

static apl_status alloc_result(int64_t rows, int64_t width, apl_generate_result *r)
{
    int64_t cells = rows * width + 1; // + 1: malloc(0) may return NULL for zero prompts
    r->rows = rows;
    r->width = width;
    r->len = calloc(rows + 1, sizeof(int64_t));
    r->ids = malloc(sizeof(int64_t) * cells);
    r->logprobs = malloc(sizeof(float) * cells);
    if (r->len && r->ids && r->logprobs) return APL_OK;
    apl_generate_result_free(r);
    return apl_fail(APL_ENOMEM, "generate: out of memory for %lld rows", (long long)rows);
}

/* Sets up the batch of rows r0..r0+R (their generators) and runs it. */
static apl_status generate_rows(apl_model *m, const apl_seq *prompts, const apl_generate_opts *o,
                                int64_t r0, int64_t R, apl_generate_result *out, int64_t *rows_done)
{
    batch b = {.m = m, .o = o, .out = out, .dev = apl_model_device(m), .live = R,
               .rows_done = rows_done};
    b.row = malloc(sizeof(int64_t) * R);
    b.gen = calloc(R, sizeof(apl_gen *));
    apl_status st = APL_ENOMEM;
    if (!b.row || !b.gen) { apl_set_error("generate: out of memory"); goto fail; }
    int64_t P = 0;
    for (int64_t i = 0; i < R; i++) {
        int64_t k = r0 + i;
        b.row[i] = k;
        if (prompts[k / o->n].len > P) P = prompts[k / o->n].len;
        if (o->temperature > 0 && !(b.gen[i] = apl_gen_new(row_seed(o->seed, prompts[k / o->n], k % o->n)))) {
            st = APL_ETORCH;
            goto fail;
        }
    }
    st = run_batch(&b, prompts, P);
fail:
    for (int64_t i = 0; b.gen && i < b.live; i++)
        if (b.gen[i]) apl_gen_free(b.gen[i]);
    if (b.cache) apl_kv_cache_free(b.cache);
    apl_t_free(b.mask);
    free(b.row);
    free(b.gen);
    return st;
}

apl_status apl_generate(apl_model *m, const apl_seq *prompts, int64_t n_prompts,
                        const apl_generate_opts *o, apl_generate_result *out)
{
    memset(out, 0, sizeof *out);
    apl_status st = check_opts(m, prompts, n_prompts, o);
    if (st != APL_OK) return st;
    int64_t rows = n_prompts * o->n, done = 0;
    if ((st = alloc_result(rows, o->max_new_tokens, out)) != APL_OK) return st;
    int was = apl_set_grad_enabled(0);
    for (int64_t r0 = 0; r0 < rows && st == APL_OK; r0 += o->batch_size) {
        int64_t R = rows - r0 < o->batch_size ? rows - r0 : o->batch_size;
        st = generate_rows(m, prompts, o, r0, R, out, &done);
    }
    apl_set_grad_enabled(was);
    if (st != APL_OK) apl_generate_result_free(out);
    return st;
}
