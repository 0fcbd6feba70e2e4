/* s3.c: the S3 client. See s3.h for the contract and why we sign ourselves.
 *
 * Every call goes through do_request(): it gets credentials, builds the URL
 * from the canonical query it signs, sends, classifies the answer, and
 * retries what is worth retrying (connection errors, timeouts, 5xx, 503
 * SlowDown, 429, 400 RequestTimeout, an expired token) at most max_retries
 * times with exponential backoff and full jitter. One libcurl easy handle is
 * kept (reset between requests) so the connection is reused. */
#include "common/s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

#define KEY_MAX 1024                   /* S3's limit on a key, in bytes */
#define ENC_KEY_MAX (KEY_MAX * 3 + 64) /* percent-encoded */
#define QUERY_MAX 8192
#define URL_MAX (ENC_KEY_MAX + QUERY_MAX + 1024)
#define XML_RESP_MAX (8u << 20) /* a ListObjectsV2 page of 1000 keys is ~300 KB */
#define MAX_PARTS 10000         /* S3's limit */
#define MIN_PART (5u << 20)
#define ETAG_MAX 128
#define LIST_PAGE "1000"

struct sn_s3 {
    CURL *curl;
    char *bucket;
    char *region;
    char *scheme;    /* "http" or "https" */
    char *authority; /* host[:port] of the endpoint */
    int path_style;
    long connect_timeout_ms, timeout_ms;
    int max_retries;
    int64_t backoff_ms, backoff_max_ms;
    size_t threshold, part_size;
    sn_s3_creds_t *creds;
    uint64_t rng;
    sn_s3_stats_t stats;
};

/* ---- small helpers -------------------------------------------------------- */

struct rbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static int rbuf_init(struct rbuf *b, size_t cap) {
    b->len = 0;
    b->overflow = 0;
    b->cap = cap;
    if (!(b->p = malloc(cap + 1))) return SN_ERR_NOMEM;
    b->p[0] = '\0';
    return 0;
}

