/* oracle_http.h — the LLM judge's transport, protocol-agnostic: many JSON POST requests in
 * flight at once on libcurl's multi interface, with retries (exponential backoff with jitter,
 * Retry-After honoured up to a cap) on 429, 408, 5xx (529 "overloaded" too), timeouts and dropped
 * connections, a cap on requests in flight, and request-per-minute / token-per-minute limits.
 * What the bodies mean (OpenAI chat completions, Anthropic messages, ...) is the business of the
 * judge backends, lua/apl/judges/<name>.lua; this file never reads a body.
 *
 *   static const char *extra[] = {"anthropic-version: 2023-06-01"};
 *   apl_http_opts o = apl_http_defaults();
 *   o.url = "http://127.0.0.1:8000/v1/messages";
 *   o.headers = extra; o.n_headers = 1;                      // any "Name: value" lines
 *   o.api_key = getenv("ANTHROPIC_API_KEY");                 // may be NULL: no key header
 *   o.key_header = "x-api-key: ";                            // or "Authorization: Bearer "
 *   apl_http *h;
 *   if (apl_http_new(&o, &h) != APL_OK) die(apl_last_error());
 *   apl_http_submit(h, 7, "{\"model\": ...}", 600);          // h copies the body
 *   while (apl_http_outstanding(h) > 0) {
 *       const apl_http_result *r; size_t n;
 *       if (apl_http_wait(h, 0.25, &r, &n) != APL_OK) break;   // APL_EINTR on Ctrl-C
 *       for (size_t i = 0; i < n; i++) if (!r[i].error) use(r[i].id, r[i].body);
 *   }
 *   apl_http_free(h);                                        // cancels what is still in flight
 *
 * Ownership: apl_http_new copies every string of the options (the API key lives only inside the
 * header list, in the line key_header starts, and is never written anywhere else). Results returned by
 * apl_http_wait belong to h and stay valid until the next apl_http_wait or apl_http_free.
 * A request ends exactly once, in one result: error == NULL means a 2xx answer (body holds it);
 * otherwise error says why it was given up (HTTP status, timeout, connection reset, tries).
 * Statuses: APL_OK, APL_EINVAL (bad options), APL_ENOMEM, APL_ENET (libcurl could not start),
 * APL_EINTR (Ctrl-C while waiting; outstanding requests stay queued).
 */
#ifndef APL_ORACLE_HTTP_H
#define APL_ORACLE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct apl_http apl_http;

typedef struct {
    const char *url;      /* full POST target, e.g. {base_url}/chat/completions */
    const char *const *headers; /* n_headers "Name: value" lines sent with every request */
    size_t n_headers;
    const char *api_key;  /* sent as key_header followed by the key; NULL or "" sends none */
    const char *key_header; /* "Authorization: Bearer " or "x-api-key: "; needed with a key */
    const char *ca_file;  /* PEM bundle to verify servers against; NULL: the system store */
    double timeout_s;     /* whole transfer, per try */
    int max_in_flight;
    double rpm, tpm;      /* requests / tokens per minute; 0: unlimited */
    int max_tries;        /* tries per request for transient failures, >= 1 */
    double backoff_s;     /* delay before the 2nd try; doubles each try, with jitter */
    double backoff_max_s; /* cap on that delay, and on a server's Retry-After */
    uint64_t seed;        /* jitter */
} apl_http_opts;

typedef struct {
    long id;           /* as given to apl_http_submit */
    long status;       /* last HTTP status, 0 when none came back */
    const char *body;  /* last response body ("" when none) */
    const char *error; /* NULL on success, else why the request was given up */
    int tries;
} apl_http_result;

typedef struct {
    long requests;  /* tries started (each is a request the server may bill) */
    long retries;   /* tries after the first */
    long in_flight;
    long queued;    /* submitted, not started: waiting for a slot, a rate limit or a backoff */
} apl_http_stats;

apl_http_opts apl_http_defaults(void);
apl_status apl_http_new(const apl_http_opts *o, apl_http **out);
/* Queues a POST of body (copied). est_tokens counts against the tokens-per-minute limit. */
apl_status apl_http_submit(apl_http *h, long id, const char *body, long est_tokens);
/* Runs transfers until at least one request has ended or max_wait_s passed; *n may be 0. */
apl_status apl_http_wait(apl_http *h, double max_wait_s, const apl_http_result **res, size_t *n);
/* Submitted requests that have not ended yet. */
long apl_http_outstanding(const apl_http *h);
apl_http_stats apl_http_get_stats(const apl_http *h);
void apl_http_free(apl_http *h);

/* Monotonic seconds, for rate limits, backoff and ETAs. */
double apl_http_now(void);

/* Seconds a response header line ("Retry-After: 5", "retry-after-ms: 250", "Retry-After: <HTTP
 * date>", with or without CRLF) asks to wait; -1 when the line is not one of those or holds no
 * number or date. n is the line's length; it need not be NUL-terminated. */
double apl_http_retry_after(const char *line, size_t n);

#endif
