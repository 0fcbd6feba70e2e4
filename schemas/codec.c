/* codec.c: creation, writer cache and resolution plans, telemetry decode/encode.
 *
 * Decode path for one frame (sn_codec_decode_common, then extract_event):
 *   header -> writer by id (cached; fetched and compiled on first sight)
 *   -> plan for (writer, reader) (cached) -> sn_wire_check (no allocation)
 *   -> avro_value_read into the writer's reusable generic value, with the
 *      allocator capped -> read the reader fields through the plan's view.
 *
 * Why the plan does more than call avro_resolved_reader_new: avro-c 1.11.1
 * implements Avro resolution except (a) default values: a reader field that
 * the writer lacks fails the whole resolution ("Reader field x doesn't appear
 * in writer"), and (b) enum symbols: it hands back the writer's symbol index
 * unchanged, so a reader whose symbols are ordered differently reads the wrong
 * symbol. The plan resolves against a projection of the reader that leaves
 * out the fields the writer lacks (their defaults come from the reader JSON)
 * and maps enum indexes by symbol name. */
#include "schemas/codec.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "schemas/avro_alloc.h"
#include "schemas/codec_int.h"

#define FRAME_HEADER 5

enum kind { K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_BOOL, K_ENUM, K_STRING, K_MAP, K_OTHER };
enum role { R_VALUE, R_KEY, R_TIME, R_TAGS, R_IGNORED };

struct sn_tfield {
    enum role role;
    enum kind kind;
    int nullable;    /* union of null and one type */
    int null_branch; /* branch indexes when nullable */
    int value_branch;
    int slot; /* R_VALUE: index in sn_event_t.values */
    int nsymbols;
    int64_t ts_div; /* R_TIME: reader units per millisecond (1, 1000, 1000000) */
    /* defaults, used when the writer lacks the field */
    int def_null;
    double def_value;
    int64_t def_ts;
    char def_key[SN_EVENT_ID_MAX];
};

static const char *const class_names[SN_CODEC__CLASS_COUNT] = {
    "ok",        "bad_magic",      "unknown_schema", "incompatible_schema",
    "truncated", "trailing_bytes", "bad_length",     "bad_value",
    "bad_key",   "missing_field",  "too_large",      "schema_unavailable",
    "internal",
};

const char *sn_codec_error_class_str(enum sn_codec_error_class cls) {
    if ((int)cls < 0 || cls >= SN_CODEC__CLASS_COUNT) return "unknown";
    return class_names[cls];
}

int sn_codec_fail(enum sn_codec_error_class *cls, enum sn_codec_error_class v, int err,
                  char *errstr, size_t errstr_size, const char *fmt, ...) {
    va_list ap;

    if (cls) *cls = v;
    if (errstr && errstr_size) {
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- readers */

static avro_schema_t deref(avro_schema_t s) {
    return is_avro_link(s) ? avro_schema_link_target(s) : s;
}

/* The enum schema of a field, directly or as a branch of its union. */
static avro_schema_t field_enum(avro_schema_t s) {
    s = deref(s);
    if (is_avro_enum(s)) return s;
    if (is_avro_union(s))
        for (size_t i = 0; i < avro_schema_union_size(s); i++) {
            avro_schema_t b = deref(avro_schema_union_branch(s, i));
            if (is_avro_enum(b)) return b;
        }
    return NULL;
}

void sn_codec_reader_fini(struct sn_reader *r) {
    if (r->schema) avro_schema_decref(r->schema);
    json_decref(r->json);
    free(r->f);
    memset(r, 0, sizeof(*r));
}

int sn_codec_reader_init(struct sn_reader *r, const char *text, size_t len, const char *what,
                         char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *fields;

    memset(r, 0, sizeof(*r));
    if (!(r->json = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: line %d: %s", what, jerr.line,
                   jerr.text);
        goto fail;
    }
    if (avro_schema_from_json_length(text, len, &r->schema) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: not an Avro schema: %s", what,
                   avro_strerror());
        r->schema = NULL;
        goto fail;
    }
    if (!is_avro_record(r->schema) || !(fields = json_object_get(r->json, "fields")) ||
        !json_is_array(fields)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: the schema must be a record", what);
        goto fail;
    }
    r->nf = avro_schema_record_size(r->schema);
    if (r->nf == 0 || r->nf > SN_CODEC_READER_FIELDS_MAX || json_array_size(fields) != r->nf) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: a record of 1 to %d fields is needed",
                   what, SN_CODEC_READER_FIELDS_MAX);
        goto fail;
    }
    if (!(r->f = calloc(r->nf, sizeof(*r->f)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->nf; i++) {
        json_t *fj = json_array_get(fields, i);
        const char *sym;

        r->f[i].name = avro_schema_record_field_name(r->schema, (int)i);
        r->f[i].has_default = json_object_get(fj, "default") != NULL;
        r->f[i].enum_schema = field_enum(avro_schema_record_field_get_by_index(r->schema, (int)i));
        r->f[i].enum_default = -1;
        if (r->f[i].enum_schema) {
            /* The enum's own "default" (Avro 1.9+): the symbol a reader uses for
             * a writer symbol it does not know. avro-c ignores it. */
            json_t *ft = json_object_get(fj, "type");
            json_t *ej = NULL;

            if (json_is_object(ft))
                ej = ft;
            else if (json_is_array(ft))
                for (size_t k = 0; k < json_array_size(ft); k++)
                    if (json_is_object(json_array_get(ft, k))) ej = json_array_get(ft, k);
            sym = ej ? json_string_value(json_object_get(ej, "default")) : NULL;
            if (sym) r->f[i].enum_default = avro_schema_enum_get_by_name(r->f[i].enum_schema, sym);
        }
    }
    return 0;
fail:
    sn_codec_reader_fini(r);
    return SN_ERR_INVALID;
}

/* ---------------------------------------------------------------- telemetry reader roles */

/* Classifies a field type: one supported type, or a union of null and one. */
static enum kind classify(avro_schema_t s, int *nullable, int *null_branch, int *value_branch,
                          int *nsymbols) {
    avro_schema_t base;

    s = deref(s);
    *nullable = 0;
    *null_branch = *value_branch = -1;
    if (is_avro_union(s)) {
        avro_schema_t b0, b1;

        if (avro_schema_union_size(s) != 2) return K_OTHER;
        b0 = deref(avro_schema_union_branch(s, 0));
        b1 = deref(avro_schema_union_branch(s, 1));
        if (is_avro_null(b0) && !is_avro_null(b1))
            *null_branch = 0, *value_branch = 1, base = b1;
        else if (is_avro_null(b1) && !is_avro_null(b0))
            *null_branch = 1, *value_branch = 0, base = b0;
        else
            return K_OTHER;
        *nullable = 1;
    } else {
        base = s;
    }
    switch (avro_typeof(base)) {
    case AVRO_INT32: return K_INT;
    case AVRO_INT64: return K_LONG;
    case AVRO_FLOAT: return K_FLOAT;
    case AVRO_DOUBLE: return K_DOUBLE;
    case AVRO_BOOLEAN: return K_BOOL;
    case AVRO_ENUM: *nsymbols = (int)avro_schema_enum_number_of_symbols(base); return K_ENUM;
    case AVRO_STRING: return K_STRING;
    case AVRO_MAP: return is_avro_string(deref(avro_schema_map_values(base))) ? K_MAP : K_OTHER;
    default: return K_OTHER;
    }
}

static const char *kind_name(enum kind k) {
    static const char *const n[] = {"int",  "long",   "float", "double", "boolean",
                                    "enum", "string", "map",   "other"};
    return n[k];
}

/* logicalType of the (non-null branch of the) field type, from the JSON. */
static const char *logical_type(json_t *fj) {
    json_t *t = json_object_get(fj, "type");

    if (json_is_array(t))
        for (size_t i = 0; i < json_array_size(t); i++)
            if (json_is_object(json_array_get(t, i))) t = json_array_get(t, i);
    return json_is_object(t) ? json_string_value(json_object_get(t, "logicalType")) : NULL;
}

/* Reads the JSON default of field i into its telemetry role. Avro says a
 * union's default belongs to its first branch. */
static int parse_default(sn_codec_t *c, size_t i, json_t *def, char *errstr, size_t errstr_size) {
    struct sn_tfield *tf = &c->tf[i];
    const char *name = c->readers[SN_KIND_TELEMETRY].f[i].name;
    int first_is_null = tf->nullable && tf->null_branch == 0;

    if (json_is_null(def)) {
        if (!first_is_null) goto bad;
        tf->def_null = 1;
        tf->def_value = NAN;
        return 0;
    }
    if (first_is_null) goto bad;
    switch (tf->role) {
    case R_KEY:
        if (!json_is_string(def) || json_string_length(def) >= SN_EVENT_ID_MAX) goto bad;
        snprintf(tf->def_key, sizeof(tf->def_key), "%s", json_string_value(def));
        return 0;
    case R_TIME:
        if (!json_is_integer(def)) goto bad;
        tf->def_ts = json_integer_value(def);
        return 0;
    case R_TAGS: {
        const char *k;
        json_t *v;

        if (!json_is_object(def) || json_object_size(def) > SN_EVENT_TAGS_MAX) goto bad;
        json_object_foreach(def, k, v) {
            sn_event_tag_t *t = &c->def_tags[c->ndef_tags++];

            if (!json_is_string(v) || strlen(k) >= SN_EVENT_TAG_MAX ||
                json_string_length(v) >= SN_EVENT_TAG_MAX)
                goto bad;
            snprintf(t->key, sizeof(t->key), "%s", k);
            snprintf(t->value, sizeof(t->value), "%s", json_string_value(v));
        }
        return 0;
    }
    case R_VALUE:
        if (tf->kind == K_ENUM) {
            int idx =
                json_is_string(def)
                    ? avro_schema_enum_get_by_name(c->readers[SN_KIND_TELEMETRY].f[i].enum_schema,
                                                   json_string_value(def))
                    : -1;
            if (idx < 0) goto bad;
            tf->def_value = idx;
        } else if (tf->kind == K_BOOL) {
            if (!json_is_boolean(def)) goto bad;
            tf->def_value = json_is_true(def);
        } else {
            if (!json_is_number(def)) goto bad;
            tf->def_value = json_number_value(def);
        }
        return 0;
    case R_IGNORED: return 0;
    }
bad:
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                      "reader schema field '%s': unsupported default value", name);
}

