/* feature_spec.c: parsing, validation and binding of the feature spec.
 *
 * The spec is data that travels in the model card, so this parser is strict:
 * unknown keys, duplicate names and anything beyond the bounds in features.h
 * are errors that name the offending item. Parsing resolves every name to an
 * index once, so the hot path never compares strings. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/feature_state.h"
#include "scoring/features.h"

#define SPEC_FILE_MAX (1024 * 1024)

static const char *const agg_names[SN_AGG_COUNT_OF_KINDS] = {"mean",  "std",  "min",  "max",
                                                             "count", "last", "slope"};

static const char default_spec[] =
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
    "  \"current\": [\"air_temperature_k\", \"process_temperature_k\", \"rotational_speed_rpm\",\n"
    "              \"torque_nm\", \"tool_wear_min\", \"product_type\", \"temp_diff_k\", "
    "\"power_w\", \"strain\"],\n"
    "  \"windows\": [\n"
    "    {\"name\": \"10m\", \"ms\": 600000,\n"
    "     \"fields\": [\"torque_nm\", \"rotational_speed_rpm\", \"temp_diff_k\", \"power_w\"],\n"
    "     \"aggregates\": [\"mean\", \"std\", \"min\", \"max\", \"count\", \"last\", "
    "\"slope\"]},\n"
    "    {\"name\": \"1h\", \"ms\": 3600000,\n"
    "     \"fields\": [\"torque_nm\", \"rotational_speed_rpm\", \"temp_diff_k\", \"power_w\", "
    "\"strain\"],\n"
    "     \"aggregates\": [\"mean\", \"std\", \"min\", \"max\", \"count\", \"slope\"]}\n"
    "  ]\n"
    "}\n";

const char *sn_feature_spec_default_json(void) { return default_spec; }

const char *sn_fspec_agg_name(int agg) {
    return agg >= 0 && agg < SN_AGG_COUNT_OF_KINDS ? agg_names[agg] : "?";
}

/* Field names become parts of feature names and Redis-free identifiers, so
 * they are restricted to what every consumer of a feature name accepts. */
static int valid_ident(const char *s, size_t max) {
    size_t n = strlen(s);

    if (n == 0 || n >= max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

static int find_field(const sn_feature_spec_t *spec, const char *name) {
    for (int i = 0; i < spec->nfields; i++)
        if (strcmp(spec->fields[i].name, name) == 0) return i;
    return -1;
}

/* Rejects keys the format does not define, so that a typo ("agregates") is an
 * error instead of a silently missing part of the spec. */
static int check_keys(json_t *obj, const char *const *allowed, const char *where, char *errstr,
                      size_t errstr_size) {
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        int ok = 0;
        (void)v;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0) ok = 1;
        if (!ok)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s: unknown key \"%s\"", where, key);
    }
    return 0;
}

/* Reads a positive integer member; JSON reals are refused so that 6e4 and
 * 60000.5 cannot sneak in. */
static int get_ms(json_t *obj, const char *key, const char *where, int64_t *out, char *errstr,
                  size_t errstr_size) {
    json_t *v = json_object_get(obj, key);

    if (!v)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: %s: missing \"%s\"",
                          where, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        json_integer_value(v) > (json_int_t)1000 * 86400 * 365)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: %s: \"%s\" must be a positive integer (milliseconds, at "
                          "most a year)",
                          where, key);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Resolves an array of field names to indexes, refusing unknown names and
 * duplicates. */
static int get_field_list(const sn_feature_spec_t *spec, json_t *arr, const char *where, int *out,
                          int *nout, char *errstr, size_t errstr_size) {
    size_t i;
    json_t *v;

    if (!json_is_array(arr))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: %s must be an array of field names", where);
    if (json_array_size(arr) > SN_FEATURE_SPEC_FIELDS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: %s: more than %d fields", where,
                          SN_FEATURE_SPEC_FIELDS_MAX);
    *nout = 0;
    json_array_foreach(arr, i, v) {
        int idx;
        if (!json_is_string(v))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s[%zu] must be a string", where, i);
        idx = find_field(spec, json_string_value(v));
        if (idx < 0)
            return sn_err_set(
                errstr, errstr_size, SN_ERR_INVALID,
                "feature spec: %s: unknown field \"%s\" (not an input or derived field)", where,
                json_string_value(v));
        for (int k = 0; k < *nout; k++)
            if (out[k] == idx)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "feature spec: %s: field \"%s\" listed twice", where,
                                  json_string_value(v));
        out[(*nout)++] = idx;
    }
    return 0;
}

