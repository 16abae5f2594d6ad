#include "journal.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

struct apl_journal {
    char *path, *noun;
    unsigned flags;
    int fd;
    char **lines;
    size_t n, cap;
    char *warning;
    size_t torn_line, torn_bytes; /* a skipped torn last line (0: none) */
    size_t bad, first_bad;        /* corrupt lines skipped (LENIENT), the first one's number */
};

/* ------------------------------------------------------------------------------------------ */
/* Raw IO: whole writes despite short counts and signals */

static apl_status write_all(int fd, const char *buf, size_t len, const char *path)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return apl_fail(APL_EIO, "%s: write: %s", path, strerror(errno));
        buf += w;
        len -= (size_t)w;
    }
    return APL_OK;
}

/* A new file's directory entry must be on disk too, or a crash could lose the whole file. */
static apl_status sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return apl_fail(APL_ENOMEM, "%s", path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd < 0) return apl_fail(APL_EIO, "%s: open folder: %s", path, strerror(errno));
    int rc = fsync(dfd);
    close(dfd);
    if (rc != 0) return apl_fail(APL_EIO, "%s: fsync folder: %s", path, strerror(errno));
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading */

static apl_status keep_line(apl_journal *j, const char *s, size_t len)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        char **p = realloc(j->lines, cap * sizeof *p);
        if (!p) return apl_fail(APL_ENOMEM, "%s: %zu lines", j->path, cap);
        j->lines = p;
        j->cap = cap;
    }
    char *line = strndup(s, len);
    if (!line) return apl_fail(APL_ENOMEM, "%s", j->path);
    j->lines[j->n++] = line;
    return APL_OK;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* One JSON object and nothing after it but blanks: cJSON alone stops at the object's end, and
 * the text after it (or after a NUL) would pass here and fail later in Lua without file:line.
 * No raw NUL anywhere: JSON text has none, and a line is handed out as a C string, cut there. */
static int is_object(const char *s, size_t len)
{
    if (memchr(s, '\0', len)) return 0;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    int ok = j && cJSON_IsObject(j) && end && is_blank(end, len - (size_t)(end - s));
    cJSON_Delete(j);
    return ok;
}

/* The last line, without its newline: a killed writer's. A complete object is kept (and, when
 * appending, given its newline); a cut one is skipped (and cut from the file, so the next append
 * starts on a fresh line). */
static apl_status tail(apl_journal *j, const char *line, size_t len, size_t start, size_t lineno)
{
    apl_status st;
    int append = (j->flags & APL_JOURNAL_APPEND) != 0;
    if (is_object(line, len)) {
        if ((st = keep_line(j, line, len)) != APL_OK) return st;
        if (append && (st = write_all(j->fd, "\n", 1, j->path)) != APL_OK) return st;
    } else {
        j->torn_line = lineno;
        j->torn_bytes = len;
        if (append && ftruncate(j->fd, (off_t)start) != 0)
            return apl_fail(APL_EIO, "%s: truncate: %s", j->path, strerror(errno));
    }
    if (append && fsync(j->fd) != 0)
        return apl_fail(APL_EIO, "%s: fsync: %s", j->path, strerror(errno));
    return APL_OK;
}

static apl_status corrupt(apl_journal *j, size_t lineno)
{
    if (!(j->flags & APL_JOURNAL_LENIENT))
        return apl_fail(APL_EFORMAT, "%s:%zu: corrupt %s (not one JSON object)", j->path, lineno,
                        j->noun);
    if (j->bad++ == 0) j->first_bad = lineno;
    return APL_OK;
}

static apl_status set_warning(apl_journal *j)
{
    char msg[4096] = "", *p = msg;
    size_t left = sizeof msg;
    if (j->bad) {
        int w = j->bad == 1
                    ? snprintf(p, left, "%s:%zu: corrupt %s skipped", j->path, j->first_bad, j->noun)
                    : snprintf(p, left, "%s:%zu: %zu corrupt %ss skipped (the first here)", j->path,
                               j->first_bad, j->bad, j->noun);
        if (w > 0 && (size_t)w < left) p += w, left -= (size_t)w;
    }
    if (j->torn_line)
        snprintf(p, left, "%s%s:%zu: truncated last line skipped (%zu bytes)", j->bad ? "; " : "",
                 j->path, j->torn_line, j->torn_bytes);
    if (!*msg) return APL_OK;
    if (!(j->warning = strdup(msg))) return apl_fail(APL_ENOMEM, "%s", j->path);
    return APL_OK;
}