/* Gives every reader field its role and checks the whole reader: the key and
 * time fields exist with the right types, every other field is numeric or
 * "tags" (or is ignored when configured), and at most SN_EVENT_FIELDS_MAX
 * values. The errors name the field, since this is where an operator's own
 * schema is first seen. */
static int setup_telemetry(sn_codec_t *c, const sn_conf_t *conf, const char *path, char *errstr,
                           size_t errstr_size) {
    struct sn_reader *r = &c->readers[SN_KIND_TELEMETRY];
    const char *key = sn_conf_str(conf, "schema.key.field");
    const char *timef = sn_conf_str(conf, "schema.time.field");
    int ignore = strcmp(sn_conf_str(conf, "schema.unsupported.fields"), "ignore") == 0;
    json_t *fields = json_object_get(r->json, "fields");
    int have_key = 0, have_time = 0;

    if (strcmp(key, timef) == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "schema.key.field and schema.time.field are both '%s'", key);
    for (size_t i = 0; i < r->nf; i++) {
        have_key |= strcmp(r->f[i].name, key) == 0;
        have_time |= strcmp(r->f[i].name, timef) == 0;
    }
    if (!have_key)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "%s: no key field '%s' (schema.key.field)", path, key);
    if (!have_time)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "%s: no time field '%s' (schema.time.field)", path, timef);
    for (size_t i = 0; i < r->nf; i++) {
        int nl, nb, vb, ns = 0;
        enum kind k =
            classify(avro_schema_record_field_get_by_index(r->schema, (int)i), &nl, &nb, &vb, &ns);

        if (strcmp(r->f[i].name, key) == 0 && k != K_STRING)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s: key field '%s' must be a string, not %s", path, key,
                              kind_name(k));
        if (strcmp(r->f[i].name, timef) == 0 && k != K_LONG)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s: time field '%s' must be a long, not %s", path, timef,
                              kind_name(k));
    }
    if (!(c->tf = calloc(r->nf, sizeof(*c->tf))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->nf; i++) {
        struct sn_tfield *tf = &c->tf[i];
        const char *name = r->f[i].name;
        json_t *fj = json_array_get(fields, i), *def;

        tf->kind = classify(avro_schema_record_field_get_by_index(r->schema, (int)i), &tf->nullable,
                            &tf->null_branch, &tf->value_branch, &tf->nsymbols);
        tf->slot = -1;
        tf->ts_div = 1;
        if (strcmp(name, key) == 0) {
            if (tf->kind != K_STRING)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s: key field '%s' must be a string, not %s", path, name,
                                  kind_name(tf->kind));
            tf->role = R_KEY;
        } else if (strcmp(name, timef) == 0) {
            const char *lt = logical_type(fj);

            if (tf->kind != K_LONG)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s: time field '%s' must be a long, not %s", path, name,
                                  kind_name(tf->kind));
            if (lt && (strstr(lt, "micros")))
                tf->ts_div = 1000;
            else if (lt && strstr(lt, "nanos"))
                tf->ts_div = 1000000;
            else if (lt && strncmp(lt, "time-", 5) == 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s: time field '%s' is a time of day (%s), not a timestamp",
                                  path, name, lt);
            tf->role = R_TIME;
        } else if (strcmp(name, "tags") == 0 && tf->kind == K_MAP) {
            tf->role = R_TAGS;
        } else if (tf->kind <= K_ENUM) {
            if (c->nvalues >= SN_EVENT_FIELDS_MAX)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s: more than %d numeric fields (at '%s')", path,
                                  SN_EVENT_FIELDS_MAX, name);
            tf->role = R_VALUE;
            tf->slot = (int)c->nvalues;
            c->value_names[c->nvalues++] = name;
        } else if (ignore) {
            tf->role = R_IGNORED;
            if (!c->nignored++) c->first_ignored = name;
        } else {
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s: field '%s' has an unsupported type (%s%s); numeric fields, "
                              "the key, the time and a 'tags' map of strings are supported "
                              "(or set schema.unsupported.fields=ignore)",
                              path, name,
                              tf->kind == K_OTHER ? "record, array, bytes, fixed or a wider union"
                                                  : kind_name(tf->kind),
                              tf->kind == K_MAP ? " not named tags" : "");
        }
        def = json_object_get(fj, "default");
        if (def && parse_default(c, i, def, errstr, errstr_size) != 0) return SN_ERR_INVALID;
    }
    return 0;
}

/* ---------------------------------------------------------------- writers and plans */

static void plan_free(struct sn_plan *p, size_t nf) {
    if (!p) return;
    if (p->riface) {
        avro_resolved_reader_clear_source(&p->rvalue);
        avro_value_decref(&p->rvalue);
        avro_value_iface_decref(p->riface);
    }
    if (p->proj) avro_schema_decref(p->proj);
    if (p->f)
        for (size_t i = 0; i < nf; i++) free(p->f[i].emap);
    free(p->f);
    free(p);
}

static void writer_free(sn_codec_t *c, struct sn_writer *w) {
    if (!w) return;
    for (int k = 0; k < SN_KIND_COUNT; k++) plan_free(w->plans[k], c->readers[k].nf);
    if (w->has_gvalue) avro_value_decref(&w->gvalue);
    if (w->giface) avro_value_iface_decref(w->giface);
    sn_wire_destroy(w->wire);
    if (w->schema) avro_schema_decref(w->schema);
    free(w);
}

/* Fetches and compiles writer id. A schema that cannot be parsed or compiled
 * is remembered as bad for good (ids are immutable); an id the registry does
 * not know is remembered for schema.registry.unknown.retry.ms; transient
 * failures are not remembered, so the next call asks again. */
