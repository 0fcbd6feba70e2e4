#include "scoring/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "producers/source_archive.h"
#include "scoring/card.h"
#include "scoring/features.h"
#include "scoring/versions.h"

#define BAD_ROWS_LOGGED 20
#define FAILURE_LINE_MAX 512
#define SPEC_FILE_MAX (1024 * 1024)

/* One event, compactly: the sn_event_t the source fills is ~2.5 KB, this is
 * 24 bytes plus the values, so a few million events fit. */
struct row {
    int64_t ts;
    uint32_t machine; /* index into the machine table */
    uint32_t seq;     /* position in the file: the tie-breaker of the time sort */
    uint8_t label;
};

/* Machine ids, interned: open addressing over a power-of-two table. */
struct machines {
    char (*id)[SN_EVENT_ID_MAX];
    uint32_t n, cap;
    uint32_t *slots; /* index + 1, 0 = empty */
    uint32_t nslots;
    /* failure times per machine (failures mode), sorted */
    int64_t **fail;
    uint32_t *nfail, *capfail;
};

struct sn_trainer {
    sn_trainer_opts_t opts;
    struct machines m;
    struct row *rows;
    double *values; /* rows x nfields, in file order (row.seq) */
    uint32_t nfields;
    size_t nrows, caprows;
    char *spec_text; /* the spec JSON the run used */
    sn_card_t *card;
    uint8_t *model;
    size_t model_len;
    sn_trainer_result_t res;
    size_t holdout_from; /* first holdout row in time order */
    int ran;
};

static double now_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- deterministic random numbers for the reservoir: splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fills res[0..ns) with the indices of a uniform sample of ns of n rows
 * (Algorithm R, ns <= n), seeded by *rng: the same seed, the same sample. */
static void reservoir(size_t *res, size_t n, size_t ns, uint64_t *rng) {
    for (size_t i = 0; i < n; i++) {
        if (i < ns) {
            res[i] = i;
        } else {
            uint64_t j = splitmix64(rng) % (i + 1);

            if (j < ns) res[j] = i;
        }
    }
}

/* ---- machine table ---- */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static int64_t machine_find(const struct machines *m, const char *id) {
    if (!m->nslots) return -1;
    for (uint32_t i = (uint32_t)(fnv1a(id) & (m->nslots - 1));; i = (i + 1) & (m->nslots - 1)) {
        uint32_t s = m->slots[i];

        if (!s) return -1;
        if (strcmp(m->id[s - 1], id) == 0) return s - 1;
    }
}

