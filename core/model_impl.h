/* model_impl.h — what model.c shares with the architecture files (gpt2.c, neox.c, llama.c).
 *
 * An architecture describes its parameters as a list of specs (HF name, shape, init, and the
 * (layer, slot) the forward pass asks for) and gives a forward function over apl_fwd. model.c
 * owns everything else: loading and saving by name, positions, rotary tables, attention over the
 * KV cache, and scopes.
 */
#ifndef APL_MODEL_IMPL_H
#define APL_MODEL_IMPL_H

#include "config.h"
#include "model.h"

#define APL_MAX_SLOTS 16 /* parameters per layer (and globals), per architecture */
/* The most parameter tensors a model built without a checkpoint may have (apl_model_init):
 * ~87,000 layers, far beyond any real model; a config.json asking for more is malformed. */
#define APL_MAX_SPECS (1 << 20)

typedef enum { APL_INIT_NORMAL, APL_INIT_ONES, APL_INIT_ZEROS } apl_init_kind;

typedef struct {
    char name[96];
    int layer; /* -1 for the embeddings and the final norm/head */
    int slot;  /* the architecture's enum */
    int ndim;
    int64_t shape[2];
    apl_init_kind init;
} apl_pspec;

/* One forward call, prepared by model.c. */
typedef struct {
    int64_t B, T, past;    /* past: positions already in the cache */
    apl_tensor *ids;       /* (B, T) i64, on the model's device */
    apl_tensor *mask;      /* (B, past + T) nonzero = real token, or NULL */
    apl_tensor *bias;      /* the attention bias of mask and causality, shared by the layers */
    apl_tensor *pos;       /* (B, T) i64 positions of the new tokens */
    apl_tensor *cos, *sin; /* (B, 1, T, rot) rotary tables in the model's dtype, or NULL */
    apl_kv_cache *cache;   /* NULL without a cache */
    int64_t tail;          /* logits only for the last `tail` positions; 0 = all */
    apl_tensor *rows;      /* or only at these flat indices into B * T (R) i64, or NULL */
} apl_fwd;

struct apl_cfg_src; /* config_impl.h */

/* A config.json model_type a family reads, with the transformers class it saves as. */
typedef struct {
    const char *type, *hf_class;
} apl_arch_type;

/* A model family: adding one is a file with these functions and a line in archs.c. */
typedef struct apl_lora apl_lora;

typedef struct apl_arch {
    const apl_arch_type *types; /* ends with {NULL, NULL} */
    /* Its config.json fields into c (model_type and hf_class are set already). */
    apl_status (*parse)(const struct apl_cfg_src *s, apl_config *c);
    const char *optional_prefix; /* old checkpoints drop it ("transformer." for GPT-2) */
    int conv1d;                  /* the layers' projection weights are stored (in, out) */
    int embed_slot, head_slot;   /* global slots; a tied head is the embedding (the config says) */
    const char *head_module;     /* HF's module name for the head ("lm_head", "embed_out") */
    const char *const *lora_targets; /* PEFT's default target_modules for the family, NULL-ended */
    /* Writes the specs (when out is not NULL) in a fixed order; returns their count. */
    int (*specs)(const apl_config *c, apl_pspec *out);
    /* Logits (B, T, V), or NULL with the message set. Runs inside a scope held by model.c. */
    apl_tensor *(*forward)(const apl_model *m, const apl_fwd *f);
} apl_arch;

struct apl_model {
    const apl_arch *arch;
    apl_config cfg;
    char *config_json;
    char *source;                 /* the folder it was loaded from, or NULL */
    int n;
    apl_pspec *spec;
    apl_tensor **p;
    int *slot_of;                 /* (n_layer + 1) x APL_MAX_SLOTS -> param index or -1 */
    double *inv_freq;             /* (rot_dims / 2) rotary frequencies, NULL without rotary */
    apl_dtype dt;
    apl_device dev;
    uint64_t generation;          /* bumped when the parameter handles are replaced (apl_model_to) */
    apl_lora *lora;               /* adapters (lora.c), or NULL */
    int lora_on;
    int training;                 /* inside a trainer's step: LoRA dropout acts (apl_model_train) */
    apl_model *theta0;            /* a full model's θ0 snapshot, made by apl_model_reference */
    const apl_model *view_of;     /* a reference view: the model it reads; it owns nothing */
};

