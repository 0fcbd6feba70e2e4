#include "producers/source.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "producers/source_archive.h"
#include "schemas/codec.h"

#define CSV_LINE_MAX (64 * 1024)
#define CSV_COLS_MAX 256
#define MAP_MAX 64

const char *const sn_source_ai4i_map[] = {
    "air_temperature_k=Air temperature [K]",
    "process_temperature_k=Process temperature [K]",
    "rotational_speed_rpm=Rotational speed [rpm]",
    "torque_nm=Torque [Nm]",
    "tool_wear_min=Tool wear [min]",
    "product_type=Type",
    "tag.udi=UDI",
};
const size_t sn_source_ai4i_nmap = sizeof(sn_source_ai4i_map) / sizeof(sn_source_ai4i_map[0]);

enum target_kind { T_ID, T_TS, T_FIELD, T_TAG };

struct target {
    enum target_kind kind;
    int column; /* CSV column index */
    int field;  /* T_FIELD: index in event.values */
    char tag[SN_EVENT_TAG_MAX];
};

/* The synthetic fleet's per-machine hidden state. */
struct machine {
    char id[SN_EVENT_ID_MAX];
    int type; /* 0 L, 1 M, 2 H */
    double air_offset, rpm_base, wear, wear_limit;
    int fault_len, fault_left; /* degradation in progress when fault_left > 0 */
};

struct sn_source {
    sn_source_opts_t opts;
    sn_source_schema_t schema;
    char machine_id[SN_EVENT_ID_MAX];
    char key_field[64], time_field[64];
    FILE *fp;
    int own_fp;
    uint64_t lineno, emitted;
    /* CSV */
    char line[CSV_LINE_MAX];
    char *cols[CSV_COLS_MAX];
    int ncols;
    struct target targets[MAP_MAX];
    int ntargets;
    /* fleet */
    uint64_t rng[4];
    struct machine *machines;
    uint64_t step;
    uint32_t next_machine;
    int fi_air, fi_proc, fi_rpm, fi_torque, fi_wear, fi_type;
    double type_value[3];
    /* archive */
    sn_source_archive_t *archive;
};

/* ---- deterministic random numbers: xoshiro256** seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* Standard normal by Box-Muller; one value per call keeps the stream simple to
 * reproduce (no cached second value that depends on call order). */
static double rng_normal(uint64_t s[4]) {
    double u1 = rng_uniform(s), u2 = rng_uniform(s);

    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- helpers ---- */

static int copy_bounded(char *dst, size_t size, const char *src) {
    size_t len = strlen(src);

    if (len >= size) return -1;
    memcpy(dst, src, len + 1);
    return 0;
}

static int set_tag(sn_event_t *ev, const char *key, const char *value) {
    sn_event_tag_t *t;

    if (ev->ntags >= SN_EVENT_TAGS_MAX) return -1;
    t = &ev->tags[ev->ntags];
    if (copy_bounded(t->key, sizeof(t->key), key) ||
        copy_bounded(t->value, sizeof(t->value), value))
        return -1;
    ev->ntags++;
    return 0;
}

static void event_reset(sn_source_t *src, sn_event_t *ev) {
    ev->machine_id[0] = '\0';
    ev->ts_ms = 0;
    ev->nvalues = src->schema.nfields;
    for (uint32_t i = 0; i < SN_EVENT_FIELDS_MAX; i++) ev->values[i] = NAN;
    ev->ntags = 0;
}

static int parse_ts(const char *text, int64_t *out) {
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < 0) return -1;
    *out = v;
    return 0;
}

/* ---- CSV ---- */

/* Splits src->line in place into src->cols. Handles quoted fields with ""
 * escapes (RFC 4180) but not newlines inside quotes: telemetry has none, and a
 * bounded line is worth more here than multi-line fields. */
static int csv_split(sn_source_t *src) {
    char *p = src->line, *out;
    size_t len = strlen(p);

    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) p[--len] = '\0';
    src->ncols = 0;
    for (;;) {
        if (src->ncols >= CSV_COLS_MAX) return -1;
        src->cols[src->ncols++] = out = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0') return -1; /* unterminated quote */
                if (*p == '"' && p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            if (*p != ',' && *p != '\0') return -1;
        } else {
            while (*p && *p != ',') out++, p++;
        }
        if (*p == '\0') {
            *out = '\0';
            return 0;
        }
        *out = '\0';
        p++;
    }
}

