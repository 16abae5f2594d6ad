/* fuzz_config.c — config.json parsing (core/config.c): no crash, no undefined behaviour, and every
 * accepted config has the sizes the model code relies on. */
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = fuzz_cstr(data, size);
    apl_config c;
    if (apl_config_parse(json, "config.json", &c) == APL_OK) {
        FUZZ_ASSERT(c.vocab >= 1 && c.hidden >= 1 && c.n_layer >= 1 && c.n_head >= 1);
        FUZZ_ASSERT(c.n_kv_head >= 1 && c.n_head % c.n_kv_head == 0);
        FUZZ_ASSERT(c.eos_id >= -1 && c.eos_id < c.vocab);
        FUZZ_ASSERT(c.norm_eps >= 0 && c.rot_dims >= 0 && c.rot_dims % 2 == 0);
        FUZZ_ASSERT(c.max_pos >= 1);
    }
    free(json);
    return 0;
}
