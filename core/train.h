/* train.h — DPO and SFT losses with gradient accumulation, and Adam over what a model trains.
 *
 *   apl_optim *opt;
 *   apl_optim_opts oo = apl_optim_defaults();
 *   oo.lr = 1e-6;
 *   if (apl_optim_new(policy, &oo, &opt) != APL_OK) die(apl_last_error());
 *   apl_dpo_opts d = {APL_DPO_SIGMOID, 0.1, 0.0};
 *   for (each micro-batch mb of a minibatch of B pairs)       // gradients add up across calls
 *       apl_dpo_accumulate(policy, &d, &mb, pad_id, 1.0 / B, &out);
 *   double gnorm;
 *   apl_optim_step(opt, &gnorm);                              // clip, Adam, zero the gradients
 *
 * Gradient accumulation: a micro-batch's loss is its summed per-pair loss times `scale`; with
 * scale = 1 / (minibatch size) the accumulated gradient is the minibatch mean's, the same update
 * one big batch gives.
 *
 * Precision: Adam's moments are f32 whatever the parameters' dtype; the shim computes the update
 * in f32 and casts it to the parameter dtype, so bf16 weights train without an f32 master copy
 * (cheaper in memory; small updates can round away in bf16, the usual trade-off).
 *
 * DPO losses follow TRL's DPOTrainer: with h = (log pi(c) - log pi(r)) - (log pi0(c) - log pi0(r)),
 *   sigmoid: -(1 - ls) log sigma(beta h) - ls log sigma(-beta h)
 *   ipo:     (h - 1 / (2 beta))^2, on log-probs averaged over completion tokens (as TRL does)
 *   hinge:   relu(1 - beta h)
 *
 * Ownership: apl_optim borrows the model (which must outlive it) and owns the moment tensors.
 * apl_optim_new takes the model's trainable tensors (apl_model_trainable: every parameter, or
 * only the LoRA adapters' A and B, lora.h) and marks them as requiring gradients. After
 * apl_model_to or attaching, detaching or merging adapters (which replace the handles) step,
 * reset and zero_grad fail with APL_EINVAL: make a new optimizer. apl_optim_free never touches
 * the model, so the two may be freed in either order.
 * Statuses: APL_EINVAL (bad option or batch), APL_ENOMEM, APL_ETORCH.
 */
#ifndef APL_TRAIN_H
#define APL_TRAIN_H

#include "score.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Adam */

typedef struct {
    double lr, beta1, beta2, eps, weight_decay; /* weight decay is decoupled (AdamW) */
    double grad_clip;                           /* max global L2 norm; <= 0: no clipping */
} apl_optim_opts;

typedef struct apl_optim apl_optim;

apl_optim_opts apl_optim_defaults(void); /* lr 1e-6, betas 0.9/0.999, eps 1e-8, no decay/clip */
apl_status apl_optim_new(apl_model *m, const apl_optim_opts *o, apl_optim **out);
void apl_optim_free(apl_optim *opt);
/* Clips, applies one Adam step to every parameter with a gradient and drops the gradients;
 * writes the global gradient norm before clipping. */
apl_status apl_optim_step(apl_optim *opt, double *grad_norm);
/* Drops gradients and moments and restarts the step count (the model's weights are untouched). */
apl_status apl_optim_reset(apl_optim *opt);
apl_status apl_optim_zero_grad(apl_optim *opt);
int64_t apl_optim_steps(const apl_optim *opt);
/* On: every step first sums the gradients over the ranks of the process group (dist.h's
 * apl_dist_all_reduce_grads), so that each rank, having accumulated its shard of a minibatch,
 * takes the update of the whole minibatch. Every rank must then step together. */
apl_status apl_optim_set_dist(apl_optim *opt, int on);

/* ------------------------------------------------------------------------------------------ */
/* DPO */

typedef enum { APL_DPO_SIGMOID, APL_DPO_IPO, APL_DPO_HINGE } apl_dpo_loss_type;
typedef struct {
    apl_dpo_loss_type loss;
    double beta, label_smoothing;
} apl_dpo_opts;

/* A micro-batch of n preference pairs with their reference log-probs (summed over tokens). */
typedef struct {
    const apl_seq *prompts, *chosen, *rejected;
    const float *ref_chosen, *ref_rejected;
    int64_t n;
} apl_dpo_batch;

/* Per-pair values for the metrics, in the caller's buffers of n floats each. */
typedef struct {
    float *logp_chosen, *logp_rejected;     /* policy log-probs the loss used */
    float *reward_chosen, *reward_rejected; /* beta (log pi - log pi0) */
    double loss_sum;                        /* summed per-pair loss, before scale */
} apl_dpo_out;

/* Per-pair losses (n) from per-sequence log-probs (n) each; differentiable in pc and pr. */
apl_tensor *apl_dpo_losses(const apl_dpo_opts *o, apl_tensor *pc, apl_tensor *pr, apl_tensor *rc,
                           apl_tensor *rr);
/* Mean loss over n pairs given as floats, and its gradient in the policy log-probs (n) each:
 * the loss formula on its own, for checks against a reference implementation. */
apl_status apl_dpo_loss_grad(const apl_dpo_opts *o, int64_t n, const float *pc, const float *pr,
                             const float *rc, const float *rr, double *loss, float *dpc, float *dpr);
/* One packed forward of each pair (prompt ++ chosen ++ rejected in one row, the prompt computed
 * once: score.h's apl_score_pairs), then backward of scale * summed loss into the gradients of
 * what the policy trains. */
apl_status apl_dpo_accumulate(apl_model *policy, const apl_dpo_opts *o, const apl_dpo_batch *b,
                              int64_t pad_id, double scale, apl_dpo_out *out);

/* ------------------------------------------------------------------------------------------ */
/* SFT */

/* Next-token NLL of the completions (prompts masked): backward of scale * summed NLL; writes the
 * summed NLL before scale. With scale = 1 / (completion tokens in the minibatch) the gradient is
 * that of the minibatch's mean token NLL. */
apl_status apl_sft_accumulate(apl_model *m, const apl_seq *prompts, const apl_seq *completions,
                              int64_t n, int64_t pad_id, double scale, double *nll_sum);

#ifdef __cplusplus
}
#endif
#endif