static int parse_inputs(sn_feature_spec_t *spec, json_t *arr, char *errstr, size_t errstr_size) {
    size_t i;
    json_t *v;

    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: \"inputs\" must be a non-empty array of field names");
    if (json_array_size(arr) > SN_FEATURE_SPEC_FIELDS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: more than %d inputs",
                          SN_FEATURE_SPEC_FIELDS_MAX);
    json_array_foreach(arr, i, v) {
        struct sn_fspec_field *fd = &spec->fields[spec->nfields];
        const char *name = json_is_string(v) ? json_string_value(v) : NULL;

        if (!name || !valid_ident(name, SN_FEATURE_SPEC_NAME_MAX))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: inputs[%zu] must be a name of 1 to %d letters, "
                              "digits or '_'",
                              i, SN_FEATURE_SPEC_NAME_MAX - 1);
        if (find_field(spec, name) >= 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: input \"%s\" listed twice", name);
        snprintf(fd->name, sizeof(fd->name), "%s", name);
        fd->op = SN_OP_INPUT;
        fd->a = fd->b = -1;
        fd->scale = 1.0;
        fd->value_index = -1;
        fd->wf = -1;
        spec->nfields++;
    }
    spec->ninputs = spec->nfields;
    return 0;
}

static int parse_derived(sn_feature_spec_t *spec, json_t *arr, char *errstr, size_t errstr_size) {
    static const char *const keys[] = {"name", "op", "a", "b", "scale", NULL};
    static const char *const ops[] = {"difference", "product", "ratio"};
    size_t i;
    json_t *d;
    char where[64];
    int rc;

    if (!arr) return 0;
    if (!json_is_array(arr))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: \"derived\" must be an array");
    json_array_foreach(arr, i, d) {
        struct sn_fspec_field *fd;
        json_t *jname, *jop, *ja, *jb, *jscale;
        const char *name;

        snprintf(where, sizeof(where), "derived[%zu]", i);
        if (!json_is_object(d))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s must be an object", where);
        if ((rc = check_keys(d, keys, where, errstr, errstr_size)) != 0) return rc;
        if (spec->nfields >= SN_FEATURE_SPEC_FIELDS_MAX)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: more than %d fields (inputs + derived)",
                              SN_FEATURE_SPEC_FIELDS_MAX);
        fd = &spec->fields[spec->nfields];
        jname = json_object_get(d, "name");
        jop = json_object_get(d, "op");
        ja = json_object_get(d, "a");
        jb = json_object_get(d, "b");
        jscale = json_object_get(d, "scale");
        name = json_is_string(jname) ? json_string_value(jname) : NULL;
        if (!name || !valid_ident(name, SN_FEATURE_SPEC_NAME_MAX))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s: \"name\" must be 1 to %d letters, digits or '_'",
                              where, SN_FEATURE_SPEC_NAME_MAX - 1);
        if (find_field(spec, name) >= 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s: field \"%s\" already defined", where, name);
        snprintf(fd->name, sizeof(fd->name), "%s", name);
        fd->op = SN_OP_INPUT;
        for (int k = 0; k < 3; k++)
            if (json_is_string(jop) && strcmp(json_string_value(jop), ops[k]) == 0)
                fd->op = (enum sn_fspec_op)(SN_OP_DIFFERENCE + k);
        if (fd->op == SN_OP_INPUT)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: derived \"%s\": unknown op \"%s\" (difference, "
                              "product, ratio)",
                              name, json_is_string(jop) ? json_string_value(jop) : "?");
        if (!json_is_string(ja) || !json_is_string(jb))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: derived \"%s\": \"a\" and \"b\" must name fields",
                              name);
        fd->a = find_field(spec, json_string_value(ja));
        fd->b = find_field(spec, json_string_value(jb));
        if (fd->a < 0 || fd->b < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: derived \"%s\": unknown field \"%s\" (operands must "
                              "be inputs or earlier derived fields)",
                              name, json_string_value(fd->a < 0 ? ja : jb));
        fd->scale = 1.0;
        if (jscale) {
            if (fd->op != SN_OP_PRODUCT)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "feature spec: derived \"%s\": \"scale\" is for op product only",
                                  name);
            if (!json_is_number(jscale) || !isfinite(json_number_value(jscale)) ||
                json_number_value(jscale) == 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "feature spec: derived \"%s\": \"scale\" must be a finite "
                                  "non-zero number",
                                  name);
            fd->scale = json_number_value(jscale);
        }
        fd->value_index = -1;
        fd->wf = -1;
        spec->nfields++;
    }
    return 0;
}

