/* fuzz_ledger.c — loading the label ledger (core/ledger.c) from any bytes: every line it keeps
 * is a JSON object without a newline, and a bad line is an error or (the last one) a warning. */
#include <cJSON.h>

#include "fuzz.h"
#include "ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("labels.jsonl", data, size);
    apl_ledger *l;
    if (apl_ledger_open(path, &l) != APL_OK) return 0;
    for (size_t i = 0; i < apl_ledger_count(l); i++) {
        const char *line = apl_ledger_line(l, i);
        FUZZ_ASSERT(line && !strchr(line, '\n'));
        cJSON *j = cJSON_Parse(line);
        FUZZ_ASSERT(cJSON_IsObject(j));
        cJSON_Delete(j);
    }
    apl_ledger_free(l);
    return 0;
}
