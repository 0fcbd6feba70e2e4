/* s3_creds.c: where S3 credentials come from, in the order the AWS SDKs use.
 *
 *   1. config        s3.access.key.id / s3.secret.access.key / s3.session.token
 *   2. environment   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *   3. profile       the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 *                    ~/.aws/credentials), section AWS_PROFILE or "default"
 *   4. web identity  AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE exchanged with STS
 *                    AssumeRoleWithWebIdentity (EKS IRSA); the token file is read
 *                    again for every exchange, since the kubelet rotates it
 *   5. metadata      (only with s3.credentials.metadata) the ECS/EKS-pod-identity
 *                    container endpoint, then EC2 IMDSv2
 *
 * The first source that has credentials is kept for the life of the provider;
 * credentials that expire are renewed from the same source refresh_before_s
 * ahead of time. Secrets are never logged: logs name the source, the role and
 * the expiry only. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/s3.h"

#define PATH_MAX_LEN 4096
#define TOKEN_FILE_MAX (64 * 1024) /* a projected service account token is ~1 KB */
#define RESP_MAX (256 * 1024)      /* STS and metadata answers are a few KB */
#define INI_MAX (1024 * 1024)

enum src_kind { SRC_NONE, SRC_CONFIG, SRC_ENV, SRC_PROFILE, SRC_WEBID, SRC_CONTAINER, SRC_IMDS };

struct sn_s3_creds {
    pthread_mutex_t mu;
    char *access_key, *secret_key, *session_token; /* config */
    char *profile, *credentials_file, *role_arn, *token_file, *session_name;
    char *sts_endpoint, *region;
    int64_t duration_s, refresh_before_s;
    int metadata;
    long timeout_ms;

    enum src_kind src;
    sn_s3_credentials_t cur;
    int have; /* cur holds credentials */
    atomic_uint_fast64_t refreshes;
};

static int64_t wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s) { return (s && s[0]) ? strdup(s) : NULL; }

/* An option set in config wins; else the AWS variable of the same meaning. */
static const char *pick(const char *opt, const char *env) {
    const char *v;

    if (opt && opt[0]) return opt;
    v = env ? getenv(env) : NULL;
    return (v && v[0]) ? v : NULL;
}