static int csv_read_line(sn_source_t *src, char *errstr, size_t errstr_size) {
    if (!fgets(src->line, sizeof(src->line), src->fp)) return 0;
    src->lineno++;
    if (!strchr(src->line, '\n') && !feof(src->fp)) {
        int c;

        while ((c = fgetc(src->fp)) != EOF && c != '\n')
            ; /* skip the rest so the next call starts on the next line */
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: line longer than %d bytes",
                          src->opts.path, (unsigned long long)src->lineno, CSV_LINE_MAX - 2);
    }
    if (csv_split(src) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: malformed CSV line",
                          src->opts.path, (unsigned long long)src->lineno);
    return 1;
}

static int csv_column(const sn_source_t *src, const char *name) {
    for (int i = 0; i < src->ncols; i++)
        if (strcmp(src->cols[i], name) == 0) return i;
    return -1;
}

/* Resolves "field=Column" against the header just read. */
static int csv_add_target(sn_source_t *src, const char *field, const char *column, char *errstr,
                          size_t errstr_size) {
    struct target *t;
    int col = csv_column(src, column);

    if (col < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: no column \"%s\" in the header",
                          src->opts.path, column);
    if (src->ntargets >= MAP_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "too many mappings");
    t = &src->targets[src->ntargets];
    memset(t, 0, sizeof(*t));
    t->column = col;
    if (strcmp(field, src->key_field) == 0)
        t->kind = T_ID;
    else if (strcmp(field, src->time_field) == 0)
        t->kind = T_TS;
    else if (strncmp(field, "tag.", 4) == 0) {
        t->kind = T_TAG;
        if (copy_bounded(t->tag, sizeof(t->tag), field + 4) != 0 || !field[4])
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "bad tag name in \"%s\"", field);
    } else {
        t->kind = T_FIELD;
        t->field = src->schema.field_index(src->schema.opaque, field);
        if (t->field < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "mapping %s=%s: the schema has no numeric field \"%s\"", field,
                              column, field);
    }
    src->ntargets++;
    return 0;
}

static int csv_open(sn_source_t *src, char *errstr, size_t errstr_size) {
    int rc = csv_read_line(src, errstr, errstr_size);

    if (rc == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: empty file", src->opts.path);
    if (rc < 0) return rc;
    /* The column names point into src->line, which the next row overwrites:
     * resolve every mapping to a column index now, once. */
    if (src->opts.nmap) {
        for (size_t i = 0; i < src->opts.nmap; i++) {
            const char *eq = strchr(src->opts.map[i], '=');
            char field[128];

            if (!eq || eq == src->opts.map[i] || (size_t)(eq - src->opts.map[i]) >= sizeof(field))
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "mapping \"%s\": expected field=Column", src->opts.map[i]);
            memcpy(field, src->opts.map[i], (size_t)(eq - src->opts.map[i]));
            field[eq - src->opts.map[i]] = '\0';
            if ((rc = csv_add_target(src, field, eq + 1, errstr, errstr_size)) != 0) return rc;
        }
    } else {
        /* No mapping: columns named like schema fields map to them. */
        for (int c = 0; c < src->ncols; c++) {
            const char *name = src->cols[c];

            if (strcmp(name, src->key_field) == 0 || strcmp(name, src->time_field) == 0 ||
                src->schema.field_index(src->schema.opaque, name) >= 0)
                if ((rc = csv_add_target(src, name, name, errstr, errstr_size)) != 0) return rc;
        }
    }
    if (src->opts.ts_column &&
        (rc = csv_add_target(src, src->time_field, src->opts.ts_column, errstr, errstr_size)) != 0)
        return rc;
    return 0;
}

static int csv_next(sn_source_t *src, sn_event_t *ev, char *errstr, size_t errstr_size) {
    int rc, have_ts = 0;

    do {
        if ((rc = csv_read_line(src, errstr, errstr_size)) <= 0) return rc;
    } while (src->ncols == 1 && src->cols[0][0] == '\0'); /* blank line */

    event_reset(src, ev);
    snprintf(ev->machine_id, sizeof(ev->machine_id), "%s", src->machine_id);
    for (int i = 0; i < src->ntargets; i++) {
        const struct target *t = &src->targets[i];
        const char *text;

        if (t->column >= src->ncols)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%s:%llu: %d columns, expected more", src->opts.path,
                              (unsigned long long)src->lineno, src->ncols);
        text = src->cols[t->column];
        switch (t->kind) {
        case T_ID:
            if (!*text || copy_bounded(ev->machine_id, sizeof(ev->machine_id), text) != 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s:%llu: machine id empty or longer than %d bytes",
                                  src->opts.path, (unsigned long long)src->lineno,
                                  SN_EVENT_ID_MAX - 1);
            break;
        case T_TS:
            if (parse_ts(text, &ev->ts_ms) != 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                  "%s:%llu: bad timestamp \"%s\" (epoch milliseconds)",
                                  src->opts.path, (unsigned long long)src->lineno, text);
            have_ts = 1;
            break;
        case T_TAG:
            if (set_tag(ev, t->tag, text) != 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: tag %s too long",
                                  src->opts.path, (unsigned long long)src->lineno, t->tag);
            break;
        case T_FIELD:
            if (*text == '\0') break; /* empty cell: absent */
            if (src->schema.parse(src->schema.opaque, t->field, text, &ev->values[t->field]) != 0)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: bad value \"%s\"",
                                  src->opts.path, (unsigned long long)src->lineno, text);
            break;
        }
    }
    if (!have_ts) ev->ts_ms = src->opts.start_ms + (int64_t)src->emitted * src->opts.step_ms;
    if (!ev->machine_id[0])
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: no machine id",
                          src->opts.path, (unsigned long long)src->lineno);
    return 1;
}

