/* test_oracle.c — the oracle's C core without a server: ledger files, keys, the chat protocol,
 * option checks, and retries against a port nobody listens on. tests/lua/test_oracle.lua covers
 * the rest against a real HTTP server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ledger.h"
#include "oracle_http.h"

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

static void test_ledger(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/labels.jsonl", dir);
    apl_ledger *l;
    CHECK(apl_ledger_open(path, &l) == APL_OK, "%s", apl_last_error());
    CHECK(apl_ledger_append(l, "{\"key\":\"a\"}") == APL_OK, "%s", apl_last_error());
    CHECK(apl_ledger_append(l, "x\ny") == APL_EINVAL, "a line with a newline is refused");
    apl_ledger_free(l);

    write_file(path, "{\"key\":\"a\"}\n\n{\"key\":\"b\"}\n{\"key\":");
    CHECK(apl_ledger_open(path, &l) == APL_OK, "%s", apl_last_error());
    CHECK(apl_ledger_count(l) == 2, "%zu lines", apl_ledger_count(l));
    CHECK(strcmp(apl_ledger_line(l, 1), "{\"key\":\"b\"}") == 0, "%s", apl_ledger_line(l, 1));
    CHECK(apl_ledger_line(l, 2) == NULL, "past the end");
    CHECK(apl_ledger_warning(l) && strstr(apl_ledger_warning(l), "labels.jsonl:4: truncated"),
          "%s", apl_ledger_warning(l));
    apl_ledger_free(l);

    write_file(path, "{\"key\":\"a\"}\n{\"key\"\n{\"key\":\"b\"}\n");
    CHECK(apl_ledger_open(path, &l) == APL_EFORMAT && !l, "corrupt middle line");
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

static void test_chat(void)
{
    char *body;
    CHECK(apl_chat_request("m", "sys", "say \"hi\"\n", 0.05, 64, &body) == APL_OK, "%s", apl_last_error());
    CHECK(strcmp(body, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
                       "{\"role\":\"user\",\"content\":\"say \\\"hi\\\"\\n\"}],"
                       "\"temperature\":0.05,\"max_tokens\":64}") == 0, "%s", body);
    free(body);

    static const struct { const char *name, *body, *content; long pt, ct; apl_status st; } rows[] = {
        {"ok", "{\"choices\":[{\"message\":{\"content\":\"Preferred: A\"}}],"
               "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}", "Preferred: A", 12, 3, APL_OK},
        {"no usage", "{\"choices\":[{\"message\":{\"content\":\"\"}}]}", "", 0, 0, APL_OK},
        {"not json", "{\"choices\":[", NULL, 0, 0, APL_EFORMAT},
        {"no choices", "{\"error\":{\"message\":\"x\"}}", NULL, 0, 0, APL_EFORMAT},
        {"null content", "{\"choices\":[{\"message\":{\"content\":null}}]}", NULL, 0, 0, APL_EFORMAT},
        {"empty", "", NULL, 0, 0, APL_EFORMAT},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char *content;
        long pt, ct;
        apl_status st = apl_chat_parse(rows[i].body, &content, &pt, &ct);
        CHECK(st == rows[i].st, "%s: status %d", rows[i].name, st);
        if (rows[i].content) {
            CHECK(content && strcmp(content, rows[i].content) == 0, "%s: %s", rows[i].name, content);
            CHECK(pt == rows[i].pt && ct == rows[i].ct, "%s: usage %ld %ld", rows[i].name, pt, ct);
        } else {
            CHECK(content == NULL, "%s", rows[i].name);
        }
        free(content);
    }
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
    test_chat();
    test_http();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    DONE();
}