static int writer_load(sn_codec_t *c, struct sn_writer *w, enum sn_codec_error_class *cls,
                       char *errstr, size_t errstr_size) {
    char *json = NULL;
    char why[SN_CODEC_ERR_MAX];
    int rc;

    rc = sn_schema_store_fetch(c->store, w->id, &json, why, sizeof(why));
    if (rc == SN_ERR_NOENT) {
        w->state = SN_WS_UNKNOWN;
        w->retry_at_ms = now_ms() + c->unknown_retry_ms;
        snprintf(w->err, sizeof(w->err), "%s", why);
        return sn_codec_fail(cls, SN_CODEC_UNKNOWN_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                             "%s", why);
    }
    if (rc == SN_ERR_INVALID) /* the registry answered with something that is not Avro */
        return sn_codec_fail(cls, SN_CODEC_INCOMPATIBLE_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                             "schema id %d: %s", (int)w->id, why);
    if (rc != 0) {
        /* unreachable or refusing registry, unreadable schema file: not the
         * record's fault, so never a dead letter */
        int err = rc == SN_ERR_FATAL || rc == SN_ERR_NOMEM ? rc : SN_ERR_TRANSIENT;

        return sn_codec_fail(cls,
                             rc == SN_ERR_NOMEM ? SN_CODEC_INTERNAL : SN_CODEC_SCHEMA_UNAVAILABLE,
                             err, errstr, errstr_size, "schema id %d: %s", (int)w->id, why);
    }
    w->state = SN_WS_BAD;
    if (avro_schema_from_json_length(json, strlen(json), &w->schema) != 0) {
        w->schema = NULL;
        snprintf(w->err, sizeof(w->err), "schema id %d is not a valid Avro schema: %.180s",
                 (int)w->id, avro_strerror());
        goto bad;
    }
    if (!(w->wire = sn_wire_new(w->schema, why, sizeof(why)))) {
        snprintf(w->err, sizeof(w->err), "schema id %d: %.200s", (int)w->id, why);
        goto bad;
    }
    if (!(w->giface = avro_generic_class_from_schema(w->schema)) ||
        avro_generic_value_new(w->giface, &w->gvalue) != 0) {
        snprintf(w->err, sizeof(w->err), "schema id %d: %.200s", (int)w->id, avro_strerror());
        goto bad;
    }
    w->has_gvalue = 1;
    w->state = SN_WS_OK;
    free(json);
    return 0;
bad:
    free(json);
    return sn_codec_fail(cls, SN_CODEC_INCOMPATIBLE_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                         "%s", w->err);
}

/* The cached writer for id, loading it on first sight. The previous frame's
 * writer is checked first: a topic almost always carries one id. */
static int writer_get(sn_codec_t *c, int32_t id, struct sn_writer **out,
                      enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    struct sn_writer *w = NULL;
    int rc;

    if (c->last && c->last->id == id) w = c->last;
    for (size_t i = 0; !w && i < c->nwriters; i++)
        if (c->writers[i]->id == id) w = c->writers[i];
    if (!w) {
        if (c->nwriters == SN_CODEC_WRITERS_MAX) {
            /* Make room by forgetting an unknown id; known ones stay forever. */
            for (size_t i = 0; i < c->nwriters; i++)
                if (c->writers[i]->state == SN_WS_UNKNOWN) {
                    if (c->last == c->writers[i]) c->last = NULL;
                    writer_free(c, c->writers[i]);
                    c->writers[i] = c->writers[--c->nwriters];
                    break;
                }
            if (c->nwriters == SN_CODEC_WRITERS_MAX)
                return sn_codec_fail(cls, SN_CODEC_UNKNOWN_SCHEMA, SN_ERR_INVALID, errstr,
                                     errstr_size, "more than %d writer schemas in use",
                                     SN_CODEC_WRITERS_MAX);
        }
        if (!(w = calloc(1, sizeof(*w))))
            return sn_codec_fail(cls, SN_CODEC_INTERNAL, SN_ERR_NOMEM, errstr, errstr_size,
                                 "out of memory");
        w->id = id;
        if ((rc = writer_load(c, w, cls, errstr, errstr_size)) != 0 && w->state != SN_WS_UNKNOWN &&
            w->state != SN_WS_BAD) {
            free(w); /* transient: not cached */
            return rc;
        }
        c->writers[c->nwriters++] = w;
        if (rc != 0) return rc;
    } else if (w->state == SN_WS_UNKNOWN) {
        if (now_ms() < w->retry_at_ms)
            return sn_codec_fail(cls, SN_CODEC_UNKNOWN_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                                 "%s", w->err);
        if ((rc = writer_load(c, w, cls, errstr, errstr_size)) != 0) return rc;
    } else if (w->state == SN_WS_BAD) {
        return sn_codec_fail(cls, SN_CODEC_INCOMPATIBLE_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                             "%s", w->err);
    }
    c->last = w;
    *out = w;
    return 0;
}

/* ---- resolution pre-check
 *
 * avro_resolved_reader_new() in avro-c 1.11.1 must only be called when it
 * will succeed: when a record matches by name but a field then fails, its
 * error path releases every field resolver it made, and resolvers of
 * identical schema pairs (every "double" field, say) are memoized and shared,
 * so it frees the same one several times (ASan: double-free in
 * avro_resolved_reader_new). check_resolve() mirrors avro-c's rules (the
 * try_* functions of resolved-reader.c) and reports whether avro-c would
 * succeed and whether it would pass through such a failing record on the
 * way (inside a union branch it then skips). Only "succeeds, no deep
 * failure" is handed to avro-c. */

enum { RES_OK = 0, RES_SHALLOW = 1, RES_DEEP = 2 };

struct res_state {
    avro_schema_t w[64], r[64]; /* pairs being resolved: recursion assumes success */
    int n;
    int deep;
    char why[SN_CODEC_ERR_MAX];
};

static int res_fail(struct res_state *st, int kind, const char *fmt, const char *a, const char *b) {
    if (!st->why[0]) snprintf(st->why, sizeof(st->why), fmt, a, b);
    if (kind == RES_DEEP) st->deep = 1;
    return kind;
}

static int check_resolve(struct res_state *st, avro_schema_t w, avro_schema_t r) {
    int res = RES_OK, ok = 0;

    for (int i = 0; i < st->n; i++)
        if (st->w[i] == w && st->r[i] == r) return RES_OK;
    if (st->n == 64) return res_fail(st, RES_DEEP, "schemas nested too deeply%s%s", "", "");
    st->w[st->n] = w;
    st->r[st->n] = r;
    st->n++;
    if (is_avro_union(w)) {
        int shallow_only = 1;

        for (size_t i = 0; i < avro_schema_union_size(w); i++) {
            int b = check_resolve(st, avro_schema_union_branch(w, i), r);
            ok |= b == RES_OK;
            shallow_only &= b != RES_DEEP;
        }
        res = ok ? RES_OK : shallow_only ? RES_SHALLOW : RES_DEEP;
        goto out;
    }
    if (is_avro_link(w)) {
        res = check_resolve(st, avro_schema_link_target(w), r);
        goto out;
    }
    switch (avro_typeof(r)) {
    case AVRO_BOOLEAN: ok = is_avro_boolean(w); break;
    case AVRO_BYTES: ok = is_avro_bytes(w); break;
    case AVRO_STRING: ok = is_avro_string(w); break;
    case AVRO_NULL: ok = is_avro_null(w); break;
    case AVRO_INT32: ok = is_avro_int32(w); break;
    case AVRO_INT64: ok = is_avro_int64(w) || is_avro_int32(w); break;
    case AVRO_FLOAT: ok = is_avro_float(w) || is_avro_int32(w) || is_avro_int64(w); break;
    case AVRO_DOUBLE:
        ok = is_avro_double(w) || is_avro_float(w) || is_avro_int32(w) || is_avro_int64(w);
        break;
    case AVRO_ENUM:
        ok = is_avro_enum(w) && strcmp(avro_schema_name(w), avro_schema_name(r)) == 0;
        break;
    case AVRO_FIXED:
        ok = is_avro_fixed(w) && strcmp(avro_schema_name(w), avro_schema_name(r)) == 0 &&
             avro_schema_fixed_size(w) == avro_schema_fixed_size(r);
        break;
    case AVRO_ARRAY:
        if (!is_avro_array(w)) break;
        res = check_resolve(st, avro_schema_array_items(w), avro_schema_array_items(r));
        goto out;
    case AVRO_MAP:
        if (!is_avro_map(w)) break;
        res = check_resolve(st, avro_schema_map_values(w), avro_schema_map_values(r));
        goto out;
    case AVRO_RECORD:
        if (!is_avro_record(w) || strcmp(avro_schema_name(w), avro_schema_name(r)) != 0) break;
        for (size_t i = 0; i < avro_schema_record_size(r); i++) {
            const char *name = avro_schema_record_field_name(r, (int)i);
            int wi = avro_schema_record_field_get_index(w, name);

            if (wi < 0) {
                res = res_fail(st, RES_DEEP, "record %s: the writer has no field '%s'",
                               avro_schema_name(r), name);
                goto out;
            }
            if (check_resolve(st, avro_schema_record_field_get_by_index(w, wi),
                              avro_schema_record_field_get_by_index(r, (int)i)) != RES_OK) {
                res = res_fail(st, RES_DEEP, "record %s: field '%s' cannot be resolved",
                               avro_schema_name(r), name);
                goto out;
            }
        }
        ok = 1;
        break;
    case AVRO_UNION:
        for (size_t i = 0; i < avro_schema_union_size(r) && !ok; i++)
            ok = check_resolve(st, w, avro_schema_union_branch(r, i)) == RES_OK;
        break;
    case AVRO_LINK: res = check_resolve(st, w, avro_schema_link_target(r)); goto out;
    default: break;
    }
    res = ok ? RES_OK
             : res_fail(st, RES_SHALLOW, "writer %s cannot be read as %s", avro_schema_type_name(w),
                        avro_schema_type_name(r));
out:
    st->n--;
    return res;
}

