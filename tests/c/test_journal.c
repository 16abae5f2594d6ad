/* test_journal.c — core/journal.c, the crash-safe JSONL file under the label ledger, a run
 * folder's records and DPO's reference cache: appends are on disk when they return (a fresh
 * reader sees them), a torn last line is skipped and named (and cut only by a writer), a corrupt
 * line is an error naming path:line and the noun, or (lenient) skipped and counted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"

static void write_file(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(s, 1, n, f) == n, "write %s", path);
    if (f) fclose(f);
}

static char *read_file(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    return buf;
}

#define W(path, lit) write_file(path, lit, sizeof lit - 1)

static void test_append_read(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    apl_journal *w, *r;
    /* read-only: a missing file is no lines, and is not created */
    CHECK(apl_journal_open(path, 0, "record", &r) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_count(r) == 0 && !apl_journal_warning(r), "missing file: empty");
    CHECK(apl_journal_append(r, (const char *[]){"{}"}, 1) == APL_EINVAL, "read-only append");
    apl_journal_free(r);
    CHECK(access(path, F_OK) != 0, "a reader creates nothing");

    CHECK(apl_journal_open(path, APL_JOURNAL_APPEND, "record", &w) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_append(w, (const char *[]){"{\"step\":1}"}, 1) == APL_OK, "%s", apl_last_error());
    /* on disk when append returns: a second, independent reader sees it while w is open */
    CHECK(apl_journal_open(path, 0, "record", &r) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_count(r) == 1 && !strcmp(apl_journal_line(r, 0), "{\"step\":1}"), "%zu",
          apl_journal_count(r));
    apl_journal_free(r);
    const char *two[] = {"{\"step\":2}", "{\"step\":3}"};
    CHECK(apl_journal_append(w, two, 2) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_append(w, (const char *[]){"{\"a\":\n1}"}, 1) == APL_EINVAL, "newline");
    CHECK(strstr(apl_last_error(), "a record must be one non-empty line"), "%s", apl_last_error());
    CHECK(apl_journal_append(w, (const char *[]){""}, 1) == APL_EINVAL, "empty line");
    CHECK(!strcmp(read_file(path), "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n"), "%s", read_file(path));
    apl_journal_free(w);

    /* no lock: two writers may hold one file; with LOCK the second is refused */
    CHECK(apl_journal_open(path, APL_JOURNAL_APPEND | APL_JOURNAL_LOCK, NULL, &w) == APL_OK, "%s",
          apl_last_error());
    CHECK(apl_journal_open(path, APL_JOURNAL_APPEND | APL_JOURNAL_LOCK, NULL, &r) == APL_EIO && !r,
          "second locker");
    CHECK(strstr(apl_last_error(), "in use by another process"), "%s", apl_last_error());
    CHECK(apl_journal_open(path, 0, NULL, &r) == APL_OK, "a reader ignores the lock: %s",
          apl_last_error());
    CHECK(apl_journal_count(r) == 3, "%zu", apl_journal_count(r));
    apl_journal_free(r);
    apl_journal_free(w);
    CHECK(apl_journal_open(path, APL_JOURNAL_LOCK, NULL, &r) == APL_EINVAL, "lock without append");
    CHECK(apl_journal_open(path, 8, NULL, &r) == APL_EINVAL, "unknown flag");
    CHECK(apl_journal_open("", 0, NULL, &r) == APL_EINVAL, "empty path");
}

