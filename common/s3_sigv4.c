/* s3_sigv4.c: AWS Signature Version 4, computed with OpenSSL.
 *
 * The recipe (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request):
 * a canonical request (method, URI, sorted query, sorted lower-case headers,
 * the signed header list, the payload hash), hashed into a string to sign
 * scoped to date/region/service, signed with a key derived by four HMACs from
 * the secret. S3 differs from other services only in that the URI is not
 * normalised and the payload hash is also sent as x-amz-content-sha256. */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/s3.h"

#define SIGN_HEADERS_MAX 32
#define HEADER_VALUE_MAX 8192
#define QUERY_PARAMS_MAX 64

static const char hexd[] = "0123456789abcdef";

static void to_hex(const unsigned char *in, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[in[i] >> 4];
        out[2 * i + 1] = hexd[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sn_s3_sha256_hex(const void *data, size_t len, char out[SN_S3_SHA256_HEX]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, mdlen, out);
}

void sn_s3_md5_base64(const void *data, size_t len, char out[32]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 16 bytes -> 24 chars + NUL */
}

void sn_s3_amz_date(time_t t, char out[SN_S3_AMZ_DATE]) {
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, SN_S3_AMZ_DATE, "%Y%m%dT%H%M%SZ", &tm);
}

static int unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int sn_s3_uri_encode(const char *in, int keep_slash, char *out, size_t out_size) {
    static const char HEX[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            if (o + 1 >= out_size) return SN_ERR_NOMEM;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= out_size) return SN_ERR_NOMEM;
            out[o++] = '%';
            out[o++] = HEX[*p >> 4];
            out[o++] = HEX[*p & 15];
        }
    }
    if (o >= out_size) return SN_ERR_NOMEM;
    out[o] = '\0';
    return (int)o;
}

struct qp {
    char *name;
    char *value;
};

static int qp_cmp(const void *a, const void *b) {
    const struct qp *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

/* Sorting happens on the encoded forms, as the SigV4 spec and botocore do:
 * the byte order of "%2B" and a letter differs from that of '+' and it. */
int sn_s3_canonical_query(const sn_s3_kv_t *params, size_t n, char *out, size_t out_size) {
    struct qp q[QUERY_PARAMS_MAX];
    size_t o = 0, made = 0;
    int rc = 0;

    if (out_size == 0) return SN_ERR_NOMEM;
    out[0] = '\0';
    if (n > QUERY_PARAMS_MAX) return SN_ERR_NOMEM;
    for (; made < n; made++) {
        size_t nl = strlen(params[made].name) * 3 + 1;
        size_t vl = strlen(params[made].value ? params[made].value : "") * 3 + 1;

        q[made].name = malloc(nl);
        q[made].value = malloc(vl);
        if (!q[made].name || !q[made].value) {
            free(q[made].name);
            free(q[made].value);
            rc = SN_ERR_NOMEM;
            goto out;
        }
        sn_s3_uri_encode(params[made].name, 0, q[made].name, nl);
        sn_s3_uri_encode(params[made].value ? params[made].value : "", 0, q[made].value, vl);
    }
    qsort(q, n, sizeof(q[0]), qp_cmp);
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, out_size - o, "%s%s=%s", i ? "&" : "", q[i].name, q[i].value);

        if (w < 0 || (size_t)w >= out_size - o) {
            rc = SN_ERR_NOMEM;
            goto out;
        }
        o += (size_t)w;
    }
    rc = (int)o;
out:
    for (size_t i = 0; i < made; i++) {
        free(q[i].name);
        free(q[i].value);
    }
    if (rc < 0) out[0] = '\0';
    return rc;
}

struct hdr {
    char name[128];
    char value[HEADER_VALUE_MAX];
};

static int hdr_cmp(const void *a, const void *b) {
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

/* Header values are signed trimmed, with runs of white space folded to one
 * space (what AWS and botocore do); names in lower case. */
static int hdr_set(struct hdr *h, const char *name, const char *value) {
    size_t i = 0, o = 0;
    int space = 0;

    for (; name[i]; i++) {
        if (i + 1 >= sizeof(h->name)) return SN_ERR_NOMEM;
        h->name[i] = (char)tolower((unsigned char)name[i]);
    }
    h->name[i] = '\0';
    for (const char *p = value ? value : ""; *p; p++) {
        if (isspace((unsigned char)*p)) {
            space = o > 0;
            continue;
        }
        if (space) {
            if (o + 1 >= sizeof(h->value)) return SN_ERR_NOMEM;
            h->value[o++] = ' ';
            space = 0;
        }
        if (o + 1 >= sizeof(h->value)) return SN_ERR_NOMEM;
        h->value[o++] = *p;
    }
    h->value[o] = '\0';
    return 0;
}

/* A growing output buffer with a hard cap; appends fail once it is reached. */
struct sbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->overflow || b->len + n + 1 > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void hmac256(const void *key, size_t keylen, const char *msg, unsigned char out[32]) {
    unsigned int len = 32;

    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len);
}