static int machine_rehash(struct machines *m) {
    uint32_t nslots = m->nslots ? m->nslots * 2 : 1024, *slots = calloc(nslots, sizeof(*slots));

    if (!slots) return SN_ERR_NOMEM;
    for (uint32_t k = 0; k < m->n; k++) {
        uint32_t i = (uint32_t)(fnv1a(m->id[k]) & (nslots - 1));

        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = k + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

static int64_t machine_intern(struct machines *m, const char *id) {
    int64_t k = machine_find(m, id);

    if (k >= 0) return k;
    if ((m->n + 1) * 2 > m->nslots && machine_rehash(m) != 0) return SN_ERR_NOMEM;
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 64;
        void *p = realloc(m->id, (size_t)cap * sizeof(*m->id));

        if (!p) return SN_ERR_NOMEM;
        m->id = p;
        m->cap = cap;
    }
    snprintf(m->id[m->n], SN_EVENT_ID_MAX, "%s", id);
    {
        uint32_t i = (uint32_t)(fnv1a(id) & (m->nslots - 1));

        while (m->slots[i]) i = (i + 1) & (m->nslots - 1);
        m->slots[i] = m->n + 1;
    }
    return m->n++;
}

static void machines_free(struct machines *m) {
    if (m->fail)
        for (uint32_t i = 0; i < m->n; i++) free(m->fail[i]);
    free(m->fail);
    free(m->nfail);
    free(m->capfail);
    free(m->id);
    free(m->slots);
}

/* ---- options ---- */

/* The feature spec tuned for the bundled AI4I data: the sensors as they are
 * plus temperature difference, power and strain, no windows (each AI4I row is
 * another product, so history carries little). A copy of
 * tests/data/model/ai4i_features.json; a unit test keeps the two equal. */
static const char ai4i_spec[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"bucket_ms\": 60000,\n"
    "  \"retention_ms\": 3600000,\n"
    "  \"inputs\": [\"air_temperature_k\", \"process_temperature_k\", \"rotational_speed_rpm\",\n"
    "             \"torque_nm\", \"tool_wear_min\", \"product_type\"],\n"
    "  \"derived\": [\n"
    "    {\"name\": \"temp_diff_k\", \"op\": \"difference\", \"a\": \"process_temperature_k\", "
    "\"b\": \"air_temperature_k\"},\n"
    "    {\"name\": \"power_w\", \"op\": \"product\", \"a\": \"torque_nm\", \"b\": "
    "\"rotational_speed_rpm\", \"scale\": 0.10471975511965977},\n"
    "    {\"name\": \"strain\", \"op\": \"product\", \"a\": \"tool_wear_min\", \"b\": "
    "\"torque_nm\"}\n"
    "  ],\n"
    "  \"current\": [\"air_temperature_k\", \"process_temperature_k\", \"rotational_speed_rpm\", "
    "\"torque_nm\",\n"
    "              \"tool_wear_min\", \"product_type\", \"temp_diff_k\", \"power_w\", \"strain\"]\n"
    "}\n";

const char *sn_trainer_ai4i_spec_json(void) { return ai4i_spec; }

void sn_trainer_opts_from_conf(const sn_conf_t *conf, sn_trainer_opts_t *o) {
    const char *cw = sn_conf_str(conf, "train.class.weight");

    o->params = (sn_model_params_t){
        .rounds = (int)sn_conf_int(conf, "train.rounds"),
        .early_stopping_rounds = (int)sn_conf_int(conf, "train.early.stopping.rounds"),
        .max_depth = (int)sn_conf_int(conf, "train.max.depth"),
        .eta = sn_conf_double(conf, "train.eta"),
        .subsample = sn_conf_double(conf, "train.subsample"),
        .colsample_bytree = sn_conf_double(conf, "train.colsample.bytree"),
        .min_child_weight = sn_conf_double(conf, "train.min.child.weight"),
        .lambda = sn_conf_double(conf, "train.lambda"),
        .gamma = sn_conf_double(conf, "train.gamma"),
        .scale_pos_weight = sn_conf_double(conf, "train.scale.pos.weight"),
        .eval_metric = sn_conf_str(conf, "train.eval.metric"),
        .seed = (uint64_t)sn_conf_int(conf, "train.seed"),
        .nthread = (int)sn_conf_int(conf, "train.nthread"),
    };
    o->class_weight = strcmp(cw, "balanced") == 0 ? SN_CLASS_WEIGHT_BALANCED
                      : strcmp(cw, "none") == 0   ? SN_CLASS_WEIGHT_NONE
                                                  : SN_CLASS_WEIGHT_SQRT;
    o->valid_fraction = sn_conf_double(conf, "train.valid.fraction");
    o->holdout_fraction = sn_conf_double(conf, "train.holdout.fraction");
    o->policy =
        (enum sn_threshold_policy)sn_eval_policy_parse(sn_conf_str(conf, "train.threshold.policy"));
    o->target_precision = sn_conf_double(conf, "train.target.precision");
    o->profile_bins = (int)sn_conf_int(conf, "train.profile.bins");
    o->profile_sample = (size_t)sn_conf_int(conf, "train.profile.sample");
    o->max_events = (uint64_t)sn_conf_int(conf, "train.max.events");
    o->model_name = sn_conf_str(conf, "model.name");
    o->label_tag = sn_conf_str(conf, "label.field");
    o->horizon_ms = sn_conf_int(conf, "label.horizon.ms");
    o->spec_path = sn_conf_str(conf, "train.feature.spec");
}

/* ---- reading ---- */

static int sha256_file(const char *path, char hex[65], char *errstr, size_t errstr_size) {
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *fp = fopen(path, "rb");
    size_t n;
    int rc = 0;

    if (!ctx || !fp) {
        rc =
            sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) EVP_DigestUpdate(ctx, buf, n);
    if (ferror(fp)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot read %s", path);
        goto out;
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
out:
    if (fp) fclose(fp);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* A label tag is 0/1 text; anything else is a bad row, not a guess. */
static int parse_label(const sn_event_t *ev, const char *tag, uint8_t *out) {
    for (uint32_t i = 0; i < ev->ntags; i++) {
        const char *v = ev->tags[i].value;

        if (strcmp(ev->tags[i].key, tag) != 0) continue;
        if (!strcmp(v, "1") || !strcmp(v, "1.0") || !strcmp(v, "true")) return *out = 1, 0;
        if (!strcmp(v, "0") || !strcmp(v, "0.0") || !strcmp(v, "false")) return *out = 0, 0;
        return -1;
    }
    return -1;
}

static int add_row(sn_trainer_t *t, const sn_event_t *ev, uint8_t label, char *errstr,
                   size_t errstr_size) {
    int64_t mi;

    if (t->nrows >= t->opts.max_events)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "more than %" PRIu64
                          " events (train.max.events): refusing to cut the data silently",
                          t->opts.max_events);
    if (t->nrows == t->caprows) {
        size_t cap = t->caprows ? t->caprows * 2 : 4096;
        struct row *r = realloc(t->rows, cap * sizeof(*r));
        double *v;

        if (!r) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        t->rows = r;
        if (!(v = realloc(t->values, cap * t->nfields * sizeof(*v))))
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        t->values = v;
        t->caprows = cap;
    }
    if ((mi = machine_intern(&t->m, ev->machine_id)) < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    t->rows[t->nrows] = (struct row){ev->ts_ms, (uint32_t)mi, (uint32_t)t->nrows, label};
    memcpy(t->values + t->nrows * t->nfields, ev->values, t->nfields * sizeof(double));
    t->nrows++;
    return 0;
}

static int read_events(sn_trainer_t *t, char *errstr, size_t errstr_size) {
    sn_source_t *src = NULL;
    sn_event_t *ev = malloc(sizeof(*ev));
    char why[512];
    int rc = 0, r;

    if (!ev) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if (!(src = sn_source_new(&t->opts.source, t->opts.schema, errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }
    while ((r = sn_source_next(src, ev, why, sizeof(why))) != 0) {
        uint8_t label = 0;

        if (r < 0 && r != SN_ERR_INVALID) { /* the input cannot be read further */
            rc = sn_err_set(errstr, errstr_size, r, "%s", why);
            goto out;
        }
        if (r < 0) {
            if (++t->res.bad_rows <= BAD_ROWS_LOGGED)
                sn_log_warn("train", "skipping a bad row: %s", why);
            continue;
        }
        if (!t->opts.failures_path && parse_label(ev, t->opts.label_tag, &label) != 0) {
            if (++t->res.bad_rows <= BAD_ROWS_LOGGED)
                sn_log_warn("train", "skipping an event of %s at %" PRId64 ": no 0/1 tag \"%s\"",
                            ev->machine_id, ev->ts_ms, t->opts.label_tag);
            continue;
        }
        if ((rc = add_row(t, ev, label, errstr, errstr_size)) != 0) goto out;
    }
    if (t->res.bad_rows > BAD_ROWS_LOGGED)
        sn_log_warn("train", "%" PRIu64 " bad rows skipped in all", t->res.bad_rows);
    if (sn_source_archive(src)) {
        sn_source_archive_t *a = sn_source_archive(src);
        sn_source_archive_stats_t st;

        sn_source_archive_digest(a, t->res.data_sha256);
        sn_source_archive_stats(a, &st);
        t->res.bad_rows += st.bad;
        sn_log_info("train",
                    "archive %s: %" PRIu64 " objects (%" PRIu64 " raw, skipped), %" PRIu64
                    " records, %" PRIu64 " in range, %" PRIu64 " late, %" PRIu64
                    " duplicates dropped",
                    sn_source_archive_location(a), st.objects, st.raw_objects, st.records,
                    st.delivered, st.late, st.duplicates);
    }
out:
    sn_source_destroy(src);
    free(ev);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Reads "machine_id,ts_ms[,mode]" lines (as `sentinel produce --fleet
 * --failures-out` writes them) into per-machine sorted failure times.
 * Failures of machines with no events are irrelevant and skipped. */
static int read_failures(sn_trainer_t *t, char *errstr, size_t errstr_size) {
    FILE *fp = fopen(t->opts.failures_path, "r");
    char line[FAILURE_LINE_MAX];
    uint64_t lineno = 0, used = 0;
    struct machines *m = &t->m;
    int rc = 0;

    if (!fp)
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot open %s: %s",
                          t->opts.failures_path, strerror(errno));
    m->fail = calloc(m->n ? m->n : 1, sizeof(*m->fail));
    m->nfail = calloc(m->n ? m->n : 1, sizeof(*m->nfail));
    m->capfail = calloc(m->n ? m->n : 1, sizeof(*m->capfail));
    if (!m->fail || !m->nfail || !m->capfail) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (fgets(line, sizeof(line), fp)) {
        char *comma, *end, *p = line;
        long long ts;
        int64_t mi;

        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!*p || *p == '#') continue;
        if (!(comma = strchr(p, ','))) goto bad;
        *comma = '\0';
        errno = 0;
        ts = strtoll(comma + 1, &end, 10);
        if (errno || end == comma + 1 || (*end && *end != ',')) {
            if (lineno == 1) continue; /* a header line */
            goto bad;
        }
        if ((mi = machine_find(m, p)) < 0) continue;
        if (m->nfail[mi] == m->capfail[mi]) {
            uint32_t cap = m->capfail[mi] ? m->capfail[mi] * 2 : 8;
            int64_t *f = realloc(m->fail[mi], cap * sizeof(*f));

            if (!f) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
                goto out;
            }
            m->fail[mi] = f;
            m->capfail[mi] = cap;
        }
        m->fail[mi][m->nfail[mi]++] = ts;
        used++;
        continue;
    bad:
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "%s:%" PRIu64 ": expected machine_id,ts_ms[,mode]", t->opts.failures_path,
                        lineno);
        goto out;
    }
    for (uint32_t i = 0; i < m->n; i++)
        if (m->nfail[i] > 1) qsort(m->fail[i], m->nfail[i], sizeof(int64_t), cmp_i64);
    sn_log_info("train", "%" PRIu64 " failures of known machines in %s", used,
                t->opts.failures_path);
out:
    fclose(fp);
    return rc;
}

/* An event is positive when its machine fails within [ts, ts + horizon]:
 * the reading taken at the failure itself counts, one after it does not. */
static void label_from_failures(sn_trainer_t *t) {
    for (size_t i = 0; i < t->nrows; i++) {
        struct row *r = &t->rows[i];
        const int64_t *f = t->m.fail[r->machine];
        uint32_t lo = 0, hi = t->m.nfail[r->machine];

        while (lo < hi) { /* first failure at or after ts */
            uint32_t mid = lo + (hi - lo) / 2;

            if (f[mid] < r->ts)
                lo = mid + 1;
            else
                hi = mid;
        }
        r->label = lo < t->m.nfail[r->machine] && f[lo] - r->ts <= t->opts.horizon_ms;
    }
}

static int cmp_row(const void *a, const void *b) {
    const struct row *x = a, *y = b;

    if (x->ts != y->ts) return (x->ts > y->ts) - (x->ts < y->ts);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int check_opts(const sn_trainer_opts_t *o, char *errstr, size_t errstr_size) {
    if (!o->schema || !o->source.path || !*o->source.path || strcmp(o->source.path, "-") == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "training needs an input file or archive (it is hashed into the card)");
    if (o->source.kind != SN_SOURCE_CSV && o->source.kind != SN_SOURCE_JSONL &&
        o->source.kind != SN_SOURCE_ARCHIVE)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "training reads CSV, JSON lines or the archive");
    if (!o->failures_path && (!o->label_tag || !*o->label_tag))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "no labels: give a label tag or a failures file");
    if (o->failures_path && o->horizon_ms < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "the label horizon must be >= 0");
    if (!(o->valid_fraction > 0 && o->holdout_fraction > 0 &&
          o->valid_fraction + o->holdout_fraction < 0.9))
        return sn_err_set(
            errstr, errstr_size, SN_ERR_INVALID,
            "validation and holdout fractions must be > 0 and leave rows to train on");
    if (o->profile_bins < 2 || o->max_events == 0 || o->params.nthread < 1)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "bad profile bins, event bound or thread count");
    if (o->policy != SN_THRESHOLD_MAX_F1 && o->policy != SN_THRESHOLD_PRECISION)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "unknown threshold policy");
    return 0;
}