static void free_secret(char *s) {
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void sn_s3_credentials_wipe(sn_s3_credentials_t *c) {
    if (c) OPENSSL_cleanse(c, sizeof(*c));
}

sn_s3_creds_t *sn_s3_creds_new(const sn_s3_creds_opts_t *o, char *errstr, size_t errstr_size) {
    sn_s3_creds_t *p = calloc(1, sizeof(*p));

    if (!p) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->access_key = dup_or_null(o->access_key);
    p->secret_key = dup_or_null(o->secret_key);
    p->session_token = dup_or_null(o->session_token);
    p->profile = dup_or_null(o->profile);
    p->credentials_file = dup_or_null(o->credentials_file);
    p->role_arn = dup_or_null(o->role_arn);
    p->token_file = dup_or_null(o->token_file);
    p->session_name = dup_or_null(o->session_name);
    p->sts_endpoint = dup_or_null(o->sts_endpoint);
    p->region = strdup(o->region && o->region[0] ? o->region : "us-east-1");
    p->duration_s = o->duration_s > 0 ? o->duration_s : 3600;
    p->refresh_before_s = o->refresh_before_s > 0 ? o->refresh_before_s : 300;
    p->metadata = o->metadata;
    p->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    atomic_init(&p->refreshes, 0);
    if (!p->region) {
        sn_s3_creds_destroy(p);
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return p;
}

void sn_s3_creds_destroy(sn_s3_creds_t *p) {
    if (!p) return;
    free(p->access_key);
    free_secret(p->secret_key);
    free_secret(p->session_token);
    free(p->profile);
    free(p->credentials_file);
    free(p->role_arn);
    free(p->token_file);
    free(p->session_name);
    free(p->sts_endpoint);
    free(p->region);
    sn_s3_credentials_wipe(&p->cur);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

uint64_t sn_s3_creds_refreshes(const sn_s3_creds_t *p) {
    return p ? atomic_load(&((sn_s3_creds_t *)p)->refreshes) : 0;
}

void sn_s3_creds_invalidate(sn_s3_creds_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (p->have && p->cur.expires_ms > 0) p->cur.expires_ms = 1; /* renew on next get */
    pthread_mutex_unlock(&p->mu);
}

/* Refuses empty or oversized parts rather than truncating a secret. */
static int set_creds(sn_s3_credentials_t *c, const char *ak, const char *sk, const char *tok,
                     int64_t expires_ms, const char *source) {
    if (!ak || !sk || !ak[0] || !sk[0] || strlen(ak) >= sizeof(c->access_key) ||
        strlen(sk) >= sizeof(c->secret_key) || (tok && strlen(tok) >= sizeof(c->token)))
        return SN_ERR_INVALID;
    memset(c, 0, sizeof(*c));
    memcpy(c->access_key, ak, strlen(ak) + 1);
    memcpy(c->secret_key, sk, strlen(sk) + 1);
    if (tok) memcpy(c->token, tok, strlen(tok) + 1);
    c->expires_ms = expires_ms;
    c->source = source;
    return 0;
}

/* Reads a small file whole (NUL-terminated, caller frees): credential and
 * token files are small, and a bound keeps a wrong path from eating memory. */
static int read_small(const char *path, size_t max, char **out, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    *out = NULL;
    if (!f)
        return sn_err_set(errstr, errstr_size, errno == ENOENT ? SN_ERR_NOENT : SN_ERR_IO,
                          "cannot read %s: %s", path, strerror(errno));
    if (!(buf = malloc(max + 1))) {
        fclose(f);
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    }
    n = fread(buf, 1, max + 1, f);
    fclose(f);
    if (n > max) {
        free(buf);
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "%s is larger than %zu bytes", path,
                          max);
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static char *trim(char *s) {
    char *e;

    while (*s == ' ' || *s == '\t') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = '\0';
    return s;
}

/* The shared credentials file is INI: "[name]" sections of "key = value". */
static int from_profile(sn_s3_creds_t *p, sn_s3_credentials_t *c, char *errstr,
                        size_t errstr_size) {
    const char *file = pick(p->credentials_file, "AWS_SHARED_CREDENTIALS_FILE");
    const char *profile = pick(p->profile, "AWS_PROFILE");
    char path[PATH_MAX_LEN], *text = NULL, *line, *save = NULL;
    char *ak = NULL, *sk = NULL, *tok = NULL;
    int in = 0, rc;

    if (!profile) profile = "default";
    if (!file) {
        const char *home = getenv("HOME");

        if (!home) return SN_ERR_NOENT;
        snprintf(path, sizeof(path), "%s/.aws/credentials", home);
        file = path;
    }
    if ((rc = read_small(file, INI_MAX, &text, errstr, errstr_size)) != 0)
        return rc == SN_ERR_NOENT ? SN_ERR_NOENT : rc;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *l = trim(line), *eq;

        if (!*l || *l == '#' || *l == ';') continue;
        if (*l == '[') {
            char *end = strchr(l, ']');

            if (!end) continue;
            *end = '\0';
            in = strcmp(trim(l + 1), profile) == 0;
            continue;
        }
        if (!in || !(eq = strchr(l, '='))) continue;
        *eq = '\0';
        l = trim(l);
        if (strcmp(l, "aws_access_key_id") == 0)
            ak = trim(eq + 1);
        else if (strcmp(l, "aws_secret_access_key") == 0)
            sk = trim(eq + 1);
        else if (strcmp(l, "aws_session_token") == 0)
            tok = trim(eq + 1);
    }
    rc = (ak && sk) ? set_creds(c, ak, sk, tok, 0, "profile") : SN_ERR_NOENT;
    if (rc == SN_ERR_INVALID)
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "profile %s in %s: bad credentials",
                   profile, file);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return rc;
}

/* ---- HTTP for STS and the metadata endpoints ---------------------------- */

struct rbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *opaque) {
    struct rbuf *b = opaque;
    size_t n = size * nmemb;

    if (b->len + n + 1 > b->cap) {
        b->overflow = 1;
        return 0;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* One bounded request; *status is the HTTP status or 0 when none came back. */
static int http_call(const char *method, const char *url, const char *const *headers,
                     const char *body, long timeout_ms, struct rbuf *resp, long *status,
                     char *errstr, size_t errstr_size) {
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    CURLcode cc;
    int rc = 0;

    *status = 0;
    resp->len = 0;
    resp->overflow = 0;
    if (resp->cap) resp->p[0] = '\0';
    if (!h) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "curl_easy_init failed");
    for (; headers && *headers; headers++) {
        struct curl_slist *n = curl_slist_append(hl, *headers);

        if (!n) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            goto out;
        }
        hl = n;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    } else if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if ((cc = curl_easy_perform(h)) != CURLE_OK) {
        rc =
            sn_err_set(errstr, errstr_size, resp->overflow ? SN_ERR_NOMEM : SN_ERR_TRANSIENT,
                       "%s: %s", url, resp->overflow ? "answer too large" : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
out:
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return rc;
}

/* Copies the text of the first <tag>...</tag> in xml into out; 0 or
 * SN_ERR_NOENT / SN_ERR_NOMEM. The few entities STS may use are decoded. */
static int xml_tag(const char *xml, const char *tag, char *out, size_t out_size) {
    char open[64], close[64];
    const char *s, *e;
    size_t o = 0;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    if (!(s = strstr(xml, open))) return SN_ERR_NOENT;
    s += strlen(open);
    if (!(e = strstr(s, close))) return SN_ERR_NOENT;
    while (s < e) {
        char ch = *s;
        size_t adv = 1;

        if (*s == '&') {
            if (strncmp(s, "&amp;", 5) == 0)
                ch = '&', adv = 5;
            else if (strncmp(s, "&lt;", 4) == 0)
                ch = '<', adv = 4;
            else if (strncmp(s, "&gt;", 4) == 0)
                ch = '>', adv = 4;
            else if (strncmp(s, "&quot;", 6) == 0)
                ch = '"', adv = 6;
            else if (strncmp(s, "&apos;", 6) == 0)
                ch = '\'', adv = 6;
        }
        if (o + 1 >= out_size) return SN_ERR_NOMEM;
        out[o++] = ch;
        s += adv;
    }
    out[o] = '\0';
    return 0;
}

/* "2024-01-02T03:04:05Z", optionally with fractional seconds or "+00:00". */
static int64_t parse_iso8601_ms(const char *s) {
    struct tm tm;
    const char *rest;

    memset(&tm, 0, sizeof(tm));
    if (!(rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))) return -1;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *sts_url(sn_s3_creds_t *p, char *buf, size_t size) {
    const char *e = pick(p->sts_endpoint, "AWS_STS_ENDPOINT_URL");

    if (e) return e;
    snprintf(buf, size, "https://sts.%s.amazonaws.com", p->region);
    return buf;
}

/* AssumeRoleWithWebIdentity is an unsigned call: the token is the proof. */
static int from_web_identity(sn_s3_creds_t *p, sn_s3_credentials_t *c, char *errstr,
                             size_t errstr_size) {
    const char *role = pick(p->role_arn, "AWS_ROLE_ARN");
    const char *tfile = pick(p->token_file, "AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *sname = pick(p->session_name, "AWS_ROLE_SESSION_NAME");
    static const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                                       "Accept: application/xml", NULL};
    char *token = NULL, *body = NULL, *etoken = NULL, *erole = NULL, *tok_text;
    char urlbuf[512], session[128], esession[512], expiration[64], code[128], msg[512];
    struct rbuf resp = {0};
    sn_s3_credentials_t got;
    long status = 0;
    size_t tl, bl;
    int rc;

    memset(&got, 0, sizeof(got));
    if (!role || !tfile) return SN_ERR_NOENT;
    if ((rc = read_small(tfile, TOKEN_FILE_MAX, &token, errstr, errstr_size)) != 0) {
        /* The token file named but missing is an error, not "no source". */
        return rc == SN_ERR_NOENT ? sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                                               "web identity token file %s: missing", tfile)
                                  : rc;
    }
    tok_text = trim(token);
    if (sname)
        snprintf(session, sizeof(session), "%s", sname);
    else
        snprintf(session, sizeof(session), "sentinel-%ld", (long)getpid());
    tl = strlen(tok_text) * 3 + 1;
    if (!(etoken = malloc(tl)) || !(erole = malloc(strlen(role) * 3 + 1)) ||
        !(resp.p = malloc(RESP_MAX))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    resp.cap = RESP_MAX;
    sn_s3_uri_encode(tok_text, 0, etoken, tl);
    sn_s3_uri_encode(role, 0, erole, strlen(role) * 3 + 1);
    sn_s3_uri_encode(session, 0, esession, sizeof(esession));
    bl = tl + strlen(erole) + strlen(esession) + 256;
    if (!(body = malloc(bl))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(body, bl,
             "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s&RoleSessionName=%s"
             "&DurationSeconds=%lld&WebIdentityToken=%s",
             erole, esession, (long long)p->duration_s, etoken);
    if ((rc = http_call("POST", sts_url(p, urlbuf, sizeof(urlbuf)), hdrs, body, p->timeout_ms,
                        &resp, &status, errstr, errstr_size)) != 0)
        goto out;
    if (status != 200) {
        code[0] = msg[0] = '\0';
        xml_tag(resp.p, "Code", code, sizeof(code));
        xml_tag(resp.p, "Message", msg, sizeof(msg));
        rc = sn_err_set(errstr, errstr_size,
                        (status >= 500 || status == 429 || strcmp(code, "Throttling") == 0 ||
                         strcmp(code, "IDPCommunicationError") == 0)
                            ? SN_ERR_TRANSIENT
                            : SN_ERR_FATAL,
                        "STS AssumeRoleWithWebIdentity for %s: HTTP %ld %s %s", role, status, code,
                        msg);
        goto out;
    }
    {
        char ak[SN_S3_KEY_ID_MAX], sk[SN_S3_SECRET_MAX], *tok = got.token;

        if (xml_tag(resp.p, "AccessKeyId", ak, sizeof(ak)) ||
            xml_tag(resp.p, "SecretAccessKey", sk, sizeof(sk)) ||
            xml_tag(resp.p, "SessionToken", tok, sizeof(got.token)) ||
            xml_tag(resp.p, "Expiration", expiration, sizeof(expiration))) {
            OPENSSL_cleanse(sk, sizeof(sk));
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "STS AssumeRoleWithWebIdentity: answer without credentials");
            goto out;
        }
        {
            char tcopy[SN_S3_TOKEN_MAX];

            memcpy(tcopy, tok, sizeof(tcopy));
            rc = set_creds(c, ak, sk, tcopy, parse_iso8601_ms(expiration), "web-identity");
            OPENSSL_cleanse(tcopy, sizeof(tcopy));
        }
        OPENSSL_cleanse(sk, sizeof(sk));
        if (rc) {
            sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "STS: unusable credentials");
            goto out;
        }
        if (c->expires_ms <= 0) c->expires_ms = wall_ms() + p->duration_s * 1000;
    }
    sn_log_info("s3", "credentials from web identity: role %s, session %s, expire %s", role,
                session, expiration);
out:
    if (token) OPENSSL_cleanse(token, strlen(token));
    if (etoken) OPENSSL_cleanse(etoken, strlen(etoken));
    if (body) OPENSSL_cleanse(body, strlen(body));
    if (resp.p) OPENSSL_cleanse(resp.p, resp.cap);
    sn_s3_credentials_wipe(&got);
    free(token);
    free(etoken);
    free(erole);
    free(body);
    free(resp.p);
    return rc;
}

/* Both metadata endpoints answer the same JSON. */
static int parse_metadata_json(const char *text, sn_s3_credentials_t *c, const char *source) {
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    const char *ak, *sk, *tok, *exp;
    int rc;

    if (!root) return SN_ERR_INVALID;
    ak = json_string_value(json_object_get(root, "AccessKeyId"));
    sk = json_string_value(json_object_get(root, "SecretAccessKey"));
    tok = json_string_value(json_object_get(root, "Token"));
    exp = json_string_value(json_object_get(root, "Expiration"));
    rc = set_creds(c, ak, sk, tok, exp ? parse_iso8601_ms(exp) : 0, source);
    json_decref(root);
    return rc;
}

/* ECS task roles and EKS pod identity: a local endpoint, with an optional
 * authorization token (inline or in a file the agent rotates). */
static int from_container(sn_s3_creds_t *p, sn_s3_credentials_t *c, char *errstr,
                          size_t errstr_size) {
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *tok = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *tokfile = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    char url[1024], authhdr[4200], *filetok = NULL;
    const char *hdrs[2] = {NULL, NULL};
    struct rbuf resp = {0};
    long status = 0;
    int rc;

    if (full && full[0])
        snprintf(url, sizeof(url), "%s", full);
    else if (rel && rel[0])
        snprintf(url, sizeof(url), "http://169.254.170.2%s", rel);
    else
        return SN_ERR_NOENT;
    if (tokfile && tokfile[0] && read_small(tokfile, 4000, &filetok, errstr, errstr_size) == 0)
        tok = trim(filetok);
    if (tok && tok[0]) {
        snprintf(authhdr, sizeof(authhdr), "Authorization: %s", tok);
        hdrs[0] = authhdr;
    }
    if (!(resp.p = malloc(RESP_MAX))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    resp.cap = RESP_MAX;
    if ((rc = http_call("GET", url, hdrs, NULL, p->timeout_ms, &resp, &status, errstr,
                        errstr_size)) != 0)
        goto out;
    if (status != 200) {
        rc = sn_err_set(errstr, errstr_size, status >= 500 ? SN_ERR_TRANSIENT : SN_ERR_FATAL,
                        "container credentials endpoint: HTTP %ld", status);
        goto out;
    }
    if ((rc = parse_metadata_json(resp.p, c, "container")) != 0)
        sn_err_set(errstr, errstr_size, rc, "container credentials endpoint: unusable answer");
out:
    OPENSSL_cleanse(authhdr, sizeof(authhdr));
    if (filetok) OPENSSL_cleanse(filetok, strlen(filetok));
    if (resp.p) OPENSSL_cleanse(resp.p, resp.cap);
    free(filetok);
    free(resp.p);
    return rc;
}

/* IMDSv2: a session token first (PUT), then the role name, then its keys. */
static int from_imds(sn_s3_creds_t *p, sn_s3_credentials_t *c, char *errstr, size_t errstr_size) {
    const char *base = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    static const char *const tokhdr[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    char url[1024], hdr[1200], role[256];
    const char *hdrs[2] = {hdr, NULL};
    struct rbuf resp = {0};
    long status = 0;
    int rc;

    if (off && strcmp(off, "true") == 0) return SN_ERR_NOENT;
    if (!base || !base[0]) base = "http://169.254.169.254";
    if (!(resp.p = malloc(RESP_MAX))) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "oom");
    resp.cap = RESP_MAX;
    snprintf(url, sizeof(url), "%s/latest/api/token", base);
    if ((rc = http_call("PUT", url, tokhdr, "", p->timeout_ms, &resp, &status, errstr,
                        errstr_size)) != 0)
        goto out;
    if (status != 200 || resp.len == 0 || resp.len > 1000) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "instance metadata: no token");
        goto out;
    }
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", trim(resp.p));
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
    if ((rc = http_call("GET", url, hdrs, NULL, p->timeout_ms, &resp, &status, errstr,
                        errstr_size)) != 0)
        goto out;
    if (status != 200 || resp.len == 0 || resp.len >= sizeof(role)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "instance metadata: no role");
        goto out;
    }
    snprintf(role, sizeof(role), "%s", trim(resp.p));
    if (strchr(role, '\n')) *strchr(role, '\n') = '\0';
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
    if ((rc = http_call("GET", url, hdrs, NULL, p->timeout_ms, &resp, &status, errstr,
                        errstr_size)) != 0)
        goto out;
    if (status != 200) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "instance metadata: HTTP %ld",
                        status);
        goto out;
    }
    if ((rc = parse_metadata_json(resp.p, c, "instance-metadata")) != 0)
        sn_err_set(errstr, errstr_size, rc, "instance metadata: unusable answer");