/* ---- JSON lines ---- */

static int json_value_text(json_t *v, char *buf, size_t size) {
    if (json_is_string(v)) return copy_bounded(buf, size, json_string_value(v));
    if (json_is_integer(v))
        return snprintf(buf, size, "%lld", (long long)json_integer_value(v)) < 0;
    if (json_is_real(v)) return snprintf(buf, size, "%.17g", json_real_value(v)) < 0;
    if (json_is_boolean(v)) return copy_bounded(buf, size, json_is_true(v) ? "true" : "false");
    return -1;
}

static int jsonl_next(sn_source_t *src, sn_event_t *ev, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *key;
    int rc = 1, have_ts = 0;

    do {
        if (!fgets(src->line, sizeof(src->line), src->fp)) return 0;
        src->lineno++;
    } while (src->line[0] == '\n' || src->line[0] == '\0');
    if (!strchr(src->line, '\n') && !feof(src->fp))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: line too long",
                          src->opts.path, (unsigned long long)src->lineno);
    if (!(root = json_loads(src->line, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(root)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: %s", src->opts.path,
                        (unsigned long long)src->lineno, root ? "not a JSON object" : jerr.text);
        goto out;
    }
    event_reset(src, ev);
    snprintf(ev->machine_id, sizeof(ev->machine_id), "%s", src->machine_id);
    json_object_foreach(root, key, v) {
        char text[256];
        int idx;

        if (strcmp(key, "tags") == 0 && json_is_object(v)) {
            const char *tk;
            json_t *tv;

            json_object_foreach(v, tk, tv) {
                if (!json_is_string(tv) || set_tag(ev, tk, json_string_value(tv)) != 0) {
                    rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                    "%s:%llu: tag \"%s\" is not a short string or too many tags",
                                    src->opts.path, (unsigned long long)src->lineno, tk);
                    goto out;
                }
            }
            continue;
        }
        if (json_is_null(v)) continue;
        if (json_value_text(v, text, sizeof(text)) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "%s:%llu: field \"%s\": unsupported value", src->opts.path,
                            (unsigned long long)src->lineno, key);
            goto out;
        }
        if (strcmp(key, src->key_field) == 0) {
            if (!*text || copy_bounded(ev->machine_id, sizeof(ev->machine_id), text) != 0) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: bad machine id",
                                src->opts.path, (unsigned long long)src->lineno);
                goto out;
            }
        } else if (strcmp(key, src->time_field) == 0) {
            if (parse_ts(text, &ev->ts_ms) != 0) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                "%s:%llu: bad timestamp \"%s\" (epoch milliseconds)",
                                src->opts.path, (unsigned long long)src->lineno, text);
                goto out;
            }
            have_ts = 1;
        } else if ((idx = src->schema.field_index(src->schema.opaque, key)) >= 0) {
            if (src->schema.parse(src->schema.opaque, idx, text, &ev->values[idx]) != 0) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                "%s:%llu: field \"%s\": bad value \"%s\"", src->opts.path,
                                (unsigned long long)src->lineno, key, text);
                goto out;
            }
        } else {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "%s:%llu: field \"%s\" is not in the schema", src->opts.path,
                            (unsigned long long)src->lineno, key);
            goto out;
        }
    }
    if (!have_ts) ev->ts_ms = src->opts.start_ms + (int64_t)src->emitted * src->opts.step_ms;
    if (!ev->machine_id[0])
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%llu: no machine id",
                        src->opts.path, (unsigned long long)src->lineno);
out:
    json_decref(root);
    return rc;
}

