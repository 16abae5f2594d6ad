/* fuzz_ledger.c — loading the label ledger (a journal opened as ledger.h says) from any bytes:
 * every line it keeps is a JSON object without a newline, and a bad line is an error or (the last
 * one) a warning. The same bytes are first read as a lenient, read-only journal (DPO's cache):
 * it never fails on content, keeps only objects, and keeps at least what the strict ledger keeps. */
#include <cJSON.h>

#include "fuzz.h"
#include "journal.h"

static void check_line(const char *line)
{
    FUZZ_ASSERT(line && !strchr(line, '\n'));
    cJSON *j = cJSON_Parse(line);
    FUZZ_ASSERT(cJSON_IsObject(j));
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("labels.jsonl", data, size);
    apl_journal *cache;
    FUZZ_ASSERT(apl_journal_open(path, APL_JOURNAL_LENIENT, "cache line", &cache) == APL_OK);
    for (size_t i = 0; i < apl_journal_count(cache); i++) check_line(apl_journal_line(cache, i));
    apl_journal *l;
    if (apl_journal_open(path, APL_JOURNAL_APPEND | APL_JOURNAL_LOCK, "ledger entry", &l) != APL_OK) {
        apl_journal_free(cache);
        return 0;
    }
    FUZZ_ASSERT(apl_journal_count(l) == apl_journal_count(cache));
    for (size_t i = 0; i < apl_journal_count(l); i++) check_line(apl_journal_line(l, i));
    apl_journal_free(l);
    apl_journal_free(cache);
    return 0;
}
