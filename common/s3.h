/* s3.h: a small S3 client on libcurl, with its own AWS Signature V4 signer and
 * credential provider chain.
 *
 * Like Fluent Bit's out_s3, three files with one concern each:
 *   s3.c        the client: addressing, PutObject (also If-None-Match: *),
 *               multipart upload, GET, HEAD, ListObjectsV2, DELETE, retries
 *               with exponential backoff and jitter, error classification
 *   s3_sigv4.c  Signature V4 (OpenSSL SHA-256/HMAC), URI encoding, canonical
 *               query strings
 *   s3_creds.c  credentials: config, environment, shared credentials file,
 *               web identity (STS AssumeRoleWithWebIdentity, refreshed before it
 *               expires), and optionally the container and instance metadata
 *               endpoints
 *
 * Why not CURLOPT_AWS_SIGV4: Debian's libcurl 7.88 does not send
 * x-amz-content-sha256, signs a query parameter without a value ("?uploads")
 * and unsorted query parameters wrongly, so S3 (and s3s-fs) refuse the
 * request. We sign ourselves and build the URL from the same canonical query
 * string we sign, so what is sent is what is signed. libcurl's default
 * "Expect: 100-continue" (a 1 s stall per request over 1 MiB) is turned off.
 *
 * Errors follow common/err.h: SN_ERR_TRANSIENT (cannot connect, timeout, 5xx,
 * 503 SlowDown, 429, after the client's own bounded retries), SN_ERR_NOENT (404:
 * no such key or bucket), SN_ERR_FATAL (401/403: credentials refused or
 * missing), SN_ERR_INVALID (anything else we cannot use), SN_ERR_NOMEM (a size
 * cap was hit), SN_ERR_IO (a local file). Secrets never reach errstr or the log.
 *
 * Threads: one sn_s3_t is used by one thread at a time (it keeps one libcurl
 * handle so connections are reused). Distinct clients may run concurrently. */
#ifndef SN_S3_H
#define SN_S3_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/conf.h"

/* ---- signing (s3_sigv4.c) ------------------------------------------------ */

/* A name/value pair (query parameter or header); both borrowed. */
typedef struct sn_s3_kv {
    const char *name;
    const char *value; /* "" for a parameter without a value ("uploads") */
} sn_s3_kv_t;

#define SN_S3_SHA256_HEX 65 /* 64 hex digits and the NUL */
#define SN_S3_AMZ_DATE 17   /* "YYYYMMDDTHHMMSSZ" and the NUL */
#define SN_S3_AUTH_MAX 1024 /* an Authorization header value */

/* One request to sign. Every pointer is borrowed for the call. */
typedef struct sn_s3_sigv4_req {
    const char *method;          /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *host;            /* the Host header exactly as sent ("h:port" when not default) */
    const char *canonical_uri;   /* the URI-encoded path as sent, at least "/" */
    const char *canonical_query; /* from sn_s3_canonical_query(); "" or NULL when none */
    const sn_s3_kv_t *headers;   /* further headers to sign (content-md5, content-type, ...) */
    size_t nheaders;
    const char *payload_sha256; /* lower-case hex of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;       /* x-amz-date, "YYYYMMDDTHHMMSSZ" */
    const char *region;
    const char *service; /* "s3", "sts" */
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "" when none */
} sn_s3_sigv4_req_t;

/* Signs req: writes the Authorization header value into auth (caller's buffer
 * of auth_size bytes; SN_S3_AUTH_MAX is enough). The signed headers are host,
 * x-amz-content-sha256, x-amz-date, x-amz-security-token (when there is a
 * token) and req->headers; the caller must send exactly those values. When
 * canonical is not NULL the canonical request is copied there too (for tests
 * and debug logs; it holds no secret). Returns 0, SN_ERR_INVALID for a missing
 * field, SN_ERR_NOMEM when a buffer is too small. */
int sn_s3_sigv4_sign(const sn_s3_sigv4_req_t *req, char *auth, size_t auth_size, char *canonical,
                     size_t canonical_size, char *errstr, size_t errstr_size);

/* Percent-encodes in (NUL-terminated, UTF-8 bytes) the SigV4 way: A-Z a-z 0-9
 * - _ . ~ stay, every other byte becomes %XX (upper case); '/' stays when
 * keep_slash (object keys in a path). Writes a NUL-terminated string into out
 * and returns its length, or SN_ERR_NOMEM when out_size is too small. */
int sn_s3_uri_encode(const char *in, int keep_slash, char *out, size_t out_size);

/* Builds the canonical query string of params (raw names and values, in any
 * order): each encoded, sorted by name then value, "name=value" joined with
 * '&' (a parameter without a value is "name="). The client sends the same
 * string as the URL's query. Returns its length or SN_ERR_NOMEM. */
int sn_s3_canonical_query(const sn_s3_kv_t *params, size_t n, char *out, size_t out_size);

