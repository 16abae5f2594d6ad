#include "oracle_http.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"

#define MAX_BODY (16L << 20) /* a judge's answer is small; anything this big is not one */

typedef struct req {
    long id;
    char *body;
    size_t body_len;
    long est_tokens;
    int tries;
    double not_before;   /* backoff: not started again before this time */
    double retry_after;  /* seconds asked by the last response's headers, < 0 when none */
    double capped_after; /* the largest Retry-After cut to backoff_max, 0 when none was */
    long status;
    char *resp;
    size_t resp_len, resp_cap;
    int failed;          /* ended with error[] as its reason */
    char error[768];
    CURL *easy;
    size_t slot;         /* index in h->active while in flight */
    struct req *next;    /* queue or done list */
    char errbuf[CURL_ERROR_SIZE];
} req;

struct apl_http {
    apl_http_opts o;
    char *url, *ca_file;
    CURLM *multi;
    struct curl_slist *headers;
    req *queue_head, *queue_tail; /* waiting to start, in submission order */
    req **active;                 /* max_in_flight slots */
    long in_flight, queued, outstanding, requests, retries;
    double req_tokens, tok_tokens, last_refill; /* rate-limit buckets */
    uint64_t rng;
    req *done;                    /* ended requests whose strings the results point into */
    apl_http_result *results;
    size_t n_results, cap_results;
};

double apl_http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

apl_http_opts apl_http_defaults(void)
{
    return (apl_http_opts){.timeout_s = 60, .max_in_flight = 16, .max_tries = 6,
                           .backoff_s = 1, .backoff_max_s = 60, .seed = 0};
}

static void req_free(req *r)
{
    if (!r) return;
    free(r->body);
    free(r->resp);
    free(r);
}

/* splitmix64: jitter only needs to decorrelate clients, not to be strong. */
static double uniform(apl_http *h)
{
    return (double)(apl_splitmix64_next(&h->rng) >> 11) / 9007199254740992.0;
}

/* ------------------------------------------------------------------------------------------ */
/* libcurl callbacks */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    req *r = ud;
    size_t n = size * nmemb;
    if (r->resp_len + n + 1 > (size_t)MAX_BODY) return 0; /* aborts with CURLE_WRITE_ERROR */
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 4096;
        while (cap < r->resp_len + n + 1) cap *= 2;
        char *p = realloc(r->resp, cap);
        if (!p) return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    r->resp[r->resp_len] = 0;
    return n;
}