int sn_s3_sigv4_sign(const sn_s3_sigv4_req_t *req, char *auth, size_t auth_size, char *canonical,
                     size_t canonical_size, char *errstr, size_t errstr_size) {
    struct hdr *h = NULL;
    size_t nh = 0, need;
    struct sbuf cr = {0}, signed_names = {0};
    char date[9], scope[256], sts[512], crhash[SN_S3_SHA256_HEX], sig[SN_S3_SHA256_HEX];
    char *kbuf = NULL;
    unsigned char k1[32], k2[32], k3[32], k4[32], mac[32];
    int rc = 0, w;

    if (!req || !req->method || !req->host || !req->canonical_uri || !req->payload_sha256 ||
        !req->amz_date || strlen(req->amz_date) != 16 || !req->region || !req->service ||
        !req->access_key || !req->secret_key || !req->access_key[0] || !req->secret_key[0])
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "sigv4: incomplete request");
    if (req->nheaders + 4 > SIGN_HEADERS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "sigv4: too many headers");
    if (!(h = calloc(SIGN_HEADERS_MAX, sizeof(*h)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (hdr_set(&h[nh++], "host", req->host) || hdr_set(&h[nh++], "x-amz-date", req->amz_date) ||
        hdr_set(&h[nh++], "x-amz-content-sha256", req->payload_sha256) ||
        (req->session_token && req->session_token[0] &&
         hdr_set(&h[nh++], "x-amz-security-token", req->session_token))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "sigv4: header too long");
        goto out;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        if (hdr_set(&h[nh++], req->headers[i].name, req->headers[i].value)) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "sigv4: header too long");
            goto out;
        }
    }
    qsort(h, nh, sizeof(h[0]), hdr_cmp);
    for (size_t i = 1; i < nh; i++) {
        if (strcmp(h[i].name, h[i - 1].name) == 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "sigv4: header %s given twice",
                            h[i].name);
            goto out;
        }
    }

    need = strlen(req->method) + strlen(req->canonical_uri) +
           (req->canonical_query ? strlen(req->canonical_query) : 0) + 256;
    for (size_t i = 0; i < nh; i++) need += strlen(h[i].name) * 2 + strlen(h[i].value) + 3;
    cr.cap = need;
    signed_names.cap = need;
    if (!(cr.p = malloc(cr.cap)) || !(signed_names.p = malloc(signed_names.cap))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    cr.p[0] = signed_names.p[0] = '\0';
    for (size_t i = 0; i < nh; i++) {
        if (i) sb_str(&signed_names, ";");
        sb_str(&signed_names, h[i].name);
    }
    sb_str(&cr, req->method);
    sb_str(&cr, "\n");
    sb_str(&cr, req->canonical_uri);
    sb_str(&cr, "\n");
    sb_str(&cr, req->canonical_query ? req->canonical_query : "");
    sb_str(&cr, "\n");
    for (size_t i = 0; i < nh; i++) {
        sb_str(&cr, h[i].name);
        sb_str(&cr, ":");
        sb_str(&cr, h[i].value);
        sb_str(&cr, "\n");
    }
    sb_str(&cr, "\n");
    sb_str(&cr, signed_names.p);
    sb_str(&cr, "\n");
    sb_str(&cr, req->payload_sha256);
    if (cr.overflow || signed_names.overflow) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "sigv4: canonical request too long");
        goto out;
    }
    if (canonical) {
        if (cr.len + 1 > canonical_size) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "sigv4: canonical buffer too small");
            goto out;
        }
        memcpy(canonical, cr.p, cr.len + 1);
    }

    memcpy(date, req->amz_date, 8);
    date[8] = '\0';
    w = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, req->region, req->service);
    if (w < 0 || (size_t)w >= sizeof(scope)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "sigv4: region or service too long");
        goto out;
    }
    sn_s3_sha256_hex(cr.p, cr.len, crhash);
    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", req->amz_date, scope, crhash);

    {
        size_t sl = strlen(req->secret_key);

        if (!(kbuf = malloc(sl + 5))) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(kbuf, "AWS4", 4);
        memcpy(kbuf + 4, req->secret_key, sl + 1);
        hmac256(kbuf, sl + 4, date, k1);
        OPENSSL_cleanse(kbuf, sl + 4);
    }
    hmac256(k1, 32, req->region, k2);
    hmac256(k2, 32, req->service, k3);
    hmac256(k3, 32, "aws4_request", k4);
    hmac256(k4, 32, sts, mac);
    to_hex(mac, 32, sig);
    w = snprintf(auth, auth_size,
                 "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                 req->access_key, scope, signed_names.p, sig);
    if (w < 0 || (size_t)w >= auth_size) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "sigv4: authorization buffer too small");
        goto out;
    }
out:
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    OPENSSL_cleanse(k4, sizeof(k4));
    free(kbuf);
    free(cr.p);
    free(signed_names.p);
    if (h) {
        OPENSSL_cleanse(h, SIGN_HEADERS_MAX * sizeof(*h)); /* the session token */
        free(h);
    }
    return rc;
}