static apl_status load(apl_journal *j)
{
    char *buf = NULL;
    size_t len = 0, pos = 0, lineno = 0;
    apl_status st = apl_read_fd(j->fd, j->path, APL_READ_ANY, &buf, &len);
    if (st != APL_OK) return st;
    while (pos < len && st == APL_OK) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        lineno++;
        if (is_blank(s, n))
            st = APL_OK;
        else if (!nl)
            st = tail(j, s, n, pos, lineno);
        else if (is_object(s, n))
            st = keep_line(j, s, n);
        else
            st = corrupt(j, lineno);
        pos += n + (nl ? 1 : 0);
    }
    free(buf);
    return st == APL_OK ? set_warning(j) : st;
}

/* ------------------------------------------------------------------------------------------ */

static apl_status open_fd(apl_journal *j, int *created)
{
    *created = 0;
    if (!(j->flags & APL_JOURNAL_APPEND)) {
        struct stat sb;
        if (stat(j->path, &sb) != 0 && errno == ENOENT) return APL_OK; /* reads as no lines */
        return apl_open_regular(j->path, &j->fd);
    }
    *created = access(j->path, F_OK) != 0;
    j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0) return apl_fail(APL_EIO, "%s: %s", j->path, strerror(errno));
    /* Two processes appending to one ledger would each believe they own its budget. */
    if ((j->flags & APL_JOURNAL_LOCK) && flock(j->fd, LOCK_EX | LOCK_NB) != 0)
        return apl_fail(APL_EIO, "%s: in use by another process (%s)", j->path, strerror(errno));
    return APL_OK;
}

apl_status apl_journal_open(const char *path, unsigned flags, const char *noun,
                            apl_journal **out)
{
    *out = NULL;
    if (!path || !*path) return apl_fail(APL_EINVAL, "journal path is empty");
    if (flags & ~(APL_JOURNAL_APPEND | APL_JOURNAL_LOCK | APL_JOURNAL_LENIENT))
        return apl_fail(APL_EINVAL, "%s: unknown journal flags 0x%x", path, flags);
    if ((flags & APL_JOURNAL_LOCK) && !(flags & APL_JOURNAL_APPEND))
        return apl_fail(APL_EINVAL, "%s: a journal is locked only to append", path);
    apl_status st;
    int created = 0;
    apl_journal *j = calloc(1, sizeof *j);
    if (!j) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    j->fd = -1;
    j->flags = flags;
    if (!(j->path = strdup(path)) || !(j->noun = strdup(noun ? noun : "line"))) {
        st = apl_fail(APL_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if ((st = open_fd(j, &created)) != APL_OK) goto fail;
    if (created && (st = sync_dir(path)) != APL_OK) goto fail;
    if (j->fd >= 0 && (st = load(j)) != APL_OK) goto fail;
    if (!(flags & APL_JOURNAL_APPEND) && j->fd >= 0) {
        close(j->fd); /* all read: nothing more to do with the file */
        j->fd = -1;
    }
    *out = j;
    return APL_OK;
fail:
    apl_journal_free(j);
    return st;
}

size_t apl_journal_count(const apl_journal *j) { return j->n; }

const char *apl_journal_line(const apl_journal *j, size_t i) { return i < j->n ? j->lines[i] : NULL; }

const char *apl_journal_warning(const apl_journal *j) { return j->warning; }

const char *apl_journal_path(const apl_journal *j) { return j->path; }

apl_status apl_journal_append(apl_journal *j, const char *const *lines, size_t n)
{
    if (!(j->flags & APL_JOURNAL_APPEND) || j->fd < 0)
        return apl_fail(APL_EINVAL, "%s: journal is not open for appending", j->path);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        if (len == 0 || memchr(lines[i], '\n', len))
            return apl_fail(APL_EINVAL, "%s: a %s must be one non-empty line", j->path, j->noun);
        total += len + 1;
    }
    if (total == 0) return APL_OK;
    /* One write of every line and its newline: with O_APPEND a crash leaves at worst a cut last
     * line, which loading tolerates. */
    char *buf = malloc(total), *p = buf;
    if (!buf) return apl_fail(APL_ENOMEM, "%s: %zu bytes", j->path, total);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        memcpy(p, lines[i], len);
        p[len] = '\n';
        p += len + 1;
    }
    apl_status st = write_all(j->fd, buf, total, j->path);
    free(buf);
    if (st != APL_OK) return st;
    if (fsync(j->fd) != 0) return apl_fail(APL_EIO, "%s: fsync: %s", j->path, strerror(errno));
    return APL_OK;
}

void apl_journal_free(apl_journal *j)
{
    if (!j) return;
    if (j->fd >= 0) close(j->fd); /* also drops the flock */
    for (size_t i = 0; i < j->n; i++) free(j->lines[i]);
    free(j->lines);
    free(j->warning);
    free(j->noun);
    free(j->path);
    free(j);
}
