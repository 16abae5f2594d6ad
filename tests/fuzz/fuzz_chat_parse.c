/* fuzz_chat_parse.c — the judge's reply as it comes over HTTP (core/oracle_http.c, apl_chat_parse):
 * the JSON answer extraction that runs in C before apl.oracle.parse (Lua) reads the content. */
#include "fuzz.h"
#include "oracle_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_cstr(data, size), *content = NULL;
    long pt = -1, ct = -1;
    if (apl_chat_parse(body, &content, &pt, &ct) == APL_OK) {
        FUZZ_ASSERT(content != NULL);
        FUZZ_ASSERT(pt >= 0 && ct >= 0);
    } else {
        FUZZ_ASSERT(content == NULL);
    }
    free(content);
    free(body);
    return 0;
}
