/* registry_s3.c: the registry in an S3 bucket (see registry.h for the layout),
 * through common/s3.h. The file backend's guarantees, without its rename()
 * and flock():
 *
 * - A version's files are immutable and card.json is written last, so a
 *   version exists exactly when its card.json does; a reader never sees half
 *   a version.
 * - Version numbers: S3's If-None-Match: * would do (AWS decides it
 *   atomically), but the local s3s-fs 0.14.1 checks and then writes, so
 *   racing conditional PUTs of one key all succeed (19 of 30 trials of 8
 *   writers had more than one winner). A writer first PUTs versions/<n>/claim
 *   with If-None-Match: * (a 412 sends it to the next number; on AWS this
 *   alone decides), and then runs a "splitter" that is correct without it:
 *   it PUTs versions/<n>/claims/<nonce>, a key of its own,
 *   then lists versions/<n>/claims/ and owns n only when its claim is the
 *   only one there. Of two writers, the later list sees both claims, so two
 *   writers never own one number; both may yield, and then both move on.
 *   This needs nothing but S3's read-after-write consistency of PUT and LIST
 *   (AWS since December 2020, s3s-fs on a local disk). A number whose claims
 *   all yielded, or whose owner died before writing card.json, is skipped:
 *   numbers are unique and increasing, not always contiguous. Claims are
 *   never deleted, so writers need no s3:DeleteObject.
 * - Aliases: aliases/<alias> holds the version (one atomic PUT), and every
 *   move appends aliases/<alias>.history/<seq> holding the rollback stack
 *   after the move, written with If-None-Match: * (a move that loses the
 *   sequence number re-reads and retries). On AWS that orders the histories
 *   of concurrent moves; on s3s-fs two moves at the same instant can both
 *   take a number and one history is lost, like the MLflow backend. There is
 *   no lock like the file backend's flock: on any S3, two moves at the same
 *   instant can also write their alias objects in either order (the last PUT
 *   wins). Alias moves are rare (a training, an operator), registrations are
 *   what runs concurrently. The alias object is written after its history,
 *   so a crash between the two leaves a harmless extra rollback entry, as in
 *   the file backend. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/s3.h"
#include "scoring/registry_int.h"

#define S3_KEY_MAX 1024
#define MODEL_MAX_BYTES (512u * 1024 * 1024)
#define CARD_MAX_BYTES (16u * 1024 * 1024)
#define HIST_BYTES (SN_REGISTRY_HISTORY_MAX * SN_REGISTRY_VERSION_MAX)
#define CLAIM_ATTEMPTS 100 /* numbers tried by one registration */
#define MOVE_ATTEMPTS 20   /* history sequence numbers tried by one alias move */
#define PREFIX_MAX 512

struct s3_reg {
    sn_s3_t *s3;
    char url[PREFIX_MAX + 80];  /* s3://bucket[/prefix], for messages */
    char root[PREFIX_MAX + 80]; /* key prefix of the model: "[prefix/]<name>/" */
    uint64_t rng;
};