static uint64_t next_rand(sn_s3_t *s3) {
    uint64_t x = s3->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s3->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double mono_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the
 * delay is uniform in [0, min(max, base * 2^attempt)], so clients that failed
 * together do not retry together. */
static int64_t backoff_delay(sn_s3_t *s3, int attempt) {
    int64_t cap = s3->backoff_ms;

    for (int i = 0; i < attempt && cap < s3->backoff_max_ms; i++) cap *= 2;
    if (cap > s3->backoff_max_ms) cap = s3->backoff_max_ms;
    return cap > 0 ? (int64_t)(next_rand(s3) % (uint64_t)(cap + 1)) : 0;
}

/* Text of <tag>...</tag> within [s, end), entities decoded, into out. */
static int xml_find(const char *s, const char *end, const char *tag, char *out, size_t out_size,
                    const char **after) {
    char open[64], close[64];
    const char *a, *b;
    size_t o = 0, ol, cl;

    ol = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
    cl = (size_t)snprintf(close, sizeof(close), "</%s>", tag);
    for (a = s; a + ol <= end; a++)
        if (memcmp(a, open, ol) == 0) break;
    if (a + ol > end) return SN_ERR_NOENT;
    a += ol;
    for (b = a; b + cl <= end; b++)
        if (memcmp(b, close, cl) == 0) break;
    if (b + cl > end) return SN_ERR_NOENT;
    if (after) *after = b + cl;
    while (a < b) {
        char ch = *a;
        size_t adv = 1;

        if (*a == '&') {
            if (b - a >= 5 && memcmp(a, "&amp;", 5) == 0)
                ch = '&', adv = 5;
            else if (b - a >= 4 && memcmp(a, "&lt;", 4) == 0)
                ch = '<', adv = 4;
            else if (b - a >= 4 && memcmp(a, "&gt;", 4) == 0)
                ch = '>', adv = 4;
            else if (b - a >= 6 && memcmp(a, "&quot;", 6) == 0)
                ch = '"', adv = 6;
            else if (b - a >= 6 && memcmp(a, "&apos;", 6) == 0)
                ch = '\'', adv = 6;
            else if (b - a >= 4 && a[1] == '#') {
                /* &#13; style: S3 escapes control characters this way */
                const char *semi = memchr(a, ';', (size_t)(b - a));
                long v = semi ? strtol(a + 2 + (a[2] == 'x'), NULL, a[2] == 'x' ? 16 : 10) : -1;

                if (semi && v >= 0 && v < 128) ch = (char)v, adv = (size_t)(semi - a + 1);
            }
        }
        if (o + 1 >= out_size) return SN_ERR_NOMEM;
        out[o++] = ch;
        a += adv;
    }
    out[o] = '\0';
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* In place: %XX sequences and '+' (form encoding of a space) decoded. */
static void url_decode(char *s) {
    char *o = s;

    for (; *s; s++) {
        if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else if (*s == '+') {
            *o++ = ' ';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* ---- construction ---------------------------------------------------------- */

/* Keeps scheme and authority only: the bucket goes in front of the host or in
 * the path depending on the addressing, so a path in the endpoint would be
 * ambiguous and is refused. */
static int parse_endpoint(sn_s3_t *s3, const char *endpoint, char *errstr, size_t errstr_size) {
    const char *p = strstr(endpoint, "://");
    size_t n;

    if (!p || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "s3.endpoint: expected http(s)://host[:port], got \"%s\"", endpoint);
    s3->scheme = strndup(endpoint, (size_t)(p - endpoint));
    p += 3;
    n = strcspn(p, "/?#");
    if (n == 0 || (p[n] && strcmp(p + n, "/") != 0))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "s3.endpoint: expected http(s)://host[:port] without a path, got \"%s\"",
                          endpoint);
    s3->authority = strndup(p, n);
    if (!s3->scheme || !s3->authority)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    return 0;
}

/* A bucket can be a host name label only when it has no dots (TLS wildcard)
 * and only lower-case letters, digits and '-'. */
static int dns_safe(const char *b) {
    for (; *b; b++)
        if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '-')) return 0;
    return 1;
}

sn_s3_t *sn_s3_new_opts(const sn_s3_opts_t *o, char *errstr, size_t errstr_size) {
    sn_s3_t *s3 = calloc(1, sizeof(*s3));
    const char *region = o->region && o->region[0] ? o->region : NULL;
    char ep[512];
    sn_s3_creds_opts_t co;

    if (!s3) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!o->bucket || !o->bucket[0] || strlen(o->bucket) > 63) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "s3: a bucket name of 1 to 63 bytes is needed");
        goto fail;
    }
    if (!region) region = getenv("AWS_REGION");
    if (!region || !region[0]) region = getenv("AWS_DEFAULT_REGION");
    if (!region || !region[0]) region = "us-east-1";
    s3->bucket = strdup(o->bucket);
    s3->region = strdup(region);
    if (!s3->bucket || !s3->region) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (o->endpoint && o->endpoint[0]) {
        if (parse_endpoint(s3, o->endpoint, errstr, errstr_size) != 0) goto fail;
    } else {
        snprintf(ep, sizeof(ep), "https://s3.%s.amazonaws.com", s3->region);
        if (parse_endpoint(s3, ep, errstr, errstr_size) != 0) goto fail;
    }
    switch (o->addressing) {
    case SN_S3_ADDR_PATH: s3->path_style = 1; break;
    case SN_S3_ADDR_VIRTUAL: s3->path_style = 0; break;
    default: s3->path_style = (o->endpoint && o->endpoint[0]) || !dns_safe(s3->bucket); break;
    }
    if (!s3->path_style && !dns_safe(s3->bucket)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "s3: bucket \"%s\" cannot be addressed virtual-hosted; use path addressing",
                   s3->bucket);
        goto fail;
    }
    s3->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    s3->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 120000;
    s3->max_retries = o->max_retries >= 0 ? o->max_retries : 4;
    s3->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 200;
    s3->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 5000;
    s3->threshold = o->multipart_threshold > 0 ? o->multipart_threshold : (16u << 20);
    s3->part_size = o->part_size >= MIN_PART ? o->part_size : (8u << 20);
    s3->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)s3;
    if (!s3->rng) s3->rng = 88172645463325252ULL;
    co = o->creds;
    if (!co.region || !co.region[0]) co.region = s3->region;
    if (!(s3->creds = sn_s3_creds_new(&co, errstr, errstr_size))) goto fail;
    if (!(s3->curl = curl_easy_init())) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "curl_easy_init failed");
        goto fail;
    }
    return s3;
fail:
    sn_s3_destroy(s3);
    return NULL;
}

