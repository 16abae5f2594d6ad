/* fuzz_tokenizer.c — tokenizer.json loading and encoding (core/tokenizer.c). The input is a
 * tokenizer.json, then a NUL byte, then text to encode (with and without the post-processor);
 * the ids are decoded again. Every id encode returns must be one decode accepts. */
#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "Hello world, it's 2024!\n\t<|endoftext|>";
    size_t tlen = nul ? size - jlen - 1 : strlen(text);
    const char *path = fuzz_file("tokenizer.json", data, jlen);
    apl_tokenizer *tok;
    if (apl_tokenizer_load(path, &tok) != APL_OK) return 0;
    for (int special = 0; special < 2; special++) {
        apl_ids ids = {0};
        if (apl_tokenizer_encode(tok, text, tlen, special, &ids) == APL_OK) {
            char *out;
            size_t olen;
            FUZZ_ASSERT(apl_tokenizer_decode(tok, ids.v, ids.n, 0, &out, &olen) == APL_OK);
            free(out);
        }
        apl_ids_free(&ids);
    }
    apl_tokenizer_free(tok);
    return 0;
}