static int parse_window(sn_feature_spec_t *spec, json_t *w, size_t wi, char *errstr,
                        size_t errstr_size) {
    static const char *const keys[] = {"name", "ms", "fields", "aggregates", NULL};
    struct sn_fspec_window *win = &spec->windows[spec->nwindows];
    json_t *jname = json_object_get(w, "name"), *aggs, *a;
    char where[64];
    size_t i;
    int rc;

    snprintf(where, sizeof(where), "windows[%zu]", wi);
    if (!json_is_object(w))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: %s must be an object",
                          where);
    if ((rc = check_keys(w, keys, where, errstr, errstr_size)) != 0) return rc;
    if (!json_is_string(jname) || !json_string_value(jname)[0] ||
        strlen(json_string_value(jname)) >= SN_FSPEC_WINDOW_NAME_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: %s: \"name\" must be 1 to %d characters", where,
                          SN_FSPEC_WINDOW_NAME_MAX - 1);
    for (const char *p = json_string_value(jname); *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: %s: name \"%s\" must be lower-case letters and digits "
                              "(e.g. 10m)",
                              where, json_string_value(jname));
    snprintf(win->name, sizeof(win->name), "%s", json_string_value(jname));
    for (int k = 0; k < spec->nwindows; k++)
        if (strcmp(spec->windows[k].name, win->name) == 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: window \"%s\" defined twice", win->name);
    snprintf(where, sizeof(where), "window \"%s\"", win->name);
    if ((rc = get_ms(w, "ms", where, &win->ms, errstr, errstr_size)) != 0) return rc;
    if (win->ms % spec->bucket_ms != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: window \"%s\": %lld ms is not a multiple of bucket_ms "
                          "(%lld)",
                          win->name, (long long)win->ms, (long long)spec->bucket_ms);
    if (win->ms > spec->retention_ms)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: window \"%s\": %lld ms is longer than retention_ms (%lld)",
                          win->name, (long long)win->ms, (long long)spec->retention_ms);
    win->nbuckets = (int)(win->ms / spec->bucket_ms);
    snprintf(where, sizeof(where), "window \"%s\" fields", win->name);
    if ((rc = get_field_list(spec, json_object_get(w, "fields"), where, win->fields, &win->nfields,
                             errstr, errstr_size)) != 0)
        return rc;
    if (win->nfields == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: window \"%s\" has no fields", win->name);
    aggs = json_object_get(w, "aggregates");
    if (!json_is_array(aggs) || json_array_size(aggs) == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: window \"%s\": \"aggregates\" must be a non-empty array",
                          win->name);
    win->naggs = 0;
    json_array_foreach(aggs, i, a) {
        int kind = -1;
        for (int k = 0; k < SN_AGG_COUNT_OF_KINDS; k++)
            if (json_is_string(a) && strcmp(json_string_value(a), agg_names[k]) == 0) kind = k;
        if (kind < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: window \"%s\": unknown aggregate \"%s\" (mean, std, "
                              "min, max, count, last, slope)",
                              win->name, json_is_string(a) ? json_string_value(a) : "?");
        for (int k = 0; k < win->naggs; k++)
            if (win->aggs[k] == kind)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "feature spec: window \"%s\": aggregate \"%s\" listed twice",
                                  win->name, agg_names[kind]);
        win->aggs[win->naggs++] = kind;
    }
    spec->nwindows++;
    return 0;
}

/* Appends a feature name, enforcing the length and count bounds and
 * uniqueness (a name that appears twice would make the model card
 * ambiguous). */
