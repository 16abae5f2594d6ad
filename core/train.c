/* train.c — Adam over a model, DPO and SFT losses with gradient accumulation (see train.h). */
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "train.h"

struct apl_optim {
    apl_model *m;
    apl_optim_opts o;
    int n;
    apl_tensor **params;   /* borrowed from the model */
    apl_tensor **mom, **vel; /* owned, f32, same shapes */
    int64_t step;
    uint64_t generation;     /* the model's, when params were taken */
    int dist;                /* sum the gradients over the process group before each step */
};

/* The borrowed parameter handles die when the model replaces them (apl_model_to): refuse to
 * touch them after that instead of using freed memory. */
static apl_status check_model(const apl_optim *opt)
{
    if (apl_model_generation(opt->m) == opt->generation) return APL_OK;
    return apl_fail(APL_EINVAL, "optimizer: the model's parameters were replaced (model:to) after"
                    " the optimizer was made; make a new optimizer");
}

apl_optim_opts apl_optim_defaults(void)
{
    apl_optim_opts o = {.lr = 1e-6, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    return o;
}

void apl_optim_free(apl_optim *opt)
{
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) {
        if (opt->mom) apl_t_free(opt->mom[i]);
        if (opt->vel) apl_t_free(opt->vel[i]);
    }
    free(opt->params);
    free(opt->mom);
    free(opt->vel);
    free(opt);
}