sn_s3_t *sn_s3_new(const sn_conf_t *conf, const char *bucket, char *errstr, size_t errstr_size) {
    const char *addr = sn_conf_str(conf, "s3.addressing");
    sn_s3_opts_t o;

    memset(&o, 0, sizeof(o));
    o.bucket = bucket;
    o.region = sn_conf_str(conf, "s3.region");
    o.endpoint = sn_conf_str(conf, "s3.endpoint");
    o.addressing = strcmp(addr, "path") == 0      ? SN_S3_ADDR_PATH
                   : strcmp(addr, "virtual") == 0 ? SN_S3_ADDR_VIRTUAL
                                                  : SN_S3_ADDR_AUTO;
    o.connect_timeout_ms = (long)sn_conf_int(conf, "s3.connect.timeout.ms");
    o.timeout_ms = (long)sn_conf_int(conf, "s3.request.timeout.ms");
    o.max_retries = (int)sn_conf_int(conf, "s3.max.retries");
    o.backoff_ms = sn_conf_int(conf, "s3.retry.backoff.ms");
    o.backoff_max_ms = sn_conf_int(conf, "s3.retry.backoff.max.ms");
    o.multipart_threshold = (size_t)sn_conf_int(conf, "s3.multipart.threshold.bytes");
    o.part_size = (size_t)sn_conf_int(conf, "s3.part.bytes");
    o.creds.access_key = sn_conf_str(conf, "s3.access.key.id");
    o.creds.secret_key = sn_conf_str(conf, "s3.secret.access.key");
    o.creds.session_token = sn_conf_str(conf, "s3.session.token");
    o.creds.profile = sn_conf_str(conf, "s3.profile");
    o.creds.credentials_file = sn_conf_str(conf, "s3.credentials.file");
    o.creds.role_arn = sn_conf_str(conf, "s3.role.arn");
    o.creds.token_file = sn_conf_str(conf, "s3.web.identity.token.file");
    o.creds.sts_endpoint = sn_conf_str(conf, "s3.sts.endpoint");
    o.creds.duration_s = sn_conf_int(conf, "s3.sts.duration.s");
    o.creds.refresh_before_s = sn_conf_int(conf, "s3.credentials.refresh.s");
    o.creds.metadata = sn_conf_bool(conf, "s3.credentials.metadata");
    o.creds.timeout_ms = (long)sn_conf_int(conf, "s3.connect.timeout.ms");
    return sn_s3_new_opts(&o, errstr, errstr_size);
}

void sn_s3_destroy(sn_s3_t *s3) {
    if (!s3) return;
    if (s3->curl) curl_easy_cleanup(s3->curl);
    sn_s3_creds_destroy(s3->creds);
    free(s3->bucket);
    free(s3->region);
    free(s3->scheme);
    free(s3->authority);
    free(s3);
}

void sn_s3_stats(const sn_s3_t *s3, sn_s3_stats_t *out) {
    if (s3)
        *out = s3->stats;
    else
        memset(out, 0, sizeof(*out));
}

const char *sn_s3_bucket(const sn_s3_t *s3) { return s3->bucket; }

sn_s3_creds_t *sn_s3_creds(sn_s3_t *s3) { return s3 ? s3->creds : NULL; }

/* ---- one request ------------------------------------------------------------ */

struct req {
    const char *method;
    const char *key; /* NULL: the bucket itself */
    const sn_s3_kv_t *params;
    size_t nparams;
    const sn_s3_kv_t *headers; /* signed and sent */
    size_t nheaders;
    const void *body;
    size_t body_len;
    /* answer */
    struct rbuf *resp; /* body, capped; NULL: discarded unless resp_fd */
    int resp_fd;       /* >= 0: body written here (truncated per attempt) */
    int conditional;   /* If-None-Match: * sent: 412 is an answer, 409 a retry */
    long status;
    char etag[ETAG_MAX];
    char code[64]; /* S3 error code */
    int64_t content_length;
};

struct upload {
    const char *p;
    size_t len, off;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *opaque) {
    struct upload *u = opaque;
    size_t n = size * nitems;

    if (n > u->len - u->off) n = u->len - u->off;
    memcpy(buf, u->p + u->off, n);
    u->off += n;
    return n;
}

/* The answer goes to a file (downloads) or a capped buffer; past the cap the
 * transfer is aborted rather than grown. */
static size_t on_write(char *ptr, size_t size, size_t nmemb, void *opaque) {
    struct req *r = opaque;
    size_t n = size * nmemb;

    if (r->resp_fd >= 0) {
        size_t done = 0;

        while (done < n) {
            ssize_t w = write(r->resp_fd, ptr + done, n - done);

            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return 0;
            done += (size_t)w;
        }
        return n;
    }
    if (!r->resp) return n;
    if (r->resp->len + n > r->resp->cap) {
        r->resp->overflow = 1;
        return 0;
    }
    memcpy(r->resp->p + r->resp->len, ptr, n);
    r->resp->len += n;
    r->resp->p[r->resp->len] = '\0';
    return n;
}