static int add_name(sn_feature_spec_t *spec, const char *name, char *errstr, size_t errstr_size) {
    if (spec->nfeatures >= SN_FEATURE_SPEC_FEATURES_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: more than %d features", SN_FEATURE_SPEC_FEATURES_MAX);
    if (strlen(name) >= SN_FEATURE_SPEC_NAME_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: feature name \"%s\" is longer than %d bytes", name,
                          SN_FEATURE_SPEC_NAME_MAX - 1);
    for (size_t i = 0; i < spec->nfeatures; i++)
        if (strcmp(spec->names[i], name) == 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: feature \"%s\" appears twice", name);
    snprintf(spec->names[spec->nfeatures++], SN_FEATURE_SPEC_NAME_MAX, "%s", name);
    return 0;
}

/* 64-bit FNV-1a, folded to 32 bits: a short, stable id for Redis key names. */
static uint64_t fnv(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* The layout id covers what decides how stored state is read: bucket size,
 * bucket count, which fields are windowed in which order, and what every
 * derived field means. A spec that changes any of these gets fresh keys
 * instead of misreading the old records. */
static void compute_layout_id(sn_feature_spec_t *spec) {
    char buf[256];
    uint64_t h = 1469598103934665603ULL;
    int n;

    n = snprintf(buf, sizeof(buf), "v1|%lld|%d|", (long long)spec->bucket_ms, spec->nbuckets);
    h = fnv(h, buf, (size_t)n);
    for (int i = 0; i < spec->nfields; i++) {
        const struct sn_fspec_field *fd = &spec->fields[i];
        if (fd->op != SN_OP_INPUT)
            n = snprintf(buf, sizeof(buf), "d:%s=%d(%s,%s)*%a|", fd->name, (int)fd->op,
                         spec->fields[fd->a].name, spec->fields[fd->b].name, fd->scale);
        else
            n = snprintf(buf, sizeof(buf), "i:%s|", fd->name);
        h = fnv(h, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    }
    for (int i = 0; i < spec->nwf; i++) {
        n = snprintf(buf, sizeof(buf), "w:%s|", spec->fields[spec->wf_field[i]].name);
        h = fnv(h, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    }
    spec->layout_id = (uint32_t)(h ^ (h >> 32));
}

/* Derives what the engine needs from the parsed lists: the windowed fields,
 * each field's windows shortest first with their output positions, and the
 * feature names in vector order. */
static int finish(sn_feature_spec_t *spec, char *errstr, size_t errstr_size) {
    char name[2 * SN_FEATURE_SPEC_NAME_MAX];
    int rc;

    for (int i = 0; i < spec->ncurrent; i++)
        if ((rc = add_name(spec, spec->fields[spec->current[i]].name, errstr, errstr_size)) != 0)
            return rc;
    for (int w = 0; w < spec->nwindows; w++) {
        struct sn_fspec_window *win = &spec->windows[w];

        win->out = (int)spec->nfeatures;
        if (win->nbuckets > spec->max_window_buckets) spec->max_window_buckets = win->nbuckets;
        for (int j = 0; j < win->nfields; j++) {
            struct sn_fspec_field *fd = &spec->fields[win->fields[j]];
            struct sn_fspec_use *u;
            int k;

            if (fd->wf < 0) {
                fd->wf = spec->nwf;
                spec->wf_field[spec->nwf++] = win->fields[j];
            }
            /* insertion by window length keeps the field's windows shortest first */
            k = spec->nuses[fd->wf]++;
            while (k > 0 && spec->uses[fd->wf][k - 1].nbuckets > win->nbuckets) {
                spec->uses[fd->wf][k] = spec->uses[fd->wf][k - 1];
                k--;
            }
            u = &spec->uses[fd->wf][k];
            u->window = w;
            u->nbuckets = win->nbuckets;
            u->out = (int)spec->nfeatures;
            for (int a = 0; a < win->naggs; a++) {
                snprintf(name, sizeof(name), "%s__%s_%s", fd->name, agg_names[win->aggs[a]],
                         win->name);
                if ((rc = add_name(spec, name, errstr, errstr_size)) != 0) return rc;
            }
        }
    }
    if (spec->nfeatures == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "feature spec: no features (\"current\" and \"windows\" are both empty)");
    compute_layout_id(spec);
    return 0;
}

sn_feature_spec_t *sn_feature_spec_parse(const char *json, size_t len, char *errstr,
                                         size_t errstr_size) {
    static const char *const keys[] = {"version", "bucket_ms", "retention_ms", "inputs",
                                       "derived", "current",   "windows",      NULL};
    sn_feature_spec_t *spec = NULL;
    json_t *root = NULL, *v, *w;
    json_error_t jerr;
    int64_t nb;
    size_t i;
    int ok = 0;

    if (!(root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: JSON error at line %d: %s",
                   jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: not a JSON object");
        goto out;
    }
    if (check_keys(root, keys, "top level", errstr, errstr_size) != 0) goto out;
    if (!(spec = calloc(1, sizeof(*spec)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    v = json_object_get(root, "version");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "feature spec: \"version\" must be 1 (the only version this build reads)");
        goto out;
    }
    spec->version = 1;
    if (get_ms(root, "bucket_ms", "top level", &spec->bucket_ms, errstr, errstr_size) != 0 ||
        get_ms(root, "retention_ms", "top level", &spec->retention_ms, errstr, errstr_size) != 0)
        goto out;
    if (spec->retention_ms % spec->bucket_ms != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "feature spec: retention_ms (%lld) is not a multiple of bucket_ms (%lld)",
                   (long long)spec->retention_ms, (long long)spec->bucket_ms);
        goto out;
    }
    nb = spec->retention_ms / spec->bucket_ms;
    if (nb > SN_FEATURE_SPEC_BUCKETS_MAX) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "feature spec: retention_ms / bucket_ms = %lld buckets, more than %d",
                   (long long)nb, SN_FEATURE_SPEC_BUCKETS_MAX);
        goto out;
    }
    spec->nbuckets = (int)nb;
    if (parse_inputs(spec, json_object_get(root, "inputs"), errstr, errstr_size) != 0 ||
        parse_derived(spec, json_object_get(root, "derived"), errstr, errstr_size) != 0)
        goto out;
    if ((v = json_object_get(root, "current")) &&
        get_field_list(spec, v, "\"current\"", spec->current, &spec->ncurrent, errstr,
                       errstr_size) != 0)
        goto out;
    v = json_object_get(root, "windows");
    if (v && !json_is_array(v)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "feature spec: \"windows\" must be an array");
        goto out;
    }
    if (v && json_array_size(v) > SN_FEATURE_SPEC_WINDOWS_MAX) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: more than %d windows",
                   SN_FEATURE_SPEC_WINDOWS_MAX);
        goto out;
    }
    json_array_foreach(v, i, w) {
        if (parse_window(spec, w, i, errstr, errstr_size) != 0) goto out;
    }
    if (finish(spec, errstr, errstr_size) != 0) goto out;
    ok = 1;
out:
    json_decref(root);
    if (!ok) {
        free(spec);
        spec = NULL;
    }
    return spec;
}

