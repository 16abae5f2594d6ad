/* fuzz_http_header.c — what the judge's transport (core/oracle_http.c) still reads of a server's
 * bytes itself: response header lines, for Retry-After (seconds, retry-after-ms, an HTTP date).
 * Reply bodies are read in Lua by the judge backends (lua/apl/judges/<name>.lua) and lua-cjson. */
#include <math.h>

#include "fuzz.h"
#include "oracle_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, no NUL: the parser must respect the length it is given. */
    char *line = malloc(size ? size : 1);
    if (!line) return 0;
    memcpy(line, data, size);
    double s = apl_http_retry_after(line, size);
    FUZZ_ASSERT(s == -1 || s >= 0); /* never NaN, never a negative wait */
    free(line);
    return 0;
}
