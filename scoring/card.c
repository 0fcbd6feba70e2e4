#include "scoring/card.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"

/* 17 significant digits: every double survives the round trip, which the
 * feature spec needs (a derived field's scale, say 2*pi/60, must come back
 * bit for bit, or the scorer computes another feature). */
#define CARD_DUMP_FLAGS (JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

struct profile {
    const char *name;
    size_t bins;
    double *edges;
    uint64_t *counts;
    uint64_t missing;
    float *sample;
    size_t nsample;
};

struct sn_card {
    json_t *root;
    char *spec_text;
    size_t nfeatures;
    const char **names;
    double threshold;
    struct profile *profiles; /* nfeatures entries, or NULL without a profile */
    struct profile *score;    /* the model's scores, or NULL (optional) */
};

static json_t *get_path(json_t *root, const char *path) {
    char key[128];
    const char *p = path;

    while (root && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);

        if (n >= sizeof(key)) return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        root = json_object_get(root, key);
        p += n + (dot ? 1 : 0);
    }
    return root;
}

static int bad(char *errstr, size_t errstr_size, const char *what) {
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "card: %s", what);
}

static int need(json_t *root, const char *path, int type, char *errstr, size_t errstr_size) {
    json_t *v = get_path(root, path);

    if (!v || (type == JSON_REAL ? !json_is_number(v) : (int)json_typeof(v) != type))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "card: \"%s\" missing or of the wrong type", path);
    return 0;
}

/* One profile entry (a feature's or the score's): edges, counts, missing and
 * the sample, decoded into plain arrays. what names it in errors. */
static int parse_entry(json_t *f, size_t bins, const char *name, struct profile *p,
                       const char *what, char *errstr, size_t errstr_size) {
    json_t *edges = json_object_get(f, "edges"), *counts = json_object_get(f, "counts"),
           *sample = json_object_get(f, "sample");

    if (!json_is_array(edges) || json_array_size(edges) != bins + 1 || !json_is_array(counts) ||
        json_array_size(counts) != bins || !json_is_array(sample) ||
        !json_is_integer(json_object_get(f, "missing")))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "card: profile of %s: edges, counts, missing or sample malformed", what);
    p->name = name;
    p->bins = bins;
    p->missing = (uint64_t)json_integer_value(json_object_get(f, "missing"));
    p->nsample = json_array_size(sample);
    p->edges = malloc((bins + 1) * sizeof(*p->edges));
    p->counts = malloc(bins * sizeof(*p->counts));
    p->sample = malloc((p->nsample ? p->nsample : 1) * sizeof(*p->sample));
    if (!p->edges || !p->counts || !p->sample)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k <= bins; k++) {
        json_t *e = json_array_get(edges, k);

        if (!json_is_number(e)) return bad(errstr, errstr_size, "profile: an edge is not a number");
        p->edges[k] = json_number_value(e); /* float32 values written as doubles */
    }
    for (size_t k = 0; k < bins; k++) {
        json_t *e = json_array_get(counts, k);

        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return bad(errstr, errstr_size, "profile: a count is not a non-negative integer");
        p->counts[k] = (uint64_t)json_integer_value(e);
    }
    for (size_t k = 0; k < p->nsample; k++) {
        json_t *e = json_array_get(sample, k);

        if (!json_is_number(e))
            return bad(errstr, errstr_size, "profile: a sample value is not a number");
        p->sample[k] = (float)json_number_value(e);
    }
    return 0;
}

/* Decodes the profile arrays once so that the drift job reads plain C arrays
 * and every shape error is found when the card is loaded, not mid-run. The
 * score profile (profile.score) is optional: cards written before it load. */
