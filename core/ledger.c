/* ledger.c — the label ledger's key (ledger.h). */
#include "ledger.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"

void apl_ledger_key(const char *const *parts, const size_t *lens, size_t n,
                    char key[APL_LEDGER_KEY_LEN + 1])
{
    uint64_t h = APL_FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(parts[i]);
        unsigned char le[8]; /* the length as 8 little-endian bytes, on any host */
        for (int b = 0; b < 8; b++) le[b] = (unsigned char)(len >> (8 * b));
        h = apl_fnv1a(apl_fnv1a(h, le, 8), parts[i], (size_t)len);
    }
    snprintf(key, APL_LEDGER_KEY_LEN + 1, "%016llx", (unsigned long long)h);
}