apl_status apl_optim_new(apl_model *m, const apl_optim_opts *o, apl_optim **out)
{
    if (!(o->lr >= 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
        !(o->eps > 0) || !(o->weight_decay >= 0))
        return apl_fail(APL_EINVAL, "optimizer: need lr >= 0, betas in [0, 1), eps > 0, "
                        "weight_decay >= 0");
    if (apl_model_is_view(m)) return apl_fail(APL_EINVAL, "optimizer: a reference view is read-only");
    apl_optim *opt = calloc(1, sizeof *opt);
    apl_status st = APL_ENOMEM;
    if (!opt) return apl_fail(APL_ENOMEM, "optimizer: out of memory");
    opt->m = m;
    opt->o = *o;
    opt->generation = apl_model_generation(m);
    opt->n = apl_model_num_trainable(m);
    opt->params = calloc(opt->n + 1, sizeof(apl_tensor *));
    opt->mom = calloc(opt->n + 1, sizeof(apl_tensor *));
    opt->vel = calloc(opt->n + 1, sizeof(apl_tensor *));
    if (!opt->params || !opt->mom || !opt->vel) { apl_set_error("optimizer: out of memory"); goto fail; }
    for (int i = 0; i < opt->n; i++) {
        apl_tensor *p = opt->params[i] = apl_model_trainable(m, i);
        int64_t shape[APL_MAX_DIMS];
        int nd = apl_t_shape(p, shape);
        /* kept: optimizer state outlives any scope the caller has open */
        opt->mom[i] = apl_keep(apl_t_full(shape, nd, 0, APL_F32, apl_t_device(p)));
        opt->vel[i] = apl_keep(apl_t_full(shape, nd, 0, APL_F32, apl_t_device(p)));
        if ((st = apl_t_ok(opt->mom[i])) != APL_OK || (st = apl_t_ok(opt->vel[i])) != APL_OK ||
            (st = apl_t_requires_grad_(p, 1)) != APL_OK) goto fail;
    }
    *out = opt;
    return APL_OK;
fail:
    apl_optim_free(opt);
    return st;
}

apl_status apl_optim_zero_grad(apl_optim *opt)
{
    if (check_model(opt) != APL_OK) return APL_EINVAL;
    for (int i = 0; i < opt->n; i++) {
        apl_status st = apl_t_zero_grad(opt->params[i]);
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

apl_status apl_optim_step(apl_optim *opt, double *grad_norm)
{
    apl_adam_opts a = {opt->o.lr, opt->o.beta1, opt->o.beta2, opt->o.eps, opt->o.weight_decay};
    if (check_model(opt) != APL_OK) return APL_EINVAL;
    apl_status st = APL_OK;
    if (opt->dist) st = apl_dist_all_reduce_grads(opt->params, opt->n, 0);
    if (st == APL_OK) st = apl_clip_grad_norm(opt->params, opt->n, opt->o.grad_clip, grad_norm);
    if (st == APL_OK) st = apl_adam_step(opt->params, opt->mom, opt->vel, opt->n, opt->step + 1, &a);
    if (st == APL_OK) opt->step++;
    apl_status zst = apl_optim_zero_grad(opt);
    return st != APL_OK ? st : zst;
}

apl_status apl_optim_reset(apl_optim *opt)
{
    apl_status st = apl_optim_zero_grad(opt);
    for (int i = 0; i < opt->n && st == APL_OK; i++) {
        st = apl_t_fill_(opt->mom[i], 0);
        if (st == APL_OK) st = apl_t_fill_(opt->vel[i], 0);
    }
    opt->step = 0;
    return st;
}

int64_t apl_optim_steps(const apl_optim *opt) { return opt->step; }

apl_status apl_optim_set_dist(apl_optim *opt, int on)
{
    if (on && !apl_dist_joined())
        return apl_fail(APL_EINVAL, "optimizer: gradients can be summed over ranks only once this "
                        "process has joined a process group (apl.dist)");
    opt->dist = on != 0;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* DPO */

apl_tensor *apl_dpo_losses(const apl_dpo_opts *o, apl_tensor *pc, apl_tensor *pr, apl_tensor *rc,
                           apl_tensor *rr)
{
    apl_tensor *h = apl_t_binary(APL_SUB, apl_t_binary(APL_SUB, pc, pr), apl_t_binary(APL_SUB, rc, rr));
    apl_tensor *z = apl_t_binary_s(APL_MUL, h, o->beta);
    switch (o->loss) {
    case APL_DPO_SIGMOID: {
        apl_tensor *pos = apl_t_binary_s(APL_MUL, apl_t_unary(APL_LOGSIGMOID, z), -(1 - o->label_smoothing));
        apl_tensor *neg = apl_t_binary_s(APL_MUL, apl_t_unary(APL_LOGSIGMOID, apl_t_unary(APL_NEG, z)),
                                         -o->label_smoothing);
        return apl_t_binary(APL_ADD, pos, neg);
    }
    case APL_DPO_IPO:
        return apl_t_unary(APL_SQUARE, apl_t_binary_s(APL_SUB, h, 1 / (2 * o->beta)));
    case APL_DPO_HINGE:
        return apl_t_unary(APL_RELU, apl_t_s_binary(APL_SUB, 1, z));
    }
    apl_set_error("dpo: unknown loss type %d", (int)o->loss);
    return NULL;
}

static apl_status check_dpo(const apl_dpo_opts *o)
{
    if (!(o->beta > 0)) return apl_fail(APL_EINVAL, "dpo: beta must be > 0");
    if (!(o->label_smoothing >= 0 && o->label_smoothing < 0.5))
        return apl_fail(APL_EINVAL, "dpo: label_smoothing must be in [0, 0.5)");
    return APL_OK;
}

/* A (n) f32 vector on dev; a leaf that records gradients when grad is set. */
static apl_tensor *vec(const float *x, int64_t n, apl_device dev, int grad)
{
    apl_tensor *t = apl_t_reshape(apl_score_upload(x, n, 1, APL_F32, dev), &n, 1);
    if (t && grad) {
        apl_tensor *leaf = apl_t_detach(t); // the reshape is not a leaf; its detached copy is
        if (apl_t_requires_grad_(leaf, 1) != APL_OK) return NULL;
        return leaf;
    }
    return t;
}

apl_status apl_dpo_loss_grad(const apl_dpo_opts *o, int64_t n, const float *pc, const float *pr,
                             const float *rc, const float *rr, double *loss, float *dpc, float *dpr)
{
    apl_status st = check_dpo(o);
    if (st != APL_OK) return st;
    if (n < 1) return apl_fail(APL_EINVAL, "dpo: no pairs");
    int mark = apl_scope_push();
    int was = apl_set_grad_enabled(1);
    apl_tensor *tpc = vec(pc, n, APL_CPU, 1), *tpr = vec(pr, n, APL_CPU, 1);
    apl_tensor *mean = apl_t_reduce(APL_MEAN, apl_dpo_losses(o, tpc, tpr, vec(rc, n, APL_CPU, 0),
                                                             vec(rr, n, APL_CPU, 0)), APL_ALL_DIMS, 0);
    apl_tensor *gc = NULL, *gr = NULL;
    if ((st = apl_t_ok(mean)) == APL_OK && (st = apl_t_item(mean, loss)) == APL_OK &&
        (st = apl_t_backward(mean)) == APL_OK && (st = apl_t_grad(tpc, &gc)) == APL_OK &&
        (st = apl_t_grad(tpr, &gr)) == APL_OK) {
        if (!gc || !gr) st = apl_fail(APL_ETORCH, "dpo: the loss has no gradient");
        else if ((st = apl_t_read(gc, APL_F32, dpc, sizeof(float) * n)) == APL_OK)
            st = apl_t_read(gr, APL_F32, dpr, sizeof(float) * n);
    }
    apl_t_free(gc);
    apl_t_free(gr);
    apl_set_grad_enabled(was);
    apl_scope_pop(mark);
    return st;
}

/* The reference log-probs the loss sees, (n) each on dev: TRL's IPO averages over tokens. */
static apl_status ref_inputs(const apl_dpo_opts *o, const apl_dpo_batch *b, float *rc, float *rr)
{
    for (int64_t i = 0; i < b->n; i++) {
        if (o->loss == APL_DPO_IPO && (b->chosen[i].len < 1 || b->rejected[i].len < 1))
            return apl_fail(APL_EINVAL, "dpo: pair %lld of the micro-batch has an empty completion",
                            (long long)i + 1);
        rc[i] = o->loss == APL_DPO_IPO ? b->ref_chosen[i] / b->chosen[i].len : b->ref_chosen[i];
        rr[i] = o->loss == APL_DPO_IPO ? b->ref_rejected[i] / b->rejected[i].len : b->ref_rejected[i];
    }
    return APL_OK;
}

/* IPO's log-probs: the (2n) sums divided by the completions' lengths. */
static apl_status mean_over_tokens(const apl_dpo_batch *b, apl_device dev, apl_tensor **logps)
{
    float *len = malloc(sizeof(float) * 2 * b->n);
    if (!len) return apl_fail(APL_ENOMEM, "dpo: out of memory");
    for (int64_t i = 0; i < b->n; i++) {
        len[i] = (float)b->chosen[i].len;
        len[b->n + i] = (float)b->rejected[i].len;
    }
    apl_tensor *avg = apl_t_binary(APL_DIV, *logps, vec(len, 2 * b->n, dev, 0));
    free(len);
    apl_t_free(*logps);
    *logps = avg;
    return apl_t_ok(avg);
}

/* Policy log-probs (2n: chosen, then rejected) as the loss uses them: summed, or averaged over
 * tokens for IPO. One packed forward per pair: the prompt runs once for both completions. */
static apl_status policy_logps(apl_model *policy, const apl_dpo_opts *o, const apl_dpo_batch *b,
                               int64_t pad_id, apl_tensor **out)
{
    apl_tensor *sums[2] = {NULL, NULL};
    apl_status st = apl_score_pairs(policy, b->prompts, b->chosen, b->rejected, b->n, pad_id,
                                    &sums[0], &sums[1]);
    if (st != APL_OK) return st;
    *out = apl_t_cat(sums, 2, 0); // (2n)
    apl_t_free(sums[0]);
    apl_t_free(sums[1]);
    if ((st = apl_t_ok(*out)) != APL_OK || o->loss != APL_DPO_IPO) return st;
    return mean_over_tokens(b, apl_model_device(policy), out);
}

static apl_status read_dpo_out(const apl_dpo_opts *o, apl_tensor *logps, apl_tensor *losses,
                               const float *rc, const float *rr, int64_t n, apl_dpo_out *out)
{
    float *lp = malloc(sizeof(float) * 2 * n);
    apl_status st = lp ? APL_OK : apl_fail(APL_ENOMEM, "dpo: out of memory");
    if (st == APL_OK) st = apl_t_read(apl_t_detach(logps), APL_F32, lp, sizeof(float) * 2 * n);
    if (st == APL_OK) st = apl_t_item(apl_t_reduce(APL_SUM, apl_t_detach(losses), APL_ALL_DIMS, 0),
                                      &out->loss_sum);
    for (int64_t i = 0; st == APL_OK && i < n; i++) {
        out->logp_chosen[i] = lp[i];
        out->logp_rejected[i] = lp[n + i];
        out->reward_chosen[i] = (float)(o->beta * (lp[i] - rc[i]));
        out->reward_rejected[i] = (float)(o->beta * (lp[n + i] - rr[i]));
    }
    free(lp);
    return st;
}

apl_status apl_dpo_accumulate(apl_model *policy, const apl_dpo_opts *o, const apl_dpo_batch *b,
                              int64_t pad_id, double scale, apl_dpo_out *out)
{
    apl_status st = check_dpo(o);
    if (st != APL_OK) return st;
    if (b->n < 1) return apl_fail(APL_EINVAL, "dpo: empty micro-batch");
    float *rc = malloc(sizeof(float) * b->n), *rr = malloc(sizeof(float) * b->n);
    apl_tensor *logps = NULL;
    int mark = apl_scope_push();
    int was = apl_set_grad_enabled(1), was_training = apl_model_train(policy, 1);
    apl_device dev = apl_model_device(policy);
    if (!rc || !rr) { st = apl_fail(APL_ENOMEM, "dpo: out of memory"); goto fail; }
    if ((st = ref_inputs(o, b, rc, rr)) != APL_OK) goto fail;
    if ((st = policy_logps(policy, o, b, pad_id, &logps)) != APL_OK) goto fail; // (2n)
    apl_tensor *losses = apl_dpo_losses(o, apl_t_narrow(logps, 0, 0, b->n),
                                        apl_t_narrow(logps, 0, b->n, b->n),
                                        vec(rc, b->n, dev, 0), vec(rr, b->n, dev, 0)); // (n)
    apl_tensor *scaled = apl_t_binary_s(APL_MUL, apl_t_reduce(APL_SUM, losses, APL_ALL_DIMS, 0), scale);
    if ((st = apl_t_ok(scaled)) != APL_OK || (st = apl_t_backward(scaled)) != APL_OK) goto fail;
    st = read_dpo_out(o, logps, losses, rc, rr, b->n, out);
fail:
    apl_t_free(logps);
    apl_model_train(policy, was_training);
    apl_set_grad_enabled(was);
    apl_scope_pop(mark);
    free(rc);
    free(rr);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* SFT */

apl_status apl_sft_accumulate(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                              int64_t n, int64_t pad_id, double scale, double *nll_sum)
{
    if (n < 1) return apl_fail(APL_EINVAL, "sft: empty micro-batch");
    apl_tensor *sums = NULL;
    int mark = apl_scope_push();
    int was = apl_set_grad_enabled(1), was_training = apl_model_train(m, 1);
    apl_status st = apl_score_batch(m, prompts, completions, n, pad_id, &sums, NULL);
    if (st != APL_OK) goto fail;
    apl_tensor *nll = apl_t_unary(APL_NEG, apl_t_reduce(APL_SUM, sums, APL_ALL_DIMS, 0));
    if ((st = apl_t_ok(nll)) != APL_OK || (st = apl_t_item(nll, nll_sum)) != APL_OK) goto fail;
    st = apl_t_backward(apl_t_binary_s(APL_MUL, nll, scale));
fail:
    apl_t_free(sums);
    apl_model_train(m, was_training);
    apl_set_grad_enabled(was);
    apl_scope_pop(mark);
    return st;
}
