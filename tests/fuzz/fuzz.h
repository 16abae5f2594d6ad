/* fuzz.h — what the libFuzzer harnesses share: the input as a file the code under test opens by
 * path (it reads files, not buffers), and a check that aborts, which libFuzzer reports as a crash
 * with the input that caused it.
 *
 * Each harness links only the C modules it tests (see the Makefile's fuzz target), never libtorch,
 * so that they build in seconds and run tens of thousands of inputs a second.
 */
#ifndef APL_FUZZ_H
#define APL_FUZZ_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An invariant the code promises; a violation is a finding. */
#define FUZZ_ASSERT(c)                                                              \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                \
        }                                                                           \
    } while (0)

static char fuzz_dir_path[64];

/* Removes the folder and what the harness wrote into it, at exit. */
static void fuzz_cleanup(void)
{
    DIR *d = opendir(fuzz_dir_path);
    struct dirent *e;
    char p[384];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(fuzz_dir_path);
}

/* A private folder for this process, made once: dir/<name> is where inputs are written. In
 * memory (/dev/shm) where there is one: the ledger fsyncs, which on a disk costs milliseconds. */
static inline const char *fuzz_dir(void)
{
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        snprintf(dir, sizeof fuzz_dir_path, "/dev/shm/apl-fuzz-XXXXXX");
        if (!mkdtemp(dir)) {
            snprintf(dir, sizeof fuzz_dir_path, "/tmp/apl-fuzz-XXXXXX");
            if (!mkdtemp(dir)) abort();
        }
        atexit(fuzz_cleanup);
    }
    return dir;
}

/* Writes data to fuzz_dir()/name (replacing it) and returns the path. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

/* The input as a NUL-terminated string (the parsers take C strings); the caller frees it. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