/* Keeps the ETag: UploadPart answers with it and CompleteMultipartUpload needs it. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *opaque) {
    struct req *r = opaque;
    size_t n = size * nitems;

    if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
        const char *v = buf + 5;
        size_t l = n - 5;

        while (l && (*v == ' ' || *v == '\t')) v++, l--;
        while (l && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == ' ')) l--;
        if (l < sizeof(r->etag)) {
            memcpy(r->etag, v, l);
            r->etag[l] = '\0';
        }
    }
    return n;
}

/* The line may hold the session token: the stack copy is wiped. */
static int append_header(struct curl_slist **hl, const char *name, const char *value) {
    char line[SN_S3_TOKEN_MAX + 256];
    struct curl_slist *n;

    snprintf(line, sizeof(line), "%s: %s", name, value);
    n = curl_slist_append(*hl, line);
    memset(line, 0, sizeof(line));
    if (!n) return SN_ERR_NOMEM;
    *hl = n;
    return 0;
}

enum outcome { OK, RETRY, RETRY_CREDS, FAIL };

/* What an answer means: retry, refresh credentials and retry, or fail with a
 * class. S3 sends the error code in an XML body; HEAD answers have none. */
static enum outcome classify(struct req *r, CURLcode cc, int *err) {
    if (cc != CURLE_OK) {
        *err = SN_ERR_TRANSIENT;
        return RETRY;
    }
    if (r->status >= 200 && r->status < 300) {
        /* CompleteMultipartUpload may fail after its 200 was sent. */
        if (r->resp && r->resp->len && strstr(r->resp->p, "<Error>")) {
            *err = SN_ERR_TRANSIENT;
            return RETRY;
        }
        return OK;
    }
    /* A conditional PUT: 412 says the key exists (the caller's answer, not a
     * failure); AWS answers 409 ConditionalRequestConflict while another
     * conditional write of the key is in flight, and asks for a retry. */
    if (r->conditional && r->status == 412) return OK;
    if (r->conditional && r->status == 409) {
        *err = SN_ERR_TRANSIENT;
        return RETRY;
    }
    if (strcmp(r->code, "ExpiredToken") == 0 || strcmp(r->code, "TokenRefreshRequired") == 0 ||
        strcmp(r->code, "InvalidToken") == 0) {
        *err = SN_ERR_FATAL;
        return RETRY_CREDS;
    }
    if (r->status >= 500 || r->status == 429 || strcmp(r->code, "RequestTimeout") == 0 ||
        strcmp(r->code, "SlowDown") == 0 || strcmp(r->code, "RequestTimeTooSkewed") == 0) {
        *err = SN_ERR_TRANSIENT;
        return RETRY;
    }
    *err = r->status == 404                         ? SN_ERR_NOENT
           : (r->status == 401 || r->status == 403) ? SN_ERR_FATAL
                                                    : SN_ERR_INVALID;
    return FAIL;
}