static int key_fmt(struct s3_reg *r, char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Keys are the model's root followed by a suffix; a key that does not fit is
 * refused rather than cut. */
static int key_fmt(struct s3_reg *r, char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    size_t len = strlen(r->root);
    int n;

    if (len >= size) return SN_ERR_INVALID;
    memcpy(out, r->root, len + 1);
    va_start(ap, fmt);
    n = vsnprintf(out + len, size - len, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size - len ? SN_ERR_INVALID : 0;
}

static int too_long(char *errstr, size_t errstr_size) {
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: S3 key too long");
}

/* Turns an S3 client error into one that names the registry URL and says what
 * to do: a 403 is a credentials or policy problem (fatal), a missing bucket a
 * configuration one (invalid), anything transient a retry later. */
static int s3_fail(struct s3_reg *r, int rc, const char *s3err, char *errstr, size_t errstr_size) {
    switch (rc) {
    case SN_ERR_FATAL:
        return sn_err_set(errstr, errstr_size, rc,
                          "registry: %s: access denied (%s); check the S3 credentials "
                          "(s3.access.key.id, AWS_* variables, profile) and the bucket policy",
                          r->url, s3err);
    case SN_ERR_TRANSIENT:
        return sn_err_set(errstr, errstr_size, rc,
                          "registry: %s: S3 unreachable or failing (%s); retry later", r->url,
                          s3err);
    case SN_ERR_NOENT:
        if (strstr(s3err, "NoSuchBucket"))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "registry: %s: no such bucket (%s)", r->url, s3err);
        return sn_err_set(errstr, errstr_size, rc, "registry: %s: %s", r->url, s3err);
    default: return sn_err_set(errstr, errstr_size, rc, "registry: %s: %s", r->url, s3err);
    }
}

/* A bucket name as S3 allows it: 3 to 63 of [a-z0-9.-], starting and ending
 * with a letter or digit. */
static int valid_bucket(const char *b, size_t n) {
    if (n < 3 || n > 63) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return 0;
    }
    return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

/* A key prefix of path segments of [A-Za-z0-9._=-], none empty, "." or "..":
 * what reaches a key stays readable and cannot climb out of the prefix that
 * an IAM policy grants. */
static int valid_prefix(const char *p, size_t n) {
    size_t seg = 0;

    if (n >= PREFIX_MAX) return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? p[i] : '/';

        if (c == '/') {
            if (seg == 0) return 0;
            if ((seg == 1 && p[i - 1] == '.') || (seg == 2 && p[i - 1] == '.' && p[i - 2] == '.'))
                return 0;
            seg = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '=' || c == '-'))
            return 0;
        seg++;
    }
    return 1;
}

int sn_registry_s3_parse_url(const char *url, char *bucket, size_t bucket_size, char *prefix,
                             size_t prefix_size, char *errstr, size_t errstr_size) {
    const char *b, *slash;
    size_t bn, pn;

    if (strncmp(url, "s3://", 5) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: url \"%s\" is not s3://BUCKET[/PREFIX]", url);
    b = url + 5;
    slash = strchr(b, '/');
    bn = slash ? (size_t)(slash - b) : strlen(b);
    if (!valid_bucket(b, bn) || bn >= bucket_size)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: url \"%s\": the bucket must be 3-63 characters of "
                          "[a-z0-9.-], starting and ending with a letter or digit",
                          url);
    memcpy(bucket, b, bn);
    bucket[bn] = '\0';
    prefix[0] = '\0';
    if (!slash) return 0;
    slash++;
    pn = strlen(slash);
    while (pn && slash[pn - 1] == '/') pn--; /* s3://b/p/ is s3://b/p */
    if (pn == 0) return 0;
    if (!valid_prefix(slash, pn) || pn >= prefix_size)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: url \"%s\": the prefix must be '/'-separated segments of "
                          "[A-Za-z0-9._=-] (no empty, . or .. segment), under %d bytes",
                          url, PREFIX_MAX);
    memcpy(prefix, slash, pn);
    prefix[pn] = '\0';
    return 0;
}

