/* config_impl.h — what config.c shares with the family files that parse their own config.json
 * fields (gpt2.c, neox.c, llama.c). Each getter names the file and the field in its message;
 * fields HF gives a default take `def` when absent (or null).
 */
#ifndef APL_CONFIG_IMPL_H
#define APL_CONFIG_IMPL_H

#include <cJSON.h>

#include "config.h"

typedef struct apl_cfg_src {
    const cJSON *j;
    const char *where; /* "gpt2/config.json" */
} apl_cfg_src;

#define APL_TRY(x) do { apl_status st_ = (x); if (st_ != APL_OK) return st_; } while (0)

const cJSON *apl_cfg_field(const apl_cfg_src *s, const char *k); /* NULL when absent or null */
/* A positive integer below 2^31; required: no default, absence is an error. */
apl_status apl_cfg_int(const apl_cfg_src *s, const char *k, int required, int64_t def, int64_t *out);
apl_status apl_cfg_num(const apl_cfg_src *s, const char *k, double def, double *out); /* finite */
/* >= 0, or > 0 when positive is set: epsilons, scales, bases. */
apl_status apl_cfg_nonneg(const apl_cfg_src *s, const char *k, double def, int positive, double *out);
apl_status apl_cfg_bool(const apl_cfg_src *s, const char *k, int def, int *out);
apl_status apl_cfg_act(const apl_cfg_src *s, const char *k, const char *def, apl_act *out);
/* The sizes under the names most families share (vocab_size, hidden_size, num_hidden_layers,
 * num_attention_heads, intermediate_size; max_position_embeddings, default 2048). */
apl_status apl_cfg_sizes(const apl_cfg_src *s, apl_config *c);
/* head_dim = hidden / n_head, which must divide. */
apl_status apl_cfg_head_dim(const apl_cfg_src *s, apl_config *c);

#endif