/* Swaps the writer's generic value for a fresh one and points every plan's
 * resolved view at it (an identity view is &w->gvalue, which stays valid). */
static int writer_renew_value(struct sn_writer *w) {
    avro_value_t fresh;

    if (avro_generic_value_new(w->giface, &fresh) != 0) return SN_ERR_NOMEM;
    for (int k = 0; k < SN_KIND_COUNT; k++)
        if (w->plans[k] && w->plans[k]->riface)
            avro_resolved_reader_set_source(&w->plans[k]->rvalue, &fresh);
    avro_value_decref(&w->gvalue);
    w->gvalue = fresh;
    return 0;
}

/* Writer symbol index -> reader symbol index by name; a writer symbol the
 * reader lacks maps to the reader enum's default, or -1 (a bad value when
 * it occurs). */
static int build_emap(struct sn_fplan *fp, avro_schema_t wenum, const struct sn_rinfo *ri) {
    int n = (int)avro_schema_enum_number_of_symbols(wenum);

    if (!(fp->emap = malloc((size_t)(n ? n : 1) * sizeof(*fp->emap)))) return SN_ERR_NOMEM;
    fp->nemap = n;
    for (int i = 0; i < n; i++) {
        int r = avro_schema_enum_get_by_name(ri->enum_schema, avro_schema_enum_get(wenum, i));
        fp->emap[i] = (int16_t)(r >= 0 ? r : ri->enum_default);
    }
    return 0;
}

/* Builds the plan that reads writer w as reader kind. A failure is kept in the
 * plan (ok = 0), so an incompatible writer costs one check per frame, not a
 * rebuild. */
static struct sn_plan *plan_build(sn_codec_t *c, struct sn_writer *w, enum sn_codec_kind kind) {
    const struct sn_reader *r = &c->readers[kind];
    struct sn_plan *p = calloc(1, sizeof(*p));
    avro_schema_t view_schema = r->schema;
    json_t *proj = NULL, *pfields = NULL;
    char *text = NULL;
    int missing = 0, next = 0;

    if (!p) return NULL;
    p->cls = SN_CODEC_INCOMPATIBLE_SCHEMA;
    if (!(p->f = calloc(r->nf, sizeof(*p->f)))) goto nomem;
    for (size_t i = 0; i < r->nf; i++) {
        int wi = avro_schema_record_field_get_index(w->schema, r->f[i].name);

        if (!is_avro_record(w->schema)) {
            snprintf(p->err, sizeof(p->err), "writer schema id %d is not a record", (int)w->id);
            goto out;
        }
        if (wi < 0) {
            if (!r->f[i].has_default) {
                snprintf(p->err, sizeof(p->err),
                         "writer schema id %d lacks field '%s', which has no default in the "
                         "reader schema",
                         (int)w->id, r->f[i].name);
                goto out;
            }
            p->f[i].pidx = -1;
            missing++;
            continue;
        }
        p->f[i].pidx = next++;
        {
            avro_schema_t wf = deref(avro_schema_record_field_get_by_index(w->schema, wi));

            if (is_avro_union(wf))
                for (size_t b = 0; b < avro_schema_union_size(wf); b++)
                    if (is_avro_null(deref(avro_schema_union_branch(wf, b)))) p->f[i].wnullable = 1;
            if (r->f[i].enum_schema) {
                avro_schema_t we = field_enum(wf);

                if (!we) {
                    snprintf(p->err, sizeof(p->err),
                             "field '%s': writer schema id %d has no enum there", r->f[i].name,
                             (int)w->id);
                    goto out;
                }
                if (build_emap(&p->f[i], we, &r->f[i]) != 0) goto nomem;
            }
        }
    }
    if (missing) {
        /* The projection: the reader's JSON with only the fields the writer
         * has. It keeps the record's name, so resolution still matches. */
        json_t *fields = json_object_get(r->json, "fields");

        if (!(proj = json_copy(r->json)) || !(pfields = json_array())) goto nomem;
        for (size_t i = 0; i < r->nf; i++)
            if (p->f[i].pidx >= 0 && json_array_append(pfields, json_array_get(fields, i)) != 0)
                goto nomem;
        if (json_object_set(proj, "fields", pfields) != 0 ||
            !(text = json_dumps(proj, JSON_COMPACT)))
            goto nomem;
        if (avro_schema_from_json_length(text, strlen(text), &p->proj) != 0) {
            p->proj = NULL;
            snprintf(p->err, sizeof(p->err), "reader projection for writer id %d: %.160s",
                     (int)w->id, avro_strerror());
            goto out;
        }
        view_schema = p->proj;
    }
    if (avro_schema_equal(w->schema, view_schema)) {
        p->view = &w->gvalue;
    } else {
        struct res_state st;

        memset(&st, 0, sizeof(st));
        if (check_resolve(&st, w->schema, view_schema) != RES_OK || st.deep) {
            snprintf(p->err, sizeof(p->err), "writer schema id %d cannot be read as %s: %.160s",
                     (int)w->id, avro_schema_name(r->schema),
                     st.why[0] ? st.why
                               : "a union branch partially matches (refused: avro-c "
                                 "1.11.1 would double-free)");
            goto out;
        }
        if (!(p->riface = avro_resolved_reader_new(w->schema, view_schema))) {
            snprintf(p->err, sizeof(p->err), "writer schema id %d cannot be read as %s: %.160s",
                     (int)w->id, avro_schema_name(r->schema), avro_strerror());
            goto out;
        }
        if (avro_resolved_reader_new_value(p->riface, &p->rvalue) != 0) {
            avro_value_iface_decref(p->riface);
            p->riface = NULL;
            goto nomem;
        }
        avro_resolved_reader_set_source(&p->rvalue, &w->gvalue);
        p->view = &p->rvalue;
    }
    p->ok = 1;
    p->cls = SN_CODEC_OK;
    goto out;
nomem:
    p->cls = SN_CODEC_INTERNAL;
    snprintf(p->err, sizeof(p->err), "out of memory building the plan for id %d", (int)w->id);
out:
    free(text);
    json_decref(pfields);
    json_decref(proj);
    return p;
}