int64_t sn_registry_s3_parse_time(const char *s) {
    int y, mo, d, h, mi, sec, ms = 0, n = 0;
    struct tm tm;

    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) return 0;
    if (s[n] == '.') {
        int digits = 0;

        for (const char *p = s + n + 1; *p >= '0' && *p <= '9'; p++)
            if (digits++ < 3) ms = ms * 10 + (*p - '0');
        while (digits > 0 && digits < 3) ms *= 10, digits++;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

void *sn_registry_s3_open(const char *url, const sn_registry_opts_t *opts, char *errstr,
                          size_t errstr_size) {
    struct s3_reg *r = calloc(1, sizeof(*r));
    char bucket[64], prefix[PREFIX_MAX];

    if (!r) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (sn_registry_s3_parse_url(url, bucket, sizeof(bucket), prefix, sizeof(prefix), errstr,
                                 errstr_size) != 0)
        goto fail;
    snprintf(r->url, sizeof(r->url), "s3://%s%s%s", bucket, prefix[0] ? "/" : "", prefix);
    snprintf(r->root, sizeof(r->root), "%s%s%s/", prefix, prefix[0] ? "/" : "", opts->model_name);
    if (opts->conf) {
        r->s3 = sn_s3_new(opts->conf, bucket, errstr, errstr_size);
    } else {
        sn_s3_opts_t o;

        memset(&o, 0, sizeof(o));
        o.bucket = bucket;
        o.max_retries = -1; /* the client's default */
        r->s3 = sn_s3_new_opts(&o, errstr, errstr_size);
    }
    if (!r->s3) goto fail;
    if (getrandom(&r->rng, sizeof(r->rng), 0) != (ssize_t)sizeof(r->rng))
        r->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)r;
    if (!r->rng) r->rng = 88172645463325252ULL;
    return r;
fail:
    free(r);
    return NULL;
}

static void s3_destroy(void *impl) {
    struct s3_reg *r = impl;

    if (!r) return;
    sn_s3_destroy(r->s3);
    free(r);
}