sn_trainer_t *sn_trainer_new(const sn_trainer_opts_t *opts, char *errstr, size_t errstr_size) {
    sn_trainer_t *t = NULL;
    struct stat st;
    uint64_t pos = 0;
    double t0 = now_s();

    if (check_opts(opts, errstr, errstr_size) != 0) return NULL;
    if (opts->source.kind != SN_SOURCE_ARCHIVE &&
        (stat(opts->source.path, &st) != 0 || !S_ISREG(st.st_mode))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s is not a readable regular file",
                   opts->source.path);
        return NULL;
    }
    if (!(t = calloc(1, sizeof(*t)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->opts = *opts;
    t->nfields = opts->schema->nfields;
    if (t->nfields == 0 || t->nfields > SN_EVENT_FIELDS_MAX) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "the schema has %u numeric fields",
                   t->nfields);
        goto fail;
    }
    /* an archive read is hashed by the list of objects it read (read_events) */
    if (opts->source.kind != SN_SOURCE_ARCHIVE &&
        sha256_file(opts->source.path, t->res.data_sha256, errstr, errstr_size) != 0)
        goto fail;
    if (read_events(t, errstr, errstr_size) != 0) goto fail;
    if (t->nrows < 100) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "%zu usable events in %s: too few to train on", t->nrows, opts->source.path);
        goto fail;
    }
    if (opts->failures_path) {
        if (read_failures(t, errstr, errstr_size) != 0) goto fail;
        label_from_failures(t);
    }
    qsort(t->rows, t->nrows, sizeof(*t->rows), cmp_row);
    for (size_t i = 0; i < t->nrows; i++) pos += t->rows[i].label;
    if (pos == 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "no positive labels among %zu events",
                   t->nrows);
        goto fail;
    }
    t->res.events = t->nrows;
    t->res.machines = t->m.n;
    t->res.read_seconds = now_s() - t0;
    sn_log_info("train",
                "read %zu events of %u machines (%" PRIu64 " positive, %" PRIu64
                " bad rows) in %.2f s",
                t->nrows, t->m.n, pos, t->res.bad_rows, t->res.read_seconds);
    return t;
fail:
    sn_trainer_destroy(t);
    return NULL;
}

void sn_trainer_destroy(sn_trainer_t *t) {
    if (!t) return;
    machines_free(&t->m);
    free(t->rows);
    free(t->values);
    free(t->spec_text);
    free(t->model);
    sn_card_destroy(t->card);
    free(t);
}

/* ---- features ---- */

static int load_spec_text(const sn_trainer_opts_t *o, char **out, char *errstr,
                          size_t errstr_size) {
    FILE *fp;
    long n;

    *out = NULL;
    if (o->spec_json) {
        *out = strdup(o->spec_json);
    } else if (!o->spec_path || !*o->spec_path) {
        *out = strdup(sn_feature_spec_default_json());
    } else {
        if (!(fp = fopen(o->spec_path, "rb")))
            return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot open %s: %s", o->spec_path,
                              strerror(errno));
        if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || n > SPEC_FILE_MAX ||
            fseek(fp, 0, SEEK_SET) != 0) {
            fclose(fp);
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s: unreadable or over %d bytes", o->spec_path, SPEC_FILE_MAX);
        }
        if ((*out = malloc((size_t)n + 1)) && fread(*out, 1, (size_t)n, fp) == (size_t)n) {
            (*out)[n] = '\0';
        } else if (*out) {
            free(*out);
            *out = NULL;
            fclose(fp);
            return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot read %s", o->spec_path);
        }
        fclose(fp);
    }
    return *out ? 0 : sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
}