/* Sends r once. Returns the outcome; *err and errstr describe a failure. */
static enum outcome send_once(sn_s3_t *s3, struct req *r, const char *payload_hash, int *err,
                              char *errstr, size_t errstr_size) {
    sn_s3_credentials_t cr;
    char *enc_key = NULL, *query = NULL, *url = NULL, *path = NULL, host[600];
    char amz_date[SN_S3_AMZ_DATE], auth[SN_S3_AUTH_MAX];
    struct curl_slist *hl = NULL;
    struct upload up = {r->body, r->body_len, 0};
    enum outcome oc = FAIL;
    CURLcode cc;
    CURL *h = s3->curl;
    int rc;

    memset(&cr, 0, sizeof(cr));
    r->status = 0;
    r->etag[0] = r->code[0] = '\0';
    r->content_length = -1;
    if (r->resp) {
        r->resp->len = 0;
        r->resp->overflow = 0;
        r->resp->p[0] = '\0';
    }
    if (r->resp_fd >= 0 && (ftruncate(r->resp_fd, 0) != 0 || lseek(r->resp_fd, 0, SEEK_SET) != 0)) {
        *err =
            sn_err_set(errstr, errstr_size, SN_ERR_IO, "truncating download: %s", strerror(errno));
        return FAIL;
    }
    if ((rc = sn_s3_creds_get(s3->creds, &cr, errstr, errstr_size)) != 0) {
        *err = rc == SN_ERR_NOENT ? SN_ERR_FATAL : rc; /* NOENT means "no such key" here */
        return rc == SN_ERR_TRANSIENT ? RETRY : FAIL;
    }
    if (!(enc_key = malloc(ENC_KEY_MAX)) || !(query = malloc(QUERY_MAX)) ||
        !(url = malloc(URL_MAX)) || !(path = malloc(ENC_KEY_MAX + 128))) {
        *err = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    enc_key[0] = '\0';
    if (r->key && sn_s3_uri_encode(r->key, 1, enc_key, ENC_KEY_MAX) < 0) {
        *err = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "s3: key too long");
        goto out;
    }
    if (sn_s3_canonical_query(r->params, r->nparams, query, QUERY_MAX) < 0) {
        *err = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "s3: query too long");
        goto out;
    }
    if (s3->path_style) {
        snprintf(host, sizeof(host), "%s", s3->authority);
        snprintf(path, ENC_KEY_MAX + 128, "/%s%s%s", s3->bucket, r->key ? "/" : "", enc_key);
    } else {
        snprintf(host, sizeof(host), "%s.%s", s3->bucket, s3->authority);
        snprintf(path, ENC_KEY_MAX + 128, "/%s", enc_key);
    }
    snprintf(url, URL_MAX, "%s://%s%s%s%s", s3->scheme, host, path, query[0] ? "?" : "", query);
    sn_s3_amz_date(time(NULL), amz_date);
    {
        sn_s3_sigv4_req_t sr = {.method = r->method,
                                .host = host,
                                .canonical_uri = path,
                                .canonical_query = query,
                                .headers = r->headers,
                                .nheaders = r->nheaders,
                                .payload_sha256 = payload_hash,
                                .amz_date = amz_date,
                                .region = s3->region,
                                .service = "s3",
                                .access_key = cr.access_key,
                                .secret_key = cr.secret_key,
                                .session_token = cr.token};

        if ((rc = sn_s3_sigv4_sign(&sr, auth, sizeof(auth), NULL, 0, errstr, errstr_size)) != 0) {
            *err = rc;
            goto out;
        }
    }
    if (append_header(&hl, "Host", host) || append_header(&hl, "x-amz-date", amz_date) ||
        append_header(&hl, "x-amz-content-sha256", payload_hash) ||
        (cr.token[0] && append_header(&hl, "x-amz-security-token", cr.token)) ||
        append_header(&hl, "Authorization", auth)) {
        *err = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        if (append_header(&hl, r->headers[i].name, r->headers[i].value)) {
            *err = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    /* "Expect:" with no value removes libcurl's 100-continue wait; "Content-Type:"
     * keeps it from adding an unsigned form type to POSTs. */
    {
        struct curl_slist *n = curl_slist_append(hl, "Expect:");

        if (n) hl = n;
        if (strcmp(r->method, "POST") == 0) {
            int has_ct = 0;

            for (size_t i = 0; i < r->nheaders; i++)
                if (strcasecmp(r->headers[i].name, "content-type") == 0) has_ct = 1;
            if (!has_ct && (n = curl_slist_append(hl, "Content-Type:"))) hl = n;
        }
    }

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s3->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s3->timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }

    s3->stats.requests++;
    cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_off_t cl = -1;

        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK)
            r->content_length = (int64_t)cl;
        if (r->resp && r->resp->len && (r->status < 200 || r->status >= 300))
            xml_find(r->resp->p, r->resp->p + r->resp->len, "Code", r->code, sizeof(r->code), NULL);
    } else if (cc == CURLE_WRITE_ERROR && r->resp && r->resp->overflow) {
        *err = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "%s %s: answer over %zu bytes",
                          r->method, r->key ? r->key : "/", r->resp->cap);
        goto out;
    }
    oc = classify(r, cc, err);
    if (oc != OK) {
        if (cc != CURLE_OK)
            sn_err_set(errstr, errstr_size, *err, "%s %s: %s", r->method, r->key ? r->key : "/",
                       curl_easy_strerror(cc));
        else
            sn_err_set(errstr, errstr_size, *err, "%s %s: HTTP %ld%s%s", r->method,
                       r->key ? r->key : "/", r->status, r->code[0] ? " " : "", r->code);
    }
out:
    sn_s3_credentials_wipe(&cr);
    memset(auth, 0, sizeof(auth));
    curl_slist_free_all(hl); /* the token header line is freed here */
    free(enc_key);
    free(query);
    free(url);
    free(path);
    return oc;
}