struct apl_kv_cache {
    int n_layer;
    int64_t B, max_len, len;
    apl_dtype dt;
    apl_device dev;
    apl_tensor **k, **v; /* per layer (B, H_kv, max_len, D) */
};

/* The registry of families, NULL-ended (archs.c). */
extern const apl_arch *const apl_archs[];

/* Appends a spec; name is a printf format taking the layer. */
void apl_pspec_add(apl_pspec *out, int *n, int layer, int slot, const char *fmt, int ndim,
                   int64_t d0, int64_t d1, apl_init_kind init);

/* The parameter in (layer, slot), layer -1 for globals; NULL when the config has none (biases). */
apl_tensor *apl_model_w(const apl_model *m, int layer, int slot);

/* The one place a projection is computed, for every family: the weight in (layer, w_slot) and the
 * bias in b_slot (-1 or an empty slot: none), x W^T + b, or x W + b for a family storing (in, out),
 * plus the adapter's (alpha / r) B A x when one is attached there and on (lora.c). */
apl_tensor *apl_model_proj(const apl_model *m, int layer, int w_slot, int b_slot, apl_tensor *x);
/* The head: hidden states (..., C) to logits (..., V), through apl_model_proj at layer -1. */
apl_tensor *apl_model_head(const apl_model *m, apl_tensor *y);
/* The head's weight slot, the embedding's when tied. */
int apl_model_head_slot(const apl_model *m);

/* y plus the adapter's output at (layer, slot) when there is one (lora.c). */
apl_tensor *apl_lora_add(const apl_lora *l, const apl_model *m, int layer, int slot, apl_tensor *x,
                         apl_tensor *y);
/* The adapters' tensors converted (all or nothing), as apl_model_to does the weights. */
apl_status apl_lora_to(apl_lora *l, apl_dtype dt, apl_device dev);
void apl_lora_free(apl_lora *l);

/* The rows f->rows picks from the final hidden states h (B, T, C), as (1, R, C), or h itself
 * (with a tail, the last layer kept only those positions): the final norm and the head, V wide,
 * then run only where logits are wanted. Takes h (frees it when it returns another tensor);
 * NULL in, NULL out. */
apl_tensor *apl_model_tail(const apl_fwd *f, apl_tensor *h);

/* Runs block for each layer, each in its own scope, freeing x; returns the last output, which
 * the caller owns and frees. */
typedef apl_tensor *(*apl_block_fn)(const apl_model *m, const apl_fwd *f, int layer, apl_tensor *x);
apl_tensor *apl_model_layers(const apl_model *m, const apl_fwd *f, apl_tensor *x, apl_block_fn block);

apl_tensor *apl_model_heads(apl_tensor *x, int64_t H, int64_t D); /* (B, T, H*D) -> (B, H, T, D) */
apl_tensor *apl_model_rope(const apl_fwd *f, apl_tensor *x);      /* (B, H, T, D), first rot dims */
/* Causal attention of q (B, H, T, D) over k, v (B, H_kv, T, D) and the layer's cache; writes k, v
 * into the cache. Returns (B, T, H*D), or (B, tail, H*D) in the last layer of a forward with a
 * tail, whose block then passes its residual stream through apl_model_queries. */
apl_tensor *apl_model_attend(const apl_model *m, const apl_fwd *f, int layer, apl_tensor *q,
                             apl_tensor *k, apl_tensor *v);
/* x (B, T, C) at the positions whose queries `layer` computes: all, or the tail in the last layer. */
apl_tensor *apl_model_queries(const apl_model *m, const apl_fwd *f, int layer, apl_tensor *x);
apl_tensor *apl_model_act(apl_act a, apl_tensor *x);

#endif