static sn_feature_spec_t *spec_open(const sn_trainer_t *t, const char *text, char *errstr,
                                    size_t errstr_size) {
    sn_feature_spec_t *spec = sn_feature_spec_parse(text, strlen(text), errstr, errstr_size);

    if (spec && sn_feature_spec_bind(spec, t->opts.schema->field_index, t->opts.schema->opaque,
                                     errstr, errstr_size) != 0) {
        sn_feature_spec_destroy(spec);
        return NULL;
    }
    return spec;
}

/* Replays every event, in time order, through a fresh in-memory engine and
 * keeps the vectors of rows [from, nrows) in x (row-major, (nrows - from) *
 * nfeatures). Earlier rows are replayed too: their windows feed the later
 * vectors, exactly as the scorer's state would. */
static int replay(const sn_trainer_t *t, const sn_feature_spec_t *spec, size_t from, float *x,
                  char *errstr, size_t errstr_size) {
    size_t nf = sn_feature_spec_nfeatures(spec);
    sn_features_t *f = sn_features_new(spec, t->m.n, errstr, errstr_size);
    sn_event_t *ev = calloc(1, sizeof(*ev));
    float *scratch = malloc(nf * sizeof(*scratch));
    int rc = 0;

    if (!f || !ev || !scratch) {
        rc = f ? sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory") : SN_ERR_INVALID;
        goto out;
    }
    for (size_t i = 0; i < t->nrows; i++) {
        const struct row *r = &t->rows[i];
        float *out = i >= from ? x + (i - from) * nf : scratch;
        int bits;

        snprintf(ev->machine_id, sizeof(ev->machine_id), "%s", t->m.id[r->machine]);
        ev->ts_ms = r->ts;
        ev->nvalues = t->nfields;
        memcpy(ev->values, t->values + (size_t)r->seq * t->nfields, t->nfields * sizeof(double));
        if ((bits = sn_features_apply(f, ev, 0, -1, out)) < 0) {
            rc =
                sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "features of %s at %" PRId64 ": %s",
                           ev->machine_id, ev->ts_ms, sn_err_str(bits));
            goto out;
        }
    }
out:
    free(scratch);
    free(ev);
    sn_features_destroy(f);
    return rc;
}

/* ---- splitting ---- */

/* Moves a cut forward past events sharing the event time just before it, so
 * that one instant never lands in two splits. */
static size_t cut_at(const sn_trainer_t *t, size_t cut) {
    while (cut > 0 && cut < t->nrows && t->rows[cut].ts == t->rows[cut - 1].ts) cut++;
    return cut;
}

static void split_stats(const sn_trainer_t *t, const size_t *idx, size_t n, sn_trainer_split_t *s) {
    memset(s, 0, sizeof(*s));
    s->events = n;
    for (size_t i = 0; i < n; i++) s->positives += t->rows[idx[i]].label;
    if (n) {
        s->from_ms = t->rows[idx[0]].ts;
        s->to_ms = t->rows[idx[n - 1]].ts;
    }
}

/* Copies the chosen rows of x (all rows, time order) into a contiguous
 * matrix and label vector for XGBoost. */
static int gather(const sn_trainer_t *t, const float *x, size_t nf, const size_t *idx, size_t n,
                  float **xo, uint8_t **yo) {
    *xo = malloc((n ? n : 1) * nf * sizeof(**xo));
    *yo = malloc(n ? n : 1);
    if (!*xo || !*yo) return SN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        memcpy(*xo + i * nf, x + idx[i] * nf, nf * sizeof(float));
        (*yo)[i] = t->rows[idx[i]].label;
    }
    return 0;
}

/* ---- progress ---- */

static void on_round(void *opaque, int round, int rounds, const char *metric, double tv, double vv,
                     int best, double bestv) {
    const sn_trainer_t *t = opaque;

    if (t->opts.progress)
        fprintf(stderr, "\rtrain: round %4d/%d  train-%s %.5f  valid-%s %.5f  best %.5f @ %d   ",
                round + 1, rounds, metric, tv, metric, vv, bestv, best + 1);
    sn_log_debug("train", "round %d: train-%s %.6f valid-%s %.6f", round + 1, metric, tv, metric,
                 vv);
}

/* ---- profile ---- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

/* Quantile bins of every feature over the training rows, and one reservoir
 * sample of rows (Algorithm R, seeded) shared by all features, so the drift
 * job can run PSI on the bins and KS on the sample. */
static json_t *build_profile(const sn_trainer_t *t, const sn_feature_spec_t *spec, const float *x,
                             const size_t *idx, size_t n) {
    size_t nf = sn_feature_spec_nfeatures(spec), bins = (size_t)t->opts.profile_bins;
    size_t ns = t->opts.profile_sample < n ? t->opts.profile_sample : n;
    size_t *res = malloc((ns ? ns : 1) * sizeof(*res));
    float *vals = malloc((n ? n : 1) * sizeof(*vals));
    json_t *features = json_array(), *prof = NULL;
    uint64_t rng = t->opts.params.seed;

    if (!res || !vals || !features) goto out;
    reservoir(res, n, ns, &rng);
    /* sample rows in time order: readable, and independent of the draw order */
    for (size_t i = 1; i < ns; i++)
        for (size_t k = i; k > 0 && res[k - 1] > res[k]; k--) {
            size_t tmp = res[k];

            res[k] = res[k - 1];
            res[k - 1] = tmp;
        }
    for (size_t f = 0; f < nf; f++) {
        json_t *edges = json_array(), *counts = json_array(), *sample = json_array();
        size_t m = 0, missing;
        size_t *cnt = calloc(bins, sizeof(*cnt));

        for (size_t i = 0; i < n; i++) {
            float v = x[idx[i] * nf + f];

            if (!isnan(v)) vals[m++] = v;
        }
        missing = n - m;
        qsort(vals, m, sizeof(float), cmp_float);
        for (size_t k = 0; k <= bins; k++)
            json_array_append_new(
                edges,
                json_real(m ? (double)vals[(size_t)((double)k * (double)(m - 1) / (double)bins)]
                            : 0.0));
        if (cnt && m) {
            sn_card_profile_t p = {.bins = bins};
            double *e = malloc((bins + 1) * sizeof(*e));

            if (e) {
                for (size_t k = 0; k <= bins; k++) e[k] = json_real_value(json_array_get(edges, k));
                p.edges = e;
                for (size_t i = 0; i < m; i++) cnt[sn_card_profile_bin(&p, vals[i])]++;
                free(e);
            }
        }
        for (size_t k = 0; k < bins; k++)
            json_array_append_new(counts, json_integer(cnt ? (json_int_t)cnt[k] : 0));
        for (size_t s = 0; s < ns; s++) {
            float v = x[idx[res[s]] * nf + f];

            if (!isnan(v)) json_array_append_new(sample, json_real(v));
        }
        free(cnt);
        json_array_append_new(features,
                              json_pack("{s:s, s:o, s:o, s:I, s:o}", "name",
                                        sn_feature_spec_name(spec, f), "edges", edges, "counts",
                                        counts, "missing", (json_int_t)missing, "sample", sample));
    }
    prof = json_pack("{s:i, s:I, s:I, s:o}", "bins", (int)bins, "sample_seed",
                     (json_int_t)t->opts.params.seed, "rows", (json_int_t)n, "features", features);
    features = NULL;
out:
    json_decref(features);
    free(res);
    free(vals);
    return prof;
}

