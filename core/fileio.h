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
 * Statuses: APL_ENOTFOUND (no such file), APL_EIO (cannot open or read), APL_EFORMAT (not a
 * regular file, or larger than the caller's limit), APL_ENOMEM. Messages name the path.
 */
#ifndef APL_FILEIO_H
#define APL_FILEIO_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A read-only descriptor of a regular file (O_CLOEXEC, blocking again), which the caller closes. */
apl_status apl_open_regular(const char *path, int *fd);
/* The whole file, NUL-terminated (len excludes the NUL), at most max bytes; the caller frees it. */
apl_status apl_read_text(const char *path, size_t max, char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