/* Sends r with retries; payload_hash NULL means "hash r->body". */
static int do_request(sn_s3_t *s3, struct req *r, const char *payload_hash, char *errstr,
                      size_t errstr_size) {
    char hash[SN_S3_SHA256_HEX];
    double t0 = mono_s();
    int err = 0;

    if (!payload_hash) {
        sn_s3_sha256_hex(r->body ? r->body : "", r->body_len, hash);
        payload_hash = hash;
    }
    for (int attempt = 0;; attempt++) {
        enum outcome oc = send_once(s3, r, payload_hash, &err, errstr, errstr_size);

        if (oc == OK) {
            s3->stats.bytes_up += r->body_len;
            if (r->resp) s3->stats.bytes_down += r->resp->len;
            sn_log_debug("s3", "%s %s: HTTP %ld in %.3f s", r->method, r->key ? r->key : "/",
                         r->status, mono_s() - t0);
            return 0;
        }
        if (oc == FAIL || attempt >= s3->max_retries) break;
        if (oc == RETRY_CREDS) sn_s3_creds_invalidate(s3->creds);
        s3->stats.retries++;
        {
            int64_t d = backoff_delay(s3, attempt);

            sn_log_warn("s3", "%s; retry %d of %d in %lld ms", errstr, attempt + 1, s3->max_retries,
                        (long long)d);
            sleep_ms(d);
        }
    }
    s3->stats.failures++;
    return err ? err : SN_ERR_TRANSIENT;
}

/* ---- operations --------------------------------------------------------------- */

/* PutObject, plain or conditional; the one place both are built so that they
 * sign the same headers. Returns 1 when a conditional PUT found the key. */
static int put_object(sn_s3_t *s3, const char *key, const void *buf, size_t len,
                      const char *content_type, int if_absent, char *errstr, size_t errstr_size) {
    char md5[32];
    sn_s3_kv_t hdrs[3];
    size_t nh = 0;
    struct req r;
    int rc;

    memset(&r, 0, sizeof(r));
    sn_s3_md5_base64(buf, len, md5);
    hdrs[nh++] = (sn_s3_kv_t){"Content-MD5", md5};
    if (content_type) hdrs[nh++] = (sn_s3_kv_t){"Content-Type", content_type};
    if (if_absent) hdrs[nh++] = (sn_s3_kv_t){"If-None-Match", "*"};
    r.method = "PUT";
    r.key = key;
    r.headers = hdrs;
    r.nheaders = nh;
    r.body = buf;
    r.body_len = len;
    r.resp_fd = -1;
    r.conditional = if_absent;
    if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) return rc;
    if (if_absent && r.status == 412) {
        sn_err_set(errstr, errstr_size, 0, "PUT %s: HTTP 412, the key exists", key);
        return 1;
    }
    return 0;
}

int sn_s3_put(sn_s3_t *s3, const char *key, const void *buf, size_t len, const char *content_type,
              char *errstr, size_t errstr_size) {
    return put_object(s3, key, buf, len, content_type, 0, errstr, errstr_size);
}

int sn_s3_put_if_absent(sn_s3_t *s3, const char *key, const void *buf, size_t len,
                        const char *content_type, char *errstr, size_t errstr_size) {
    return put_object(s3, key, buf, len, content_type, 1, errstr, errstr_size);
}

/* pread until len bytes are in: a short read is not the end of a regular file. */
static int read_full(int fd, void *buf, size_t len, off_t off) {
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return SN_ERR_IO;
        done += (size_t)n;
    }
    return 0;
}

/* Best effort: parts of an unfinished multipart upload are stored (and billed)
 * until aborted; if even this fails, a bucket lifecycle rule
 * (AbortIncompleteMultipartUpload) is the backstop. */
static void abort_upload(sn_s3_t *s3, const char *key, const char *upload_id) {
    sn_s3_kv_t params[1] = {{"uploadId", upload_id}};
    char errstr[512];
    struct req r;

    memset(&r, 0, sizeof(r));
    r.method = "DELETE";
    r.key = key;
    r.params = params;
    r.nparams = 1;
    r.resp_fd = -1;
    if (do_request(s3, &r, NULL, errstr, sizeof(errstr)) == 0)
        s3->stats.aborted++;
    else
        sn_log_warn("s3",
                    "aborting multipart upload of %s failed (S3 lifecycle rules should "
                    "clean it up): %s",
                    key, errstr);
}

/* Initiate, upload parts (each hashed and MD5-checked), complete; abort on any
 * failure so no invisible parts are left behind. */