/* Lower-case hex SHA-256 of data[0..len) into out. */
void sn_s3_sha256_hex(const void *data, size_t len, char out[SN_S3_SHA256_HEX]);

/* Base64 of the MD5 of data[0..len) (the Content-MD5 header) into out. */
void sn_s3_md5_base64(const void *data, size_t len, char out[32]);

/* x-amz-date for the UTC time t into out. */
void sn_s3_amz_date(time_t t, char out[SN_S3_AMZ_DATE]);

/* ---- credentials (s3_creds.c) -------------------------------------------- */

#define SN_S3_KEY_ID_MAX 256
#define SN_S3_SECRET_MAX 256
#define SN_S3_TOKEN_MAX 4096 /* STS session tokens are 1 to 2 KB */

/* A set of credentials. Copy it by value; clear it with sn_s3_credentials_wipe
 * when done (it holds secrets). */
typedef struct sn_s3_credentials {
    char access_key[SN_S3_KEY_ID_MAX];
    char secret_key[SN_S3_SECRET_MAX];
    char token[SN_S3_TOKEN_MAX]; /* "" when none */
    int64_t expires_ms;          /* Unix ms; 0 when they do not expire */
    const char *source;          /* "config", "environment", "profile", "web-identity",
                                    "container", "instance-metadata" (static string) */
} sn_s3_credentials_t;

/* Where the chain looks. Strings are copied by sn_s3_creds_new; NULL or "" means
 * "not set" (then the AWS environment variable of the same meaning applies). */
typedef struct sn_s3_creds_opts {
    const char *access_key; /* static credentials from config, first in the chain */
    const char *secret_key;
    const char *session_token;
    const char *profile;          /* else AWS_PROFILE, else "default" */
    const char *credentials_file; /* else AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials */
    const char *role_arn;         /* else AWS_ROLE_ARN */
    const char *token_file;       /* else AWS_WEB_IDENTITY_TOKEN_FILE */
    const char *session_name;     /* else AWS_ROLE_SESSION_NAME, else "sentinel-<pid>" */
    const char
        *sts_endpoint;  /* else AWS_STS_ENDPOINT_URL, else https://sts.<region>.amazonaws.com */
    const char *region; /* for the STS endpoint and its signing scope */
    int64_t duration_s; /* web identity session length; 0: 3600 */
    int64_t refresh_before_s; /* renew this long before expiry; 0: 300 */
    int metadata;             /* also try the container and instance metadata endpoints */
    long timeout_ms;          /* STS and metadata requests; 0: 5000 */
} sn_s3_creds_opts_t;

typedef struct sn_s3_creds sn_s3_creds_t;

/* Creates a provider chain; opts is borrowed for the call. Nothing is fetched
 * yet. NULL with errstr on out of memory. */
sn_s3_creds_t *sn_s3_creds_new(const sn_s3_creds_opts_t *opts, char *errstr, size_t errstr_size);

/* NULL-safe; wipes the secrets it held. */
void sn_s3_creds_destroy(sn_s3_creds_t *p);

/* Copies current credentials into out (caller-owned), resolving the chain on
 * first use (config, environment, profile, web identity, metadata: the first
 * that has credentials is kept) and renewing expiring ones (the web identity
 * token file is read again each time). Renewal failures are retried on the
 * next call; credentials still valid keep being returned meanwhile. Returns 0,
 * SN_ERR_NOENT when no source has credentials, SN_ERR_TRANSIENT when STS or a
 * metadata endpoint cannot be reached and nothing valid is held, or
 * SN_ERR_FATAL when STS refuses the role or token. */
int sn_s3_creds_get(sn_s3_creds_t *p, sn_s3_credentials_t *out, char *errstr, size_t errstr_size);

/* Forgets expiring credentials so the next get renews them (after S3 answered
 * ExpiredToken). Static credentials are kept. */
void sn_s3_creds_invalidate(sn_s3_creds_t *p);

/* How many times credentials were fetched from STS or metadata so far. */
uint64_t sn_s3_creds_refreshes(const sn_s3_creds_t *p);

/* Overwrites the secret parts of c with zeros. */
void sn_s3_credentials_wipe(sn_s3_credentials_t *c);

/* ---- the client (s3.c) ----------------------------------------------------- */

typedef struct sn_s3 sn_s3_t;

enum sn_s3_addressing {
    SN_S3_ADDR_AUTO = 0, /* virtual-hosted on AWS, path-style on a custom endpoint */
    SN_S3_ADDR_PATH,     /* http(s)://endpoint/bucket/key */
    SN_S3_ADDR_VIRTUAL,  /* http(s)://bucket.endpoint/key */
};

/* Everything sn_s3_new() reads from the s3.* keys, for callers without a
 * configuration (tests, tools). Strings are borrowed for the call. Zero values
 * take the defaults documented in common/s3_conf.c. */