static int parse_profile(sn_card_t *c, char *errstr, size_t errstr_size) {
    json_t *prof = json_object_get(c->root, "profile"), *feats, *score;
    json_int_t bins;
    int rc;

    if (!prof || json_is_null(prof)) return 0;
    feats = json_object_get(prof, "features");
    bins = json_integer_value(json_object_get(prof, "bins"));
    if (!json_is_array(feats) || json_array_size(feats) != c->nfeatures || bins < 1 || bins > 1000)
        return bad(errstr, errstr_size, "profile: needs bins and one entry per feature");
    if (!(c->profiles = calloc(c->nfeatures, sizeof(*c->profiles))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nfeatures; i++) {
        char what[64];

        snprintf(what, sizeof(what), "feature %zu", i);
        if ((rc = parse_entry(json_array_get(feats, i), (size_t)bins, c->names[i], &c->profiles[i],
                              what, errstr, errstr_size)) != 0)
            return rc;
    }
    if ((score = json_object_get(prof, "score")) && !json_is_null(score)) {
        if (!(c->score = calloc(1, sizeof(*c->score))))
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        if ((rc = parse_entry(score, (size_t)bins, "score", c->score, "the score", errstr,
                              errstr_size)) != 0)
            return rc;
    }
    return 0;
}

static void free_profiles(sn_card_t *c) {
    if (c->score) {
        free(c->score->edges);
        free(c->score->counts);
        free(c->score->sample);
        free(c->score);
        c->score = NULL;
    }
    if (!c->profiles) return;
    for (size_t i = 0; i < c->nfeatures; i++) {
        free(c->profiles[i].edges);
        free(c->profiles[i].counts);
        free(c->profiles[i].sample);
    }
    free(c->profiles);
    c->profiles = NULL;
}

/* A card is refused as a whole when any part the pipeline relies on is
 * missing or inconsistent: a half-valid card would fail later, in the scorer,
 * where the old model would already have been swapped out. */
static int validate(sn_card_t *c, char *errstr, size_t errstr_size) {
    static const struct {
        const char *path;
        int type;
    } req[] = {
        {"card_version", JSON_INTEGER},
        {"created", JSON_STRING},
        {"model", JSON_OBJECT},
        {"model.sha256", JSON_STRING},
        {"model.nfeatures", JSON_INTEGER},
        {"feature_spec", JSON_OBJECT},
        {"feature_names", JSON_ARRAY},
        {"label", JSON_OBJECT},
        {"label.kind", JSON_STRING},
        {"threshold.value", JSON_REAL},
        {"threshold.policy", JSON_STRING},
        {"metrics.holdout.pr_auc", JSON_REAL},
        {"data.sha256", JSON_STRING},
    };
    json_t *names, *pv;
    json_int_t nf;
    const char *sha;
    int rc;

    for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        if ((rc = need(c->root, req[i].path, req[i].type, errstr, errstr_size)) != 0) return rc;
    if (json_integer_value(json_object_get(c->root, "card_version")) != SN_CARD_VERSION)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "card: card_version is not %d",
                          SN_CARD_VERSION);
    sha = json_string_value(get_path(c->root, "model.sha256"));
    if (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)
        return bad(errstr, errstr_size, "model.sha256 is not 64 lower-case hex digits");
    pv = json_object_get(c->root, "parent_version");
    if (pv && !json_is_null(pv) && !json_is_string(pv))
        return bad(errstr, errstr_size, "parent_version is not a string");
    nf = json_integer_value(get_path(c->root, "model.nfeatures"));
    names = json_object_get(c->root, "feature_names");
    if (nf < 1 || json_array_size(names) != (size_t)nf)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "card: %zu feature names for model.nfeatures %lld",
                          json_array_size(names), (long long)nf);
    c->nfeatures = (size_t)nf;
    if (!(c->names = calloc(c->nfeatures, sizeof(*c->names))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nfeatures; i++)
        if (!(c->names[i] = json_string_value(json_array_get(names, i))))
            return bad(errstr, errstr_size, "a feature name is not a string");
    c->threshold = (float)json_number_value(get_path(c->root, "threshold.value"));
    if (!(c->threshold >= 0 && c->threshold <= 1))
        return bad(errstr, errstr_size, "threshold.value outside [0, 1]");
    if (!(c->spec_text =
              json_dumps(json_object_get(c->root, "feature_spec"), JSON_COMPACT | JSON_SORT_KEYS)))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    return parse_profile(c, errstr, errstr_size);
}

sn_card_t *sn_card_parse(const char *json, size_t len, char *errstr, size_t errstr_size) {
    sn_card_t *c = NULL;
    json_error_t jerr;

    if (!json || len > SN_CARD_MAX_BYTES) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "card: missing or larger than %u bytes",
                   SN_CARD_MAX_BYTES);
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!(c->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)) ||
        !json_is_object(c->root)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "card: not a JSON object (%s at line %d)",
                   c->root ? "top level" : jerr.text, jerr.line);
        goto fail;
    }
    if (validate(c, errstr, errstr_size) != 0) goto fail;
    return c;