/* The profile of the model's scores on the holdout: the same shape as a
 * feature's (quantile edges, counts, missing, a seeded reservoir sample).
 * The holdout and not validation: validation chose the early-stopping round
 * and the threshold, so its scores are fitted to; the holdout is the newest
 * data the model never adapted to, the closest to what the scorer will see
 * next. */
static json_t *build_score_profile(const sn_trainer_t *t, const float *p, size_t n) {
    size_t bins = (size_t)t->opts.profile_bins, m = 0;
    size_t ns = t->opts.profile_sample < n ? t->opts.profile_sample : n;
    float *vals = malloc((n ? n : 1) * sizeof(*vals));
    size_t *res = malloc((ns ? ns : 1) * sizeof(*res));
    uint64_t *cnt = calloc(bins, sizeof(*cnt));
    double *e = malloc((bins + 1) * sizeof(*e));
    json_t *edges = json_array(), *counts = json_array(), *sample = json_array(), *out = NULL;
    uint64_t rng = t->opts.params.seed ^ 0x73636f7265ULL; /* "score": not the rows' draw */

    if (!vals || !res || !cnt || !e || !edges || !counts || !sample) goto out;
    for (size_t i = 0; i < n; i++)
        if (!isnan(p[i])) vals[m++] = p[i];
    reservoir(res, n, ns, &rng);
    for (size_t s = 0; s < ns; s++)
        if (!isnan(p[res[s]])) json_array_append_new(sample, json_real(p[res[s]]));
    qsort(vals, m, sizeof(float), cmp_float);
    for (size_t k = 0; k <= bins; k++) {
        e[k] = m ? (double)vals[(size_t)((double)k * (double)(m - 1) / (double)bins)] : 0.0;
        json_array_append_new(edges, json_real(e[k]));
    }
    if (m) {
        sn_card_profile_t prof = {.bins = bins, .edges = e};

        for (size_t i = 0; i < m; i++) cnt[sn_card_profile_bin(&prof, vals[i])]++;
    }
    for (size_t k = 0; k < bins; k++)
        json_array_append_new(counts, json_integer((json_int_t)cnt[k]));
    out = json_pack("{s:s, s:o, s:o, s:I, s:o, s:s}", "name", "score", "edges", edges, "counts",
                    counts, "missing", (json_int_t)(n - m), "sample", sample, "split", "holdout");
    edges = counts = sample = NULL;
out:
    json_decref(edges);
    json_decref(counts);
    json_decref(sample);
    free(vals);
    free(res);
    free(cnt);
    free(e);
    return out;
}

/* ---- card ---- */

static json_t *report_json(const sn_eval_report_t *r) {
    /* NaN has no JSON spelling: an undefined metric is null */
#define NUM(v) (isnan(v) ? json_null() : json_real(v))
    return json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I}", "n",
                     (json_int_t)r->n, "positives", (json_int_t)r->positives, "pr_auc",
                     NUM(r->pr_auc), "roc_auc", NUM(r->roc_auc), "best_f1", NUM(r->best_f1),
                     "best_f1_threshold", NUM(r->best_f1_threshold), "precision",
                     NUM(r->at.precision), "recall", NUM(r->at.recall), "f1", NUM(r->at.f1),
                     "alerts_per_1000", NUM(r->at.alerts_per_1000), "tp", (json_int_t)r->at.tp,
                     "fp", (json_int_t)r->at.fp, "fn", (json_int_t)r->at.fn);
#undef NUM
}

static json_t *split_json(const sn_trainer_split_t *s) {
    return json_pack("{s:I, s:I, s:I, s:I}", "events", (json_int_t)s->events, "positives",
                     (json_int_t)s->positives, "from_ms", (json_int_t)s->from_ms, "to_ms",
                     (json_int_t)s->to_ms);
}