static uint64_t next_rand(struct s3_reg *r) {
    uint64_t x = r->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Writers that yielded together would collide again at once; a random pause
 * that grows with the attempt spreads them apart. */
static void jitter(struct s3_reg *r, int attempt) {
    int64_t cap = 10 * (int64_t)(attempt + 1);
    int64_t ms = (int64_t)(next_rand(r) % (uint64_t)(cap > 500 ? 500 : cap));
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- reading ---------------------------------------------------------------- */

/* GETs a key of the model into a NUL-terminated buffer (caller frees).
 * SN_ERR_NOENT (errstr untouched) when the key does not exist. */
static int get_key(struct s3_reg *r, const char *key, size_t max, char **out, size_t *len,
                   char *errstr, size_t errstr_size) {
    char err[512];
    size_t n = 0;
    int rc = sn_s3_get(r->s3, key, out, len ? len : &n, max, err, sizeof(err));

    if (rc == SN_ERR_NOENT && !strstr(err, "NoSuchBucket")) return rc;
    if (rc == SN_ERR_NOMEM && *out == NULL && strstr(err, "answer over"))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: %s: %s larger than %zu",
                          r->url, key, max);
    return rc ? s3_fail(r, rc, err, errstr, errstr_size) : 0;
}

static int on_any_key(void *opaque, const sn_s3_object_t *o) {
    (void)opaque;
    (void)o;
    return 1;
}

/* A key was not found: say so with msg, unless the bucket itself is missing
 * (s3s-fs answers NoSuchKey for a key of a missing bucket; a listing says
 * NoSuchBucket) or cannot be read. */
static int not_found(struct s3_reg *r, const char *msg, char *errstr, size_t errstr_size) {
    char err[512];
    int rc = sn_s3_list(r->s3, r->root, NULL, 1, on_any_key, NULL, err, sizeof(err));

    if (rc != 0) return s3_fail(r, rc, err, errstr, errstr_size);
    return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: %s: %s", r->url, msg);
}

/* Whether a version is complete: its card.json exists. */
static int version_exists(struct s3_reg *r, const char *version, char *errstr, size_t errstr_size) {
    char key[S3_KEY_MAX], *card = NULL;
    int rc;

    if (key_fmt(r, key, sizeof(key), "versions/%s/card.json", version) != 0)
        return too_long(errstr, errstr_size);
    rc = get_key(r, key, CARD_MAX_BYTES, &card, NULL, errstr, errstr_size);
    free(card);
    if (rc == SN_ERR_NOENT) {
        char msg[SN_REGISTRY_VERSION_MAX + 64];

        snprintf(msg, sizeof(msg), "no version %s", version);
        return not_found(r, msg, errstr, errstr_size);
    }
    return rc;
}

/* The number after "versions/" in a key, or 0 when it is not one. */
static long key_version(const char *rest) {
    char *end;
    long v;

    if (rest[0] < '1' || rest[0] > '9') return 0;
    v = strtol(rest, &end, 10);
    return *end == '/' && v > 0 && v < 1000000000 ? v : 0;
}

struct scan {
    size_t root_len;
    long max;
    /* list: the complete versions */
    sn_registry_entry_t *ent;
    size_t n, cap;
    int oom;
};

static int on_version_key(void *opaque, const sn_s3_object_t *o) {
    struct scan *s = opaque;
    const char *rest = o->key + s->root_len + strlen("versions/");
    long v = key_version(rest);

    if (v > s->max) s->max = v;
    return 0;
}

/* The highest number any key under versions/ uses, claimed or complete, so
 * that a new claim never lands on a number someone already tried. */
static int max_version(struct s3_reg *r, long *max, char *errstr, size_t errstr_size) {
    char prefix[S3_KEY_MAX], err[512];
    struct scan s = {.root_len = strlen(r->root)};
    int rc;

    if (key_fmt(r, prefix, sizeof(prefix), "versions/") != 0) return too_long(errstr, errstr_size);
    if ((rc = sn_s3_list(r->s3, prefix, NULL, 0, on_version_key, &s, err, sizeof(err))) != 0)
        return s3_fail(r, rc, err, errstr, errstr_size);
    *max = s.max;
    return 0;
}

struct claims {
    const char *mine;
    int seen_mine, others;
};

static int on_claim(void *opaque, const sn_s3_object_t *o) {
    struct claims *c = opaque;

    if (strcmp(o->key, c->mine) == 0)
        c->seen_mine = 1;
    else
        c->others++;
    return 0;
}

/* ---- writing ---------------------------------------------------------------- */

/* Claims number v (see the top of the file). 0 when it is ours, 1 when
 * another writer was there too. The conditional PUT of versions/<n>/claim
 * comes first: where it is atomic (AWS) it alone decides; where it is not
 * (s3s-fs) it still turns away every writer that is not exactly
 * simultaneous, so that the splitter, which may let all of them yield, is
 * rarely needed and few numbers are skipped. */
static int claim(struct s3_reg *r, long v, char *errstr, size_t errstr_size) {
    char key[S3_KEY_MAX], prefix[S3_KEY_MAX], body[128], host[64], err[512];
    struct claims c = {.mine = key};
    int rc;

    if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';
    snprintf(body, sizeof(body), "%s %ld %lld\n", host, (long)getpid(), (long long)time(NULL));
    if (key_fmt(r, key, sizeof(key), "versions/%ld/claim", v) != 0)
        return too_long(errstr, errstr_size);
    rc = sn_s3_put_if_absent(r->s3, key, body, strlen(body), "text/plain", err, sizeof(err));
    if (rc < 0) return s3_fail(r, rc, err, errstr, errstr_size);
    if (rc == 1) return 1;
    if (key_fmt(r, prefix, sizeof(prefix), "versions/%ld/claims/", v) != 0 ||
        key_fmt(r, key, sizeof(key), "versions/%ld/claims/%016llx", v,
                (unsigned long long)next_rand(r)) != 0)
        return too_long(errstr, errstr_size);
    if ((rc = sn_s3_put(r->s3, key, body, strlen(body), "text/plain", err, sizeof(err))) != 0 ||
        (rc = sn_s3_list(r->s3, prefix, NULL, 0, on_claim, &c, err, sizeof(err))) != 0)
        return s3_fail(r, rc, err, errstr, errstr_size);
    if (!c.seen_mine)
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                          "registry: %s: the claim %s just written is not listed: this S3 "
                          "server is not read-after-write consistent, versions cannot be numbered",
                          r->url, key);
    if (c.others)
        sn_log_info("registry",
                    "%s: version %ld: %d other writer(s) passed the conditional PUT too; "
                    "yielding",
                    r->url, v, c.others);
    return c.others ? 1 : 0;
}

