/* ledger.h — the oracle's label ledger: an append-only JSONL file in the run folder, each line one
 * answered judge request, keyed by apl_ledger_key. The file is a journal (journal.h, apl.core.sys's
 * journal_open in Lua) opened with APL_JOURNAL_APPEND | APL_JOURNAL_LOCK and the noun "ledger
 * entry": a line reaches the disk (write + fsync) before its label is handed to the caller, so a
 * label that was paid for is never lost, a restarted run replays it instead of paying again, one
 * process holds the file (flock), and a torn last line (a process killed mid-write) is skipped,
 * cut and reported.
 *
 *   char key[APL_LEDGER_KEY_LEN + 1];
 *   const char *parts[] = {template, model, prompt, a, b, "AB"};
 *   apl_ledger_key(parts, NULL, 6, key);
 */
#ifndef APL_LEDGER_H
#define APL_LEDGER_H

#include <stddef.h>


#define APL_LEDGER_KEY_LEN 16

/* A stable key for n strings: FNV-1a 64 over each part's length and bytes (so part boundaries
 * matter), written as 16 lowercase hex digits + NUL into key. lens may be NULL (then strlen). */
void apl_ledger_key(const char *const *parts, const size_t *lens, size_t n,
                    char key[APL_LEDGER_KEY_LEN + 1]);

#endif
