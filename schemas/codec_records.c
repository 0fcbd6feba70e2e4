/* codec_records.c: the scorer's outputs, failure alerts and scores.
 *
 * Their schemas are compiled in (below, the compact JSON of
 * schemas/failure_alert.avsc and schemas/score.avsc; test_codec.c checks they
 * are the same) so that the structs and the schemas cannot drift apart at run
 * time. Decoding goes through the same frame, writer cache and resolution
 * plans as telemetry, so a newer compatible writer is read too. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "schemas/codec.h"
#include "schemas/codec_int.h"

const char sn_codec_alert_schema[] =
    "{\"type\":\"record\",\"name\":\"FailureAlert\",\"namespace\":\"sentinel\",\"doc\":\"A "
    "predicted-failure i"
    "ncident of one machine, produced by the scorer on the alerts topic. Schema id 2 in schemas"
    "/ids.\",\"fields\":[{\"name\":\"id\",\"type\":\"string\",\"doc\":\"Deterministic id "
    "\\\"topic/partition/of"
    "fset\\\" of the telemetry event that caused this alert record, so that a redelivered event y"
    "ields the same id.\"},{\"name\":\"machine_id\",\"type\":\"string\",\"doc\":\"Machine "
    "identifier.\"},{\"n"
    "ame\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"},\"doc\":"
    "\"Event time of the"
    " causing event, milliseconds since the Unix epoch "
    "(UTC).\"},{\"name\":\"score\",\"type\":\"double\""
    ",\"doc\":\"Failure probability from the model, 0 to "
    "1.\"},{\"name\":\"threshold\",\"type\":\"double\","
    "\"doc\":\"Decision threshold of the model "
    "version.\"},{\"name\":\"model_name\",\"type\":\"string\",\"do"
    "c\":\"Model name in the "
    "registry.\"},{\"name\":\"model_version\",\"type\":\"string\",\"doc\":\"Model ver"
    "sion in the "
    "registry.\"},{\"name\":\"state\",\"type\":{\"type\":\"enum\",\"name\":\"AlertState\",\"symbols"
    "\":[\"OPEN\",\"RENOTIFY\",\"RESOLVED\"]},\"doc\":\"OPEN starts an incident, RENOTIFY repeats "
    "it whil"
    "e it lasts, RESOLVED ends "
    "it.\"},{\"name\":\"top_features\",\"type\":{\"type\":\"array\",\"items\":{\"ty"
    "pe\":\"record\",\"name\":\"FeatureContribution\",\"fields\":[{\"name\":\"name\",\"type\":"
    "\"string\",\"doc\":\""
    "Feature name.\"},{\"name\":\"value\",\"type\":\"double\",\"doc\":\"Feature "
    "value.\"},{\"name\":\"contribut"
    "ion\",\"type\":\"double\",\"doc\":\"Contribution to the score (SHAP "
    "value).\"}]}},\"doc\":\"The featur"
    "es that pushed the score most, largest contribution first (at most 10).\"}]}";

const char sn_codec_score_schema[] =
    "{\"type\":\"record\",\"name\":\"Score\",\"namespace\":\"sentinel\",\"doc\":\"The model's "
    "score of one tel"
    "emetry event, produced by the scorer (shadow topic and audit). Schema id 3 in schemas/ids."
    "\",\"fields\":[{\"name\":\"machine_id\",\"type\":\"string\",\"doc\":\"Machine "
    "identifier.\"},{\"name\":\"ts\""
    ",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"},\"doc\":\"Event time of "
    "the scored e"
    "vent, milliseconds since the Unix epoch "
    "(UTC).\"},{\"name\":\"score\",\"type\":\"double\",\"doc\":\"Fa"
    "ilure probability from the model, 0 to "
    "1.\"},{\"name\":\"model_name\",\"type\":\"string\",\"doc\":\"Mo"
    "del name in the registry.\"},{\"name\":\"model_version\",\"type\":\"string\",\"doc\":\"Model "
    "version i"
    "n the registry.\"},{\"name\":\"source_partition\",\"type\":\"int\",\"doc\":\"Partition of the "
    "scored t"
    "elemetry record.\"},{\"name\":\"source_offset\",\"type\":\"long\",\"doc\":\"Offset of the "
    "scored telem"
    "etry record.\"}]}";

int sn_alert_make_id(char *out, size_t size, const char *topic, int32_t partition, int64_t offset) {
    int n = snprintf(out, size, "%s/%" PRId32 "/%" PRId64, topic, partition, offset);

    if (n < 0 || (size_t)n >= size) {
        if (size) out[0] = '\0';
        return SN_ERR_INVALID;
    }
    return 0;
}

/* Field handles of a record value by name; the names are those of the
 * built-in schemas, so a failure is a programming error reported as INVALID. */
static int field(avro_value_t *rec, const char *name, avro_value_t *out) {
    return avro_value_get_by_name(rec, name, out, NULL);
}

static int set_str(avro_value_t *rec, const char *name, const char *s, size_t cap) {
    avro_value_t f;
    const char *nul = memchr(s, '\0', cap);

    if (!nul || field(rec, name, &f) != 0) return -1;
    return avro_value_set_string_len(&f, s, (size_t)(nul - s) + 1);
}