/* Writes a file of an owned version; the conditional PUT is a second guard
 * that refuses to overwrite what another writer put there. */
static int put_version_file(struct s3_reg *r, long v, const char *file, const void *buf, size_t len,
                            const char *type, char *errstr, size_t errstr_size) {
    char key[S3_KEY_MAX], err[512];
    int rc;

    if (key_fmt(r, key, sizeof(key), "versions/%ld/%s", v, file) != 0)
        return too_long(errstr, errstr_size);
    rc = sn_s3_put_if_absent(r->s3, key, buf, len, type, err, sizeof(err));
    if (rc == 1)
        return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                          "registry: %s: %s already exists although version %ld was claimed "
                          "(another writer without a claim?); not overwritten",
                          r->url, key, v);
    return rc ? s3_fail(r, rc, err, errstr, errstr_size) : 0;
}

static int s3_register(void *impl, const void *model, size_t model_len, const char *card,
                       size_t card_len, char *version, char *errstr, size_t errstr_size) {
    struct s3_reg *r = impl;
    long max = 0, v = 0;
    int rc;

    if ((rc = max_version(r, &max, errstr, errstr_size)) != 0) return rc;
    for (int attempt = 0;; attempt++) {
        if (attempt >= CLAIM_ATTEMPTS)
            return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                              "registry: %s: no version number claimed in %d attempts (too "
                              "many concurrent registrations)",
                              r->url, CLAIM_ATTEMPTS);
        v = max + 1;
        if ((rc = claim(r, v, errstr, errstr_size)) < 0) return rc;
        if (rc == 0) break;
        jitter(r, attempt);
        if ((rc = max_version(r, &max, errstr, errstr_size)) != 0) return rc;
        if (max < v) max = v;
    }
    if ((rc = put_version_file(r, v, "model.ubj", model, model_len, "application/octet-stream",
                               errstr, errstr_size)) != 0 ||
        (rc = put_version_file(r, v, "card.json", card, card_len, "application/json", errstr,
                               errstr_size)) != 0)
        return rc;
    snprintf(version, SN_REGISTRY_VERSION_MAX, "%ld", v);
    return 0;
}

static int s3_fetch(void *impl, const char *version, uint8_t **model, size_t *model_len,
                    char **card, size_t *card_len, char *errstr, size_t errstr_size) {
    struct s3_reg *r = impl;
    char key[S3_KEY_MAX], err[512], *c = NULL, *m = NULL;
    size_t lc = 0, lm = 0;
    int64_t size = 0;
    int rc;

    if (key_fmt(r, key, sizeof(key), "versions/%s/card.json", version) != 0)
        return too_long(errstr, errstr_size);
    rc = get_key(r, key, CARD_MAX_BYTES, &c, &lc, errstr, errstr_size);
    if (rc == SN_ERR_NOENT) {
        char msg[SN_REGISTRY_VERSION_MAX + 64];

        snprintf(msg, sizeof(msg), "no version %s", version);
        return not_found(r, msg, errstr, errstr_size);
    }
    if (rc != 0) return rc;
    if (model) {
        /* sized first, so that the buffer is the model's size and not the cap */
        if (key_fmt(r, key, sizeof(key), "versions/%s/model.ubj", version) != 0) {
            rc = too_long(errstr, errstr_size);
            goto out;
        }
        if ((rc = sn_s3_head(r->s3, key, &size, err, sizeof(err))) != 0) {
            rc = s3_fail(r, rc, err, errstr, errstr_size);
            goto out;
        }
        if (size < 0 || (uint64_t)size > MODEL_MAX_BYTES) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "registry: %s: %s is %lld bytes, over the %u byte bound", r->url, key,
                            (long long)size, MODEL_MAX_BYTES);
            goto out;
        }
        if ((rc = get_key(r, key, (size_t)size, &m, &lm, errstr, errstr_size)) != 0) {
            if (rc == SN_ERR_NOENT)
                rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: %s: no %s", r->url,
                                key);
            goto out;
        }
        *model = (uint8_t *)m;
        if (model_len) *model_len = lm;
        m = NULL;
    }
    if (card) {
        *card = c;
        if (card_len) *card_len = lc;
        c = NULL;
    }
