/* metrics.c: the registry behind metrics.h.
 *
 * Layout: the registry holds a fixed array of families (one per metric name);
 * each family holds its series ("children") in an insert-only open-addressing
 * table sized at creation to twice its max_series, plus an insertion-ordered
 * array for rendering. Nothing is ever removed before sn_metrics_destroy(), so a
 * reader that finds a child through an acquire load can use it without a lock,
 * and the table can never fill up (it always has an empty slot to stop a probe).
 * Writers (registration, series creation) and the renderer hold reg->lock.
 *
 * A series' values live in their own cache-line-aligned cell so that two hot
 * counters updated by different threads do not share a line. */
#include "common/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define CACHE_LINE 64
#define NUM_MAX 40 /* a formatted double or int64, with room to spare */

/* Refusals of series are logged once per family and reason: a label explosion
 * must not turn into a log explosion. Every one of them is still counted. */
#define WARNED_BOUND 0x1
#define WARNED_INVALID 0x2

enum kind {
    K_COUNTER,
    K_GAUGE,
    K_GAUGE_INT,
    K_HISTOGRAM,
    K_GAUGE_FN,     /* one value from a callback */
    K_GAUGE_VEC_FN, /* labelled values from a collector */
};

struct sn_counter {
    _Atomic uint64_t n;    /* integer adds */
    _Atomic uint64_t frac; /* bits of a double: fractional adds */
};

struct sn_gauge {
    _Atomic int64_t i;  /* used when is_int */
    _Atomic uint64_t d; /* bits of a double, used otherwise */
    int is_int;
};

struct sn_histogram {
    const double *bounds; /* the family's, nbounds of them */
    size_t nbounds;
    _Atomic uint64_t sum;       /* bits of a double */
    _Atomic uint64_t buckets[]; /* nbounds + 1, the last is +Inf; not cumulative */
};

struct child {
    uint64_t hash;
    char *key;     /* label values, each followed by '\0' */
    size_t keylen; /* bytes in key, separators included */
    char *labels;  /* rendered and escaped: a="x",b="y" ("" without labels) */
    void *cell;    /* struct sn_counter / sn_gauge / sn_histogram, aligned */
};

struct family {
    sn_metrics_t *reg;
    char *name;
    char *help;
    enum kind kind;
    char **label_names;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    size_t max_series;
    _Atomic(struct child *) *slots; /* mask + 1 of them, insert-only */
    size_t mask;
    struct child **children; /* insertion order, max_series of them */
    _Atomic size_t nchildren;
    sn_metrics_value_cb fn;        /* K_GAUGE_FN; under reg->lock */
    sn_metrics_collect_cb collect; /* K_GAUGE_VEC_FN; under reg->lock */
    void *opaque;
    atomic_int warned; /* WARNED_* already logged */
};

struct sn_metrics {
    pthread_mutex_t lock;
    struct family **families;
    size_t n, max;
    sn_counter_t *rejected;
};

/* Output sink: a capped growing buffer, or a FILE. The first error sticks and
 * later writes are dropped, so render code needs no checks in between. */
struct writer {
    FILE *fp;
    char *buf;
    size_t len, cap, max;
    int err;
};

struct sn_metrics_emitter {
    struct writer *w;
    struct family *f;
    size_t n;
    int header_done;
};

/* ---- small helpers ----------------------------------------------------- */