typedef struct sn_s3_opts {
    const char *bucket;
    const char *region;   /* NULL/"": AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
    const char *endpoint; /* "http(s)://host[:port]"; NULL/"": AWS for the region */
    enum sn_s3_addressing addressing;
    long connect_timeout_ms;
    long timeout_ms;            /* one request (one part) */
    int max_retries;            /* per request, on 5xx, throttling and timeouts */
    int64_t backoff_ms;         /* first retry delay bound (full jitter) */
    int64_t backoff_max_ms;     /* cap of the delay bound */
    size_t multipart_threshold; /* files of at least this size go multipart */
    size_t part_size;           /* multipart part size, at least 5 MiB */
    sn_s3_creds_opts_t creds;
} sn_s3_opts_t;

/* Cumulative counters of a client. */
typedef struct sn_s3_stats {
    uint64_t requests;   /* HTTP requests sent, retries included */
    uint64_t retries;    /* requests repeated after a retryable failure */
    uint64_t failures;   /* calls that returned an error */
    uint64_t bytes_up;   /* request body bytes of successful requests */
    uint64_t bytes_down; /* response body bytes of successful requests */
    uint64_t multipart;  /* multipart uploads completed */
    uint64_t aborted;    /* multipart uploads aborted */
} sn_s3_stats_t;

/* Creates a client from the s3.* keys of conf (borrowed for the call) for
 * bucket (borrowed; overrides s3.bucket when not NULL). NULL with errstr on a
 * bad endpoint or out of memory. Does not contact S3. */
sn_s3_t *sn_s3_new(const sn_conf_t *conf, const char *bucket, char *errstr, size_t errstr_size);

/* Same from explicit options (opts borrowed for the call). */
sn_s3_t *sn_s3_new_opts(const sn_s3_opts_t *opts, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_s3_destroy(sn_s3_t *s3);

/* Uploads buf[0..len) (borrowed) as key, with Content-MD5. content_type may be
 * NULL. */
int sn_s3_put(sn_s3_t *s3, const char *key, const void *buf, size_t len, const char *content_type,
              char *errstr, size_t errstr_size);

/* Uploads buf[0..len) (borrowed) as key only if key does not exist yet
 * (If-None-Match: *, honoured by AWS S3 since August 2024). Returns 0 when
 * written, 1 when the key exists (HTTP 412; nothing written), or a negative
 * error. Whether two racing writers can both get 0 is the server's business:
 * AWS decides atomically; s3s-fs 0.14 checks and then writes, so it can
 * (measured: tests/integration/test_registry_s3.sh). */
int sn_s3_put_if_absent(sn_s3_t *s3, const char *key, const void *buf, size_t len,
                        const char *content_type, char *errstr, size_t errstr_size);

/* Uploads the file at path as key: one PutObject below the multipart
 * threshold, else a multipart upload of part_size parts (every part with
 * Content-MD5, aborted on failure so no orphaned parts are billed). At most
 * max(threshold, part_size) bytes are held in memory. */
int sn_s3_put_file(sn_s3_t *s3, const char *key, const char *path, const char *content_type,
                   char *errstr, size_t errstr_size);

/* Downloads key into *out (caller frees with free(); NUL-terminated for
 * convenience, *len excludes it). SN_ERR_NOMEM when larger than max_bytes. */
int sn_s3_get(sn_s3_t *s3, const char *key, char **out, size_t *len, size_t max_bytes, char *errstr,
              size_t errstr_size);

/* Downloads key into the file at path (created or truncated). */
int sn_s3_get_file(sn_s3_t *s3, const char *key, const char *path, char *errstr,
                   size_t errstr_size);

/* Size of key, or SN_ERR_NOENT. size may be NULL. */
int sn_s3_head(sn_s3_t *s3, const char *key, int64_t *size, char *errstr, size_t errstr_size);

/* Deletes key (no error when it does not exist). */
int sn_s3_delete(sn_s3_t *s3, const char *key, char *errstr, size_t errstr_size);

/* One object of a listing; strings are borrowed for the callback only. */
typedef struct sn_s3_object {
    const char *key;
    int64_t size;
    const char *etag;
    const char *last_modified;
} sn_s3_object_t;

/* Calls fn for every key under prefix (borrowed; "" for all) in key order,
 * following continuation tokens, after start_after (NULL for none), for at
 * most max_keys keys in all (0: no limit). fn returns 0 to go on, anything
 * else to stop (sn_s3_list then returns 0). */
int sn_s3_list(sn_s3_t *s3, const char *prefix, const char *start_after, size_t max_keys,
               int (*fn)(void *opaque, const sn_s3_object_t *obj), void *opaque, char *errstr,
               size_t errstr_size);

/* The client's counters so far. */
void sn_s3_stats(const sn_s3_t *s3, sn_s3_stats_t *out);

/* The bucket (borrowed). */
const char *sn_s3_bucket(const sn_s3_t *s3);

/* The credential chain of the client (borrowed), for its refresh counter. */
sn_s3_creds_t *sn_s3_creds(sn_s3_t *s3);

#endif