static void test_torn(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/eval.jsonl", dir);
    apl_journal *j;
    W(path, "{\"a\":1}\n\n{\"a\":2}\n{\"a\":");
    /* a reader skips and names the torn line, and leaves the file as it is (a writer may be
     * in the middle of that line) */
    CHECK(apl_journal_open(path, 0, "record", &j) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_count(j) == 2 && !strcmp(apl_journal_line(j, 1), "{\"a\":2}"), "%zu",
          apl_journal_count(j));
    CHECK(apl_journal_warning(j) &&
              strstr(apl_journal_warning(j), "eval.jsonl:4: truncated last line skipped (5 bytes)"),
          "%s", apl_journal_warning(j));
    apl_journal_free(j);
    CHECK(!strcmp(read_file(path), "{\"a\":1}\n\n{\"a\":2}\n{\"a\":"), "reader changed the file");
    /* a writer cuts it, so its next line starts fresh */
    CHECK(apl_journal_open(path, APL_JOURNAL_APPEND, "record", &j) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_count(j) == 2 && apl_journal_warning(j), "writer: %zu", apl_journal_count(j));
    CHECK(apl_journal_append(j, (const char *[]){"{\"a\":3}"}, 1) == APL_OK, "%s", apl_last_error());
    apl_journal_free(j);
    CHECK(!strcmp(read_file(path), "{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}\n"), "%s", read_file(path));

    /* a whole object without its newline is kept; a writer adds the newline */
    W(path, "{\"a\":1}");
    CHECK(apl_journal_open(path, 0, NULL, &j) == APL_OK && apl_journal_count(j) == 1 &&
              !apl_journal_warning(j), "kept");
    apl_journal_free(j);
    CHECK(apl_journal_open(path, APL_JOURNAL_APPEND, NULL, &j) == APL_OK, "%s", apl_last_error());
    apl_journal_free(j);
    CHECK(!strcmp(read_file(path), "{\"a\":1}\n"), "%s", read_file(path));
}

static void test_corrupt(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ref_logps.jsonl", dir);
    apl_journal *j;
    static const struct { const char *name, *text; size_t len; int line; } rows[] = {
        {"not json", "{\"a\":1}\nnot json\n{\"a\":2}\n", 0, 2},
        {"an array", "[1,2]\n{\"a\":2}\n", 0, 1},
        {"trailing garbage", "{\"a\":1}\n{\"a\":2} x\n{\"a\":3}\n", 0, 2},
        {"a NUL", "{\"a\":1}\n{\"a\":\"x\0y\"}\n{\"a\":3}\n", 29, 2},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t n = rows[i].len ? rows[i].len : strlen(rows[i].text);
        write_file(path, rows[i].text, n);
        char want[64];
        snprintf(want, sizeof want, "ref_logps.jsonl:%d: corrupt cache line", rows[i].line);
        CHECK(apl_journal_open(path, 0, "cache line", &j) == APL_EFORMAT && !j, "%s", rows[i].name);
        CHECK(strstr(apl_last_error(), want), "%s: %s", rows[i].name, apl_last_error());
        /* lenient: skipped, counted, named; the good lines kept */
        CHECK(apl_journal_open(path, APL_JOURNAL_LENIENT, "cache line", &j) == APL_OK, "%s: %s",
              rows[i].name, apl_last_error());
        if (!j) continue;
        CHECK(apl_journal_count(j) == 2 - (rows[i].line == 1), "%s: %zu", rows[i].name,
              apl_journal_count(j));
        snprintf(want, sizeof want, "ref_logps.jsonl:%d: corrupt cache line skipped", rows[i].line);
        CHECK(apl_journal_warning(j) && strstr(apl_journal_warning(j), want), "%s: %s",
              rows[i].name, apl_journal_warning(j));
        apl_journal_free(j);
    }
    W(path, "x\n{\"a\":1}\ny\n{\"a\":");
    CHECK(apl_journal_open(path, APL_JOURNAL_LENIENT, "cache line", &j) == APL_OK, "%s",
          apl_last_error());
    CHECK(apl_journal_count(j) == 1, "%zu", apl_journal_count(j));
    CHECK(apl_journal_warning(j) &&
              strstr(apl_journal_warning(j), "ref_logps.jsonl:1: 2 corrupt cache lines skipped (the first here)") &&
              strstr(apl_journal_warning(j), "ref_logps.jsonl:4: truncated last line skipped"),
          "%s", apl_journal_warning(j));
    apl_journal_free(j);
}

int main(void)
{
    char dir[] = "/tmp/apl-test-journal.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_append_read(dir);
    test_torn(dir);
    test_corrupt(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)!system(cmd);
    DONE();
}