/* ---- synthetic fleet ----
 *
 * Each machine follows the AI4I process (tool wear rising by 2/3/5 minutes per
 * step for L/M/H variants, replaced at 200-240 minutes) plus a hidden
 * degradation: at a small hazard per step a fault starts and, over 30-90 steps,
 * pushes torque and process temperature up and speed down until the machine
 * fails. A failure is labelled on its event (tag failure=<mode>) and written to
 * failures_out, so tests and the trainer know the truth. */

#define FLEET_FAULT_HAZARD 0.002

static void machine_init(sn_source_t *src, struct machine *m, uint32_t i) {
    double u = rng_uniform(src->rng);

    snprintf(m->id, sizeof(m->id), "machine-%04u", i);
    m->type = u < 0.5 ? 0 : u < 0.8 ? 1 : 2;
    m->air_offset = rng_normal(src->rng) * 1.0;
    m->rpm_base = 1500 + rng_normal(src->rng) * 40;
    m->wear = rng_uniform(src->rng) * 150;
    m->wear_limit = 200 + rng_uniform(src->rng) * 40;
    m->fault_len = m->fault_left = 0;
}

static int fleet_open(sn_source_t *src, char *errstr, size_t errstr_size) {
    static const char *types[] = {"L", "M", "H"};
    struct {
        const char *name;
        int *idx;
    } need[] = {{"air_temperature_k", &src->fi_air},    {"process_temperature_k", &src->fi_proc},
                {"rotational_speed_rpm", &src->fi_rpm}, {"torque_nm", &src->fi_torque},
                {"tool_wear_min", &src->fi_wear},       {"product_type", &src->fi_type}};
    uint64_t seed = src->opts.seed;

    if (src->opts.machines == 0 || src->opts.machines > 1000000)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "fleet: machines must be 1..1000000");
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        *need[i].idx = src->schema.field_index(src->schema.opaque, need[i].name);
        if (*need[i].idx < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "fleet: the schema has no field \"%s\" (the fleet writes the "
                              "telemetry.avsc fields)",
                              need[i].name);
    }
    for (int t = 0; t < 3; t++)
        if (src->schema.parse(src->schema.opaque, src->fi_type, types[t], &src->type_value[t]) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "fleet: product_type does not accept \"%s\"", types[t]);
    for (int i = 0; i < 4; i++) src->rng[i] = splitmix64(&seed);
    if (!(src->machines = calloc(src->opts.machines, sizeof(*src->machines))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < src->opts.machines; i++) machine_init(src, &src->machines[i], i);
    return 0;
}

static int fleet_next(sn_source_t *src, sn_event_t *ev, char *errstr, size_t errstr_size) {
    struct machine *m = &src->machines[src->next_machine];
    static const double wear_step[] = {2, 3, 5};
    static const double osf_limit[] = {11000, 12000, 13000};
    const char *failure = NULL;
    double day = (double)src->step /
                 (24.0 * 3600000.0 / (double)(src->opts.step_ms ? src->opts.step_ms : 1));
    double x = 0, air, proc, rpm, torque;

    event_reset(src, ev);
    snprintf(ev->machine_id, sizeof(ev->machine_id), "%s", m->id);
    ev->ts_ms = src->opts.start_ms + (int64_t)src->step * src->opts.step_ms;

    if (m->fault_left == 0 && rng_uniform(src->rng) < FLEET_FAULT_HAZARD) {
        m->fault_len = m->fault_left = 30 + (int)(rng_uniform(src->rng) * 61);
    }
    if (m->fault_left > 0) x = 1.0 - (double)(m->fault_left - 1) / m->fault_len; /* 0..1 */

    air = 300.0 + m->air_offset + 2.0 * sin(2 * M_PI * day) + rng_normal(src->rng) * 0.5;
    proc = air + 10.0 + 3.0 * x * x + rng_normal(src->rng) * 0.5;
    rpm = m->rpm_base - 250.0 * x * x + rng_normal(src->rng) * 60.0;
    torque = 40.0 + (1500.0 - rpm) * 0.04 + 20.0 * x * x + rng_normal(src->rng) * 4.0;
    if (torque < 3) torque = 3;
    m->wear += wear_step[m->type];

    ev->values[src->fi_air] = round(air * 10) / 10;
    ev->values[src->fi_proc] = round(proc * 10) / 10;
    ev->values[src->fi_rpm] = round(rpm);
    ev->values[src->fi_torque] = round(torque * 10) / 10;
    ev->values[src->fi_wear] = m->wear;
    ev->values[src->fi_type] = src->type_value[m->type];

    if (m->fault_left > 0 && --m->fault_left == 0)
        failure = "degradation";
    else if (m->wear >= m->wear_limit)
        failure = "tool_wear";
    else if (m->wear * torque > osf_limit[m->type])
        failure = "overstrain";
    if (failure) {
        if (set_tag(ev, "failure", failure) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "fleet: tag overflow");
        if (src->opts.failures_out)
            fprintf(src->opts.failures_out, "%s,%lld,%s\n", m->id, (long long)ev->ts_ms, failure);
        /* Repair: new tool, fault cleared. */
        m->wear = 0;
        m->wear_limit = 200 + rng_uniform(src->rng) * 40;
        m->fault_left = m->fault_len = 0;
    }
    if (++src->next_machine == src->opts.machines) {
        src->next_machine = 0;
        src->step++;
    }
    return 1;
}