int sn_codec_decode_common(sn_codec_t *c, enum sn_codec_kind kind, const void *buf, size_t len,
                           avro_value_t **view, struct sn_plan **plan,
                           enum sn_codec_error_class *cls, int32_t *schema_id_out, char *errstr,
                           size_t errstr_size) {
    const uint8_t *b = buf, *data;
    struct sn_writer *w = NULL;
    struct sn_plan *p;
    enum sn_codec_error_class cls_local;
    size_t dlen;
    int32_t id;
    int rc;

    if (!cls) cls = &cls_local; /* "cls may be NULL": the validator always writes it */
    if (schema_id_out) *schema_id_out = -1;
    if (c->datum) { /* sn_codec_decode_datum: a bare datum of a given writer */
        w = c->datum;
        data = b;
        dlen = len;
        goto body;
    }
    if (len == 0)
        return sn_codec_fail(cls, SN_CODEC_TRUNCATED, SN_ERR_INVALID, errstr, errstr_size,
                             "empty message");
    if (b[0] != 0)
        return sn_codec_fail(cls, SN_CODEC_BAD_MAGIC, SN_ERR_INVALID, errstr, errstr_size,
                             "magic byte is 0x%02x, not 0 (not a Confluent-framed Avro record)",
                             b[0]);
    if (len < FRAME_HEADER)
        return sn_codec_fail(cls, SN_CODEC_TRUNCATED, SN_ERR_INVALID, errstr, errstr_size,
                             "%zu bytes: shorter than the 5-byte frame header", len);
    id = (int32_t)(((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 8) | b[4]);
    if (schema_id_out) *schema_id_out = id;
    if (id <= 0)
        return sn_codec_fail(cls, SN_CODEC_UNKNOWN_SCHEMA, SN_ERR_INVALID, errstr, errstr_size,
                             "schema id %d is not a valid id", (int)id);
    if ((rc = writer_get(c, id, &w, cls, errstr, errstr_size)) != 0) return rc;
    data = b + FRAME_HEADER;
    dlen = len - FRAME_HEADER;
body:
    if (!(p = w->plans[kind]) && !(p = w->plans[kind] = plan_build(c, w, kind)))
        return sn_codec_fail(cls, SN_CODEC_INTERNAL, SN_ERR_NOMEM, errstr, errstr_size,
                             "out of memory");
    if (!p->ok)
        return sn_codec_fail(cls, p->cls,
                             p->cls == SN_CODEC_INTERNAL ? SN_ERR_NOMEM : SN_ERR_INVALID, errstr,
                             errstr_size, "%s", p->err);
    if ((rc = sn_wire_check(w->wire, data, dlen, c->max_alloc, cls, errstr, errstr_size)) != 0)
        return rc;
    avro_reader_memory_set_source(c->areader, (const char *)data, (int64_t)dlen);
    sn_avro_alloc_arm(c->max_alloc);
    rc = avro_value_read(c->areader, &w->gvalue);
    {
        size_t refused = sn_avro_alloc_refused();

        sn_avro_alloc_arm(0);
        if (rc != 0) {
            /* After a failed read the value may be unusable (avro-c 1.11.1
             * array.c loses the buffer of a refused growth but keeps its
             * size), so it is replaced before the next frame. */
            if (writer_renew_value(w) != 0)
                return sn_codec_fail(cls, SN_CODEC_INTERNAL, SN_ERR_NOMEM, errstr, errstr_size,
                                     "out of memory");
            if (refused)
                return sn_codec_fail(cls, SN_CODEC_TOO_LARGE, SN_ERR_INVALID, errstr, errstr_size,
                                     "decoding needs an allocation of %zu bytes, over the "
                                     "%zu-byte cap (schema.max.alloc.bytes)",
                                     refused, c->max_alloc);
            return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                                 "avro-c: %.200s", avro_strerror());
        }
    }
    *view = p->view;
    *plan = p;
    if (cls) *cls = SN_CODEC_OK;
    return 0;
}

/* ---------------------------------------------------------------- strings, enums */

/* The machine id rules: 1..63 bytes of UTF-8 without control characters
 * (it becomes a Redis key, a Kafka key and a log field). */
static int check_key(const char *s, size_t len, const char *field, enum sn_codec_error_class *cls,
                     char *errstr, size_t errstr_size) {
    if (len == 0)
        return sn_codec_fail(cls, SN_CODEC_BAD_KEY, SN_ERR_INVALID, errstr, errstr_size,
                             "key field '%s' is empty", field);
    if (len >= SN_EVENT_ID_MAX)
        return sn_codec_fail(cls, SN_CODEC_BAD_KEY, SN_ERR_INVALID, errstr, errstr_size,
                             "key field '%s' has %zu bytes, more than %d", field, len,
                             SN_EVENT_ID_MAX - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return sn_codec_fail(cls, SN_CODEC_BAD_KEY, SN_ERR_INVALID, errstr, errstr_size,
                                 "key field '%s' has a control character at byte %zu", field, i);
    if (!sn_wire_utf8_valid(s, len))
        return sn_codec_fail(cls, SN_CODEC_BAD_KEY, SN_ERR_INVALID, errstr, errstr_size,
                             "key field '%s' is not valid UTF-8", field);
    return 0;
}

int sn_codec_copy_string(avro_value_t *v, char *dst, size_t cap, const char *field,
                         enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    const char *s = NULL;
    size_t sz = 0, len;

    if (avro_value_get_string(v, &s, &sz) != 0 || !s)
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': %.200s", field, avro_strerror());
    len = sz ? sz - 1 : 0;
    if (len >= cap)
        return sn_codec_fail(cls, SN_CODEC_TOO_LARGE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': %zu bytes, more than %zu", field, len, cap - 1);
    if (memchr(s, '\0', len) || !sn_wire_utf8_valid(s, len))
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': not valid UTF-8 text", field);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int sn_codec_enum_index(const struct sn_fplan *fp, const char *field, int windex, int *out,
                        enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    if (windex < 0 || windex >= fp->nemap)
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': enum index %d out of range", field, windex);
    if (fp->emap[windex] < 0)
        return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': enum symbol #%d is not in the reader schema", field,
                             windex);
    *out = fp->emap[windex];
    return 0;
}

/* ---------------------------------------------------------------- telemetry decode */

/* Selects the value of a nullable field: *isnull, or *b = the branch. */
static int unwrap(const struct sn_tfield *tf, avro_value_t *v, avro_value_t *b, int *isnull) {
    int d;

    *isnull = 0;
    if (!tf->nullable) {
        *b = *v;
        return 0;
    }
    if (avro_value_get_discriminant(v, &d) != 0) return -1;
    if (d == tf->null_branch) {
        *isnull = 1;
        return 0;
    }
    return avro_value_get_current_branch(v, b);
}

static int field_default(const sn_codec_t *c, size_t i, sn_event_t *out,
                         enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    const struct sn_tfield *tf = &c->tf[i];
    const char *name = c->readers[SN_KIND_TELEMETRY].f[i].name;

    switch (tf->role) {
    case R_KEY:
        if (tf->def_null)
            return sn_codec_fail(cls, SN_CODEC_MISSING_FIELD, SN_ERR_INVALID, errstr, errstr_size,
                                 "key field '%s' is absent", name);
        if (check_key(tf->def_key, strlen(tf->def_key), name, cls, errstr, errstr_size) != 0)
            return SN_ERR_INVALID;
        memcpy(out->machine_id, tf->def_key, sizeof(tf->def_key));
        return 0;
    case R_TIME:
        if (tf->def_null)
            return sn_codec_fail(cls, SN_CODEC_MISSING_FIELD, SN_ERR_INVALID, errstr, errstr_size,
                                 "time field '%s' is absent", name);
        out->ts_ms = tf->def_ts / tf->ts_div;
        return 0;
    case R_TAGS:
        out->ntags = c->ndef_tags;
        memcpy(out->tags, c->def_tags, c->ndef_tags * sizeof(c->def_tags[0]));
        return 0;
    case R_VALUE: out->values[tf->slot] = tf->def_value; return 0;
    case R_IGNORED: return 0;
    }
    return 0;
}

static int read_tags(avro_value_t *m, sn_event_t *out, const char *name,
                     enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    size_t n = 0;

    if (avro_value_get_size(m, &n) != 0) goto avro;
    if (n > SN_EVENT_TAGS_MAX)
        return sn_codec_fail(cls, SN_CODEC_TOO_LARGE, SN_ERR_INVALID, errstr, errstr_size,
                             "field '%s': %zu tags, more than %d", name, n, SN_EVENT_TAGS_MAX);
    for (size_t i = 0; i < n; i++) {
        avro_value_t e;
        const char *key = NULL;
        size_t klen;

        if (avro_value_get_by_index(m, i, &e, &key) != 0 || !key) goto avro;
        klen = strlen(key);
        if (klen >= SN_EVENT_TAG_MAX)
            return sn_codec_fail(cls, SN_CODEC_TOO_LARGE, SN_ERR_INVALID, errstr, errstr_size,
                                 "field '%s': tag key of %zu bytes, more than %d", name, klen,
                                 SN_EVENT_TAG_MAX - 1);
        if (!sn_wire_utf8_valid(key, klen))
            return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                                 "field '%s': tag key is not valid UTF-8", name);
        memcpy(out->tags[i].key, key, klen + 1);
        if (sn_codec_copy_string(&e, out->tags[i].value, SN_EVENT_TAG_MAX, name, cls, errstr,
                                 errstr_size) != 0)
            return SN_ERR_INVALID;
    }
    out->ntags = (uint32_t)n;
    return 0;
avro:
    return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                         "field '%s': %.200s", name, avro_strerror());
}

