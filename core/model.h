/* model.h — causal language models loaded from Hugging Face folders (GPT-2, GPT-NeoX, Llama).
 *
 *   apl_model *m;
 *   if (apl_model_load("gpt2-large/", APL_F32, APL_CPU, &m) != APL_OK) die(apl_last_error());
 *   apl_tensor *logits;                                  // (B, T, V)
 *   apl_model_forward(m, ids, mask, NULL, &logits);      // ids (B, T) i64, mask (B, T) or NULL
 *   apl_t_free(logits);
 *   apl_model_free(m);
 *
 * Ownership: the model owns its parameters (and a cache its tensors); they are apl_keep'd when
 * made, so models and caches may be created inside a caller's open scope. apl_model_param returns a borrowed handle, valid until
 * the model is freed. apl_model_forward returns a new handle the caller frees.
 * Statuses: APL_EIO (unreadable file), APL_EFORMAT (malformed safetensors/config, message names the
 * file and field), APL_EUNSUPPORTED (unknown model_type), APL_ETORCH (libtorch error).
 *
 * Padding: rows may be left-padded; mask (B, S) marks real tokens (1) and padding (0), where S is
 * the cached length plus T. Positions are counted over real tokens only (cumsum of the mask), so a
 * left-padded row gives the same logits as the same row unpadded.
 */
#ifndef APL_MODEL_H
#define APL_MODEL_H

#include "torch_shim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apl_model apl_model;

/* A preallocated key/value cache for incremental decoding: (layers) x (B, H_kv, max_len, D). */
typedef struct apl_kv_cache apl_kv_cache;

apl_status apl_model_load(const char *dir, apl_dtype dt, apl_device dev, apl_model **out);
/* Random weights from a config.json text (HF field names), deterministic in seed. */
apl_status apl_model_init(const char *config_json, uint64_t seed, apl_dtype dt, apl_device dev,
                          apl_model **out);
/* Writes dir/config.json and dir/model.safetensors with HF's names and layout. */
apl_status apl_model_save(const apl_model *m, const char *dir);
void apl_model_free(apl_model *m);

apl_status apl_model_clone(const apl_model *m, apl_model **out);       /* deep copy */
apl_status apl_model_copy_from(apl_model *dst, const apl_model *src);  /* same config */
apl_status apl_model_to(apl_model *m, apl_dtype dt, apl_device dev);

const char *apl_model_type(const apl_model *m);        /* "gpt2", "gpt_neox", "llama", ... */
const char *apl_model_config_json(const apl_model *m); /* the resolved config, as JSON text */
const char *apl_model_source(const apl_model *m);      /* the folder it was loaded from, or NULL */
int64_t apl_model_vocab_size(const apl_model *m);
int64_t apl_model_max_positions(const apl_model *m);
int64_t apl_model_eos_id(const apl_model *m);          /* -1 when the config names none */
apl_dtype apl_model_dtype(const apl_model *m);
apl_device apl_model_device(const apl_model *m);
/* Changes whenever apl_model_to replaces the parameter handles: whoever keeps apl_model_tensor
 * handles (an optimizer) compares it before using them. */
uint64_t apl_model_generation(const apl_model *m);

int apl_model_num_tensors(const apl_model *m);
apl_tensor *apl_model_tensor(const apl_model *m, int i); /* borrowed */
const char *apl_model_tensor_name(const apl_model *m, int i); /* HF name */
int64_t apl_model_num_params(const apl_model *m);

/* The tensors training changes, in a fixed order: the LoRA adapters' A and B when attached
 * (lora.h), else every parameter. Borrowed, valid until the generation changes. */
int apl_model_num_trainable(const apl_model *m);
apl_tensor *apl_model_trainable(const apl_model *m, int i);

/* θ0, the DPO reference and the point training resets to. apl_model_reference gives a read-only
 * view of it that the caller frees (apl_model_free frees the view alone) and that must not
 * outlive m: with adapters, m itself with the adapters off (no second copy of the weights);
 * without, a copy of m's weights taken now, which m keeps. apl_model_reset puts m back there:
 * adapters re-initialised from their seed, or the copy restored. A view goes stale (its forward
 * fails) when m's generation changes. */
apl_status apl_model_reference(apl_model *m, apl_model **view);
apl_status apl_model_reset(apl_model *m);
int apl_model_is_view(const apl_model *m);
int apl_model_is_stale(const apl_model *m); /* a view whose model's generation changed */
int apl_model_is_reference_of(const apl_model *view, const apl_model *m); /* m's θ0 view */

/* Training mode: set by the trainers around their forward and backward (train.c); only LoRA's
 * dropout looks at it (apl's models have no other dropout: the method uses none). Returns the
 * previous mode. */
int apl_model_train(apl_model *m, int on);

/* Training mode only matters for dropout; apl runs without dropout (the method does not use it). */
apl_status apl_model_forward(apl_model *m, apl_tensor *ids, apl_tensor *mask, apl_kv_cache *cache,
                             apl_tensor **logits);

/* Like apl_model_forward, but the final norm and the head run only on the last `tail` positions:
 * logits (B, tail, V). Scoring wants the completion's positions, generation's prefill the last
 * one; the head is V wide, so this saves most of a forward's head cost. tail 0 = all. */
apl_status apl_model_forward_tail(apl_model *m, apl_tensor *ids, apl_tensor *mask,
                                  apl_kv_cache *cache, int64_t tail, apl_tensor **logits);

/* A forward over rows that pack several sequences sharing a prefix (DPO's prompt with its chosen
 * and rejected completions): the caller gives the positions, pos (B * T) on the host, and the
 * attention bias (B, 1, T, T) that keeps the sequences apart (apl_t_attention_bias's convention:
 * 0 = may attend, the dtype's lowest value = may not). The final norm and the head run only on
 * the hidden states at `rows`, (R) i64 flat indices into B * T: logits (1, R, V). */
apl_status apl_model_forward_packed(apl_model *m, apl_tensor *ids, const int64_t *pos,
                                    apl_tensor *bias, apl_tensor *rows, apl_tensor **logits);

apl_status apl_kv_cache_new(const apl_model *m, int64_t batch, int64_t max_len, apl_kv_cache **out);
void apl_kv_cache_free(apl_kv_cache *c);
int64_t apl_kv_cache_len(const apl_kv_cache *c);   /* positions filled so far */
void apl_kv_cache_reset(apl_kv_cache *c);           /* back to length 0, memory kept */
/* Keeps only the given batch rows (finished rows stop costing compute); rows is (B') i64. */
apl_status apl_kv_cache_select_rows(apl_kv_cache *c, apl_tensor *rows);

#ifdef __cplusplus
}
#endif
#endif
