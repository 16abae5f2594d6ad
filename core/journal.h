/* journal.h — a crash-safe JSONL file: one JSON object a line, appended and fsynced before the
 * append returns, read back whole. apl's label ledger (ledger.c), a run folder's records
 * (acquired.jsonl, train.jsonl, eval.jsonl) and DPO's reference log-prob cache are journals.
 *
 *   apl_journal *j;
 *   if (apl_journal_open("run/train.jsonl", APL_JOURNAL_APPEND, "record", &j) != APL_OK)
 *       die(apl_last_error());
 *   for (size_t i = 0; i < apl_journal_count(j); i++) use(apl_journal_line(j, i));
 *   if (apl_journal_warning(j)) fprintf(stderr, "%s\n", apl_journal_warning(j));
 *   const char *lines[] = {"{\"step\":1}", "{\"step\":2}"};
 *   apl_journal_append(j, lines, 2);          // one write, one fsync, then APL_OK
 *   apl_journal_free(j);
 *
 * Flags:
 *   APL_JOURNAL_APPEND  open for appending: the file (not its folder) is created if missing, and a
 *                       new file's folder entry is fsynced. Without it the journal is only read: a
 *                       missing file reads as no lines, and the file is never changed.
 *   APL_JOURNAL_LOCK    (with APPEND) an exclusive flock, held until apl_journal_free; a second
 *                       holder is refused ("in use by another process").
 *   APL_JOURNAL_LENIENT a corrupt line anywhere is skipped and counted in the warning instead of
 *                       failing: for caches, where a lost line only costs recomputing it.
 * Loading: every line must be one JSON object, without a NUL and with nothing after it but
 * blanks; blank lines are ignored. A last line without its newline is what a process killed
 * mid-write leaves: when it does not parse it is skipped and reported by apl_journal_warning
 * ("train.jsonl:12: truncated last line skipped (40 bytes)"), and with APPEND it is cut from the
 * file so the next append starts a fresh line; a complete object missing its newline is kept (and
 * given its newline with APPEND). Any other bad line is APL_EFORMAT naming "path:line" and noun
 * ("run/labels.jsonl:2: corrupt ledger entry (not one JSON object)").
 * Ownership: the journal owns its path copy, the loaded lines (valid until apl_journal_free) and
 * the warning; noun is copied. apl_journal_append copies nothing it keeps.
 * Statuses: APL_OK, APL_EINVAL (bad argument, a line that is empty or holds a newline, an append
 * to a journal opened without APPEND), APL_EIO (open, lock, read, write, fsync), APL_EFORMAT
 * (corrupt line, not a regular file), APL_ENOMEM.
 */
#ifndef APL_JOURNAL_H
#define APL_JOURNAL_H

#include <stddef.h>

#include "status.h"

#define APL_JOURNAL_APPEND 1u
#define APL_JOURNAL_LOCK 2u
#define APL_JOURNAL_LENIENT 4u

typedef struct apl_journal apl_journal;

/* noun names a line in messages ("ledger entry"); NULL means "line". */
apl_status apl_journal_open(const char *path, unsigned flags, const char *noun,
                            apl_journal **out);
size_t apl_journal_count(const apl_journal *j);
const char *apl_journal_line(const apl_journal *j, size_t i);
/* NULL, or what loading skipped: a truncated last line, corrupt lines (LENIENT). */
const char *apl_journal_warning(const apl_journal *j);
/* Appends n lines (each a JSON object without newlines; not checked beyond that) in one write
 * and fsyncs before returning APL_OK. A crash mid-write leaves at worst a torn last line. */
apl_status apl_journal_append(apl_journal *j, const char *const *lines, size_t n);
const char *apl_journal_path(const apl_journal *j);
void apl_journal_free(apl_journal *j);

#endif