/* Reads one reader field from the view into out. */
static int read_field(const sn_codec_t *c, size_t i, const struct sn_fplan *fp, avro_value_t *view,
                      sn_event_t *out, enum sn_codec_error_class *cls, char *errstr,
                      size_t errstr_size) {
    const struct sn_tfield *tf = &c->tf[i];
    const char *name = c->readers[SN_KIND_TELEMETRY].f[i].name;
    avro_value_t v, b;
    int isnull = 0;

    if (avro_value_get_by_index(view, (size_t)fp->pidx, &v, NULL) != 0 ||
        unwrap(tf, &v, &b, &isnull) != 0)
        goto avro;
    switch (tf->role) {
    case R_KEY: {
        const char *s = NULL;
        size_t sz = 0, len;

        if (isnull)
            return sn_codec_fail(cls, SN_CODEC_MISSING_FIELD, SN_ERR_INVALID, errstr, errstr_size,
                                 "key field '%s' is null", name);
        if (avro_value_get_string(&b, &s, &sz) != 0 || !s) goto avro;
        len = sz ? sz - 1 : 0;
        if (memchr(s, '\0', len))
            return sn_codec_fail(cls, SN_CODEC_BAD_KEY, SN_ERR_INVALID, errstr, errstr_size,
                                 "key field '%s' contains a NUL byte", name);
        if (check_key(s, len, name, cls, errstr, errstr_size) != 0) return SN_ERR_INVALID;
        memcpy(out->machine_id, s, len);
        out->machine_id[len] = '\0';
        return 0;
    }
    case R_TIME: {
        int64_t t;

        if (isnull)
            return sn_codec_fail(cls, SN_CODEC_MISSING_FIELD, SN_ERR_INVALID, errstr, errstr_size,
                                 "time field '%s' is null", name);
        if (avro_value_get_long(&b, &t) != 0) goto avro;
        if (t < 0)
            return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                                 "time field '%s' is %" PRId64 ", before 1970", name, t);
        out->ts_ms = t / tf->ts_div;
        return 0;
    }
    case R_TAGS:
        if (isnull) {
            out->ntags = 0;
            return 0;
        }
        return read_tags(&b, out, name, cls, errstr, errstr_size);
    case R_VALUE: {
        double *dst = &out->values[tf->slot];

        if (isnull) {
            *dst = NAN;
            return 0;
        }
        switch (tf->kind) {
        case K_INT: {
            int32_t x;
            if (avro_value_get_int(&b, &x) != 0) goto avro;
            *dst = x;
            return 0;
        }
        case K_LONG: {
            int64_t x;
            if (avro_value_get_long(&b, &x) != 0) goto avro;
            *dst = (double)x;
            return 0;
        }
        case K_FLOAT: {
            float x;
            if (avro_value_get_float(&b, &x) != 0) goto avro;
            *dst = x;
            break;
        }
        case K_DOUBLE:
            if (avro_value_get_double(&b, dst) != 0) goto avro;
            break;
        case K_BOOL: {
            int x;
            if (avro_value_get_boolean(&b, &x) != 0) goto avro;
            *dst = x != 0;
            return 0;
        }
        case K_ENUM: {
            int x, r;
            if (avro_value_get_enum(&b, &x) != 0) goto avro;
            if (sn_codec_enum_index(fp, name, x, &r, cls, errstr, errstr_size) != 0)
                return SN_ERR_INVALID;
            *dst = r;
            return 0;
        }
        default: goto avro;
        }
        if (!isfinite(*dst))
            return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                                 "field '%s' is %s", name,
                                 isnan(*dst) ? "NaN" : (*dst > 0 ? "+infinity" : "-infinity"));
        return 0;
    }
    case R_IGNORED: return 0;
    }
avro:
    /* The resolved reader fails here when the writer sent null in a union that
     * the reader's type does not allow. */
    if (fp->wnullable && (tf->role == R_KEY || tf->role == R_TIME))
        return sn_codec_fail(cls, SN_CODEC_MISSING_FIELD, SN_ERR_INVALID, errstr, errstr_size,
                             "%s field '%s' is null", tf->role == R_KEY ? "key" : "time", name);
    return sn_codec_fail(cls, SN_CODEC_BAD_VALUE, SN_ERR_INVALID, errstr, errstr_size,
                         "field '%s': %.200s", name, avro_strerror());
}

int sn_codec_decode(sn_codec_t *c, const void *buf, size_t len, sn_event_t *out,
                    enum sn_codec_error_class *cls, int32_t *schema_id_out, char *errstr,
                    size_t errstr_size) {
    const struct sn_reader *r = &c->readers[SN_KIND_TELEMETRY];
    avro_value_t *view = NULL;
    struct sn_plan *plan = NULL;
    int rc;

    out->machine_id[0] = '\0';
    out->ts_ms = 0;
    out->nvalues = 0;
    out->ntags = 0;
    if ((rc = sn_codec_decode_common(c, SN_KIND_TELEMETRY, buf, len, &view, &plan, cls,
                                     schema_id_out, errstr, errstr_size)) != 0)
        return rc;
    for (size_t i = 0; i < r->nf; i++) {
        rc = plan->f[i].pidx < 0
                 ? field_default(c, i, out, cls, errstr, errstr_size)
                 : read_field(c, i, &plan->f[i], view, out, cls, errstr, errstr_size);
        if (rc != 0) {
            out->nvalues = 0;
            out->ntags = 0;
            return rc;
        }
    }
    out->nvalues = (uint32_t)c->nvalues;
    return 0;
}

/* ---------------------------------------------------------------- encode */

/* The id a produced frame carries. With schema.registry.mode none it is the
 * configured id, checked once against the schema stored under it; otherwise
 * the registry's answer for the subject. Not cached on failure, so a
 * registry outage is retried on the next call. */
static int slot_resolve(sn_codec_t *c, struct sn_slot *s, char *errstr, size_t errstr_size) {
    struct sn_writer *w = NULL;
    enum sn_codec_error_class cls;
    int32_t id = 0;
    char why[SN_CODEC_ERR_MAX];
    int rc;

    if (s->resolved) return 0;
    if (c->registry_mode) {
        rc = sn_schema_store_id_for(c->store, s->subject, s->json, c->registry_mode == 2, &id, why,
                                    sizeof(why));
        if (rc != 0)
            return sn_err_set(errstr, errstr_size, rc == SN_ERR_NOENT ? SN_ERR_INVALID : rc,
                              "%s of subject %s: %s", c->registry_mode == 2 ? "register" : "lookup",
                              s->subject, why);
    } else {
        id = s->conf_id;
        rc = writer_get(c, id, &w, &cls, why, sizeof(why));
        if (rc != 0) return sn_err_set(errstr, errstr_size, rc, "%s=%d: %s", s->what, (int)id, why);
        if (!avro_schema_equal(w->schema, s->schema))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s=%d names a schema (%s) that differs from the one this process "
                              "writes (%s): frames would be mislabelled",
                              s->what, (int)id, avro_schema_type_name(w->schema),
                              avro_schema_type_name(s->schema));
    }
    s->id = id;
    s->resolved = 1;
    return 0;
}

int sn_codec_encode_begin(sn_codec_t *c, enum sn_codec_kind kind, avro_value_t **value,
                          char *errstr, size_t errstr_size) {
    int rc;

    if ((rc = slot_resolve(c, &c->slots[kind], errstr, errstr_size)) != 0) return rc;
    if (!c->eiface[kind]) {
        if (!(c->eiface[kind] = avro_generic_class_from_schema(c->readers[kind].schema)))
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "avro: %s", avro_strerror());
        if (avro_generic_value_new(c->eiface[kind], &c->evalue[kind]) != 0) {
            avro_value_iface_decref(c->eiface[kind]);
            c->eiface[kind] = NULL;
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "avro: %s", avro_strerror());
        }
    }
    if (avro_value_reset(&c->evalue[kind]) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "avro: %s", avro_strerror());
    *value = &c->evalue[kind];
    return 0;
}

