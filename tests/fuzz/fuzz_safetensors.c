/* fuzz_safetensors.c — a safetensors file's header and offsets (core/safetensors.c): open, look
 * every tensor up by name, scan it for NaNs, view it as a tensor (through shim_stub.c, which
 * reads every byte the view covers), close. An accepted file's tensors lie inside the data, do
 * not overlap and have unique names. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("model.safetensors", data, size);
    apl_st *st;
    if (apl_st_open(path, &st) != APL_OK) return 0;
    uint64_t total = 0;
    for (int i = 0; i < apl_st_count(st); i++) {
        const apl_st_info *e = apl_st_at(st, i);
        FUZZ_ASSERT(apl_st_find(st, e->name) == e); /* names are unique */
        total += e->nbytes;
        apl_st_check_finite(st, e);
        apl_tensor *t;
        if (apl_st_tensor(st, e, &t) == APL_OK) apl_t_free(t);
    }
    FUZZ_ASSERT(total <= size); /* no two tensors share bytes */
    apl_st_close(st);
    return 0;
}
