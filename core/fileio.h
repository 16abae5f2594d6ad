/* fileio.h — reading the files a user hands apl (config.json, tokenizer.json, checkpoints) without
 * hanging or reading without bound.
 *
 *   int fd;
 *   if (apl_open_regular("dir/model.safetensors", &fd) != APL_OK) return ...;   // then mmap, close
 *   char *text; size_t len;
 *   if (apl_read_text("dir/config.json", 64 << 20, &text, &len) != APL_OK) return ...; // free(text)
 *
 * A FIFO, a device or a folder given where a file is expected is refused before anything reads
 * it: open() of a FIFO blocks until a writer appears, so it is opened with O_NONBLOCK and checked
 * with fstat before any read.
 * This is apl's one whole-file reader: config.json, tokenizer files, checkpoint indexes, the
 * ledger (apl_read_fd on its locked descriptor) and apl.core.sys.read all come through here.
 * Statuses: APL_EIO (no such file, cannot open or read: "path: No such file or directory"),
 * APL_EFORMAT (not a regular file, or larger than the caller's limit), APL_ENOMEM. Messages name
 * the path.
 */
#ifndef APL_FILEIO_H
#define APL_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A max for files with no natural bound (the ledger, what a script reads). */
#define APL_READ_ANY (SIZE_MAX / 2)

/* A read-only descriptor of a regular file (O_CLOEXEC, blocking again), which the caller closes. */
apl_status apl_open_regular(const char *path, int *fd);
/* The whole file, NUL-terminated (len excludes the NUL), at most max bytes; the caller frees it. */
apl_status apl_read_text(const char *path, size_t max, char **out, size_t *len);
/* The same from an open descriptor, read from offset 0 whatever its position; path is for
 * messages. The caller keeps fd. */
apl_status apl_read_fd(int fd, const char *path, size_t max, char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