int sn_codec_encode_finish(sn_codec_t *c, enum sn_codec_kind kind, void *buf, size_t size,
                           size_t *len_out, char *errstr, size_t errstr_size) {
    uint8_t *b = buf;
    uint32_t id = (uint32_t)c->slots[kind].id;
    size_t body = 0;

    *len_out = 0;
    if (avro_value_sizeof(&c->evalue[kind], &body) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "avro: %s", avro_strerror());
    *len_out = body + FRAME_HEADER;
    if (*len_out > size)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM,
                          "output buffer of %zu bytes is too small: %zu needed", size, *len_out);
    b[0] = 0;
    b[1] = (uint8_t)(id >> 24);
    b[2] = (uint8_t)(id >> 16);
    b[3] = (uint8_t)(id >> 8);
    b[4] = (uint8_t)id;
    avro_writer_memory_set_dest(c->awriter, (const char *)b + FRAME_HEADER, (int64_t)body);
    if (avro_value_write(c->awriter, &c->evalue[kind]) != 0 ||
        avro_writer_tell(c->awriter) != (int64_t)body)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "avro: %s", avro_strerror());
    return 0;
}

/* Checks that a value can be carried by a field of kind k (not NaN: the
 * caller handles null first). */
static int encodable(const struct sn_tfield *tf, double v, const char *name, char *errstr,
                     size_t errstr_size) {
    const char *why = NULL;

    if (!isfinite(v))
        why = "not finite";
    else if (tf->kind == K_FLOAT && fabs(v) > FLT_MAX)
        why = "out of float range";
    else if ((tf->kind == K_INT || tf->kind == K_LONG || tf->kind == K_ENUM) && v != trunc(v))
        why = "not an integer";
    else if (tf->kind == K_INT && (v < INT32_MIN || v > INT32_MAX))
        why = "out of int range";
    else if (tf->kind == K_LONG && (v < -9223372036854775808.0 || v > 9223372036854775808.0))
        why = "out of long range";
    else if (tf->kind == K_BOOL && v != 0 && v != 1)
        why = "not 0 or 1";
    else if (tf->kind == K_ENUM && (v < 0 || v >= tf->nsymbols))
        why = "not a symbol index";
    if (why)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "field '%s': %g is %s", name, v,
                          why);
    return 0;
}

static int bounded_str(const char *s, size_t cap, size_t *len) {
    const char *nul = memchr(s, '\0', cap);

    if (!nul) return -1;
    *len = (size_t)(nul - s);
    return 0;
}

int sn_codec_encode(sn_codec_t *c, const sn_event_t *ev, void *buf, size_t size, size_t *len_out,
                    char *errstr, size_t errstr_size) {
    const struct sn_reader *r = &c->readers[SN_KIND_TELEMETRY];
    avro_value_t *rec = NULL;
    size_t klen;
    int rc;

    *len_out = 0;
    if (c->nignored)
        return sn_err_set(errstr, errstr_size, SN_ERR_UNSUPPORTED,
                          "the reader schema has ignored fields ('%s'): cannot produce with it",
                          c->first_ignored);
    if (ev->nvalues != c->nvalues)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "event has %u values, the schema %zu", ev->nvalues, c->nvalues);
    if (bounded_str(ev->machine_id, sizeof(ev->machine_id), &klen) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "machine_id is not NUL-terminated");
    if (check_key(ev->machine_id, klen, "machine_id", NULL, errstr, errstr_size) != 0)
        return SN_ERR_INVALID;
    if (ev->ts_ms < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "ts_ms %" PRId64 " is negative",
                          ev->ts_ms);
    if (ev->ntags > SN_EVENT_TAGS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%u tags, more than %d", ev->ntags,
                          SN_EVENT_TAGS_MAX);
    if ((rc = sn_codec_encode_begin(c, SN_KIND_TELEMETRY, &rec, errstr, errstr_size)) != 0)
        return rc;
    for (size_t i = 0; i < r->nf; i++) {
        const struct sn_tfield *tf = &c->tf[i];
        const char *name = r->f[i].name;
        avro_value_t f, b;
        int isnull = 0;

        if (avro_value_get_by_index(rec, i, &f, NULL) != 0) goto avro;
        switch (tf->role) {
        case R_TAGS: isnull = ev->ntags == 0 && tf->nullable; break;
        case R_VALUE:
            isnull = isnan(ev->values[tf->slot]);
            if (isnull && !tf->nullable)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "field '%s' is NaN (absent) but not nullable", name);
            break;
        default: break;
        }
        if (tf->nullable) {
            if (avro_value_set_branch(&f, isnull ? tf->null_branch : tf->value_branch, &b) != 0)
                goto avro;
            if (isnull) {
                if (avro_value_set_null(&b) != 0) goto avro;
                continue;
            }
        } else {
            b = f;
        }
        switch (tf->role) {
        case R_KEY:
            if (avro_value_set_string_len(&b, ev->machine_id, klen + 1) != 0) goto avro;
            break;
        case R_TIME:
            if (ev->ts_ms > INT64_MAX / tf->ts_div)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "ts_ms %" PRId64 " overflows field '%s'", ev->ts_ms, name);
            if (avro_value_set_long(&b, ev->ts_ms * tf->ts_div) != 0) goto avro;
            break;
        case R_TAGS:
            for (uint32_t t = 0; t < ev->ntags; t++) {
                const sn_event_tag_t *tag = &ev->tags[t];
                avro_value_t e;
                size_t kl, vl;

                if (bounded_str(tag->key, sizeof(tag->key), &kl) != 0 ||
                    bounded_str(tag->value, sizeof(tag->value), &vl) != 0 ||
                    !sn_wire_utf8_valid(tag->key, kl) || !sn_wire_utf8_valid(tag->value, vl))
                    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                      "tag %u is not NUL-terminated UTF-8", t);
                if (avro_value_add(&b, tag->key, &e, NULL, NULL) != 0 ||
                    avro_value_set_string_len(&e, tag->value, vl + 1) != 0)
                    goto avro;
            }
            break;
        case R_VALUE: {
            double v = ev->values[tf->slot];

            if ((rc = encodable(tf, v, name, errstr, errstr_size)) != 0) return rc;
            switch (tf->kind) {
            case K_INT: rc = avro_value_set_int(&b, (int32_t)v); break;
            case K_LONG: /* 2^63 is INT64_MAX after its round trip through a double */
                rc = avro_value_set_long(&b, v >= 9223372036854775807.0 ? INT64_MAX : (int64_t)v);
                break;
            case K_FLOAT: rc = avro_value_set_float(&b, (float)v); break;
            case K_DOUBLE: rc = avro_value_set_double(&b, v); break;
            case K_BOOL: rc = avro_value_set_boolean(&b, v != 0); break;
            case K_ENUM: rc = avro_value_set_enum(&b, (int)v); break;
            default: rc = EINVAL;
            }
            if (rc != 0) goto avro;
            break;
        }
        case R_IGNORED: break;
        }
    }
    return sn_codec_encode_finish(c, SN_KIND_TELEMETRY, buf, size, len_out, errstr, errstr_size);
avro:
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "avro: %s", avro_strerror());
}

/* ---------------------------------------------------------------- fields */

size_t sn_codec_nfields(const sn_codec_t *c) { return c->nvalues; }

const char *sn_codec_field_name(const sn_codec_t *c, size_t i) {
    return i < c->nvalues ? c->value_names[i] : NULL;
}

int sn_codec_field_index(const sn_codec_t *c, const char *name) {
    for (size_t i = 0; i < c->nvalues; i++)
        if (strcmp(c->value_names[i], name) == 0) return (int)i;
    return -1;
}

/* ---------------------------------------------------------------- lifecycle */

extern const char sn_codec_alert_schema[];
extern const char sn_codec_score_schema[];

int sn_codec_parse_value(const sn_codec_t *c, int index, const char *text, double *out,
                         char *errstr, size_t errstr_size) {
    const struct sn_reader *r = &c->readers[SN_KIND_TELEMETRY];
    const struct sn_tfield *tf = NULL;
    avro_schema_t es = NULL;
    char *end = NULL;
    double v;

    for (size_t i = 0; i < r->nf; i++) {
        if (c->tf[i].role == R_VALUE && c->tf[i].slot == index) {
            tf = &c->tf[i];
            es = r->f[i].enum_schema;
            break;
        }
    }
    if (!tf) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "no numeric field %d", index);
    if (tf->kind == K_ENUM && es) {
        int sym = avro_schema_enum_get_by_name(es, text);

        if (sym >= 0) return *out = sym, 0;
    }
    if (tf->kind == K_BOOL) {
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) return *out = 1, 0;
        if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) return *out = 0, 0;
        goto bad;
    }
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v)) goto bad;
    if ((tf->kind == K_INT || tf->kind == K_LONG || tf->kind == K_ENUM) && v != floor(v)) goto bad;
    if (tf->kind == K_INT && (v < INT32_MIN || v > INT32_MAX)) goto bad;
    if (tf->kind == K_ENUM && (v < 0 || v >= tf->nsymbols)) goto bad;
    *out = v;
    return 0;