static void utc_now(char *buf, size_t size) {
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int build_card(sn_trainer_t *t, const sn_feature_spec_t *spec, json_t *profile, char *errstr,
                      size_t errstr_size) {
    const sn_trainer_result_t *r = &t->res;
    size_t nf = sn_feature_spec_nfeatures(spec);
    char created[32], xgbv[32], fsha[65] = "", *canon = sn_feature_spec_to_json(spec),
                                *params = NULL, *text = NULL;
    json_t *card = NULL, *names = json_array(), *spec_obj = NULL, *label, *params_obj = NULL;
    int rc = 0;

    if (!canon || !names || !(spec_obj = json_loads(canon, 0, NULL))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "card: cannot render the feature spec");
        goto out;
    }
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(names, json_string(sn_feature_spec_name(spec, i)));
    if (t->opts.failures_path &&
        sha256_file(t->opts.failures_path, fsha, errstr, errstr_size) != 0) {
        rc = SN_ERR_IO;
        goto out;
    }
    label = t->opts.failures_path
                ? json_pack("{s:s, s:I, s:s, s:s}", "kind", "failures", "horizon_ms",
                            (json_int_t)t->opts.horizon_ms, "failures_sha256", fsha, "rule",
                            "positive when the machine fails within [ts, ts + horizon_ms]")
                : json_pack("{s:s, s:s}", "kind", "field", "field", t->opts.label_tag);
    params = sn_model_params_json(&t->opts.params, r->train_info.scale_pos_weight);
    params_obj = params ? json_loads(params, 0, NULL) : NULL;
    utc_now(created, sizeof(created));
    card = json_pack("{s:i, s:s, s:n,"
                     " s:{s:s, s:s, s:s, s:I, s:I, s:i},"
                     " s:o, s:o, s:o,"
                     " s:{s:f, s:s, s:o, s:b, s:s},"
                     " s:{s:o, s:o},"
                     " s:{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:{s:o, s:o, s:o}},"
                     " s:o,"
                     " s:{s:o, s:s, s:i, s:i, s:f, s:f, s:f},"
                     " s:{s:s, s:s, s:s, s:s}}",
                     "card_version", SN_CARD_VERSION, "created", created, "parent_version", "model",
                     "name", t->opts.model_name ? t->opts.model_name : "sentinel", "format", "ubj",
                     "sha256", r->model_sha256, "bytes", (json_int_t)r->model_bytes, "nfeatures",
                     (json_int_t)nf, "rounds", r->train_info.best_round + 1, "feature_spec",
                     spec_obj, "feature_names", names, "label", label, "threshold", "value",
                     r->threshold, "policy", sn_eval_policy_str(t->opts.policy), "target_precision",
                     t->opts.policy == SN_THRESHOLD_PRECISION ? json_real(t->opts.target_precision)
                                                              : json_null(),
                     "target_reached", r->threshold_reached, "chosen_on", "validation", "metrics",
                     "validation", report_json(&r->validation), "holdout", report_json(&r->test),
                     "data", "path", t->opts.source.path, "format",
                     t->opts.source.kind == SN_SOURCE_CSV       ? "csv"
                     : t->opts.source.kind == SN_SOURCE_ARCHIVE ? "archive"
                                                                : "jsonl",
                     "sha256", r->data_sha256, "events", (json_int_t)r->events, "bad_rows",
                     (json_int_t)r->bad_rows, "machines", (json_int_t)r->machines, "embargoed",
                     (json_int_t)r->embargoed, "split", "train", split_json(&r->train), "valid",
                     split_json(&r->valid), "holdout", split_json(&r->holdout), "profile", profile,
                     "training", "params", params_obj ? params_obj : json_null(), "eval_metric",
                     r->train_info.metric, "best_round", r->train_info.best_round, "rounds_run",
                     r->train_info.rounds_run, "best_valid", r->train_info.best_valid,
                     "scale_pos_weight", r->train_info.scale_pos_weight, "seconds",
                     r->train_seconds, "libraries", "sentinel", SN_VERSION, "xgboost",
                     sn_scoring_xgboost_version(xgbv, sizeof(xgbv)), "jansson", JANSSON_VERSION,
                     "openssl", OpenSSL_version(OPENSSL_VERSION));
    spec_obj = names = profile = NULL; /* stolen by json_pack, even on failure */
    if (!card || !(text = json_dumps(card, JSON_COMPACT | JSON_REAL_PRECISION(17)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "card: cannot build it");
        goto out;
    }
    /* the card goes through the same parser as every reader's, so an
     * invalid card is found here and not in the scorer */
    if (!(t->card = sn_card_parse(text, strlen(text), errstr, errstr_size))) rc = SN_ERR_INVALID;
out:
    free(text);
    json_decref(card);
    json_decref(spec_obj);
    json_decref(names);
    json_decref(profile);
    free(params);
    free(canon);
    return rc;
}

/* ---- the run ---- */

int sn_trainer_run(sn_trainer_t *t, char *errstr, size_t errstr_size) {
    sn_feature_spec_t *spec = NULL;
    sn_model_t *model = NULL;
    sn_model_ctx_t *ctx = NULL;
    float *x = NULL, *xtr = NULL, *xva = NULL, *xho = NULL, *pva = NULL, *pho = NULL;
    uint8_t *ytr = NULL, *yva = NULL, *yho = NULL;
    size_t *itr = NULL, *iva = NULL, *iho = NULL, ntr = 0, nva = 0, nho = 0, nf, n = t->nrows, c1,
           c2;
    sn_trainer_result_t *r = &t->res;
    sn_model_params_t p = t->opts.params;
    sn_model_data_t dtr, dva;
    json_t *profile = NULL;
    double t0 = now_s(), t1;
    int rc = 0;

    if (t->ran) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "the trainer already ran");
    t->ran = 1;
    if ((rc = load_spec_text(&t->opts, &t->spec_text, errstr, errstr_size)) != 0) return rc;
    if (!(spec = spec_open(t, t->spec_text, errstr, errstr_size))) return SN_ERR_INVALID;
    nf = r->nfeatures = sn_feature_spec_nfeatures(spec);
    if (!(x = malloc(n * nf * sizeof(*x)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory for %zu x %zu features",
                        n, nf);
        goto out;
    }
    if ((rc = replay(t, spec, 0, x, errstr, errstr_size)) != 0) goto out;
    r->feature_seconds = now_s() - t0;

    /* time split: [0, c1) train, [c1, c2) validation, [c2, n) holdout */
    c2 = cut_at(t, (size_t)llround((double)n * (1.0 - t->opts.holdout_fraction)));
    c1 = cut_at(
        t, (size_t)llround((double)n * (1.0 - t->opts.holdout_fraction - t->opts.valid_fraction)));
    if (c1 == 0 || c1 >= c2 || c2 >= n) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "cannot split %zu events by time into three parts", n);
        goto out;
    }
    t->holdout_from = c2;
    itr = malloc(c1 * sizeof(*itr));
    iva = malloc((c2 - c1) * sizeof(*iva));
    iho = malloc((n - c2) * sizeof(*iho));
    if (!itr || !iva || !iho) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        /* a horizon label looks ahead: a row whose horizon reaches the next
         * split would carry knowledge of it, so it is left out */
        int64_t reach = t->opts.failures_path ? t->rows[i].ts + t->opts.horizon_ms : INT64_MIN;

        if (i < c1) {
            if (reach >= t->rows[c1].ts)
                r->embargoed++;
            else
                itr[ntr++] = i;
        } else if (i < c2) {
            if (reach >= t->rows[c2].ts)
                r->embargoed++;
            else
                iva[nva++] = i;
        } else {
            iho[nho++] = i;
        }
    }
    split_stats(t, itr, ntr, &r->train);
    split_stats(t, iva, nva, &r->valid);
    split_stats(t, iho, nho, &r->holdout);
    if (!r->train.positives || !r->valid.positives) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "the %s split has no positive events: nothing to learn or validate on",
                        r->train.positives ? "validation" : "training");
        goto out;
    }
    if (!r->holdout.positives)
        sn_log_warn("train", "the holdout has no positive events: its PR-AUC is undefined");
    if ((rc = gather(t, x, nf, itr, ntr, &xtr, &ytr)) != 0 ||
        (rc = gather(t, x, nf, iva, nva, &xva, &yva)) != 0 ||
        (rc = gather(t, x, nf, iho, nho, &xho, &yho)) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }

    if (p.scale_pos_weight <= 0) {
        double ratio = (double)(r->train.events - r->train.positives) / (double)r->train.positives;

        p.scale_pos_weight = t->opts.class_weight == SN_CLASS_WEIGHT_BALANCED ? ratio
                             : t->opts.class_weight == SN_CLASS_WEIGHT_NONE   ? 1.0
                                                                              : sqrt(ratio);
    }
    dtr = (sn_model_data_t){xtr, ytr, ntr};
    dva = (sn_model_data_t){xva, yva, nva};
    t1 = now_s();
    rc = sn_model_train(&p, nf, &dtr, &dva, on_round, t, &model, &r->train_info, errstr,
                        errstr_size);
    if (t->opts.progress) fputc('\n', stderr);
    if (rc != 0) goto out;
    r->train_seconds = now_s() - t1;
    t->opts.params.scale_pos_weight = p.scale_pos_weight;

    /* threshold on validation, metrics on holdout */
    if (!(ctx = sn_model_ctx_new(errstr, errstr_size)) || !(pva = malloc(nva * sizeof(*pva))) ||
        !(pho = malloc((nho ? nho : 1) * sizeof(*pho)))) {
        rc = ctx ? sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory") : SN_ERR_INVALID;
        goto out;
    }
    if ((rc = sn_model_predict(model, ctx, xva, nva, pva, errstr, errstr_size)) != 0 ||
        (rc = sn_model_predict(model, ctx, xho, nho, pho, errstr, errstr_size)) != 0)
        goto out;
    if ((rc = sn_eval_choose_threshold(pva, yva, nva, t->opts.policy, t->opts.target_precision,
                                       &r->threshold, &r->threshold_reached)) != 0 ||
        (rc = sn_eval_report(pva, yva, nva, r->threshold, &r->validation)) != 0 ||
        (rc = sn_eval_report(pho, yho, nho, r->threshold, &r->test)) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "evaluation failed: %s",
                        sn_err_str(rc));
        goto out;
    }
    if (!r->threshold_reached)
        sn_log_warn(
            "train",
            "no threshold reaches precision %.3f on validation; using the most precise one (%.4f)",
            t->opts.target_precision, r->threshold);
    if ((rc = sn_model_save(model, "ubj", &t->model, &t->model_len, errstr, errstr_size)) != 0)
        goto out;
    r->model_bytes = t->model_len;
    sn_card_sha256_hex(t->model, t->model_len, r->model_sha256);
    if (!(profile = build_profile(t, spec, x, itr, ntr))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory for the profile");
        goto out;
    }
    if (nho) {
        json_t *sp = build_score_profile(t, pho, nho);

        if (!sp || json_object_set_new(profile, "score", sp) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory for the profile");
            goto out;
        }
    }
    r->total_seconds = now_s() - t0 + r->read_seconds;
    rc = build_card(t, spec, profile, errstr, errstr_size);
    profile = NULL;
    if (rc == 0)
        sn_log_info(
            "train",
            "holdout PR-AUC %.4f ROC-AUC %.4f F1 %.4f at threshold %.4f (%d rounds, %.2f s)",
            r->test.pr_auc, r->test.roc_auc, r->test.at.f1, r->threshold,
            r->train_info.best_round + 1, r->train_seconds);