sn_feature_spec_t *sn_feature_spec_load(const char *path, char *errstr, size_t errstr_size) {
    sn_feature_spec_t *spec = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = NULL;

    if (!(fp = fopen(path, "rb"))) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "feature spec: %s: %s", path, strerror(errno));
        goto out;
    }
    if (!(buf = malloc(SPEC_FILE_MAX))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    len = fread(buf, 1, SPEC_FILE_MAX, fp);
    if (ferror(fp) || len == SPEC_FILE_MAX) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "feature spec: %s: %s", path,
                   ferror(fp) ? "read error" : "larger than 1 MiB");
        goto out;
    }
    if ((spec = sn_feature_spec_parse(buf, len, errstr, errstr_size)) == NULL) {
        /* prefix the file name without losing the parser's message */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", errstr_size ? errstr : "");
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: %s", path, msg);
    }
out:
    free(buf);
    if (fp) fclose(fp);
    return spec;
}

int sn_feature_spec_bind(sn_feature_spec_t *spec,
                         int (*field_index)(void *opaque, const char *name), void *opaque,
                         char *errstr, size_t errstr_size) {
    int idx[SN_FEATURE_SPEC_FIELDS_MAX];
    int min_values = 0;

    for (int i = 0; i < spec->ninputs; i++) {
        idx[i] = field_index(opaque, spec->fields[i].name);
        if (idx[i] < 0 || idx[i] >= SN_EVENT_FIELDS_MAX)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "feature spec: input \"%s\" is not a numeric field of the schema",
                              spec->fields[i].name);
        if (idx[i] + 1 > min_values) min_values = idx[i] + 1;
    }
    for (int i = 0; i < spec->ninputs; i++) spec->fields[i].value_index = idx[i];
    spec->min_values = min_values;
    spec->bound = 1;
    return 0;
}

size_t sn_feature_spec_nfeatures(const sn_feature_spec_t *spec) { return spec->nfeatures; }

const char *sn_feature_spec_name(const sn_feature_spec_t *spec, size_t i) {
    return i < spec->nfeatures ? spec->names[i] : NULL;
}