static int put_multipart(sn_s3_t *s3, const char *key, int fd, int64_t size,
                         const char *content_type, char *errstr, size_t errstr_size) {
    size_t part = s3->part_size;
    int64_t nparts;
    char upload_id[1024], *buf = NULL, *xml = NULL;
    char(*etags)[ETAG_MAX] = NULL;
    struct rbuf resp = {0};
    sn_s3_kv_t hdrs[2];
    struct req r;
    int rc = 0, started = 0;

    while ((size + (int64_t)part - 1) / (int64_t)part > MAX_PARTS) part *= 2;
    nparts = (size + (int64_t)part - 1) / (int64_t)part;
    if (!(buf = malloc(part)) || !(etags = calloc((size_t)nparts, ETAG_MAX)) ||
        rbuf_init(&resp, 64 * 1024) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    {
        sn_s3_kv_t params[1] = {{"uploads", ""}};

        memset(&r, 0, sizeof(r));
        r.method = "POST";
        r.key = key;
        r.params = params;
        r.nparams = 1;
        if (content_type) {
            hdrs[0] = (sn_s3_kv_t){"Content-Type", content_type};
            r.headers = hdrs;
            r.nheaders = 1;
        }
        r.resp = &resp;
        r.resp_fd = -1;
        if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) goto out;
        if (xml_find(resp.p, resp.p + resp.len, "UploadId", upload_id, sizeof(upload_id), NULL)) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "CreateMultipartUpload %s: no UploadId in the answer", key);
            goto out;
        }
        started = 1;
    }
    for (int64_t i = 0; i < nparts; i++) {
        int64_t off = i * (int64_t)part;
        size_t len = (size_t)(size - off < (int64_t)part ? size - off : (int64_t)part);
        char pn[24], md5[32];
        sn_s3_kv_t params[2] = {{"partNumber", pn}, {"uploadId", upload_id}};

        snprintf(pn, sizeof(pn), "%lld", (long long)(i + 1));
        if (read_full(fd, buf, len, (off_t)off) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "reading part %lld for %s: %s",
                            (long long)(i + 1), key, strerror(errno));
            goto out;
        }
        sn_s3_md5_base64(buf, len, md5);
        hdrs[0] = (sn_s3_kv_t){"Content-MD5", md5};
        memset(&r, 0, sizeof(r));
        r.method = "PUT";
        r.key = key;
        r.params = params;
        r.nparams = 2;
        r.headers = hdrs;
        r.nheaders = 1;
        r.body = buf;
        r.body_len = len;
        r.resp_fd = -1;
        if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) goto out;
        if (!r.etag[0]) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "UploadPart %s #%s: no ETag", key,
                            pn);
            goto out;
        }
        memcpy(etags[i], r.etag, ETAG_MAX);
    }
    {
        size_t cap = (size_t)nparts * (ETAG_MAX + 80) + 128, o = 0;
        sn_s3_kv_t params[1] = {{"uploadId", upload_id}};

        if (!(xml = malloc(cap))) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            goto out;
        }
        o += (size_t)snprintf(xml + o, cap - o, "<CompleteMultipartUpload>");
        for (int64_t i = 0; i < nparts; i++)
            o += (size_t)snprintf(xml + o, cap - o,
                                  "<Part><PartNumber>%lld</PartNumber><ETag>%s</ETag></Part>",
                                  (long long)(i + 1), etags[i]);
        o += (size_t)snprintf(xml + o, cap - o, "</CompleteMultipartUpload>");
        hdrs[0] = (sn_s3_kv_t){"Content-Type", "application/xml"};
        memset(&r, 0, sizeof(r));
        r.method = "POST";
        r.key = key;
        r.params = params;
        r.nparams = 1;
        r.headers = hdrs;
        r.nheaders = 1;
        r.body = xml;
        r.body_len = o;
        r.resp = &resp;
        r.resp_fd = -1;
        if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) goto out;
    }
    s3->stats.multipart++;
out:
    if (rc != 0 && started) abort_upload(s3, key, upload_id);
    free(buf);
    free(etags);
    free(xml);
    free(resp.p);
    return rc;
}

int sn_s3_put_file(sn_s3_t *s3, const char *key, const char *path, const char *content_type,
                   char *errstr, size_t errstr_size) {
    struct stat st;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0) return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((size_t)st.st_size >= s3->threshold) {
        rc = put_multipart(s3, key, fd, (int64_t)st.st_size, content_type, errstr, errstr_size);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (read_full(fd, buf, (size_t)st.st_size, 0) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: short read", path);
        goto out;
    }
    rc = sn_s3_put(s3, key, buf, (size_t)st.st_size, content_type, errstr, errstr_size);
out:
    free(buf);
    close(fd);
    return rc;
}

int sn_s3_get(sn_s3_t *s3, const char *key, char **out, size_t *len, size_t max_bytes, char *errstr,
              size_t errstr_size) {
    struct rbuf resp;
    struct req r;
    int rc;

    *out = NULL;
    *len = 0;
    if (rbuf_init(&resp, max_bytes) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.key = key;
    r.resp = &resp;
    r.resp_fd = -1;
    if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) {
        free(resp.p);
        return rc;
    }
    *out = resp.p;
    *len = resp.len;
    return 0;
}