bad:
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "field '%s': cannot read \"%s\"",
                      c->value_names[index], text);
}

/* ---------------------------------------------------------------- bare datums */

/* An archive file names its schema in its header, not by id: the writer is
 * compiled from that text and kept by the caller, outside the id cache, so a
 * file's schema can never shadow or be shadowed by a registered id. */
sn_codec_writer_t *sn_codec_writer_new(sn_codec_t *c, const char *json, size_t len, char *errstr,
                                       size_t errstr_size) {
    struct sn_writer *w = calloc(1, sizeof(*w));
    char why[SN_CODEC_ERR_MAX];

    (void)c;
    if (!w) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->id = -1;
    w->state = SN_WS_BAD;
    if (avro_schema_from_json_length(json, len, &w->schema) != 0) {
        w->schema = NULL;
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "not a valid Avro schema: %.180s",
                   avro_strerror());
        goto fail;
    }
    if (!(w->wire = sn_wire_new(w->schema, why, sizeof(why)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s", why);
        goto fail;
    }
    if (!(w->giface = avro_generic_class_from_schema(w->schema)) ||
        avro_generic_value_new(w->giface, &w->gvalue) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%.200s", avro_strerror());
        goto fail;
    }
    w->has_gvalue = 1;
    w->state = SN_WS_OK;
    return w;
fail:
    writer_free(c, w);
    return NULL;
}

void sn_codec_writer_destroy(sn_codec_t *c, sn_codec_writer_t *w) { writer_free(c, w); }

const char *sn_codec_writer_name(const sn_codec_writer_t *w) { return avro_schema_name(w->schema); }

int sn_codec_writer_measure(sn_codec_t *c, const sn_codec_writer_t *w, const void *buf, size_t len,
                            size_t *used, char *errstr, size_t errstr_size) {
    enum sn_codec_error_class cls = SN_CODEC_OK;

    return sn_wire_measure(w->wire, buf, len, c->max_alloc, used, &cls, errstr, errstr_size);
}

int sn_codec_writer_long(const sn_codec_writer_t *w, const char *field, int64_t *out) {
    avro_value_t v;
    int32_t i;

    if (avro_value_get_by_name(&w->gvalue, field, &v, NULL) != 0) return SN_ERR_NOENT;
    if (avro_value_get_long(&v, out) == 0) return 0;
    if (avro_value_get_int(&v, &i) != 0) return SN_ERR_INVALID;
    *out = i;
    return 0;
}

/* The frame decoders read c->datum as "this buffer is a bare datum of that
 * writer": one code path for frames and archived datums. A codec is used by
 * one thread at a time, so the field is never seen by another call. */
int sn_codec_decode_datum(sn_codec_t *c, sn_codec_writer_t *w, const void *buf, size_t len,
                          sn_event_t *out, enum sn_codec_error_class *cls, char *errstr,
                          size_t errstr_size) {
    int rc;

    c->datum = w;
    rc = sn_codec_decode(c, buf, len, out, cls, NULL, errstr, errstr_size);
    c->datum = NULL;
    return rc;
}

int sn_codec_decode_score_datum(sn_codec_t *c, sn_codec_writer_t *w, const void *buf, size_t len,
                                sn_score_t *out, enum sn_codec_error_class *cls, char *errstr,
                                size_t errstr_size) {
    int rc;

    c->datum = w;
    rc = sn_codec_decode_score(c, buf, len, out, cls, errstr, errstr_size);
    c->datum = NULL;
    return rc;
}

void sn_codec_destroy(sn_codec_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nwriters; i++) writer_free(c, c->writers[i]);
    for (int k = 0; k < SN_KIND_COUNT; k++) {
        if (c->eiface[k]) {
            avro_value_decref(&c->evalue[k]);
            avro_value_iface_decref(c->eiface[k]);
        }
        free(c->slots[k].subject);
        free(c->slots[k].json);
        sn_codec_reader_fini(&c->readers[k]);
    }
    if (c->areader) avro_reader_free(c->areader);
    if (c->awriter) avro_writer_free(c->awriter);
    sn_schema_store_destroy(c->store);
    free(c->tf);
    free(c);
}

static int slot_init(struct sn_slot *s, const struct sn_reader *r, int64_t conf_id,
                     const char *what, const char *subject) {
    size_t n = strlen(subject) + 1;

    s->conf_id = (int32_t)conf_id;
    s->what = what;
    s->schema = r->schema;
    if (!(s->subject = malloc(n))) return SN_ERR_NOMEM;
    memcpy(s->subject, subject, n);
    if (!(s->json = json_dumps(r->json, JSON_COMPACT | JSON_PRESERVE_ORDER))) return SN_ERR_NOMEM;
    return 0;
}

sn_codec_t *sn_codec_new(const sn_conf_t *conf, char *errstr, size_t errstr_size) {
    sn_codec_t *c = NULL;
    const char *path = sn_conf_str(conf, "schema.reader");
    const char *mode = sn_conf_str(conf, "schema.registry.mode");
    const char *subject = sn_conf_str(conf, "schema.registry.subject");
    char tsubject[512];
    char *text = NULL;
    size_t len = 0;

    sn_avro_alloc_install();
    if (!(c = calloc(1, sizeof(*c)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->max_alloc = (size_t)sn_conf_int(conf, "schema.max.alloc.bytes");
    c->unknown_retry_ms = sn_conf_int(conf, "schema.registry.unknown.retry.ms");
    c->registry_mode = strcmp(mode, "register") == 0 ? 2 : strcmp(mode, "lookup") == 0 ? 1 : 0;
    if (sn_schema_read_file(path, &text, &len, errstr, errstr_size) != 0) goto fail;
    if (sn_codec_reader_init(&c->readers[SN_KIND_TELEMETRY], text, len, path, errstr,
                             errstr_size) != 0 ||
        sn_codec_reader_init(&c->readers[SN_KIND_ALERT], sn_codec_alert_schema,
                             strlen(sn_codec_alert_schema), "built-in alert schema", errstr,
                             errstr_size) != 0 ||
        sn_codec_reader_init(&c->readers[SN_KIND_SCORE], sn_codec_score_schema,
                             strlen(sn_codec_score_schema), "built-in score schema", errstr,
                             errstr_size) != 0)
        goto fail;
    if (setup_telemetry(c, conf, path, errstr, errstr_size) != 0) goto fail;
    if (!*subject) {
        snprintf(tsubject, sizeof(tsubject), "%s-value",
                 c->registry_mode ? sn_conf_str(conf, "topic.telemetry") : "telemetry");
        subject = tsubject;
    }
    if (slot_init(&c->slots[SN_KIND_TELEMETRY], &c->readers[SN_KIND_TELEMETRY],
                  sn_conf_int(conf, "schema.id"), "schema.id", subject) != 0 ||
        slot_init(&c->slots[SN_KIND_ALERT], &c->readers[SN_KIND_ALERT],
                  sn_conf_int(conf, "schema.alert.id"), "schema.alert.id",
                  sn_conf_str(conf, "schema.registry.alert.subject")) != 0 ||
        slot_init(&c->slots[SN_KIND_SCORE], &c->readers[SN_KIND_SCORE],
                  sn_conf_int(conf, "schema.score.id"), "schema.score.id",
                  sn_conf_str(conf, "schema.registry.score.subject")) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(c->store = sn_schema_store_new(conf, errstr, errstr_size))) goto fail;
    if (c->registry_mode && !sn_schema_store_is_registry(c->store)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "schema.registry.mode=%s needs schema.registry.url", mode);
        goto fail;
    }
    if (!(c->areader = avro_reader_memory(NULL, 0)) ||
        !(c->awriter = avro_writer_memory(NULL, 0))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    free(text);
    return c;
fail:
    free(text);
    sn_codec_destroy(c);
    return NULL;
}