int sn_feature_spec_index(const sn_feature_spec_t *spec, const char *name) {
    for (size_t i = 0; i < spec->nfeatures; i++)
        if (strcmp(spec->names[i], name) == 0) return (int)i;
    return -1;
}

uint32_t sn_feature_spec_layout_id(const sn_feature_spec_t *spec) { return spec->layout_id; }

/* Rebuilds the JSON from the parsed form rather than keeping the input text, so
 * that the model card holds one canonical spelling (no comments, stable key
 * order, the scale with 17 significant digits). */
char *sn_feature_spec_to_json(const sn_feature_spec_t *spec) {
    json_t *root = json_object(), *inputs = json_array(), *derived = json_array(),
           *current = json_array(), *windows = json_array();
    char *text = NULL;

    if (!root || !inputs || !derived || !current || !windows) goto out;
    json_object_set_new(root, "version", json_integer(spec->version));
    json_object_set_new(root, "bucket_ms", json_integer(spec->bucket_ms));
    json_object_set_new(root, "retention_ms", json_integer(spec->retention_ms));
    for (int i = 0; i < spec->nfields; i++) {
        const struct sn_fspec_field *fd = &spec->fields[i];
        static const char *const ops[] = {"input", "difference", "product", "ratio"};
        json_t *d;

        if (fd->op == SN_OP_INPUT) {
            json_array_append_new(inputs, json_string(fd->name));
            continue;
        }
        d = json_pack("{s:s, s:s, s:s, s:s}", "name", fd->name, "op", ops[fd->op], "a",
                      spec->fields[fd->a].name, "b", spec->fields[fd->b].name);
        if (d && fd->op == SN_OP_PRODUCT && fd->scale != 1.0)
            json_object_set_new(d, "scale", json_real(fd->scale));
        json_array_append_new(derived, d);
    }
    for (int i = 0; i < spec->ncurrent; i++)
        json_array_append_new(current, json_string(spec->fields[spec->current[i]].name));
    for (int w = 0; w < spec->nwindows; w++) {
        const struct sn_fspec_window *win = &spec->windows[w];
        json_t *fields = json_array(), *aggs = json_array();

        for (int j = 0; j < win->nfields; j++)
            json_array_append_new(fields, json_string(spec->fields[win->fields[j]].name));
        for (int a = 0; a < win->naggs; a++)
            json_array_append_new(aggs, json_string(agg_names[win->aggs[a]]));
        json_array_append_new(windows,
                              json_pack("{s:s, s:I, s:o, s:o}", "name", win->name, "ms",
                                        (json_int_t)win->ms, "fields", fields, "aggregates", aggs));
    }
    json_object_set(root, "inputs", inputs);
    json_object_set(root, "derived", derived);
    json_object_set(root, "current", current);
    json_object_set(root, "windows", windows);
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
out:
    json_decref(inputs);
    json_decref(derived);
    json_decref(current);
    json_decref(windows);
    json_decref(root);
    return text;
}

void sn_feature_spec_destroy(sn_feature_spec_t *spec) { free(spec); }

/* Inputs are copied from the event; derived fields follow in spec order, so an
 * operand is always computed before it is read. An infinity (from a CSV, or a
 * derived overflow) counts as absent, like a division by zero: the window
 * maths must only ever see finite numbers or NaN. */
void sn_fspec_values(const sn_feature_spec_t *spec, const sn_event_t *ev, double *vals) {
    for (int i = 0; i < spec->ninputs; i++) {
        double v = ev->values[spec->fields[i].value_index];
        vals[i] = isfinite(v) ? v : NAN;
    }
    for (int i = spec->ninputs; i < spec->nfields; i++) {
        const struct sn_fspec_field *fd = &spec->fields[i];
        double a = vals[fd->a], b = vals[fd->b], r;

        switch (fd->op) {
        case SN_OP_DIFFERENCE: r = a - b; break;
        case SN_OP_PRODUCT:
            r = a * b;
            if (fd->scale != 1.0) r = r * fd->scale;
            break;
        case SN_OP_RATIO: r = b == 0 ? NAN : a / b; break;
        default: r = NAN; break;
        }
        vals[i] = isfinite(r) ? r : NAN;
    }
}

int64_t sn_feature_spec_warmup_ms(const sn_feature_spec_t *spec) {
    int64_t ms = 0;

    for (int w = 0; w < spec->nwindows; w++)
        if (spec->windows[w].ms > ms) ms = spec->windows[w].ms;
    return ms;
}
