/* Event sources: CSV with a mapping (the AI4I preset on the bundled data),
 * JSON lines, and the synthetic fleet's determinism and labels. The schema
 * view here is a fixed table with the telemetry.avsc fields, so the sources are
 * tested on their own; the codec's real view is exercised by test_produce. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "producers/source.h"

static const char *fields[] = {"air_temperature_k", "process_temperature_k", "rotational_speed_rpm",
                               "torque_nm",         "tool_wear_min",         "product_type"};
#define NFIELDS 6

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i], name) == 0) return i;
    return -1;
}

static int parse(void *opaque, int index, const char *text, double *out) {
    char *end;

    (void)opaque;
    if (index == 5) {
        static const char *sym[] = {"L", "M", "H"};
        for (int i = 0; i < 3; i++)
            if (strcmp(text, sym[i]) == 0) return *out = i, 0;
        return SN_ERR_INVALID;
    }
    *out = strtod(text, &end);
    return (*end || end == text) ? SN_ERR_INVALID : 0;
}

static const sn_source_schema_t schema = {NFIELDS, field_index, parse, NULL};

static char *write_tmp(const char *text) {
    static char path[64];
    FILE *fp;
    int fd;

    snprintf(path, sizeof(path), "/tmp/sn_src_XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
    return path;
}

static const char *tag(const sn_event_t *ev, const char *key) {
    for (uint32_t i = 0; i < ev->ntags; i++)
        if (strcmp(ev->tags[i].key, key) == 0) return ev->tags[i].value;
    return NULL;
}

Test(source, ai4i_preset_reads_bundled_data) {
    sn_source_opts_t o = {.kind = SN_SOURCE_CSV,
                          .path = "data/ai4i2020.csv",
                          .map = sn_source_ai4i_map,
                          .nmap = sn_source_ai4i_nmap,
                          .machine_id = "ai4i-mill",
                          .start_ms = 1767225600000LL,
                          .step_ms = 60000};
    char errstr[256];
    sn_source_t *src = sn_source_new(&o, &schema, errstr, sizeof(errstr));
    sn_event_t ev;
    int n = 0, rc;

    cr_assert_not_null(src, "%s", errstr);
    /* 1,M14860,M,298.1,308.6,1551,42.8,0,0 */
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1, "%s", errstr);
    cr_assert_str_eq(ev.machine_id, "ai4i-mill");
    cr_assert_eq(ev.ts_ms, 1767225600000LL);
    cr_assert_float_eq(ev.values[0], 298.1, 1e-9);
    cr_assert_float_eq(ev.values[1], 308.6, 1e-9);
    cr_assert_float_eq(ev.values[2], 1551, 1e-9);
    cr_assert_float_eq(ev.values[3], 42.8, 1e-9);
    cr_assert_float_eq(ev.values[4], 0, 1e-9);
    cr_assert_float_eq(ev.values[5], 1, 1e-9); /* M */
    cr_assert_str_eq(tag(&ev, "udi"), "1");
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1);
    cr_assert_eq(ev.ts_ms, 1767225600000LL + 60000);
    n = 2;
    while ((rc = sn_source_next(src, &ev, errstr, sizeof(errstr))) == 1) n++;
    cr_assert_eq(rc, 0, "%s", errstr);
    cr_assert_eq(n, 10000);
    cr_assert_str_eq(tag(&ev, "udi"), "10000");
    sn_source_destroy(src);
}

Test(source, csv_identity_mapping_quotes_and_bad_rows) {
    char *path = write_tmp("machine_id,ts,torque_nm,product_type,extra\n"
                           "\"m,1\",1000,40.5,L,x\n"
                           "m2,2000,oops,M,y\n"
                           "m3,3000,,H,z\n"
                           "\"m4\"\"q\",4000,1,Q,z\n");
    sn_source_opts_t o = {.kind = SN_SOURCE_CSV, .path = path};
    char errstr[256];
    sn_source_t *src = sn_source_new(&o, &schema, errstr, sizeof(errstr));
    sn_event_t ev;

    cr_assert_not_null(src, "%s", errstr);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1, "%s", errstr);
    cr_assert_str_eq(ev.machine_id, "m,1");
    cr_assert_eq(ev.ts_ms, 1000);
    cr_assert_float_eq(ev.values[3], 40.5, 1e-12);
    cr_assert(isnan(ev.values[0]), "unmapped field is absent");
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, ":3") && strstr(errstr, "oops"), "%s", errstr);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1, "%s", errstr);
    cr_assert_str_eq(ev.machine_id, "m3");
    cr_assert(isnan(ev.values[3]), "empty cell is absent");
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 0);
    sn_source_destroy(src);
    unlink(path);
}

