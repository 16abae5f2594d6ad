/* config.h — a Hugging Face config.json reduced to the fields the three architectures need.
 *
 *   apl_config c;
 *   if (apl_config_parse(text, "gpt2/config.json", &c) != APL_OK) die(apl_last_error());
 *   printf("%lld layers\n", (long long)c.n_layer);
 *
 * `where` names the source in messages: "gpt2/config.json: missing \"n_layer\"". Fields HF gives a
 * default take it; the sizes (vocabulary, width, depth, heads) are required.
 * Statuses: APL_EFORMAT (not JSON, a missing or ill-typed field, inconsistent sizes),
 * APL_EUNSUPPORTED (unknown model_type, activation or rope_scaling type).
 */
#ifndef APL_CONFIG_H
#define APL_CONFIG_H

#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct apl_arch; /* the family that reads this config (model_impl.h) */
typedef enum { APL_ACT_GELU, APL_ACT_GELU_TANH, APL_ACT_SILU, APL_ACT_RELU } apl_act;

typedef struct {
    const struct apl_arch *arch;
    char model_type[32];
    const char *hf_class; /* transformers' class, "GPT2LMHeadModel" (static storage) */
    int64_t vocab, hidden, n_layer, n_head, n_kv_head, head_dim, inter, max_pos;
    double norm_eps, init_range;
    apl_act act;
    int tie_embeddings;
    int64_t eos_id;      /* -1 when absent */
    /* rotary embeddings (gpt_neox, llama) */
    int64_t rot_dims;    /* leading dims of each head that rotate */
    double rope_theta;
    int llama3_rope;     /* rope_scaling {"rope_type": "llama3", ...} */
    double rs_factor, rs_low_freq, rs_high_freq;
    int64_t rs_orig_max_pos;
    /* block shape */
    int parallel_residual;     /* gpt_neox */
    int qkv_bias, o_bias, mlp_bias;
} apl_config;

apl_status apl_config_parse(const char *json, const char *where, apl_config *out);

#ifdef __cplusplus
}
#endif
#endif
