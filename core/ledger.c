#include "ledger.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "journal.h"

/* The ledger is a journal (journal.c: the fsync, the torn last line) that one process holds. */
struct apl_ledger {
    apl_journal *j;
};

apl_status apl_ledger_open(const char *path, apl_ledger **out)
{
    *out = NULL;
    if (!path || !*path) return apl_fail(APL_EINVAL, "ledger path is empty");
    apl_ledger *l = calloc(1, sizeof *l);
    if (!l) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    apl_status st =
        apl_journal_open(path, APL_JOURNAL_APPEND | APL_JOURNAL_LOCK, "ledger entry", &l->j);
    if (st != APL_OK) {
        free(l);
        return st;
    }
    *out = l;
    return APL_OK;
}

size_t apl_ledger_count(const apl_ledger *l) { return apl_journal_count(l->j); }

const char *apl_ledger_line(const apl_ledger *l, size_t i) { return apl_journal_line(l->j, i); }

const char *apl_ledger_warning(const apl_ledger *l) { return apl_journal_warning(l->j); }

apl_status apl_ledger_append(apl_ledger *l, const char *json)
{
    return apl_journal_append(l->j, &json, 1);
}

void apl_ledger_free(apl_ledger *l)
{
    if (!l) return;
    apl_journal_free(l->j); /* also drops the flock */
    free(l);
}

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