out:
    OPENSSL_cleanse(hdr, sizeof(hdr));
    if (resp.p) OPENSSL_cleanse(resp.p, resp.cap);
    free(resp.p);
    return rc;
}

/* Fetches from one source; SN_ERR_NOENT means "this source has nothing". */
static int fetch(sn_s3_creds_t *p, enum src_kind k, sn_s3_credentials_t *c, char *errstr,
                 size_t errstr_size) {
    switch (k) {
    case SRC_CONFIG:
        if (!p->access_key || !p->secret_key) return SN_ERR_NOENT;
        return set_creds(c, p->access_key, p->secret_key, p->session_token, 0, "config");
    case SRC_ENV: {
        const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");

        if (!ak || !sk || !ak[0] || !sk[0]) return SN_ERR_NOENT;
        return set_creds(c, ak, sk, getenv("AWS_SESSION_TOKEN"), 0, "environment");
    }
    case SRC_PROFILE: return from_profile(p, c, errstr, errstr_size);
    case SRC_WEBID: return from_web_identity(p, c, errstr, errstr_size);
    case SRC_CONTAINER:
        return p->metadata ? from_container(p, c, errstr, errstr_size) : SN_ERR_NOENT;
    case SRC_IMDS: return p->metadata ? from_imds(p, c, errstr, errstr_size) : SN_ERR_NOENT;
    default: return SN_ERR_NOENT;
    }
}

