/* test_oracle.c — the oracle's C core without a server: ledger files (journals opened as ledger.h
 * says), keys, Retry-After header lines, header and option checks, and retries against a port
 * nobody listens on. tests/lua/test_oracle.lua covers the rest against a real HTTP server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"
#include "ledger.h"
#include "oracle_http.h"

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

/* The ledger as ledger.h opens it: a journal with APPEND | LOCK and the noun "ledger entry". */
static apl_status ledger_open(const char *path, apl_journal **l)
{
    return apl_journal_open(path, APL_JOURNAL_APPEND | APL_JOURNAL_LOCK, "ledger entry", l);
}

static apl_status ledger_append(apl_journal *l, const char *line) { return apl_journal_append(l, &line, 1); }

static void test_ledger(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/labels.jsonl", dir);
    apl_journal *l;
    CHECK(ledger_open(path, &l) == APL_OK, "%s", apl_last_error());
    CHECK(ledger_append(l, "{\"key\":\"a\"}") == APL_OK, "%s", apl_last_error());
    CHECK(ledger_append(l, "x\ny") == APL_EINVAL, "a line with a newline is refused");
    apl_journal_free(l);

    write_file(path, "{\"key\":\"a\"}\n\n{\"key\":\"b\"}\n{\"key\":");
    CHECK(ledger_open(path, &l) == APL_OK, "%s", apl_last_error());
    CHECK(apl_journal_count(l) == 2, "%zu lines", apl_journal_count(l));
    CHECK(strcmp(apl_journal_line(l, 1), "{\"key\":\"b\"}") == 0, "%s", apl_journal_line(l, 1));
    CHECK(apl_journal_line(l, 2) == NULL, "past the end");
    CHECK(apl_journal_warning(l) && strstr(apl_journal_warning(l), "labels.jsonl:4: truncated"),
          "%s", apl_journal_warning(l));
    apl_journal_free(l);

    write_file(path, "{\"key\":\"a\"}\n{\"key\"\n{\"key\":\"b\"}\n");
    CHECK(ledger_open(path, &l) == APL_EFORMAT && !l, "corrupt middle line");
    CHECK(strstr(apl_last_error(), "labels.jsonl:2: corrupt ledger entry"), "%s", apl_last_error());

    /* a raw NUL inside a string (found by fuzz_ledger): the entry would be handed out cut there */
    static const char nul[] = "{\"key\":\"a\"}\n{\"key\":\"a\0b\"}\n";
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(nul, 1, sizeof nul - 1, f) == sizeof nul - 1, "write %s", path);
    if (f) fclose(f);
    CHECK(ledger_open(path, &l) == APL_EFORMAT && !l, "a NUL inside an entry");
    CHECK(strstr(apl_last_error(), "labels.jsonl:2: corrupt"), "%s", apl_last_error());
}

static void test_key(void)
{
    char k1[APL_LEDGER_KEY_LEN + 1], k2[APL_LEDGER_KEY_LEN + 1];
    const char *p1[] = {"a", "b"}, *p2[] = {"ab", ""};
    apl_ledger_key(p1, NULL, 2, k1);
    apl_ledger_key(p2, NULL, 2, k2);
    CHECK(strcmp(k1, "41c80da72d0aec94") == 0, "%s", k1);
    CHECK(strcmp(k1, k2) != 0, "part boundaries count");
}