Test(source, csv_mapping_to_missing_column_fails_at_open) {
    const char *map[] = {"torque_nm=No Such Column"};
    sn_source_opts_t o = {.kind = SN_SOURCE_CSV,
                          .path = "data/ai4i2020.csv",
                          .map = map,
                          .nmap = 1,
                          .machine_id = "m"};
    const char *map2[] = {"nosuchfield=Torque [Nm]"};
    char errstr[256];

    cr_assert_null(sn_source_new(&o, &schema, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "No Such Column"), "%s", errstr);
    o.map = map2;
    cr_assert_null(sn_source_new(&o, &schema, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "nosuchfield"), "%s", errstr);
}

Test(source, jsonl) {
    char *path =
        write_tmp("{\"machine_id\":\"a\",\"ts\":5,\"torque_nm\":12.5,\"product_type\":\"H\","
                  "\"tags\":{\"site\":\"x\"}}\n"
                  "\n"
                  "{\"machine_id\":\"b\",\"ts\":6,\"nope\":1}\n"
                  "not json\n"
                  "{\"machine_id\":\"c\",\"ts\":7,\"air_temperature_k\":null}\n");
    sn_source_opts_t o = {.kind = SN_SOURCE_JSONL, .path = path};
    char errstr[256];
    sn_source_t *src = sn_source_new(&o, &schema, errstr, sizeof(errstr));
    sn_event_t ev;

    cr_assert_not_null(src, "%s", errstr);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1, "%s", errstr);
    cr_assert_str_eq(ev.machine_id, "a");
    cr_assert_eq(ev.ts_ms, 5);
    cr_assert_float_eq(ev.values[3], 12.5, 1e-12);
    cr_assert_float_eq(ev.values[5], 2, 1e-12);
    cr_assert_str_eq(tag(&ev, "site"), "x");
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, "\"nope\""), "%s", errstr);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 1, "%s", errstr);
    cr_assert(isnan(ev.values[0]));
    cr_assert_eq(sn_source_next(src, &ev, errstr, sizeof(errstr)), 0);
    sn_source_destroy(src);
    unlink(path);
}

/* Runs a fleet and returns a checksum of everything it emitted. */
static uint64_t fleet_digest(uint64_t seed, uint64_t n, int *failures, FILE *fout) {
    sn_source_opts_t o = {.kind = SN_SOURCE_FLEET,
                          .machines = 10,
                          .seed = seed,
                          .limit = n,
                          .start_ms = 0,
                          .step_ms = 1000,
                          .failures_out = fout};
    char errstr[256];
    sn_source_t *src = sn_source_new(&o, &schema, errstr, sizeof(errstr));
    sn_event_t ev;
    uint64_t h = 1469598103934665603ULL;
    int64_t last_ts = -1;

    cr_assert_not_null(src, "%s", errstr);
    *failures = 0;
    while (sn_source_next(src, &ev, errstr, sizeof(errstr)) == 1) {
        unsigned char bytes[sizeof(double) * NFIELDS];

        cr_assert_geq(ev.ts_ms, last_ts, "fleet events are in time order");
        last_ts = ev.ts_ms;
        memcpy(bytes, ev.values, sizeof(bytes));
        for (size_t i = 0; i < sizeof(bytes); i++) h = (h ^ bytes[i]) * 1099511628211ULL;
        for (const char *c = ev.machine_id; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        for (int i = 0; i < NFIELDS; i++) cr_assert(isfinite(ev.values[i]));
        if (tag(&ev, "failure")) (*failures)++;
    }
    sn_source_destroy(src);
    return h;
}

Test(source, fleet_is_deterministic_and_labels_failures) {
    int f1, f2, f3, lines = 0;
    char buf[1 << 16] = "";
    FILE *fout = fmemopen(buf, sizeof(buf), "w");
    uint64_t a = fleet_digest(42, 20000, &f1, fout);
    uint64_t b = fleet_digest(42, 20000, &f2, NULL);
    uint64_t c = fleet_digest(43, 20000, &f3, NULL);

    fclose(fout);
    cr_assert_eq(a, b, "same seed, same stream");
    cr_assert_eq(f1, f2);
    cr_assert_neq(a, c, "another seed, another stream");
    cr_assert_gt(f1, 10, "a fleet of 10 over 2000 steps fails now and then (%d)", f1);
    cr_assert_lt(f1, 2000);
    for (char *p = buf; (p = strchr(p, '\n')); p++) lines++;
    cr_assert_eq(lines, f1, "every labelled failure is written to failures_out");
}