out:
    free(m);
    free(c);
    return rc;
}

/* ---- aliases ---------------------------------------------------------------- */

static int read_alias(struct s3_reg *r, const char *alias, char *version, char *errstr,
                      size_t errstr_size) {
    char key[S3_KEY_MAX], *buf = NULL;
    size_t len = 0;
    int rc;

    if (key_fmt(r, key, sizeof(key), "aliases/%s", alias) != 0)
        return too_long(errstr, errstr_size);
    rc = get_key(r, key, 256, &buf, &len, errstr, errstr_size);
    if (rc == SN_ERR_NOENT) {
        char msg[SN_REGISTRY_ALIAS_MAX + 32];

        snprintf(msg, sizeof(msg), "alias %s is not set", alias);
        return not_found(r, msg, errstr, errstr_size);
    }
    if (rc != 0) return rc;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", buf);
    free(buf);
    return 0;
}

static int s3_get_alias(void *impl, const char *alias, char *version, char *errstr,
                        size_t errstr_size) {
    return read_alias(impl, alias, version, errstr, errstr_size);
}

struct last_key {
    char key[S3_KEY_MAX];
};

static int on_history_key(void *opaque, const sn_s3_object_t *o) {
    struct last_key *l = opaque;

    snprintf(l->key, sizeof(l->key), "%s", o->key); /* listed in key order: the last is newest */
    return 0;
}

/* The newest history object of alias into hist (HIST_BYTES) and its sequence
 * number into *seq; "" and 0 when the alias never moved. */
static int read_history(struct s3_reg *r, const char *alias, char *hist, unsigned long *seq,
                        char *errstr, size_t errstr_size) {
    char prefix[S3_KEY_MAX], err[512], *buf = NULL;
    struct last_key *l = calloc(1, sizeof(*l));
    const char *tail;
    int rc;

    hist[0] = '\0';
    *seq = 0;
    if (!l) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if (key_fmt(r, prefix, sizeof(prefix), "aliases/%s.history/", alias) != 0) {
        rc = too_long(errstr, errstr_size);
        goto out;
    }
    if ((rc = sn_s3_list(r->s3, prefix, NULL, 0, on_history_key, l, err, sizeof(err))) != 0) {
        rc = s3_fail(r, rc, err, errstr, errstr_size);
        goto out;
    }
    if (!l->key[0]) goto out;
    tail = l->key + strlen(prefix);
    *seq = strtoul(tail, NULL, 10);
    rc = get_key(r, l->key, HIST_BYTES - 1, &buf, NULL, errstr, errstr_size);
    if (rc == SN_ERR_NOENT)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                        "registry: %s: %s listed but gone; retry", r->url, l->key);
    if (rc != 0) goto out;
    snprintf(hist, HIST_BYTES, "%s", buf);
out:
    free(buf);
    free(l);
    return rc;
}

/* Appends history object seq; 1 when another move took that number. */
static int put_history(struct s3_reg *r, const char *alias, unsigned long seq, const char *hist,
                       char *errstr, size_t errstr_size) {
    char key[S3_KEY_MAX], err[512];
    int rc;

    if (key_fmt(r, key, sizeof(key), "aliases/%s.history/%010lu", alias, seq) != 0)
        return too_long(errstr, errstr_size);
    rc = sn_s3_put_if_absent(r->s3, key, hist, strlen(hist), "text/plain", err, sizeof(err));
    return rc < 0 ? s3_fail(r, rc, err, errstr, errstr_size) : rc;
}