static uint64_t d2u(double d) {
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static double u2d(uint64_t u) {
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

/* C11 has no atomic add for doubles; a CAS loop on the bits is lock-free on
 * every 64-bit target and costs one uncontended cmpxchg. */
static void atomic_add_double(_Atomic uint64_t *cell, double v) {
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(cell, &old, d2u(u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static char *xstrdup(const char *s) {
    size_t len = strlen(s) + 1;
    char *p = malloc(len);

    if (p) memcpy(p, s, len);
    return p;
}

static bool is_alpha_(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Checked by hand rather than with ctype so that the locale cannot widen it. */
static bool valid_metric_name(const char *s) {
    size_t n;

    if (!s || !(is_alpha_(s[0]) || s[0] == ':')) return false;
    for (n = 1; s[n]; n++)
        if (!(is_alpha_(s[n]) || is_digit(s[n]) || s[n] == ':')) return false;
    return n <= SN_METRICS_NAME_MAX;
}

/* Label names starting with "__" are reserved for Prometheus itself. */
static bool valid_label_name(const char *s) {
    size_t n;

    if (!s || !is_alpha_(s[0]) || (s[0] == '_' && s[1] == '_')) return false;
    for (n = 1; s[n]; n++)
        if (!(is_alpha_(s[n]) || is_digit(s[n]))) return false;
    return n <= SN_METRICS_NAME_MAX;
}

/* Prometheus rejects a scrape containing invalid UTF-8, and one bad label value
 * would hide every metric, so values are checked when a series is created:
 * shortest form only, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

static bool valid_value(const char *v) {
    size_t n;

    if (!v) return false;
    n = strnlen(v, SN_METRICS_VALUE_MAX + 1);
    return n <= SN_METRICS_VALUE_MAX && valid_utf8((const unsigned char *)v, n);
}

/* Shortest text that reads back as the same double, as Go's FormatFloat(v, 'g',
 * -1) does, so that le="0.005" is spelt the same by every process: a histogram
 * is aggregated across instances by its le label text. */
static void fmt_double(char *buf, size_t size, double v) {
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* A word-at-a-time multiplicative hash: label values are short, and hashing
 * byte by byte (FNV) was most of the cost of a series lookup. Each value's
 * length goes into its last word, so {"a","bc"} and {"ab","c"} hash apart.
 * lens[] holds the values' lengths. */
static uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t hash_values(const char *const *values, const size_t *lens, size_t n) {
    uint64_t h = 0x243f6a8885a308d3ull, w;

    for (size_t i = 0; i < n; i++) {
        const char *p = values[i];
        size_t len = lens[i];

        for (; len >= 8; len -= 8, p += 8) {
            memcpy(&w, p, 8);
            h = mix(h, w);
        }
        /* Shifts, not a memcpy into w: a partial copy followed by a full
         * load stalls store forwarding. */
        w = (uint64_t)lens[i] << 56;
        for (size_t k = 0; k < len; k++) w ^= (uint64_t)(unsigned char)p[k] << (8 * k);
        h = mix(h, w);
    }
    h = (h ^ (h >> 32)) * 0xd6e8feb86659fd93ull;
    return h ^ (h >> 32);
}

static bool key_eq(const struct child *c, const char *const *values, const size_t *lens, size_t n) {
    size_t off = 0;

    for (size_t i = 0; i < n; i++) {
        size_t len = lens[i] + 1;

        if (len > c->keylen - off || memcmp(c->key + off, values[i], len) != 0) return false;
        off += len;
    }
    return off == c->keylen;
}

/* ---- writer -------------------------------------------------------------- */

/* Appends n bytes. The buffer doubles up to max (plus a NUL); crossing max is
 * SN_ERR_NOMEM rather than a silently truncated scrape. */
static void w_put(struct writer *w, const char *s, size_t n) {
    if (w->err || n == 0) return;
    if (w->fp) {
        if (fwrite(s, 1, n, w->fp) != n) w->err = SN_ERR_IO;
        return;
    }
    if (n > w->max - w->len) {
        w->err = SN_ERR_NOMEM;
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        char *p;

        while (cap < w->len + n + 1) cap *= 2;
        if (cap > w->max + 1) cap = w->max + 1;
        p = realloc(w->buf, cap);
        if (!p) {
            w->err = SN_ERR_NOMEM;
            return;
        }
        w->buf = p;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void w_puts(struct writer *w, const char *s) { w_put(w, s, strlen(s)); }

/* Escapes for the exposition format: help text escapes backslash and newline,
 * label values also the double quote. */
static void w_escaped(struct writer *w, const char *s, bool quote) {
    const char *run = s;

    for (; *s; s++) {
        const char *rep = NULL;

        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep) {
            w_put(w, run, (size_t)(s - run));
            w_put(w, rep, 2);
            run = s + 1;
        }
    }
    w_put(w, run, (size_t)(s - run));
}

/* Writes name="value" pairs for one label set, comma separated. */
static void w_label_pairs(struct writer *w, const struct family *f, const char *const *values) {
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i) w_put(w, ",", 1);
        w_puts(w, f->label_names[i]);
        w_put(w, "=\"", 2);
        w_escaped(w, values[i], true);
        w_put(w, "\"", 1);
    }
}

static const char *type_name(enum kind k) {
    switch (k) {
    case K_COUNTER: return "counter";
    case K_HISTOGRAM: return "histogram";
    default: return "gauge";
    }
}

static void w_header(struct writer *w, const struct family *f) {
    w_puts(w, "# HELP ");
    w_puts(w, f->name);
    w_put(w, " ", 1);
    w_escaped(w, f->help, false);
    w_puts(w, "\n# TYPE ");
    w_puts(w, f->name);
    w_put(w, " ", 1);
    w_puts(w, type_name(f->kind));
    w_put(w, "\n", 1);
}

/* One sample line: name[suffix][{labels[,le="x"]}] value */
static void w_sample(struct writer *w, const struct family *f, const char *suffix,
                     const char *labels, const char *le, const char *value) {
    w_puts(w, f->name);
    w_puts(w, suffix);
    if (labels[0] || le) {
        w_put(w, "{", 1);
        w_puts(w, labels);
        if (le) {
            if (labels[0]) w_put(w, ",", 1);
            w_puts(w, "le=\"");
            w_puts(w, le);
            w_put(w, "\"", 1);
        }
        w_put(w, "}", 1);
    }
    w_put(w, " ", 1);
    w_puts(w, value);
    w_put(w, "\n", 1);
}

/* ---- registry ------------------------------------------------------------ */

/* Refusals are rare and usually programming errors (a bad name, a forgotten
 * bound), so each one is logged and counted where an operator will see it. */
static void refuse(sn_metrics_t *reg, const char *name, const char *why) {
    sn_counter_inc(reg->rejected);
    sn_log_warn("metrics", "metric %.*s refused: %s", SN_METRICS_NAME_MAX, name ? name : "(null)",
                why);
}

/* Logs a series refusal the first time it happens for a family and reason;
 * lock-free because the bound check runs on the hot path. */
static void warn_once(struct family *f, int flag, const char *why) {
    if (atomic_fetch_or_explicit(&f->warned, flag, memory_order_relaxed) & flag) return;
    sn_log_warn("metrics",
                "metric %s: sample or label set dropped: %s (max %zu label sets; "
                "logged once, counted in " SN_METRICS_REJECTED_NAME ")",
                f->name, why, f->max_series);
}

static void child_free(struct child *c) {
    if (!c) return;
    free(c->cell);
    free(c->labels);
    free(c->key);
    free(c);
}

static void family_free(struct family *f) {
    size_t n;

    if (!f) return;
    n = atomic_load_explicit(&f->nchildren, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) child_free(f->children[i]);
    for (size_t i = 0; i < f->nlabels; i++) free(f->label_names[i]);
    free(f->label_names);
    free(f->children);
    free((void *)f->slots);
    free(f->bounds);
    free(f->help);
    free(f->name);
    free(f);
}

/* Allocates the value cell for a new series, zeroed and on its own cache lines. */
static void *cell_new(const struct family *f) {
    size_t size, i;
    void *p;

    switch (f->kind) {
    case K_COUNTER: size = sizeof(struct sn_counter); break;
    case K_GAUGE:
    case K_GAUGE_INT: size = sizeof(struct sn_gauge); break;
    case K_HISTOGRAM:
        size = sizeof(struct sn_histogram) + (f->nbounds + 1) * sizeof(_Atomic uint64_t);
        break;
    default: return NULL;
    }
    size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    p = aligned_alloc(CACHE_LINE, size);
    if (!p) return NULL;
    memset(p, 0, size);
    if (f->kind == K_COUNTER) {
        struct sn_counter *c = p;

        atomic_init(&c->n, 0);
        atomic_init(&c->frac, d2u(0.0));
    } else if (f->kind == K_HISTOGRAM) {
        struct sn_histogram *h = p;

        h->bounds = f->bounds;
        h->nbounds = f->nbounds;
        atomic_init(&h->sum, d2u(0.0));
        for (i = 0; i <= f->nbounds; i++) atomic_init(&h->buckets[i], 0);
    } else {
        struct sn_gauge *g = p;

        atomic_init(&g->i, 0);
        atomic_init(&g->d, d2u(0.0));
        g->is_int = f->kind == K_GAUGE_INT;
    }
    return p;
}

/* Builds a series: its lookup key, its pre-escaped label text (so rendering
 * does no escaping for stored series) and its value cell. */
static struct child *child_new(const struct family *f, uint64_t hash, const char *const *values) {
    struct writer lw = {.max = SIZE_MAX / 2};
    struct child *c = calloc(1, sizeof(*c));
    size_t off = 0;

    if (!c) goto fail;
    c->hash = hash;
    for (size_t i = 0; i < f->nlabels; i++) c->keylen += strlen(values[i]) + 1;
    c->key = malloc(c->keylen + 1);
    if (!c->key) goto fail;
    for (size_t i = 0; i < f->nlabels; i++) {
        size_t len = strlen(values[i]) + 1;

        memcpy(c->key + off, values[i], len);
        off += len;
    }
    w_label_pairs(&lw, f, values);
    if (lw.err) goto fail;
    c->labels = lw.buf ? lw.buf : xstrdup("");
    lw.buf = NULL;
    if (!c->labels) goto fail;
    c->cell = cell_new(f);
    if (!c->cell) goto fail;
    return c;
fail:
    free(lw.buf);
    child_free(c);
    return NULL;
}

/* Lock-free lookup. Stops at the first empty slot, which is where an insert
 * would go (reported in *slot for the caller holding the lock). */
static struct child *probe(struct family *f, uint64_t hash, const char *const *values,
                           const size_t *lens, size_t *slot) {
    size_t i = (size_t)hash & f->mask;

    for (;;) {
        struct child *c = atomic_load_explicit(&f->slots[i], memory_order_acquire);

        if (!c) {
            if (slot) *slot = i;
            return NULL;
        }
        if (c->hash == hash && key_eq(c, values, lens, f->nlabels)) return c;
        i = (i + 1) & f->mask;
    }
}

/* Inserts a series; the caller holds reg->lock and has checked the bound. The
 * release stores publish the fully built child to lock-free readers. */
static struct child *family_insert(struct family *f, uint64_t hash, const char *const *values,
                                   size_t slot) {
    size_t n = atomic_load_explicit(&f->nchildren, memory_order_relaxed);
    struct child *c = child_new(f, hash, values);

    if (!c) return NULL;
    f->children[n] = c;
    atomic_store_explicit(&f->slots[slot], c, memory_order_release);
    atomic_store_explicit(&f->nchildren, n + 1, memory_order_release);
    return c;
}

/* The series lookup behind every *_vec_get(). The fast path (series exists) is
 * a hash and a probe with no lock; a full family is refused before locking too,
 * so that a label explosion at the bound does not serialise the hot path. */
static void *family_get(struct family *f, const char *const *values) {
    sn_metrics_t *reg;
    struct child *c;
    uint64_t hash;
    size_t slot = 0, lens[SN_METRICS_MAX_LABELS];

    if (!f) return NULL;
    reg = f->reg;
    if (!values) {
        refuse(reg, f->name, "NULL label values");
        return NULL;
    }
    for (size_t i = 0; i < f->nlabels; i++) {
        if (!values[i]) {
            refuse(reg, f->name, "NULL label value");
            return NULL;
        }
        lens[i] = strlen(values[i]);
    }
    hash = hash_values(values, lens, f->nlabels);
    c = probe(f, hash, values, lens, NULL);
    if (c) return c->cell;
    if (atomic_load_explicit(&f->nchildren, memory_order_acquire) >= f->max_series) {
        sn_counter_inc(reg->rejected);
        warn_once(f, WARNED_BOUND, "the max of label sets is reached");
        return NULL;
    }
    pthread_mutex_lock(&reg->lock);
    c = probe(f, hash, values, lens, &slot);
    if (!c) {
        const char *why = NULL;
        int flag = WARNED_INVALID;

        if (atomic_load_explicit(&f->nchildren, memory_order_relaxed) >= f->max_series)
            why = "the max of label sets is reached", flag = WARNED_BOUND;
        for (size_t i = 0; !why && i < f->nlabels; i++)
            if (!valid_value(values[i])) why = "a label value is not UTF-8 or is too long";
        if (!why && !(c = family_insert(f, hash, values, slot))) why = "out of memory";
        if (why) {
            sn_counter_inc(reg->rejected);
            warn_once(f, flag, why);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return c ? c->cell : NULL;
}

static struct family *find_family(const sn_metrics_t *reg, const char *name) {
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->families[i]->name, name) == 0) return reg->families[i];
    return NULL;
}

/* Whether family f writes a sample named sample: histograms write three. */
static bool produces(const struct family *f, const char *sample) {
    size_t n = strlen(f->name);

    if (f->kind != K_HISTOGRAM) return strcmp(f->name, sample) == 0;
    if (strncmp(sample, f->name, n) != 0) return false;
    sample += n;
    return strcmp(sample, "_bucket") == 0 || strcmp(sample, "_sum") == 0 ||
           strcmp(sample, "_count") == 0;
}

/* Two families writing the same sample name would make the scrape invalid:
 * a gauge "x_count" next to a histogram "x", for instance. */
static bool clashes(const sn_metrics_t *reg, const char *name, enum kind kind) {
    static const char *const hist[] = {"_bucket", "_sum", "_count"};
    char sample[SN_METRICS_NAME_MAX + 16];

    for (size_t i = 0; i < reg->n; i++) {
        const struct family *f = reg->families[i];

        if (kind != K_HISTOGRAM) {
            if (produces(f, name)) return true;
            continue;
        }
        for (size_t k = 0; k < 3; k++) {
            snprintf(sample, sizeof(sample), "%s%s", name, hist[k]);
            if (produces(f, sample)) return true;
        }
    }
    return false;
}

static bool same_shape(const struct family *f, enum kind kind, const char *const *labels,
                       size_t nlabels, const double *bounds, size_t nbounds) {
    if (f->kind != kind || f->nlabels != nlabels || f->nbounds != nbounds) return false;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->label_names[i], labels[i]) != 0) return false;
    for (size_t i = 0; i < nbounds; i++)
        if (f->bounds[i] != bounds[i]) return false;
    return true;
}

static size_t next_pow2(size_t n) {
    size_t p = 2;

    while (p < n) p *= 2;
    return p;
}

/* Validates and registers a family, or returns the existing one of the same
 * shape (*existed set). The caller holds reg->lock. On refusal returns NULL
 * with *err set and the reason logged and counted. */
static struct family *family_add(sn_metrics_t *reg, enum kind kind, const char *name,
                                 const char *help, const char *const *labels, size_t nlabels,
                                 size_t max_series, const double *bounds, size_t nbounds,
                                 bool *existed, int *err) {
    struct family *f = NULL, *old;
    const char *why = NULL;

    *existed = false;
    *err = SN_ERR_INVALID;
    if (!valid_metric_name(name))
        why = "the name must match [a-zA-Z_:][a-zA-Z0-9_:]* (<= 128)";
    else if (!help || !help[0] || strlen(help) > SN_METRICS_HELP_MAX ||
             !valid_utf8((const unsigned char *)help, strlen(help)))
        why = "help text must be non-empty UTF-8 of at most 1024 bytes";
    else if (nlabels > SN_METRICS_MAX_LABELS || (nlabels && !labels))
        why = "bad label names";
    else if (max_series > SN_METRICS_MAX_SERIES)
        why = "max_series is above SN_METRICS_MAX_SERIES";
    if (!why && kind == K_HISTOGRAM) {
        if (nbounds && !bounds)
            why = "NULL bucket bounds";
        else if (nbounds && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
            nbounds--;
        if (!why && nbounds > SN_METRICS_MAX_BUCKETS)
            why = "more than SN_METRICS_MAX_BUCKETS bounds";
        for (size_t i = 0; !why && i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
                why = "bucket bounds must be finite and strictly increasing";
    }
    for (size_t i = 0; !why && i < nlabels; i++) {
        if (!valid_label_name(labels[i]))
            why = "label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __";
        else if (kind == K_HISTOGRAM && strcmp(labels[i], "le") == 0)
            why = "\"le\" is reserved in histograms";
        for (size_t k = 0; !why && k < i; k++)
            if (strcmp(labels[i], labels[k]) == 0) why = "duplicate label name";
    }
    if (why) goto refused;

    old = find_family(reg, name);
    if (old) {
        if (same_shape(old, kind, labels, nlabels, bounds, nbounds)) {
            *existed = true;
            *err = 0;
            return old;
        }
        why = "already registered with another type, labels or buckets";
        goto refused;
    }
    if (clashes(reg, name, kind)) {
        why = "clashes with a histogram's _bucket, _sum or _count series";
        goto refused;
    }
    if (reg->n >= reg->max) {
        *err = SN_ERR_NOMEM;
        why = "the registry is full (max_metrics)";
        goto refused;
    }

    *err = SN_ERR_NOMEM;
    why = "out of memory";
    f = calloc(1, sizeof(*f));
    if (!f) goto refused;
    f->reg = reg;
    f->kind = kind;
    f->max_series = nlabels ? (max_series ? max_series : SN_METRICS_DEFAULT_MAX_SERIES) : 1;
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    if (!f->name || !f->help) goto refused;
    if (nlabels) {
        f->label_names = calloc(nlabels, sizeof(char *));
        if (!f->label_names) goto refused;
        for (size_t i = 0; i < nlabels; i++) {
            f->label_names[i] = xstrdup(labels[i]);
            if (!f->label_names[i]) goto refused;
            f->nlabels = i + 1;
        }
    }
    if (nbounds) {
        f->bounds = malloc(nbounds * sizeof(double));
        if (!f->bounds) goto refused;
        memcpy(f->bounds, bounds, nbounds * sizeof(double));
        f->nbounds = nbounds;
    }
    if (kind != K_GAUGE_FN && kind != K_GAUGE_VEC_FN) {
        size_t nslots = next_pow2(2 * f->max_series);

        f->slots = calloc(nslots, sizeof(*f->slots));
        f->children = calloc(f->max_series, sizeof(*f->children));
        if (!f->slots || !f->children) goto refused;
        for (size_t i = 0; i < nslots; i++) atomic_init(&f->slots[i], NULL);
        f->mask = nslots - 1;
    }
    atomic_init(&f->nchildren, 0);
    atomic_init(&f->warned, 0);
    reg->families[reg->n++] = f;
    *err = 0;
    return f;
refused:
    family_free(f);
    refuse(reg, name, why);
    return NULL;
}

/* Registers an unlabelled metric and returns its only series, created here so
 * that the hot path never looks it up. */
static void *single_new(sn_metrics_t *reg, enum kind kind, const char *name, const char *help,
                        const double *bounds, size_t nbounds) {
    struct family *f;
    struct child *c = NULL;
    bool existed;
    int err;
    size_t slot = 0;

    if (!reg) return NULL;
    pthread_mutex_lock(&reg->lock);
    f = family_add(reg, kind, name, help, NULL, 0, 1, bounds, nbounds, &existed, &err);
    if (f && existed) {
        c = f->children[0];
    } else if (f) {
        (void)probe(f, hash_values(NULL, NULL, 0), NULL, NULL, &slot);
        c = family_insert(f, hash_values(NULL, NULL, 0), NULL, slot);
        if (!c) {
            reg->families[--reg->n] = NULL;
            family_free(f);
            refuse(reg, name, "out of memory");
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return c ? c->cell : NULL;
}

static void *vec_new(sn_metrics_t *reg, enum kind kind, const char *name, const char *help,
                     const char *const *labels, size_t nlabels, size_t max_series,
                     const double *bounds, size_t nbounds) {
    struct family *f;
    bool existed;
    int err;

    if (!reg) return NULL;
    pthread_mutex_lock(&reg->lock);
    if (nlabels == 0) {
        refuse(reg, name, "a labelled family needs at least one label name");
        f = NULL;
    } else {
        f = family_add(reg, kind, name, help, labels, nlabels, max_series, bounds, nbounds,
                       &existed, &err);
    }
    pthread_mutex_unlock(&reg->lock);
    return f;
}

sn_metrics_t *sn_metrics_new(size_t max_metrics, char *errstr, size_t errstr_size) {
    sn_metrics_t *reg = NULL;

    if (max_metrics == 0) max_metrics = SN_METRICS_DEFAULT_MAX_METRICS;
    if (max_metrics > SN_METRICS_MAX_METRICS) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "metrics: max_metrics %zu is above %d",
                   max_metrics, SN_METRICS_MAX_METRICS);
        return NULL;
    }
    reg = calloc(1, sizeof(*reg));
    if (!reg) goto nomem;
    reg->max = max_metrics;
    reg->families = calloc(max_metrics, sizeof(*reg->families));
    if (!reg->families) goto nomem;
    pthread_mutex_init(&reg->lock, NULL);
    reg->rejected = sn_metrics_counter(
        reg, SN_METRICS_REJECTED_NAME,
        "Metrics, label sets and samples refused because a registry bound was reached or the "
        "name or value was invalid.");
    if (!reg->rejected) {
        sn_metrics_destroy(reg);
        reg = NULL;
        goto nomem;
    }
    return reg;
nomem:
    if (reg) free(reg->families);
    free(reg);
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "metrics: out of memory");
    return NULL;
}

void sn_metrics_destroy(sn_metrics_t *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++) family_free(reg->families[i]);
    free(reg->families);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

sn_counter_t *sn_metrics_counter(sn_metrics_t *reg, const char *name, const char *help) {
    return single_new(reg, K_COUNTER, name, help, NULL, 0);
}

sn_gauge_t *sn_metrics_gauge(sn_metrics_t *reg, const char *name, const char *help) {
    return single_new(reg, K_GAUGE, name, help, NULL, 0);
}

sn_gauge_t *sn_metrics_gauge_int(sn_metrics_t *reg, const char *name, const char *help) {
    return single_new(reg, K_GAUGE_INT, name, help, NULL, 0);
}

sn_histogram_t *sn_metrics_histogram(sn_metrics_t *reg, const char *name, const char *help,
                                     const double *bounds, size_t nbounds) {
    return single_new(reg, K_HISTOGRAM, name, help, bounds, nbounds);
}

sn_counter_vec_t *sn_metrics_counter_vec(sn_metrics_t *reg, const char *name, const char *help,
                                         const char *const *labels, size_t nlabels,
                                         size_t max_series) {
    return vec_new(reg, K_COUNTER, name, help, labels, nlabels, max_series, NULL, 0);
}

sn_gauge_vec_t *sn_metrics_gauge_vec(sn_metrics_t *reg, const char *name, const char *help,
                                     const char *const *labels, size_t nlabels, size_t max_series) {
    return vec_new(reg, K_GAUGE, name, help, labels, nlabels, max_series, NULL, 0);
}

sn_gauge_vec_t *sn_metrics_gauge_int_vec(sn_metrics_t *reg, const char *name, const char *help,
                                         const char *const *labels, size_t nlabels,
                                         size_t max_series) {
    return vec_new(reg, K_GAUGE_INT, name, help, labels, nlabels, max_series, NULL, 0);
}

sn_histogram_vec_t *sn_metrics_histogram_vec(sn_metrics_t *reg, const char *name, const char *help,
                                             const char *const *labels, size_t nlabels,
                                             size_t max_series, const double *bounds,
                                             size_t nbounds) {
    return vec_new(reg, K_HISTOGRAM, name, help, labels, nlabels, max_series, bounds, nbounds);
}

sn_counter_t *sn_counter_vec_get(sn_counter_vec_t *vec, const char *const *values) {
    return family_get((struct family *)vec, values);
}

sn_gauge_t *sn_gauge_vec_get(sn_gauge_vec_t *vec, const char *const *values) {
    return family_get((struct family *)vec, values);
}

sn_histogram_t *sn_histogram_vec_get(sn_histogram_vec_t *vec, const char *const *values) {
    return family_get((struct family *)vec, values);
}

/* ---- callbacks ----------------------------------------------------------- */

/* Shared by both callback kinds: registering again with the same shape swaps
 * the callback in place, so a component re-created inside the process can
 * re-attach to its metric. */
static int fn_register(sn_metrics_t *reg, enum kind kind, const char *name, const char *help,
                       const char *const *labels, size_t nlabels, size_t max_series,
                       sn_metrics_value_cb fn, sn_metrics_collect_cb collect, void *opaque) {
    struct family *f;
    bool existed;
    int err = SN_ERR_INVALID;

    if (!reg) return SN_ERR_INVALID;
    pthread_mutex_lock(&reg->lock);
    if (!fn && !collect) {
        refuse(reg, name, "NULL callback");
    } else if (kind == K_GAUGE_VEC_FN && nlabels == 0) {
        refuse(reg, name, "a labelled family needs at least one label name");
    } else {
        f = family_add(reg, kind, name, help, labels, nlabels, max_series, NULL, 0, &existed, &err);
        if (f) {
            f->fn = fn;
            f->collect = collect;
            f->opaque = opaque;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return err;
}

int sn_metrics_gauge_fn(sn_metrics_t *reg, const char *name, const char *help,
                        sn_metrics_value_cb fn, void *opaque) {
    return fn_register(reg, K_GAUGE_FN, name, help, NULL, 0, 1, fn, NULL, opaque);
}

int sn_metrics_gauge_vec_fn(sn_metrics_t *reg, const char *name, const char *help,
                            const char *const *labels, size_t nlabels, size_t max_series,
                            sn_metrics_collect_cb fn, void *opaque) {
    return fn_register(reg, K_GAUGE_VEC_FN, name, help, labels, nlabels, max_series, NULL, fn,
                       opaque);
}

size_t sn_metrics_unregister_fn(sn_metrics_t *reg, void *opaque) {
    size_t n = 0;

    if (!reg) return 0;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++) {
        struct family *f = reg->families[i];

        if ((f->fn || f->collect) && f->opaque == opaque) {
            f->fn = NULL;
            f->collect = NULL;
            f->opaque = NULL;
            n++;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return n;
}

/* Writes one collected sample, the family header before the first one, so that
 * a collector reporting nothing leaves no empty family behind. Values are
 * validated here because they never become stored series. */
int sn_metrics_emit(sn_metrics_emitter_t *em, const char *const *values, double value) {
    struct family *f;
    char num[NUM_MAX];

    if (!em) return SN_ERR_INVALID;
    f = em->f;
    if (isnan(value)) return 0;
    if (em->n >= f->max_series) {
        sn_counter_inc(f->reg->rejected);
        warn_once(f, WARNED_BOUND, "the collector reported more than max_series samples");
        return SN_ERR_NOMEM;
    }
    if (f->nlabels && !values) goto invalid;
    for (size_t i = 0; i < f->nlabels; i++)
        if (!valid_value(values[i])) goto invalid;
    if (!em->header_done) {
        w_header(em->w, f);
        em->header_done = 1;
    }
    fmt_double(num, sizeof(num), value);
    w_puts(em->w, f->name);
    if (f->nlabels) {
        w_put(em->w, "{", 1);
        w_label_pairs(em->w, f, values);
        w_put(em->w, "}", 1);
    }
    w_put(em->w, " ", 1);
    w_puts(em->w, num);
    w_put(em->w, "\n", 1);
    em->n++;
    return 0;
invalid:
    sn_counter_inc(f->reg->rejected);
    warn_once(f, WARNED_INVALID, "a collected label value is not UTF-8 or is too long");
    return SN_ERR_INVALID;
}

/* ---- updates --------------------------------------------------------------- */

void sn_counter_inc(sn_counter_t *c) {
    if (c) atomic_fetch_add_explicit(&c->n, 1, memory_order_relaxed);
}

void sn_counter_add(sn_counter_t *c, uint64_t n) {
    if (c) atomic_fetch_add_explicit(&c->n, n, memory_order_relaxed);
}

void sn_counter_add_double(sn_counter_t *c, double v) {
    if (c && isfinite(v) && v > 0) atomic_add_double(&c->frac, v);
}

double sn_counter_value(const sn_counter_t *c) {
    if (!c) return 0;
    return (double)atomic_load_explicit(&c->n, memory_order_relaxed) +
           u2d(atomic_load_explicit(&c->frac, memory_order_relaxed));
}

/* Rounds to the nearest int64, saturating, for doubles written to int gauges. */
static int64_t to_int64(double v) {
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)llround(v);
}

void sn_gauge_set(sn_gauge_t *g, double v) {
    if (!g) return;
    if (!g->is_int)
        atomic_store_explicit(&g->d, d2u(v), memory_order_relaxed);
    else if (!isnan(v))
        atomic_store_explicit(&g->i, to_int64(v), memory_order_relaxed);
}

void sn_gauge_add(sn_gauge_t *g, double v) {
    if (!g) return;
    if (!g->is_int)
        atomic_add_double(&g->d, v);
    else if (!isnan(v))
        atomic_fetch_add_explicit(&g->i, to_int64(v), memory_order_relaxed);
}

void sn_gauge_set_int(sn_gauge_t *g, int64_t v) {
    if (!g) return;
    if (g->is_int)
        atomic_store_explicit(&g->i, v, memory_order_relaxed);
    else
        atomic_store_explicit(&g->d, d2u((double)v), memory_order_relaxed);
}

void sn_gauge_add_int(sn_gauge_t *g, int64_t v) {
    if (!g) return;
    if (g->is_int)
        atomic_fetch_add_explicit(&g->i, v, memory_order_relaxed);
    else
        atomic_add_double(&g->d, (double)v);
}

void sn_gauge_inc(sn_gauge_t *g) { sn_gauge_add_int(g, 1); }

void sn_gauge_dec(sn_gauge_t *g) { sn_gauge_add_int(g, -1); }

double sn_gauge_value(const sn_gauge_t *g) {
    if (!g) return 0;
    if (g->is_int) return (double)atomic_load_explicit(&g->i, memory_order_relaxed);
    return u2d(atomic_load_explicit(&g->d, memory_order_relaxed));
}

/* Index of the first bucket whose upper bound is >= v (le is inclusive); n for
 * the +Inf bucket. A linear scan beats a binary search on the short arrays
 * most histograms have. */
static size_t bucket_index(const double *b, size_t n, double v) {
    size_t lo = 0, hi = n;

    if (n <= 8) {
        while (lo < n && v > b[lo]) lo++;
        return lo;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v > b[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void sn_histogram_observe(sn_histogram_t *h, double v) {
    if (!h || isnan(v)) return;
    atomic_fetch_add_explicit(&h->buckets[bucket_index(h->bounds, h->nbounds, v)], 1,
                              memory_order_relaxed);
    atomic_add_double(&h->sum, v);
}

uint64_t sn_histogram_count(const sn_histogram_t *h) {
    uint64_t n = 0;

    if (!h) return 0;
    for (size_t i = 0; i <= h->nbounds; i++)
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return n;
}

double sn_histogram_sum(const sn_histogram_t *h) {
    return h ? u2d(atomic_load_explicit(&h->sum, memory_order_relaxed)) : 0;
}

/* ---- rendering ------------------------------------------------------------- */

/* _count is the running total of the buckets rather than a separate counter, so
 * that it always equals the +Inf bucket even while observations race the scrape
 * (Prometheus requires that; _sum may lag by the observations in flight). */
static void render_histogram(struct writer *w, const struct family *f, const struct child *c) {
    const struct sn_histogram *h = c->cell;
    char num[NUM_MAX], le[NUM_MAX];
    uint64_t cum = 0;

    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->nbounds)
            fmt_double(le, sizeof(le), h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(num, sizeof(num), "%" PRIu64, cum);
        w_sample(w, f, "_bucket", c->labels, le, num);
    }
    fmt_double(num, sizeof(num), u2d(atomic_load_explicit(&h->sum, memory_order_relaxed)));
    w_sample(w, f, "_sum", c->labels, NULL, num);
    snprintf(num, sizeof(num), "%" PRIu64, cum);
    w_sample(w, f, "_count", c->labels, NULL, num);
}

static void render_child(struct writer *w, const struct family *f, const struct child *c) {
    char num[NUM_MAX];

    switch (f->kind) {
    case K_COUNTER: {
        const struct sn_counter *k = c->cell;
        uint64_t n = atomic_load_explicit(&k->n, memory_order_relaxed);
        double frac = u2d(atomic_load_explicit(&k->frac, memory_order_relaxed));

        /* Integers print exactly; only counters given fractions print as doubles. */
        if (frac == 0)
            snprintf(num, sizeof(num), "%" PRIu64, n);
        else
            fmt_double(num, sizeof(num), (double)n + frac);
        break;
    }
    case K_GAUGE_INT: {
        const struct sn_gauge *g = c->cell;

        snprintf(num, sizeof(num), "%" PRId64, atomic_load_explicit(&g->i, memory_order_relaxed));
        break;
    }
    case K_GAUGE: fmt_double(num, sizeof(num), sn_gauge_value(c->cell)); break;
    case K_HISTOGRAM: render_histogram(w, f, c); return;
    default: return;
    }
    w_sample(w, f, "", c->labels, NULL, num);
}

static void render_family(struct writer *w, struct family *f) {
    sn_metrics_emitter_t em = {w, f, 0, 0};
    size_t n;

    switch (f->kind) {
    case K_GAUGE_FN:
        if (f->fn) sn_metrics_emit(&em, NULL, f->fn(f->opaque));
        return;
    case K_GAUGE_VEC_FN:
        if (f->collect) f->collect(f->opaque, &em);
        return;
    default: break;
    }
    n = atomic_load_explicit(&f->nchildren, memory_order_acquire);
    if (n == 0) return;
    w_header(w, f);
    for (size_t i = 0; i < n; i++) render_child(w, f, f->children[i]);
}

static int render(sn_metrics_t *reg, struct writer *w) {
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n && !w->err; i++) render_family(w, reg->families[i]);
    pthread_mutex_unlock(&reg->lock);
    return w->err;
}

int sn_metrics_render(sn_metrics_t *reg, char **out, size_t *out_len, size_t max_bytes) {
    struct writer w = {.max = max_bytes ? max_bytes : SN_METRICS_DEFAULT_MAX_BYTES};
    int err;

    if (!out) return SN_ERR_INVALID;
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!reg) return SN_ERR_INVALID;
    err = render(reg, &w);
    if (!err && !w.buf) w.buf = calloc(1, 1);
    if (!err && !w.buf) err = SN_ERR_NOMEM;
    if (err) {
        free(w.buf);
        return err;
    }
    *out = w.buf;
    if (out_len) *out_len = w.len;
    return 0;
}

int sn_metrics_render_file(sn_metrics_t *reg, FILE *out) {
    struct writer w = {.fp = out};

    if (!reg || !out) return SN_ERR_INVALID;
    if (render(reg, &w) != 0 || ferror(out)) return SN_ERR_IO;
    return 0;
}

/* ---- bucket helpers -------------------------------------------------------- */

int sn_metrics_buckets_exponential(double *out, size_t n, double start, double factor) {
    if (!out || !(start > 0) || !(factor > 1) || !isfinite(start) || !isfinite(factor))
        return SN_ERR_INVALID;
    for (size_t i = 0; i < n; i++, start *= factor) out[i] = start;
    return 0;
}

int sn_metrics_buckets_linear(double *out, size_t n, double start, double width) {
    if (!out || !(width > 0) || !isfinite(start) || !isfinite(width)) return SN_ERR_INVALID;
    for (size_t i = 0; i < n; i++) out[i] = start + (double)i * width;
    return 0;
}