int sn_s3_get_file(sn_s3_t *s3, const char *key, const char *path, char *errstr,
                   size_t errstr_size) {
    struct req r;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc;

    if (fd < 0) return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.key = key;
    r.resp_fd = fd;
    rc = do_request(s3, &r, NULL, errstr, errstr_size);
    if (close(fd) != 0 && rc == 0)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    return rc;
}

int sn_s3_head(sn_s3_t *s3, const char *key, int64_t *size, char *errstr, size_t errstr_size) {
    struct req r;
    int rc;

    memset(&r, 0, sizeof(r));
    r.method = "HEAD";
    r.key = key;
    r.resp_fd = -1;
    if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) == 0 && size) *size = r.content_length;
    return rc;
}

int sn_s3_delete(sn_s3_t *s3, const char *key, char *errstr, size_t errstr_size) {
    struct req r;
    int rc;

    memset(&r, 0, sizeof(r));
    r.method = "DELETE";
    r.key = key;
    r.resp_fd = -1;
    rc = do_request(s3, &r, NULL, errstr, errstr_size);
    return rc == SN_ERR_NOENT ? 0 : rc;
}

int sn_s3_list(sn_s3_t *s3, const char *prefix, const char *start_after, size_t max_keys,
               int (*fn)(void *opaque, const sn_s3_object_t *obj), void *opaque, char *errstr,
               size_t errstr_size) {
    struct rbuf resp = {0};
    char *token = NULL, *key = NULL, etag[ETAG_MAX], size_s[32], modified[64], trunc[16], enc[16];

    /* Keys come back XML-escaped rather than with encoding-type=url: s3s-fs
     * 0.14 does not encode '+' under that option, so a reader cannot tell it
     * from an encoded space (botocore misreads it the same way). When a
     * server does send <EncodingType>url</EncodingType>, keys are decoded. */
    size_t seen = 0;
    int rc = 0;

    if (rbuf_init(&resp, XML_RESP_MAX) != 0 || !(token = malloc(4096)) ||
        !(key = malloc(KEY_MAX * 3 + 1))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    token[0] = '\0';
    for (;;) {
        sn_s3_kv_t params[6];
        size_t np = 0;
        const char *p, *end;
        struct req r;

        params[np++] = (sn_s3_kv_t){"list-type", "2"};
        params[np++] = (sn_s3_kv_t){"max-keys", LIST_PAGE};
        params[np++] = (sn_s3_kv_t){"prefix", prefix ? prefix : ""};
        if (token[0])
            params[np++] = (sn_s3_kv_t){"continuation-token", token};
        else if (start_after && start_after[0])
            params[np++] = (sn_s3_kv_t){"start-after", start_after};
        memset(&r, 0, sizeof(r));
        r.method = "GET";
        r.params = params;
        r.nparams = np;
        r.resp = &resp;
        r.resp_fd = -1;
        if ((rc = do_request(s3, &r, NULL, errstr, errstr_size)) != 0) goto out;
        end = resp.p + resp.len;
        enc[0] = '\0';
        xml_find(resp.p, end, "EncodingType", enc, sizeof(enc), NULL);
        for (p = resp.p;;) {
            const char *blk, *blk_end;
            char *c;
            sn_s3_object_t obj;

            if (!(c = strstr(p, "<Contents>"))) break;
            blk = c;
            if (!(c = strstr(blk, "</Contents>"))) break;
            blk_end = c;
            p = blk_end + 11;
            if (xml_find(blk, blk_end, "Key", key, KEY_MAX * 3 + 1, NULL) != 0) continue;
            if (strcmp(enc, "url") == 0) url_decode(key);
            etag[0] = modified[0] = '\0';
            size_s[0] = '0';
            size_s[1] = '\0';
            xml_find(blk, blk_end, "Size", size_s, sizeof(size_s), NULL);
            xml_find(blk, blk_end, "ETag", etag, sizeof(etag), NULL);
            xml_find(blk, blk_end, "LastModified", modified, sizeof(modified), NULL);
            obj.key = key;
            obj.size = strtoll(size_s, NULL, 10);
            obj.etag = etag;
            obj.last_modified = modified;
            if (fn(opaque, &obj) != 0) goto out;
            if (max_keys && ++seen >= max_keys) goto out;
        }
        trunc[0] = '\0';
        xml_find(resp.p, end, "IsTruncated", trunc, sizeof(trunc), NULL);
        if (strcmp(trunc, "true") != 0) break;
        if (xml_find(resp.p, end, "NextContinuationToken", token, 4096, NULL) != 0 || !token[0]) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "ListObjectsV2: truncated answer without a continuation token");
            goto out;
        }
    }
out:
    free(resp.p);
    free(token);
    free(key);
    return rc;
}