out:
    json_decref(profile);
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(model);
    free(pva);
    free(pho);
    free(xtr);
    free(xva);
    free(xho);
    free(ytr);
    free(yva);
    free(yho);
    free(itr);
    free(iva);
    free(iho);
    free(x);
    sn_feature_spec_destroy(spec);
    return rc;
}

const sn_trainer_result_t *sn_trainer_result(const sn_trainer_t *t) { return &t->res; }

const uint8_t *sn_trainer_model(const sn_trainer_t *t, size_t *len) {
    *len = t->model_len;
    return t->model;
}

char *sn_trainer_card(const sn_trainer_t *t) { return t->card ? sn_card_dump(t->card) : NULL; }

static int write_path(const char *dir, const char *name, const void *buf, size_t len, char *errstr,
                      size_t errstr_size) {
    char path[4096], tmp[4200];
    FILE *fp;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "path too long");
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
    if (!(fp = fopen(tmp, "wb")))
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot create %s: %s", tmp,
                          strerror(errno));
    if (fwrite(buf, 1, len, fp) != len || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        fclose(fp);
        unlink(tmp);
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot write %s", tmp);
    }
    fclose(fp);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot rename %s: %s", tmp,
                          strerror(errno));
    }
    return 0;
}

int sn_trainer_write(const sn_trainer_t *t, const char *dir, char *errstr, size_t errstr_size) {
    char *card;
    int rc;

    if (!t->card) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "nothing trained yet");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "cannot create %s: %s", dir,
                          strerror(errno));
    if ((rc = write_path(dir, "model.ubj", t->model, t->model_len, errstr, errstr_size)) != 0)
        return rc;
    if (!(card = sn_card_dump(t->card)))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    rc = write_path(dir, "card.json", card, strlen(card), errstr, errstr_size);
    free(card);
    return rc;
}

/* ---- evaluating another version and the gate ---- */