/* ---- public ---- */

sn_source_t *sn_source_new(const sn_source_opts_t *opts, const sn_source_schema_t *schema,
                           char *errstr, size_t errstr_size) {
    sn_source_t *src = calloc(1, sizeof(*src));

    if (!src) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    src->opts = *opts;
    src->opts.map = NULL; /* only read in csv_open, from opts */
    src->schema = *schema;
    snprintf(src->key_field, sizeof(src->key_field), "%s",
             opts->key_field ? opts->key_field : "machine_id");
    snprintf(src->time_field, sizeof(src->time_field), "%s",
             opts->time_field ? opts->time_field : "ts");
    if (opts->machine_id &&
        copy_bounded(src->machine_id, sizeof(src->machine_id), opts->machine_id)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "machine id longer than %d bytes",
                   SN_EVENT_ID_MAX - 1);
        goto fail;
    }
    if (opts->kind == SN_SOURCE_FLEET) {
        if (fleet_open(src, errstr, errstr_size) != 0) goto fail;
        return src;
    }
    if (opts->kind == SN_SOURCE_ARCHIVE) {
        sn_source_archive_opts_t ao = {opts->path,    opts->topic ? opts->topic : "telemetry",
                                       opts->from_ms, opts->to_ms,
                                       opts->conf,    opts->codec,
                                       opts->progress};

        if (!(src->archive =
                  sn_source_archive_new(&ao, SN_SOURCE_ARCHIVE_EVENTS, errstr, errstr_size)))
            goto fail;
        src->opts.path = sn_source_archive_location(src->archive);
        return src;
    }
    if (!opts->path || strcmp(opts->path, "-") == 0) {
        src->fp = stdin;
        src->opts.path = "<stdin>";
    } else if (!(src->fp = fopen(opts->path, "r"))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "cannot open %s: %s", opts->path,
                   strerror(errno));
        goto fail;
    } else {
        src->own_fp = 1;
    }
    if (opts->kind == SN_SOURCE_CSV) {
        src->opts.map = opts->map;
        if (csv_open(src, errstr, errstr_size) != 0) goto fail;
        src->opts.map = NULL;
    }
    return src;
fail:
    sn_source_destroy(src);
    return NULL;
}

void sn_source_destroy(sn_source_t *src) {
    if (!src) return;
    if (src->own_fp) fclose(src->fp);
    sn_source_archive_destroy(src->archive);
    free(src->machines);
    free(src);
}

int sn_source_next(sn_source_t *src, sn_event_t *ev, char *errstr, size_t errstr_size) {
    int rc;

    if (src->opts.limit && src->emitted >= src->opts.limit) return 0;
    switch (src->opts.kind) {
    case SN_SOURCE_CSV: rc = csv_next(src, ev, errstr, errstr_size); break;
    case SN_SOURCE_JSONL: rc = jsonl_next(src, ev, errstr, errstr_size); break;
    case SN_SOURCE_FLEET: rc = fleet_next(src, ev, errstr, errstr_size); break;
    case SN_SOURCE_ARCHIVE:
        rc = sn_source_archive_next_event(src->archive, ev, errstr, errstr_size);
        break;
    default: rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "unknown source kind");
    }
    if (rc == 1) src->emitted++;
    return rc;
}

struct sn_source_archive *sn_source_archive(const sn_source_t *src) {
    return src->archive;
}

int sn_source_codec_field_index(void *codec, const char *name) {
    return sn_codec_field_index(codec, name);
}

static int codec_parse(void *codec, int index, const char *text, double *out) {
    return sn_codec_parse_value(codec, index, text, out, NULL, 0);
}

sn_source_schema_t sn_source_schema_of_codec(const sn_codec_t *codec) {
    return (sn_source_schema_t){(uint32_t)sn_codec_nfields(codec), sn_source_codec_field_index,
                                codec_parse, (void *)codec};
}