static int put_alias(struct s3_reg *r, const char *alias, const char *version, char *errstr,
                     size_t errstr_size) {
    char key[S3_KEY_MAX], err[512], line[SN_REGISTRY_VERSION_MAX + 2];
    int rc;

    if (key_fmt(r, key, sizeof(key), "aliases/%s", alias) != 0)
        return too_long(errstr, errstr_size);
    snprintf(line, sizeof(line), "%s\n", version);
    rc = sn_s3_put(r->s3, key, line, strlen(line), "text/plain", err, sizeof(err));
    return rc ? s3_fail(r, rc, err, errstr, errstr_size) : 0;
}

/* One alias move: read the alias and its newest history, compute the new
 * target and history (to_version NULL: pop, i.e. roll back), append the
 * history under the next number, then write the alias. Losing the number to
 * a concurrent move starts over from what that move wrote. */
static int move_alias(struct s3_reg *r, const char *alias, const char *to_version, char *version,
                      char *errstr, size_t errstr_size) {
    char cur[SN_REGISTRY_VERSION_MAX], target[SN_REGISTRY_VERSION_MAX], *hist = malloc(HIST_BYTES);
    unsigned long seq = 0;
    int rc = 0;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (int attempt = 0;; attempt++) {
        if (attempt >= MOVE_ATTEMPTS) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                            "registry: %s: alias %s kept moving under us (%d attempts)", r->url,
                            alias, MOVE_ATTEMPTS);
            goto out;
        }
        rc = read_alias(r, alias, cur, errstr, errstr_size);
        if (rc == SN_ERR_NOENT)
            cur[0] = '\0';
        else if (rc != 0)
            goto out;
        if ((rc = read_history(r, alias, hist, &seq, errstr, errstr_size)) != 0) goto out;
        if (to_version) {
            if (strcmp(cur, to_version) == 0) {
                rc = 0; /* already there */
                goto out;
            }
            if (cur[0] && (rc = sn_registry_history_push(hist, HIST_BYTES, '\n', cur)) != 0) {
                rc = sn_err_set(errstr, errstr_size, rc, "registry: alias history too long");
                goto out;
            }
            snprintf(target, sizeof(target), "%s", to_version);
        } else if (sn_registry_history_pop(hist, '\n', target) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT,
                            "registry: %s: alias %s has no earlier version", r->url, alias);
            goto out;
        }
        if ((rc = put_history(r, alias, seq + 1, hist, errstr, errstr_size)) < 0) goto out;
        if (rc == 0) break;
        jitter(r, attempt);
    }
    if ((rc = put_alias(r, alias, target, errstr, errstr_size)) != 0) goto out;
    if (version) snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", target);
out:
    free(hist);
    return rc;
}

static int s3_set_alias(void *impl, const char *alias, const char *version, char *errstr,
                        size_t errstr_size) {
    struct s3_reg *r = impl;
    int rc;

    if ((rc = version_exists(r, version, errstr, errstr_size)) != 0) return rc;
    return move_alias(r, alias, version, NULL, errstr, errstr_size);
}

static int s3_rollback(void *impl, const char *alias, char *version, char *errstr,
                       size_t errstr_size) {
    return move_alias(impl, alias, NULL, version, errstr, errstr_size);
}

static int s3_history(void *impl, const char *alias, char (*out)[SN_REGISTRY_VERSION_MAX],
                      size_t max, size_t *n, char *errstr, size_t errstr_size) {
    char *hist = malloc(HIST_BYTES);
    unsigned long seq;
    int rc;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = read_history(impl, alias, hist, &seq, errstr, errstr_size)) == 0)
        sn_registry_history_list(hist, '\n', out, max, n);
    free(hist);
    return rc;
}