/* Under the mutex so that two threads sharing a chain renew once; the copy
 * handed out lets callers sign without holding the lock. */
int sn_s3_creds_get(sn_s3_creds_t *p, sn_s3_credentials_t *out, char *errstr, size_t errstr_size) {
    sn_s3_credentials_t fresh;
    int rc = 0;

    memset(&fresh, 0, sizeof(fresh));
    pthread_mutex_lock(&p->mu);
    if (!p->have) {
        for (enum src_kind k = SRC_CONFIG; k <= SRC_IMDS; k++) {
            rc = fetch(p, k, &fresh, errstr, errstr_size);
            if (rc == SN_ERR_NOENT) continue;
            if (rc == 0) {
                p->src = k;
                p->cur = fresh;
                p->have = 1;
                if (k >= SRC_WEBID)
                    atomic_fetch_add(&p->refreshes, 1);
                else
                    sn_log_info("s3", "credentials from %s", fresh.source);
            }
            break;
        }
        if (!p->have && rc == SN_ERR_NOENT)
            sn_err_set(errstr, errstr_size, SN_ERR_NOENT,
                       "no S3 credentials: set s3.access.key.id/s3.secret.access.key, "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or "
                       "AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE");
    } else if (p->cur.expires_ms > 0 &&
               wall_ms() >= p->cur.expires_ms - p->refresh_before_s * 1000) {
        rc = fetch(p, p->src, &fresh, errstr, errstr_size);
        if (rc == 0) {
            p->cur = fresh;
            atomic_fetch_add(&p->refreshes, 1);
        } else if (wall_ms() < p->cur.expires_ms) {
            sn_log_warn("s3", "renewing credentials failed, the current ones stay valid: %s",
                        errstr);
            rc = 0;
        } else {
            p->have = 0; /* expired: resolve again next time */
        }
    }
    if (rc == 0) {
        if (p->have)
            *out = p->cur;
        else
            rc = SN_ERR_NOENT;
    }
    pthread_mutex_unlock(&p->mu);
    sn_s3_credentials_wipe(&fresh);
    return rc;
}
