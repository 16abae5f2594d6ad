#include "ledger.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "hash.h"

struct apl_ledger {
    char *path;
    int fd;
    char **lines;
    size_t n, cap;
    char *warning;
};

/* ------------------------------------------------------------------------------------------ */
/* Raw IO: whole writes and reads despite short counts and signals */

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

/* A new file's directory entry must be on disk too, or a crash could lose the whole ledger. */
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

static apl_status keep_line(apl_ledger *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->lines, cap * sizeof *p);
        if (!p) return apl_fail(APL_ENOMEM, "%s: %zu lines", l->path, cap);
        l->lines = p;
        l->cap = cap;
    }
    char *line = strndup(s, len);
    if (!line) return apl_fail(APL_ENOMEM, "%s", l->path);
    l->lines[l->n++] = line;
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

/* Repairs the tail a killed writer left: a complete object missing its newline gets one; a cut
 * object is removed, so the next append starts on a fresh line. */
static apl_status fix_tail(apl_ledger *l, const char *line, size_t len, size_t start, size_t lineno)
{
    apl_status st;
    if (is_object(line, len)) {
        if ((st = keep_line(l, line, len)) != APL_OK) return st;
        if ((st = write_all(l->fd, "\n", 1, l->path)) != APL_OK) return st;
    } else {
        if (ftruncate(l->fd, (off_t)start) != 0)
            return apl_fail(APL_EIO, "%s: truncate: %s", l->path, strerror(errno));
        char msg[4096];
        snprintf(msg, sizeof msg, "%s:%zu: truncated last line skipped (%zu bytes)", l->path,
                 lineno, len);
        if (!(l->warning = strdup(msg))) return apl_fail(APL_ENOMEM, "%s", l->path);
    }
    if (fsync(l->fd) != 0) return apl_fail(APL_EIO, "%s: fsync: %s", l->path, strerror(errno));
    return APL_OK;
}

static apl_status load(apl_ledger *l)
{
    char *buf = NULL;
    size_t len = 0, pos = 0, lineno = 0;
    apl_status st = apl_read_fd(l->fd, l->path, APL_READ_ANY, &buf, &len);
    if (st != APL_OK) return st;
    while (pos < len && st == APL_OK) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        lineno++;
        if (!nl)
            st = is_blank(s, n) ? APL_OK : fix_tail(l, s, n, pos, lineno);
        else if (is_blank(s, n))
            st = APL_OK;
        else if (is_object(s, n))
            st = keep_line(l, s, n);
        else
            st = apl_fail(APL_EFORMAT, "%s:%zu: corrupt ledger entry (not one JSON object)", l->path,
                          lineno);
        pos += n + (nl ? 1 : 0);
    }
    free(buf);
    return st;
}

/* ------------------------------------------------------------------------------------------ */

apl_status apl_ledger_open(const char *path, apl_ledger **out)
{
    *out = NULL;
    if (!path || !*path) return apl_fail(APL_EINVAL, "ledger path is empty");
    apl_status st;
    int created = access(path, F_OK) != 0;
    apl_ledger *l = calloc(1, sizeof *l);
    if (!l) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    l->fd = -1;
    if (!(l->path = strdup(path))) {
        st = apl_fail(APL_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    l->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        st = apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    /* Two processes appending to one ledger would each believe they own its budget. */
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        st = apl_fail(APL_EIO, "%s: ledger is in use by another process (%s)", path,
                      strerror(errno));
        goto fail;
    }
    if (created && (st = sync_dir(path)) != APL_OK) goto fail;
    if ((st = load(l)) != APL_OK) goto fail;
    *out = l;
    return APL_OK;
fail:
    apl_ledger_free(l);
    return st;
}

size_t apl_ledger_count(const apl_ledger *l) { return l->n; }

const char *apl_ledger_line(const apl_ledger *l, size_t i) { return i < l->n ? l->lines[i] : NULL; }

const char *apl_ledger_warning(const apl_ledger *l) { return l->warning; }

apl_status apl_ledger_append(apl_ledger *l, const char *json)
{
    size_t len = strlen(json);
    if (len == 0 || memchr(json, '\n', len))
        return apl_fail(APL_EINVAL, "%s: a ledger line must be one non-empty line", l->path);
    /* One write of line + newline: with O_APPEND a crash leaves at worst a cut last line, which
     * load() tolerates. */
    char *buf = malloc(len + 1);
    if (!buf) return apl_fail(APL_ENOMEM, "%s: %zu bytes", l->path, len);
    memcpy(buf, json, len);
    buf[len] = '\n';
    apl_status st = write_all(l->fd, buf, len + 1, l->path);
    free(buf);
    if (st != APL_OK) return st;
    if (fsync(l->fd) != 0) return apl_fail(APL_EIO, "%s: fsync: %s", l->path, strerror(errno));
    return APL_OK;
}

void apl_ledger_free(apl_ledger *l)
{
    if (!l) return;
    if (l->fd >= 0) close(l->fd); /* also drops the flock */
    for (size_t i = 0; i < l->n; i++) free(l->lines[i]);
    free(l->lines);
    free(l->warning);
    free(l->path);
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