static int set_double(avro_value_t *rec, const char *name, double v) {
    avro_value_t f;

    if (!isfinite(v) || field(rec, name, &f) != 0) return -1;
    return avro_value_set_double(&f, v);
}

static int set_long(avro_value_t *rec, const char *name, int64_t v) {
    avro_value_t f;

    if (field(rec, name, &f) != 0) return -1;
    return avro_value_set_long(&f, v);
}

int sn_codec_encode_alert(sn_codec_t *c, const sn_alert_t *a, void *buf, size_t size,
                          size_t *len_out, char *errstr, size_t errstr_size) {
    avro_value_t *rec = NULL, f, arr;
    int rc;

    *len_out = 0;
    if (a->nfeatures > SN_ALERT_FEATURES_MAX || (unsigned)a->state > SN_ALERT_RESOLVED)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "alert has %u features (max %d) or state %d", a->nfeatures,
                          SN_ALERT_FEATURES_MAX, (int)a->state);
    if ((rc = sn_codec_encode_begin(c, SN_KIND_ALERT, &rec, errstr, errstr_size)) != 0) return rc;
    if (set_str(rec, "id", a->id, sizeof(a->id)) ||
        set_str(rec, "machine_id", a->machine_id, sizeof(a->machine_id)) ||
        set_long(rec, "ts", a->ts_ms) || set_double(rec, "score", a->score) ||
        set_double(rec, "threshold", a->threshold) ||
        set_str(rec, "model_name", a->model_name, sizeof(a->model_name)) ||
        set_str(rec, "model_version", a->model_version, sizeof(a->model_version)) ||
        field(rec, "state", &f) || avro_value_set_enum(&f, (int)a->state) ||
        field(rec, "top_features", &arr))
        goto bad;
    for (uint32_t i = 0; i < a->nfeatures; i++) {
        avro_value_t e;

        if (avro_value_append(&arr, &e, NULL) ||
            set_str(&e, "name", a->features[i].name, sizeof(a->features[i].name)) ||
            set_double(&e, "value", a->features[i].value) ||
            set_double(&e, "contribution", a->features[i].contribution))
            goto bad;
    }
    return sn_codec_encode_finish(c, SN_KIND_ALERT, buf, size, len_out, errstr, errstr_size);
bad:
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                      "alert: a string is not NUL-terminated or a number is not finite");
}

int sn_codec_encode_score(sn_codec_t *c, const sn_score_t *s, void *buf, size_t size,
                          size_t *len_out, char *errstr, size_t errstr_size) {
    avro_value_t *rec = NULL, f;
    int rc;

    *len_out = 0;
    if ((rc = sn_codec_encode_begin(c, SN_KIND_SCORE, &rec, errstr, errstr_size)) != 0) return rc;
    if (set_str(rec, "machine_id", s->machine_id, sizeof(s->machine_id)) ||
        set_long(rec, "ts", s->ts_ms) || set_double(rec, "score", s->score) ||
        set_str(rec, "model_name", s->model_name, sizeof(s->model_name)) ||
        set_str(rec, "model_version", s->model_version, sizeof(s->model_version)) ||
        field(rec, "source_partition", &f) || avro_value_set_int(&f, s->source_partition) ||
        set_long(rec, "source_offset", s->source_offset))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "score: a string is not NUL-terminated or a number is not finite");
    return sn_codec_encode_finish(c, SN_KIND_SCORE, buf, size, len_out, errstr, errstr_size);
}

/* Reader field i of kind, through the plan's view. */
static int get(struct sn_plan *p, const struct sn_reader *r, const char *name, avro_value_t *out) {
    for (size_t i = 0; i < r->nf; i++)
        if (strcmp(r->f[i].name, name) == 0)
            return avro_value_get_by_index(p->view, (size_t)p->f[i].pidx, out, NULL);
    return -1;
}

static const struct sn_fplan *fplan(struct sn_plan *p, const struct sn_reader *r,
                                    const char *name) {
    for (size_t i = 0; i < r->nf; i++)
        if (strcmp(r->f[i].name, name) == 0) return &p->f[i];
    return NULL;
}

static int get_str(struct sn_plan *p, const struct sn_reader *r, const char *name, char *dst,
                   size_t cap, enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    avro_value_t v;

    if (get(p, r, name, &v) != 0) goto avro;
    return sn_codec_copy_string(&v, dst, cap, name, cls, errstr, errstr_size);
avro:
    return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                         "field '%s': %.200s", name, avro_strerror());
}

static int finite_or_fail(double v, const char *name, enum sn_codec_error_class *cls, char *errstr,
                          size_t errstr_size) {
    if (isfinite(v)) return 0;
    return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                         "field '%s' is not finite", name);
}

static int get_double(struct sn_plan *p, const struct sn_reader *r, const char *name, double *out,
                      enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    avro_value_t v;

    if (get(p, r, name, &v) != 0 || avro_value_get_double(&v, out) != 0)
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': %.200s", name, avro_strerror());
    return finite_or_fail(*out, name, cls, errstr, errstr_size);
}