/* ---- listing ---------------------------------------------------------------- */

static int on_card_key(void *opaque, const sn_s3_object_t *o) {
    struct scan *s = opaque;
    const char *rest = o->key + s->root_len + strlen("versions/");
    long v = key_version(rest);
    const char *slash = strchr(rest, '/');
    sn_registry_entry_t *e;

    if (!v || !slash || strcmp(slash, "/card.json") != 0) return 0;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        sn_registry_entry_t *p = realloc(s->ent, ncap * sizeof(*p));

        if (!p) {
            s->oom = 1;
            return 1;
        }
        s->ent = p;
        s->cap = ncap;
    }
    e = &s->ent[s->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->version, sizeof(e->version), "%ld", v);
    e->created_ms = sn_registry_s3_parse_time(o->last_modified);
    return 0;
}

struct alias_keys {
    size_t prefix_len;
    char (*names)[SN_REGISTRY_ALIAS_MAX];
    size_t n, cap;
};

static int on_alias_key(void *opaque, const sn_s3_object_t *o) {
    struct alias_keys *a = opaque;
    const char *name = o->key + a->prefix_len;

    /* aliases/<alias> only: not <alias>.history/<seq> */
    if (strchr(name, '/') || strchr(name, '.') || strlen(name) >= SN_REGISTRY_ALIAS_MAX) return 0;
    if (a->n < a->cap) snprintf(a->names[a->n++], SN_REGISTRY_ALIAS_MAX, "%s", name);
    return 0;
}

static int s3_list(void *impl, sn_registry_entry_t **out, size_t *n, char *errstr,
                   size_t errstr_size) {
    struct s3_reg *r = impl;
    char prefix[S3_KEY_MAX], err[512];
    struct scan s = {.root_len = strlen(r->root)};
    struct alias_keys a = {.cap = 64};
    int rc;

    *out = NULL;
    *n = 0;
    if (key_fmt(r, prefix, sizeof(prefix), "versions/") != 0) return too_long(errstr, errstr_size);
    rc = sn_s3_list(r->s3, prefix, NULL, 0, on_card_key, &s, err, sizeof(err));
    if (s.oom)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    else if (rc != 0)
        rc = s3_fail(r, rc, err, errstr, errstr_size);
    if (rc != 0) goto fail;
    if (key_fmt(r, prefix, sizeof(prefix), "aliases/") != 0) {
        rc = too_long(errstr, errstr_size);
        goto fail;
    }
    a.prefix_len = strlen(prefix);
    if (!(a.names = calloc(a.cap, sizeof(*a.names)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sn_s3_list(r->s3, prefix, NULL, 0, on_alias_key, &a, err, sizeof(err))) != 0) {
        rc = s3_fail(r, rc, err, errstr, errstr_size);
        goto fail;
    }
    for (size_t i = 0; i < a.n; i++) {
        char v[SN_REGISTRY_VERSION_MAX], e[256];

        if (read_alias(r, a.names[i], v, e, sizeof(e)) != 0) continue;
        for (size_t j = 0; j < s.n; j++) {
            size_t len;

            if (strcmp(s.ent[j].version, v) != 0) continue;
            len = strlen(s.ent[j].aliases);
            snprintf(s.ent[j].aliases + len, sizeof(s.ent[j].aliases) - len, "%s%s", len ? "," : "",
                     a.names[i]);
        }
    }
    free(a.names);
    *out = s.ent;
    *n = s.n;
    return 0;
fail:
    free(a.names);
    free(s.ent);
    return rc;
}

const struct sn_registry_ops sn_registry_s3_ops = {
    .kind = "s3",
    .reg = s3_register,
    .fetch = s3_fetch,
    .get_alias = s3_get_alias,
    .set_alias = s3_set_alias,
    .rollback = s3_rollback,
    .list = s3_list,
    .history = s3_history,
    .destroy = s3_destroy,
};