int sn_trainer_evaluate(sn_trainer_t *t, const uint8_t *model_buf, size_t model_len,
                        const char *card_text, size_t card_len, sn_eval_report_t *out, char *errstr,
                        size_t errstr_size) {
    sn_card_t *card = NULL;
    sn_feature_spec_t *spec = NULL;
    sn_model_t *model = NULL;
    sn_model_ctx_t *ctx = NULL;
    float *x = NULL, *p = NULL;
    uint8_t *y = NULL;
    size_t nho = t->nrows - t->holdout_from, nf;
    int rc = SN_ERR_INVALID;

    if (!t->ran || !t->holdout_from)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "run the trainer first");
    if (!(card = sn_card_parse(card_text, card_len, errstr, errstr_size))) goto out;
    if ((rc = sn_card_verify_model(card, model_buf, model_len, errstr, errstr_size)) != 0) goto out;
    rc = SN_ERR_INVALID;
    if (!(spec = spec_open(t, sn_card_feature_spec(card), errstr, errstr_size))) goto out;
    nf = sn_feature_spec_nfeatures(spec);
    if (!(model =
              sn_model_load(model_buf, model_len, nf, t->opts.params.nthread, errstr, errstr_size)))
        goto out;
    if (!(x = malloc(nho * nf * sizeof(*x))) || !(p = malloc(nho * sizeof(*p))) ||
        !(y = malloc(nho))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nho; i++) y[i] = t->rows[t->holdout_from + i].label;
    if ((rc = replay(t, spec, t->holdout_from, x, errstr, errstr_size)) != 0) goto out;
    if (!(ctx = sn_model_ctx_new(errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }
    if ((rc = sn_model_predict(model, ctx, x, nho, p, errstr, errstr_size)) != 0) goto out;
    if ((rc = sn_eval_report(p, y, nho, sn_card_threshold(card), out)) != 0)
        rc = sn_err_set(errstr, errstr_size, rc, "evaluation failed");
out:
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(model);
    sn_feature_spec_destroy(spec);
    sn_card_destroy(card);
    free(x);
    free(p);
    free(y);
    return rc;
}

int sn_gate_decide(double challenger, double production, int has_production, double min_improvement,
                   const char *version, const char *alias, char *msg, size_t size) {
    if (!has_production) {
        snprintf(msg, size, "no %s model: promoting version %s (PR-AUC %.3f)", alias, version,
                 challenger);
        return 1;
    }
    if (isnan(challenger)) {
        snprintf(msg, size,
                 "challenger PR-AUC undefined (no positives in the holdout): not promoting");
        return 0;
    }
    if (isnan(production) || challenger >= production + min_improvement) {
        snprintf(msg, size, "challenger PR-AUC %.3f >= %s %.3f + %.3f: promoting version %s",
                 challenger, alias, production, min_improvement, version);
        return 1;
    }
    snprintf(msg, size, "challenger PR-AUC %.3f < %s %.3f + %.3f: not promoting", challenger, alias,
             production, min_improvement);
    return 0;
}

int sn_trainer_publish(sn_trainer_t *t, sn_registry_t *reg, const sn_gate_opts_t *o,
                       sn_gate_result_t *res, char *errstr, size_t errstr_size) {
    uint8_t *pm = NULL;
    char *pc = NULL, *card = NULL;
    size_t pm_len = 0, pc_len = 0;
    sn_eval_report_t prod;
    int rc, has_prod = 0;

    memset(res, 0, sizeof(*res));
    res->challenger_pr_auc = t->res.test.pr_auc;
    res->production_pr_auc = NAN;
    if (!t->card) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "nothing trained yet");
    rc = sn_registry_get_alias(reg, o->alias, res->production_version, errstr, errstr_size);
    if (rc == SN_ERR_NOENT)
        res->production_version[0] = '\0';
    else if (rc != 0)
        return rc;
    has_prod = res->production_version[0] != '\0';
    if ((rc = sn_card_set_parent_version(t->card, has_prod ? res->production_version : NULL)) != 0)
        return sn_err_set(errstr, errstr_size, rc, "out of memory");
    /* evaluate production before registering, so that a production version
     * that cannot be judged stops the run without leaving a new version */
    if (o->promote && has_prod) {
        char why[512];

        if ((rc = sn_registry_fetch(reg, res->production_version, &pm, &pm_len, &pc, &pc_len, why,
                                    sizeof(why))) != 0 ||
            (rc = sn_trainer_evaluate(t, pm, pm_len, pc, pc_len, &prod, why, sizeof(why))) != 0) {
            rc = sn_err_set(errstr, errstr_size, rc,
                            "cannot evaluate %s version %s on this holdout: %s", o->alias,
                            res->production_version, why);
            goto out;
        }
        res->production_pr_auc = prod.pr_auc;
    }
    if (!(card = sn_card_dump(t->card))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = sn_registry_register(reg, t->model, t->model_len, card, strlen(card), res->version,
                                   errstr, errstr_size)) != 0)
        goto out;
    sn_log_info("train", "registered %s version %s (%s registry)",
                t->opts.model_name ? t->opts.model_name : "model", res->version,
                sn_registry_kind(reg));
    if (!o->promote) {
        snprintf(res->message, sizeof(res->message), "registered version %s; not asked to promote",
                 res->version);
        goto out;
    }
    res->promoted =
        sn_gate_decide(res->challenger_pr_auc, res->production_pr_auc, has_prod, o->min_improvement,
                       res->version, o->alias, res->message, sizeof(res->message));
    if (res->promoted) {
        if ((rc = sn_registry_set_alias(reg, o->alias, res->version, errstr, errstr_size)) != 0)
            goto out;
        sn_log_info("gate", "%s", res->message);
    } else {
        sn_log_warn("gate", "%s", res->message);
        if (o->challenger_alias && *o->challenger_alias &&
            (rc = sn_registry_set_alias(reg, o->challenger_alias, res->version, errstr,
                                        errstr_size)) != 0)
            goto out;
    }
out:
    free(card);
    free(pm);
    free(pc);
    return rc;
}

/* ---- summary ---- */

void sn_trainer_print_summary(const sn_trainer_t *t, FILE *out) {
    const sn_trainer_result_t *r = &t->res;
    const sn_eval_report_t *v = &r->validation, *h = &r->test;

    fprintf(out, "\n%-22s %12s %12s %12s\n", "", "train", "validation", "holdout");
    fprintf(out, "%-22s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", "events", r->train.events,
            r->valid.events, r->holdout.events);
    fprintf(out, "%-22s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", "positives",
            r->train.positives, r->valid.positives, r->holdout.positives);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "PR-AUC (avg precision)", "", v->pr_auc, h->pr_auc);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "ROC-AUC", "", v->roc_auc, h->roc_auc);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "best F1", "", v->best_f1, h->best_f1);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "precision @ threshold", "", v->at.precision,
            h->at.precision);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "recall @ threshold", "", v->at.recall,
            h->at.recall);
    fprintf(out, "%-22s %12s %12.4f %12.4f\n", "F1 @ threshold", "", v->at.f1, h->at.f1);
    fprintf(out, "%-22s %12s %12.2f %12.2f\n", "alerts / 1000 events", "", v->at.alerts_per_1000,
            h->at.alerts_per_1000);
    fprintf(out,
            "\nthreshold %.6f (%s on validation%s), %zu features, %d of %d rounds (best %s %.5f), "
            "scale_pos_weight %.3f\n",
            r->threshold, sn_eval_policy_str(t->opts.policy),
            r->threshold_reached ? "" : ", target not reached", r->nfeatures,
            r->train_info.best_round + 1, r->train_info.rounds_run, r->train_info.metric,
            r->train_info.best_valid, r->train_info.scale_pos_weight);
    fprintf(out, "time: read %.2f s, features %.2f s, training %.2f s, total %.2f s\n",
            r->read_seconds, r->feature_seconds, r->train_seconds, r->total_seconds);
    fprintf(out, "data sha256 %s\nmodel sha256 %s (%zu bytes)\n", r->data_sha256, r->model_sha256,
            r->model_bytes);
}