static int get_long(struct sn_plan *p, const struct sn_reader *r, const char *name, int64_t *out,
                    enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    avro_value_t v;

    if (get(p, r, name, &v) != 0 || avro_value_get_long(&v, out) != 0)
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': %.200s", name, avro_strerror());
    return 0;
}

int sn_codec_decode_alert(sn_codec_t *c, const void *buf, size_t len, sn_alert_t *out,
                          enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    const struct sn_reader *r = &c->readers[SN_KIND_ALERT];
    struct sn_plan *p = NULL;
    avro_value_t *view = NULL, v, arr;
    size_t n = 0;
    int rc, e = 0, idx = 0;

    memset(out, 0, sizeof(*out));
    if ((rc = sn_codec_decode_common(c, SN_KIND_ALERT, buf, len, &view, &p, cls, NULL, errstr,
                                     errstr_size)) != 0)
        return rc;
    if ((rc = get_str(p, r, "id", out->id, sizeof(out->id), cls, errstr, errstr_size)) ||
        (rc = get_str(p, r, "machine_id", out->machine_id, sizeof(out->machine_id), cls, errstr,
                      errstr_size)) ||
        (rc = get_long(p, r, "ts", &out->ts_ms, cls, errstr, errstr_size)) ||
        (rc = get_double(p, r, "score", &out->score, cls, errstr, errstr_size)) ||
        (rc = get_double(p, r, "threshold", &out->threshold, cls, errstr, errstr_size)) ||
        (rc = get_str(p, r, "model_name", out->model_name, sizeof(out->model_name), cls, errstr,
                      errstr_size)) ||
        (rc = get_str(p, r, "model_version", out->model_version, sizeof(out->model_version), cls,
                      errstr, errstr_size)))
        goto fail;
    if (get(p, r, "state", &v) != 0 || avro_value_get_enum(&v, &e) != 0) goto avro;
    if ((rc = sn_codec_enum_index(fplan(p, r, "state"), "state", e, &idx, cls, errstr,
                                  errstr_size)) != 0)
        goto fail;
    out->state = (enum sn_alert_state)idx;
    if (get(p, r, "top_features", &arr) != 0 || avro_value_get_size(&arr, &n) != 0) goto avro;
    if (n > SN_ALERT_FEATURES_MAX) {
        rc = sn_codec_fail(cls, SN_CODEC_TOO_LARGE, SN_ERR_INVALID, errstr, errstr_size,
                           "top_features has %zu entries, more than %d", n, SN_ALERT_FEATURES_MAX);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        sn_alert_feature_t *f = &out->features[i];
        avro_value_t el, x;

        if (avro_value_get_by_index(&arr, i, &el, NULL) != 0 || field(&el, "name", &x) != 0)
            goto avro;
        if ((rc = sn_codec_copy_string(&x, f->name, sizeof(f->name), "top_features.name", cls,
                                       errstr, errstr_size)) != 0)
            goto fail;
        if (field(&el, "value", &x) != 0 || avro_value_get_double(&x, &f->value) != 0 ||
            field(&el, "contribution", &x) != 0 || avro_value_get_double(&x, &f->contribution) != 0)
            goto avro;
        if ((rc = finite_or_fail(f->value, "top_features.value", cls, errstr, errstr_size)) ||
            (rc = finite_or_fail(f->contribution, "top_features.contribution", cls, errstr,
                                 errstr_size)))
            goto fail;
    }
    out->nfeatures = (uint32_t)n;
    return 0;
avro:
    rc = sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                       "alert: %.200s", avro_strerror());
fail:
    memset(out, 0, sizeof(*out));
    return rc;
}

int sn_codec_decode_score(sn_codec_t *c, const void *buf, size_t len, sn_score_t *out,
                          enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    const struct sn_reader *r = &c->readers[SN_KIND_SCORE];
    struct sn_plan *p = NULL;
    avro_value_t *view = NULL, v;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = sn_codec_decode_common(c, SN_KIND_SCORE, buf, len, &view, &p, cls, NULL, errstr,
                                     errstr_size)) != 0)
        return rc;
    if ((rc = get_str(p, r, "machine_id", out->machine_id, sizeof(out->machine_id), cls, errstr,
                      errstr_size)) ||
        (rc = get_long(p, r, "ts", &out->ts_ms, cls, errstr, errstr_size)) ||
        (rc = get_double(p, r, "score", &out->score, cls, errstr, errstr_size)) ||
        (rc = get_str(p, r, "model_name", out->model_name, sizeof(out->model_name), cls, errstr,
                      errstr_size)) ||
        (rc = get_str(p, r, "model_version", out->model_version, sizeof(out->model_version), cls,
                      errstr, errstr_size)) ||
        (rc = get_long(p, r, "source_offset", &out->source_offset, cls, errstr, errstr_size)))
        goto fail;
    if (get(p, r, "source_partition", &v) != 0 ||
        avro_value_get_int(&v, &out->source_partition) != 0) {
        rc = sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                           "field 'source_partition': %.200s", avro_strerror());
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return rc;
}
