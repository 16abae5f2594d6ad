/* ledger.h — the oracle's label ledger: an append-only JSONL file in the run folder, each line one
 * answered judge request. A line reaches the disk (write + fsync) before its label is handed to
 * the caller, so a label that was paid for is never lost, and a restarted run replays it instead
 * of paying again.
 *
 *   apl_ledger *l;
 *   if (apl_ledger_open("run/labels.jsonl", &l) != APL_OK) die(apl_last_error());
 *   for (size_t i = 0; i < apl_ledger_count(l); i++) use(apl_ledger_line(l, i));
 *   if (apl_ledger_warning(l)) fprintf(stderr, "%s\n", apl_ledger_warning(l));
 *   char key[APL_LEDGER_KEY_LEN + 1];
 *   const char *parts[] = {template, model, prompt, a, b, "AB"};
 *   apl_ledger_key(parts, NULL, 6, key);
 *   apl_ledger_append(l, "{\"key\":\"...\",\"answer\":\"A\"}");
 *   apl_ledger_free(l);
 *
 * The ledger is a journal (journal.h) opened with APL_JOURNAL_APPEND | APL_JOURNAL_LOCK: what
 * follows is the journal's behaviour, with "ledger entry" as the noun in its messages.
 * Ownership: the ledger owns the loaded lines (valid until apl_ledger_free) and an exclusive lock
 * on the file (flock), released by apl_ledger_free or by the kernel when the process dies.
 * Loading: every line must be a JSON object. A last line that has no newline and does not parse
 * is what a process killed mid-write leaves: it is skipped, cut from the file, and reported by
 * apl_ledger_warning. Any other bad line is APL_EFORMAT naming "path:line".
 * Statuses: APL_OK, APL_EINVAL (bad argument, line with a newline), APL_EIO (open, lock, read,
 * write, fsync), APL_EFORMAT (corrupt line), APL_ENOMEM.
 */
#ifndef APL_LEDGER_H
#define APL_LEDGER_H

#include <stddef.h>

#include "status.h"

#define APL_LEDGER_KEY_LEN 16

typedef struct apl_ledger apl_ledger;

/* Opens (creating it if needed) and loads the ledger at path; its folder must exist. */
apl_status apl_ledger_open(const char *path, apl_ledger **out);
size_t apl_ledger_count(const apl_ledger *l);
const char *apl_ledger_line(const apl_ledger *l, size_t i);
/* NULL, or what was skipped while loading ("labels.jsonl:12: truncated last line skipped"). */
const char *apl_ledger_warning(const apl_ledger *l);
/* Appends one line (a JSON object without newlines) and fsyncs before returning APL_OK. */
apl_status apl_ledger_append(apl_ledger *l, const char *json);
void apl_ledger_free(apl_ledger *l);

/* A stable key for n strings: FNV-1a 64 over each part's length and bytes (so part boundaries
 * matter), written as 16 lowercase hex digits + NUL into key. lens may be NULL (then strlen). */
void apl_ledger_key(const char *const *parts, const size_t *lens, size_t n,
                    char key[APL_LEDGER_KEY_LEN + 1]);

#endif