static void test_retry_after(void)
{
    static const struct { const char *line; double want; } rows[] = {
        {"Retry-After: 5\r\n", 5}, {"retry-after:0.5", 0.5}, {"retry-after-ms: 250\r\n", 0.25},
        {"RETRY-AFTER-MS:\t1500", 1.5}, {"Retry-After: -3\r\n", -1}, {"Retry-After: nan\r\n", -1},
        {"Retry-After: soon\r\n", -1}, {"Retry-After-Ms: x", -1}, {"Content-Type: application/json\r\n", -1},
        {"HTTP/1.1 429 Too Many Requests\r\n", -1}, {"", -1}, {":", -1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double got = apl_http_retry_after(rows[i].line, strlen(rows[i].line));
        CHECK(got == rows[i].want, "%s: %g, want %g", rows[i].line, got, rows[i].want);
    }
    double inf = apl_http_retry_after("Retry-After: inf", 16);
    CHECK(inf > 1e300, "inf is kept for the cap to cut: %g", inf);
    const char *date = "Retry-After: Fri, 31 Dec 2100 23:59:59 GMT\r\n";
    CHECK(apl_http_retry_after(date, strlen(date)) > 2e9, "a date decades ahead");
    /* Only n bytes are read: a line need not end in NUL. */
    CHECK(apl_http_retry_after("Retry-After: 7999", 14) == 7, "n bounds the read");
    char big[300];
    memset(big, '9', sizeof big);
    memcpy(big, "Retry-After: ", 13);
    CHECK(apl_http_retry_after(big, sizeof big) == -1, "an overlong line is not one");
}

/* Header lines are checked before anything is sent: a line break would let a value add headers
 * of its own, and the message must not echo the key. */
static void test_headers(void)
{
    apl_http_opts o = apl_http_defaults();
    apl_http *h;
    o.url = "http://127.0.0.1:1/v1/messages";
    const char *ok[] = {"anthropic-version: 2023-06-01"}, *broken[] = {"a: b", "x-evil: 1\r\nHost: other"},
               *nameless[] = {": value"}, *nocolon[] = {"just text"};
    o.headers = ok;
    o.n_headers = 1;
    CHECK(apl_http_new(&o, &h) == APL_OK, "%s", apl_last_error());
    apl_http_free(h);
    o.headers = broken;
    o.n_headers = 2;
    CHECK(apl_http_new(&o, &h) == APL_EINVAL && strstr(apl_last_error(), "header 2 contains a line break"),
          "%s", apl_last_error());
    o.headers = nameless;
    o.n_headers = 1;
    CHECK(apl_http_new(&o, &h) == APL_EINVAL && strstr(apl_last_error(), "header 1 must be a \"Name: value\""),
          "%s", apl_last_error());
    o.headers = nocolon;
    CHECK(apl_http_new(&o, &h) == APL_EINVAL, "no colon");
    o.headers = ok;
    o.api_key = "sk-secret-value";
    CHECK(apl_http_new(&o, &h) == APL_EINVAL && strstr(apl_last_error(), "needs key_header"),
          "a key without its header line: %s", apl_last_error());
    o.key_header = "x-api-key\n: ";
    CHECK(apl_http_new(&o, &h) == APL_EINVAL && !strstr(apl_last_error(), "sk-secret"), "%s", apl_last_error());
    o.key_header = "x-api-key: ";
    CHECK(apl_http_new(&o, &h) == APL_OK, "%s", apl_last_error());
    apl_http_free(h);
}

static void test_http(void)
{
    apl_http_opts o = apl_http_defaults();
    apl_http *h;
    CHECK(apl_http_new(&o, &h) == APL_EINVAL, "no url");
    o.url = "http://127.0.0.1:1/v1/chat/completions"; /* port 1: refused at once */
    o.max_in_flight = 0;
    CHECK(apl_http_new(&o, &h) == APL_EINVAL, "max_in_flight 0");
    o.max_in_flight = 4;
    o.api_key = "sk-x\r\nX-Injected: 1";
    o.key_header = "Authorization: Bearer ";
    CHECK(apl_http_new(&o, &h) == APL_EINVAL && !strstr(apl_last_error(), "sk-x"),
          "header injection refused without echoing the key: %s", apl_last_error());
    o.api_key = "sk-test";
    o.max_tries = 2;
    o.backoff_s = 0.05;
    o.timeout_s = 2;
    CHECK(apl_http_new(&o, &h) == APL_OK, "%s", apl_last_error());
    for (long id = 1; id <= 3; id++) CHECK(apl_http_submit(h, id, "{}", 10) == APL_OK, "submit");
    double t0 = apl_http_now();
    long ended = 0;
    while (apl_http_outstanding(h) > 0 && apl_http_now() - t0 < 10) {
        const apl_http_result *r;
        size_t n;
        CHECK(apl_http_wait(h, 0.5, &r, &n) == APL_OK, "%s", apl_last_error());
        for (size_t i = 0; i < n; i++, ended++)
            CHECK(r[i].error && strstr(r[i].error, "(2 tries)") && r[i].tries == 2, "%s", r[i].error);
    }
    apl_http_stats s = apl_http_get_stats(h);
    CHECK(ended == 3 && s.requests == 6 && s.retries == 3, "ended %ld, %ld requests, %ld retries",
          ended, s.requests, s.retries);
    CHECK(apl_http_now() - t0 >= 0.025, "waited for the backoff");
    apl_http_free(h);
}

int main(void)
{
    char dir[] = "/tmp/apl-test-oracle.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_ledger(dir);
    test_key();
    test_retry_after();
    test_headers();
    test_http();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    DONE();
}
