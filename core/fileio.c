/* fileio.c — regular files only, read whole with a size limit (see fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

apl_status apl_open_regular(const char *path, int *out)
{
    *out = -1;
    /* O_NONBLOCK: a FIFO would otherwise block here, before fstat could refuse it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return apl_fail(APL_EIO, "%s: %s", path, strerror(errno)); /* a missing file too */
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return apl_fail(APL_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return apl_fail(APL_EFORMAT, "%s: not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *out = fd;
    return APL_OK;
}

/* From offset 0 (pread), so an fd opened for appending, such as the ledger's, reads whole. */
apl_status apl_read_fd(int fd, const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
    if ((uint64_t)sb.st_size > max) return apl_fail(APL_EFORMAT, "%s: larger than %zu bytes", path, max);
    /* the size may change while reading: read at most max, whatever fstat said */
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 == cap) {
            if (n > max) break; /* grew past the limit while being read */
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            if (!buf) break;
            cap *= 2;
        }
        ssize_t r = pread(fd, buf + n, cap - 1 - n, (off_t)n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return apl_fail(APL_EIO, "%s: %s", path, strerror(e));
        }
        if (r == 0) break; /* end of file, or it shrank under us: what is there */
        n += (size_t)r;
    }
    if (!buf) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    if (n > max) {
        free(buf);
        return apl_fail(APL_EFORMAT, "%s: larger than %zu bytes", path, max);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return APL_OK;
}

apl_status apl_read_text(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd;
    apl_status st = apl_open_regular(path, &fd);
    if (st != APL_OK) return st;
    st = apl_read_fd(fd, path, max, out, len);
    close(fd);
    return st;
}