fail:
    sn_card_destroy(c);
    return NULL;
}

sn_card_t *sn_card_load_file(const char *path, char *errstr, size_t errstr_size) {
    FILE *fp = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    sn_card_t *c = NULL;

    if (!fp) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "card: cannot open %s: %s", path,
                   strerror(errno));
        return NULL;
    }
    if (fstat(fileno(fp), &st) != 0 || st.st_size > SN_CARD_MAX_BYTES) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "card: %s is larger than %u bytes", path,
                   SN_CARD_MAX_BYTES);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "card: cannot read %s", path);
        goto out;
    }
    c = sn_card_parse(buf, (size_t)st.st_size, errstr, errstr_size);
out:
    free(buf);
    fclose(fp);
    return c;
}

void sn_card_destroy(sn_card_t *card) {
    if (!card) return;
    free_profiles(card);
    free(card->names);
    free(card->spec_text);
    json_decref(card->root);
    free(card);
}

char *sn_card_dump(const sn_card_t *card) {
    char *s = json_dumps(card->root, CARD_DUMP_FLAGS);
    char *t;
    size_t n;

    if (!s) return NULL;
    /* a trailing newline makes the file friendlier to cat and diff */
    n = strlen(s);
    if (!(t = realloc(s, n + 2))) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

double sn_card_threshold(const sn_card_t *card) { return card->threshold; }

const char *sn_card_threshold_policy(const sn_card_t *card) {
    return json_string_value(get_path(card->root, "threshold.policy"));
}

const char *sn_card_feature_spec(const sn_card_t *card) { return card->spec_text; }

size_t sn_card_nfeatures(const sn_card_t *card) { return card->nfeatures; }

const char *sn_card_feature_name(const sn_card_t *card, size_t i) {
    return i < card->nfeatures ? card->names[i] : NULL;
}

const char *sn_card_model_sha256(const sn_card_t *card) {
    return json_string_value(get_path(card->root, "model.sha256"));
}

const char *sn_card_parent_version(const sn_card_t *card) {
    return json_string_value(json_object_get(card->root, "parent_version"));
}

int sn_card_set_parent_version(sn_card_t *card, const char *version) {
    json_t *v = version ? json_string(version) : json_null();

    if (!v || json_object_set_new(card->root, "parent_version", v) != 0) return SN_ERR_NOMEM;
    return 0;
}

double sn_card_metric(const sn_card_t *card, const char *split, const char *name) {
    json_t *v =
        json_object_get(json_object_get(json_object_get(card->root, "metrics"), split), name);

    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *sn_card_get_str(const sn_card_t *card, const char *path) {
    return json_string_value(get_path(card->root, path));
}

double sn_card_get_num(const sn_card_t *card, const char *path) {
    json_t *v = get_path(card->root, path);

    return json_is_number(v) ? json_number_value(v) : NAN;
}

int sn_card_profile(const sn_card_t *card, size_t i, sn_card_profile_t *out) {
    const struct profile *p;

    if (!card->profiles) return SN_ERR_NOENT;
    if (i >= card->nfeatures) return SN_ERR_INVALID;
    p = &card->profiles[i];
    *out = (sn_card_profile_t){p->name,    p->bins,   p->edges,  p->counts,
                               p->missing, p->sample, p->nsample};
    return 0;
}

int sn_card_score_profile(const sn_card_t *card, sn_card_profile_t *out) {
    const struct profile *p = card->score;

    if (!p) return SN_ERR_NOENT;
    *out = (sn_card_profile_t){p->name,    p->bins,   p->edges,  p->counts,
                               p->missing, p->sample, p->nsample};
    return 0;
}

size_t sn_card_profile_bin(const sn_card_profile_t *p, double v) {
    size_t lo = 1, hi = p->bins; /* count of edges[1..bins-1] <= v, by bisection */

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (p->edges[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

void sn_card_sha256_hex(const void *buf, size_t len, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    hex[0] = '\0';
    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) return;
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int sn_card_verify_model(const sn_card_t *card, const void *model, size_t len, char *errstr,
                         size_t errstr_size) {
    char hex[65];
    const char *want = sn_card_model_sha256(card);

    sn_card_sha256_hex(model, len, hex);
    if (strcmp(hex, want) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "card: model.ubj has SHA-256 %.12s..., the card expects %.12s...", hex,
                          want);
    return 0;
}
