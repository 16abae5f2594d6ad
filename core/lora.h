/* lora.h — LoRA adapters on a model's projections, PEFT's method and names.
 *
 *   const char *targets[] = {"c_attn", "c_proj"};
 *   apl_lora_opts o = {.r = 8, .alpha = 16, .targets = targets, .n_targets = 2, .seed = 1};
 *   if (apl_lora_attach(m, &o) != APL_OK) die(apl_last_error());
 *   ... train: apl_model_trainable(m) is now the adapters' A and B alone ...
 *   apl_lora_set_enabled(m, 0);   // the base model, θ0, with no second copy of the weights
 *
 * A projection y = W x + b with an adapter becomes y = W x + b + (alpha / r) B A x, with
 * A (r, in) drawn as PEFT draws it (kaiming_uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)))
 * from `seed`, and B (out, r) zero, so a fresh adapter changes nothing. Targets are Hugging Face
 * module names matched as PEFT matches a list: a module whose path equals the name or ends with
 * "." + name ("c_proj" matches both attn.c_proj and mlp.c_proj); NULL targets take PEFT's default
 * for the family (apl_lora_default_targets). Dropout, when > 0, drops inputs of A in a trainer's
 * step (apl_model_train), never in scoring, generation or a plain forward.
 *
 * Ownership: the model owns its adapters; tensors returned by apl_lora_tensor are borrowed, valid
 * until the adapters are detached or merged or the model is freed. Attaching, detaching and
 * merging change the model's generation (an optimizer made before must be made again).
 * Statuses: APL_EINVAL (bad option, no module matched, already attached, a reference view),
 * APL_ETORCH.
 */
#ifndef APL_LORA_H
#define APL_LORA_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t r;
    double alpha, dropout;
    const char *const *targets; /* module names, or NULL: the family's defaults */
    int n_targets;
    uint64_t seed;
} apl_lora_opts;

apl_status apl_lora_attach(apl_model *m, const apl_lora_opts *o);
void apl_lora_detach(apl_model *m); /* drops the adapters; the base weights are untouched */
int apl_lora_attached(const apl_model *m);
/* On by default; off gives the base model's outputs exactly. */
apl_status apl_lora_set_enabled(apl_model *m, int on);
int apl_lora_enabled(const apl_model *m);
/* A from the seed again, B zero: the adapters as attached. */
apl_status apl_lora_reinit(apl_model *m);
/* W += (alpha / r) (B A) into every adapted weight (transposed for (in, out) weights), then
 * detaches: the model alone now computes what the adapted model did. */
apl_status apl_lora_merge(apl_model *m);

const apl_lora_opts *apl_lora_options(const apl_model *m); /* NULL when none; targets resolved */
int apl_lora_count(const apl_model *m);                     /* adapted modules */
/* Adapter i: its module's HF path ("transformer.h.0.attn.c_attn") and its A and B (borrowed). */
apl_status apl_lora_tensor(const apl_model *m, int i, const char **module, apl_tensor **a,
                           apl_tensor **b);
/* PEFT's default target_modules for the model's family, NULL-ended. */
const char *const *apl_lora_default_targets(const apl_model *m);

#ifdef __cplusplus
}
#endif
#endif