/* Retry-After is seconds or an HTTP date; OpenAI also sends retry-after-ms. */
double apl_http_retry_after(const char *data, size_t n)
{
    char line[256];
    if (n >= sizeof line) return -1; /* no Retry-After is that long */
    memcpy(line, data, n);
    line[n] = 0;
    char *colon = strchr(line, ':');
    if (!colon) return -1;
    *colon = 0;
    char *v = colon + 1, *end;
    while (*v == ' ' || *v == '\t') v++;
    v[strcspn(v, "\r\n")] = 0;
    double secs = -1;
    if (strcasecmp(line, "retry-after-ms") == 0) {
        secs = strtod(v, &end) / 1000;
        if (end == v) secs = -1;
    } else if (strcasecmp(line, "retry-after") == 0) {
        secs = strtod(v, &end);
        if (end == v) {
            time_t t = curl_getdate(v, NULL);
            secs = t > 0 ? difftime(t, time(NULL)) : -1;
        }
    }
    return secs >= 0 ? secs : -1; /* NaN and negative numbers ask for nothing */
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    req *r = ud;
    size_t n = size * nmemb;
    double secs = apl_http_retry_after(data, n);
    if (secs >= 0) r->retry_after = secs;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Ending and retrying requests */

static apl_status add_result(apl_http *h, req *r)
{
    if (h->n_results == h->cap_results) {
        size_t cap = h->cap_results ? 2 * h->cap_results : 32;
        apl_http_result *p = realloc(h->results, cap * sizeof *p);
        if (!p) return apl_fail(APL_ENOMEM, "oracle http: out of memory");
        h->results = p;
        h->cap_results = cap;
    }
    h->results[h->n_results++] = (apl_http_result){
        .id = r->id, .status = r->status, .body = r->resp ? r->resp : "", .error = r->failed ? r->error : NULL,
        .tries = r->tries};
    r->next = h->done;
    h->done = r;
    h->outstanding--;
    return APL_OK;
}

static apl_status end_failed(apl_http *h, req *r, const char *why)
{
    int n = snprintf(r->error, sizeof r->error, "%s (%d %s", why, r->tries, r->tries == 1 ? "try" : "tries");
    if (r->capped_after > 0 && n > 0 && (size_t)n < sizeof r->error)
        n += snprintf(r->error + n, sizeof r->error - (size_t)n,
                      "; the server's Retry-After of %g s was capped at backoff_max %g s", r->capped_after,
                      h->o.backoff_max_s);
    if (n > 0 && (size_t)n < sizeof r->error) snprintf(r->error + n, sizeof r->error - (size_t)n, ")");
    r->failed = 1;
    return add_result(h, r);
}

static void enqueue(apl_http *h, req *r)
{
    r->next = NULL;
    if (h->queue_tail) h->queue_tail->next = r;
    else h->queue_head = r;
    h->queue_tail = r;
    h->queued++;
}

/* Exponential backoff with jitter in [d/2, d]; a server's Retry-After is a floor, itself capped
 * at backoff_max: a header asking for hours (or "inf", or a date years ahead) must not stall a
 * run forever. A cut is reported in the request's error if it finally fails. */
static void retry_later(apl_http *h, req *r, double now)
{
    double d = h->o.backoff_s * pow(2, r->tries - 1);
    if (d > h->o.backoff_max_s) d = h->o.backoff_max_s;
    d *= 0.5 + 0.5 * uniform(h);
    if (r->retry_after > h->o.backoff_max_s) {
        if (r->retry_after > r->capped_after) r->capped_after = r->retry_after;
        r->retry_after = h->o.backoff_max_s;
    }
    if (r->retry_after > d) d = r->retry_after;
    r->not_before = now + d;
    h->retries++;
    enqueue(h, r);
}

static int transient_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static apl_status finish(apl_http *h, req *r, CURLcode cc, double now)
{
    char why[512];
    int transient;
    if (cc != CURLE_OK) {
        transient = transient_curl(cc);
        if (cc == CURLE_OPERATION_TIMEDOUT)
            snprintf(why, sizeof why, "timed out after %gs", h->o.timeout_s);
        else
            snprintf(why, sizeof why, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    } else if (r->status >= 200 && r->status < 300) {
        return add_result(h, r);
    } else {
        transient = r->status == 429 || r->status == 408 || r->status >= 500;
        const char *b = r->resp ? r->resp : "";
        snprintf(why, sizeof why, "HTTP %ld: %.200s", r->status, b);
        for (char *p = why; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    if (transient && r->tries < h->o.max_tries) {
        retry_later(h, r, now);
        return APL_OK;
    }
    return end_failed(h, r, why);
}

/* ------------------------------------------------------------------------------------------ */
/* Starting requests under the in-flight cap and the rate limits */

static void refill(apl_http *h, double now)
{
    double dt = now - h->last_refill;
    h->last_refill = now;
    /* Buckets hold one second's worth, so limits are met smoothly, not in bursts per minute. */
    if (h->o.rpm > 0) h->req_tokens = fmin(fmax(1, h->o.rpm / 60), h->req_tokens + dt * h->o.rpm / 60);
    if (h->o.tpm > 0) h->tok_tokens = fmin(fmax(1, h->o.tpm / 60), h->tok_tokens + dt * h->o.tpm / 60);
}

/* Seconds until the limits allow a request of est tokens; 0 when they allow it now. A request
 * bigger than the token bucket goes when the bucket is full, and leaves it in debt. */
static double rate_wait(const apl_http *h, long est)
{
    double w = 0;
    if (h->o.rpm > 0 && h->req_tokens < 1) w = (1 - h->req_tokens) / (h->o.rpm / 60);
    if (h->o.tpm > 0) {
        double need = fmin((double)est, fmax(1, h->o.tpm / 60));
        if (h->tok_tokens < need) w = fmax(w, (need - h->tok_tokens) / (h->o.tpm / 60));
    }
    return w;
}

static apl_status start(apl_http *h, req *r)
{
    r->tries++;
    r->status = 0;
    r->resp_len = 0;
    if (r->resp) r->resp[0] = 0;
    r->retry_after = -1;
    r->errbuf[0] = 0;
    CURL *e = curl_easy_init();
    if (!e) return end_failed(h, r, "curl_easy_init failed");
    curl_easy_setopt(e, CURLOPT_URL, h->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(h->o.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(fmin(h->o.timeout_s, 30) * 1000));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "apl-oracle/0.1");
    /* Verification stays on; ca_file only changes which authorities are trusted. */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return end_failed(h, r, "curl_multi_add_handle failed");
    }
    r->easy = e;
    r->slot = (size_t)h->in_flight;
    h->active[h->in_flight++] = r;
    h->requests++;
    return APL_OK;
}

/* Starts what may start now; returns seconds until something else could (HUGE_VAL: nothing). */
static apl_status start_ready(apl_http *h, double now, double *next)
{
    *next = HUGE_VAL;
    refill(h, now);
    req *prev = NULL, *r = h->queue_head;
    while (r && h->in_flight < h->o.max_in_flight) {
        req *nx = r->next;
        if (r->not_before > now) {
            *next = fmin(*next, r->not_before - now);
            prev = r;
            r = nx;
            continue;
        }
        double w = rate_wait(h, r->est_tokens);
        if (w > 0) { /* later requests must not overtake the limit either */
            *next = fmin(*next, w);
            break;
        }
        if (prev) prev->next = nx;
        else h->queue_head = nx;
        if (h->queue_tail == r) h->queue_tail = prev;
        h->queued--;
        if (h->o.rpm > 0) h->req_tokens -= 1;
        if (h->o.tpm > 0) h->tok_tokens -= (double)r->est_tokens;
        apl_status st = start(h, r);
        if (st != APL_OK) return st;
        r = nx;
    }
    return APL_OK;
}

static void unslot(apl_http *h, req *r)
{
    req *last = h->active[--h->in_flight];
    h->active[r->slot] = last;
    last->slot = r->slot;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
}

static apl_status collect(apl_http *h)
{
    CURLMsg *m;
    int left;
    double now = apl_http_now();
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        req *r;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
        unslot(h, r);
        apl_status st = finish(h, r, cc, now);
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */

/* A line break in a header would let a value start headers of its own (or a second request). */
static apl_status check_header(const char *what, const char *line)
{
    const char *colon = line ? strchr(line, ':') : NULL;
    if (!colon || colon == line) return apl_fail(APL_EINVAL, "%s must be a \"Name: value\" line", what);
    if (strpbrk(line, "\r\n")) return apl_fail(APL_EINVAL, "%s contains a line break", what);
    return APL_OK;
}

static apl_status check_headers(const apl_http_opts *o)
{
    if (o->n_headers > 0 && !o->headers) return apl_fail(APL_EINVAL, "headers is NULL");
    for (size_t i = 0; i < o->n_headers; i++) {
        char what[32];
        snprintf(what, sizeof what, "header %zu", i + 1);
        apl_status st = check_header(what, o->headers[i]);
        if (st != APL_OK) return st;
    }
    if (!o->api_key || !*o->api_key) return APL_OK;
    if (!o->key_header) return apl_fail(APL_EINVAL, "an API key needs key_header (the line it follows)");
    apl_status st = check_header("key_header", o->key_header);
    if (st != APL_OK) return st;
    /* Not the key itself in the message: it would be printed. */
    if (strpbrk(o->api_key, "\r\n")) return apl_fail(APL_EINVAL, "the API key contains a line break");
    return APL_OK;
}

apl_status apl_http_new(const apl_http_opts *o, apl_http **out)
{
    static int curl_ready;
    *out = NULL;
    if (!o->url || !*o->url) return apl_fail(APL_EINVAL, "url is empty");
    if (o->max_in_flight < 1) return apl_fail(APL_EINVAL, "max_in_flight must be >= 1");
    if (o->max_tries < 1) return apl_fail(APL_EINVAL, "max_tries must be >= 1");
    if (!(o->timeout_s > 0)) return apl_fail(APL_EINVAL, "timeout must be > 0");
    if (o->rpm < 0 || o->tpm < 0) return apl_fail(APL_EINVAL, "rpm and tpm must be >= 0");
    if (o->backoff_s < 0 || o->backoff_max_s < 0) return apl_fail(APL_EINVAL, "backoff must be >= 0");
    if (o->ca_file && access(o->ca_file, R_OK) != 0)
        return apl_fail(APL_EINVAL, "ca_file %s is not readable", o->ca_file);
    apl_status st = check_headers(o);
    if (st != APL_OK) return st;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return apl_fail(APL_ENET, "curl_global_init failed");
        curl_ready = 1;
    }
    apl_http *h = calloc(1, sizeof *h);
    if (!h) return apl_fail(APL_ENOMEM, "oracle http: out of memory");
    h->o = *o;
    /* The caller's strings are copied below (the key only into the header list): drop pointers. */
    h->o.url = h->o.ca_file = h->o.api_key = h->o.key_header = NULL;
    h->o.headers = NULL;
    h->o.n_headers = 0;
    h->rng = o->seed;
    h->last_refill = apl_http_now();
    h->req_tokens = fmax(1, o->rpm / 60);
    h->tok_tokens = fmax(1, o->tpm / 60);
    if (!(h->url = strdup(o->url)) || (o->ca_file && !(h->ca_file = strdup(o->ca_file))) ||
        !(h->active = calloc((size_t)o->max_in_flight, sizeof *h->active)))
        goto nomem;
    if (!(h->multi = curl_multi_init())) {
        apl_http_free(h);
        return apl_fail(APL_ENET, "curl_multi_init failed");
    }
    struct curl_slist *s = curl_slist_append(NULL, "Content-Type: application/json");
    if (!s) goto nomem;
    h->headers = s;
    /* Without this curl waits a second for "100 Continue" before sending big bodies. */
    if (!(s = curl_slist_append(h->headers, "Expect:"))) goto nomem;
    for (size_t i = 0; i < o->n_headers; i++)
        if (!(s = curl_slist_append(h->headers, o->headers[i]))) goto nomem;
    if (o->api_key && *o->api_key) {
        size_t n = strlen(o->key_header) + strlen(o->api_key) + 1;
        char *line = malloc(n);
        if (!line) goto nomem;
        snprintf(line, n, "%s%s", o->key_header, o->api_key);
        s = curl_slist_append(h->headers, line);
        explicit_bzero(line, n); /* the only copy left is the header list */
        free(line);
        if (!s) goto nomem;
    }
    *out = h;
    return APL_OK;
nomem:
    apl_http_free(h);
    return apl_fail(APL_ENOMEM, "oracle http: out of memory");
}

apl_status apl_http_submit(apl_http *h, long id, const char *body, long est_tokens)
{
    req *r = calloc(1, sizeof *r);
    if (!r || !(r->body = strdup(body))) {
        req_free(r);
        return apl_fail(APL_ENOMEM, "oracle http: out of memory");
    }
    r->id = id;
    r->body_len = strlen(body);
    r->est_tokens = est_tokens > 0 ? est_tokens : 1;
    enqueue(h, r);
    h->outstanding++;
    return APL_OK;
}

static void release_done(apl_http *h)
{
    while (h->done) {
        req *r = h->done;
        h->done = r->next;
        req_free(r);
    }
    h->n_results = 0;
}

apl_status apl_http_wait(apl_http *h, double max_wait_s, const apl_http_result **res, size_t *n)
{
    *res = NULL;
    *n = 0;
    release_done(h);
    double deadline = apl_http_now() + max_wait_s, next;
    apl_status st;
    for (;;) {
        if ((st = apl_check_interrupt()) != APL_OK) return st;
        if ((st = start_ready(h, apl_http_now(), &next)) != APL_OK) return st;
        int running;
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) return apl_fail(APL_ENET, "curl: %s", curl_multi_strerror(mc));
        if ((st = collect(h)) != APL_OK) return st;
        if (h->n_results > 0 || h->outstanding == 0) break;
        double now = apl_http_now();
        if (now >= deadline) break;
        /* Wake for the deadline, the next backoff or rate-limit slot, and Ctrl-C (0.1 s). */
        double w = fmin(fmin(deadline - now, next), 0.1);
        curl_multi_poll(h->multi, NULL, 0, (int)(w * 1000) + 1, NULL);
    }
    /* Refill freed slots now, so requests travel while the caller handles these results. */
    if ((st = start_ready(h, apl_http_now(), &next)) != APL_OK) return st;
    *res = h->results;
    *n = h->n_results;
    return APL_OK;
}

long apl_http_outstanding(const apl_http *h) { return h->outstanding; }

apl_http_stats apl_http_get_stats(const apl_http *h)
{
    return (apl_http_stats){.requests = h->requests, .retries = h->retries,
                            .in_flight = h->in_flight, .queued = h->queued};
}

void apl_http_free(apl_http *h)
{
    if (!h) return;
    release_done(h);
    while (h->in_flight > 0) {
        req *r = h->active[0];
        unslot(h, r);
        req_free(r);
    }
    while (h->queue_head) {
        req *r = h->queue_head;
        h->queue_head = r->next;
        req_free(r);
    }
    if (h->multi) curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers); /* the slist frees the key's only copy */
    free(h->results);
    free(h->active);
    free(h->ca_file);
    free(h->url);
    free(h);
}
