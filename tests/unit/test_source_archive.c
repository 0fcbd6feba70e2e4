/* The archive reader (producers/source_archive.c, schemas/container.c) on a
 * file:// archive written by the archiver's own pieces: sn_archive_encode()
 * for the records, sn_archive_file_*() for the container files and
 * sn_archive_key() for the layout, so a change on either side that breaks
 * the other fails here. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common_conf.h"
#include "common/err.h"
#include "common/s3_conf.h"
#include "consumers/archive_int.h"
#include "producers/source.h"
#include "producers/source_archive.h"
#include "producers/source_archive_conf.h"
#include "schemas/codec.h"
#include "schemas/container.h"
#include "schemas/schemas_conf.h"

#define H 3600000LL
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

static sn_conf_t *make_conf(void) {
    static const sn_conf_def_t *const tables[] = {sn_common_conf_defs, sn_schemas_conf_defs,
                                                  sn_s3_conf_defs, sn_source_archive_conf_defs};
    char errstr[512];
    sn_conf_t *conf = sn_conf_new(tables, 4, errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(
        sn_conf_set(conf, "schema.dir", SN_SOURCE_DIR "/schemas", "test", errstr, sizeof(errstr)),
        0, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "schema.reader", SN_SOURCE_DIR "/schemas/telemetry.avsc", "test",
                             errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "log.level", "error", "test", errstr, sizeof(errstr)), 0);
    return conf;
}

/* One archived record to write. */
struct rec {
    const char *machine;
    int64_t ts;       /* event time */
    int64_t kafka_ts; /* Kafka timestamp */
    int64_t offset;
    int raw; /* not a frame */
};

struct fixture {
    sn_conf_t *conf;
    sn_codec_t *codec;
    sn_archive_schemas_t *schemas;
    char dir[64];
    char url[128];
};

static void setup(struct fixture *fx) {
    char errstr[512];
    char tmpl[] = "/tmp/sn-source-archive-XXXXXX";

    fx->conf = make_conf();
    cr_assert_not_null(fx->codec = sn_codec_new(fx->conf, errstr, sizeof(errstr)), "%s", errstr);
    cr_assert_not_null(fx->schemas = sn_archive_schemas_new(fx->conf, errstr, sizeof(errstr)), "%s",
                       errstr);
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(fx->dir, sizeof(fx->dir), "%s", tmpl);
    snprintf(fx->url, sizeof(fx->url), "file://%s", tmpl);
}

static void teardown(struct fixture *fx) {
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    cr_assert_eq(system(cmd), 0);
    sn_archive_schemas_destroy(fx->schemas);
    sn_codec_destroy(fx->codec);
    sn_conf_destroy(fx->conf);
}

static void mkdirs(const char *path) {
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
}

/* Writes records (all of one kind: frames or raw) as one object of topic
 * and partition, named and placed the archiver's way; returns its path. */
static void write_object(struct fixture *fx, const char *topic, int32_t partition,
                         const struct rec *r, size_t n, char *path, size_t size) {
    sn_archive_buf_t out = {0};
    sn_archive_file_t *f = NULL;
    char key[SN_ARCHIVE_KEY_MAX], errstr[512];

    cr_assert_gt(sn_archive_key(key, sizeof(key), "", topic, r[0].kafka_ts, partition, r[0].offset,
                                r[n - 1].offset),
                 0);
    snprintf(path, size, "%s/%s", fx->dir, key);
    mkdirs(path);
    for (size_t i = 0; i < n; i++) {
        uint8_t frame[512];
        size_t len = 0;
        sn_event_t ev;
        sn_record_t rec;
        const sn_archive_kind_t *kind = NULL;
        int invalid = -1;

        memset(&ev, 0, sizeof(ev));
        snprintf(ev.machine_id, sizeof(ev.machine_id), "%s", r[i].machine);
        ev.ts_ms = r[i].ts;
        ev.nvalues = (uint32_t)sn_codec_nfields(fx->codec);
        for (uint32_t k = 0; k < ev.nvalues; k++)
            ev.values[k] = k == ev.nvalues - 1 ? 1 : 300.0 + (double)(r[i].offset % 50);
        cr_assert_eq(
            sn_codec_encode(fx->codec, &ev, frame, sizeof(frame), &len, errstr, sizeof(errstr)), 0,
            "%s", errstr);
        memset(&rec, 0, sizeof(rec));
        rec.topic = topic;
        rec.partition = partition;
        rec.offset = r[i].offset;
        rec.timestamp_ms = r[i].kafka_ts;
        rec.value = frame;
        rec.len = r[i].raw ? 3 : len;
        if (r[i].raw) frame[0] = 9;
        cr_assert_eq(
            sn_archive_encode(fx->schemas, &rec, &out, &kind, &invalid, errstr, sizeof(errstr)), 0,
            "%s", errstr);
        cr_assert_eq(invalid, r[i].raw);
        if (!f)
            cr_assert_not_null(f = sn_archive_file_open(path, sn_archive_kind_schema(kind),
                                                        (uint64_t)r[0].offset, 512, errstr,
                                                        sizeof(errstr)),
                               "%s", errstr);
        cr_assert_eq(sn_archive_file_append(f, out.p, out.len, errstr, sizeof(errstr)), 0);
    }
    cr_assert_eq(sn_archive_file_close(f, errstr, sizeof(errstr)), 0, "%s", errstr);
    sn_archive_buf_free(&out);
}

static sn_source_archive_t *open_reader(struct fixture *fx, int64_t from, int64_t to) {
    sn_source_archive_opts_t o = {fx->url, "telemetry", from, to, fx->conf, fx->codec, 0};
    char errstr[512];
    sn_source_archive_t *a =
        sn_source_archive_new(&o, SN_SOURCE_ARCHIVE_EVENTS, errstr, sizeof(errstr));

    cr_assert_not_null(a, "%s", errstr);
    return a;
}

/* Two partitions interleave machines; events reach Kafka up to 40 minutes
 * late and cross hour folders. What comes out is in event-time order, per
 * machine and overall, within [from, to) only, each offset once. */
Test(source_archive, event_time_order_filter_and_raw_skipped) {
    struct fixture fx;
    char path[PATH_MAX], errstr[512];
    enum { N = 600 };
    struct rec p0[N], p1[N], raw[3];
    sn_source_archive_t *a;
    sn_source_archive_stats_t st;
    sn_event_t ev;
    int64_t last_ts = INT64_MIN, last_a = INT64_MIN, last_b = INT64_MIN;
    int64_t from = T0 + H, to = T0 + 3 * H;
    size_t in_range = 0, got = 0;
    int r;

    setup(&fx);
    /* partition 0: machine a, every 30 s, Kafka time 0..40 min after the event;
     * partition 1: machine b, same times shifted by 7 s, on time. Each in
     * objects of 100 records (several hour folders). */
    for (int i = 0; i < N; i++) {
        int64_t ts = T0 + (int64_t)i * 30000;

        p0[i] = (struct rec){"machine-a", ts, ts + (i % 5) * 600000, i, 0};
        p1[i] = (struct rec){"machine-b", ts + 7000, ts + 7000, 1000 + i, 0};
        in_range += ts >= from && ts < to;
        in_range += ts + 7000 >= from && ts + 7000 < to;
    }
    /* Kafka times within one object must not go back: sort p0's by Kafka
     * time per object is not needed (the layout only uses the first). */
    for (int i = 0; i < N; i += 100) {
        write_object(&fx, "telemetry", 0, p0 + i, 100, path, sizeof(path));
        write_object(&fx, "telemetry", 1, p1 + i, 100, path, sizeof(path));
    }
    raw[0] = (struct rec){"x", T0 + H + 5, T0 + H + 5, 5000, 1};
    raw[1] = (struct rec){"x", T0 + H + 6, T0 + H + 6, 5001, 1};
    raw[2] = (struct rec){"x", T0 + H + 7, T0 + H + 7, 5002, 1};
    write_object(&fx, "telemetry", 2, raw, 3, path, sizeof(path));

    a = open_reader(&fx, from, to);
    while ((r = sn_source_archive_next_event(a, &ev, errstr, sizeof(errstr))) == 1) {
        cr_assert_geq(ev.ts_ms, from);
        cr_assert_lt(ev.ts_ms, to);
        cr_assert_geq(ev.ts_ms, last_ts, "event-time order overall");
        last_ts = ev.ts_ms;
        if (strcmp(ev.machine_id, "machine-a") == 0) {
            cr_assert_gt(ev.ts_ms, last_a);
            last_a = ev.ts_ms;
        } else {
            cr_assert_str_eq(ev.machine_id, "machine-b");
            cr_assert_gt(ev.ts_ms, last_b);
            last_b = ev.ts_ms;
        }
        cr_assert_eq(ev.nvalues, sn_codec_nfields(fx.codec));
        got++;
    }
    cr_assert_eq(r, 0, "%s", errstr);
    sn_source_archive_stats(a, &st);
    cr_assert_eq(got, in_range, "every event in the range once: %zu of %zu", got, in_range);
    cr_assert_eq(st.raw_objects, 1, "the RawRecord object is skipped and counted");
    cr_assert_eq(st.late, 0);
    cr_assert_eq(st.duplicates, 0);
    cr_assert_gt(st.outside, 0, "objects of the hour before hold events before from");
    sn_source_archive_destroy(a);
    teardown(&fx);
}

/* An object whose offsets repeat another's (a re-upload after a crash) is
 * read once, and its records already delivered are not delivered again. */
Test(source_archive, overlapping_objects_deliver_each_offset_once) {
    struct fixture fx;
    char path[PATH_MAX], errstr[512];
    struct rec r[20];
    sn_source_archive_t *a;
    sn_source_archive_stats_t st;
    sn_event_t ev;
    size_t got = 0;
    int rc;

    setup(&fx);
    for (int i = 0; i < 20; i++)
        r[i] = (struct rec){"m", T0 + H + i * 1000, T0 + H + i * 1000, 100 + i, 0};
    write_object(&fx, "telemetry", 0, r, 15, path, sizeof(path));      /* 100-114 */
    write_object(&fx, "telemetry", 0, r + 10, 10, path, sizeof(path)); /* 110-119 */
    a = open_reader(&fx, T0, T0 + 4 * H);
    while ((rc = sn_source_archive_next_event(a, &ev, errstr, sizeof(errstr))) == 1) got++;
    cr_assert_eq(rc, 0, "%s", errstr);
    sn_source_archive_stats(a, &st);
    cr_assert_eq(got, 20);
    cr_assert_eq(st.duplicates, 5);
    cr_assert_eq(st.overlapping, 1);
    cr_assert_eq(st.objects, 2);
    sn_source_archive_destroy(a);
    teardown(&fx);
}

/* A cut object is a clear error naming the object, not silently fewer
 * events. */
Test(source_archive, truncated_object_is_a_clear_error) {
    struct fixture fx;
    char path[PATH_MAX], errstr[512] = "";
    struct rec r[400];
    sn_source_archive_t *a;
    sn_event_t ev;
    struct stat st;
    int rc;

    setup(&fx);
    for (int i = 0; i < 400; i++)
        r[i] = (struct rec){"m", T0 + H + i * 1000, T0 + H + i * 1000, i, 0};
    write_object(&fx, "telemetry", 0, r, 400, path, sizeof(path));
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size - 100), 0);
    a = open_reader(&fx, T0, T0 + 4 * H);
    while ((rc = sn_source_archive_next_event(a, &ev, errstr, sizeof(errstr))) == 1)
        ;
    cr_assert_eq(rc, SN_ERR_IO, "rc %d: %s", rc, errstr);
    cr_assert(strstr(errstr, "truncated") != NULL, "%s", errstr);
    cr_assert(strstr(errstr, "00000000000000000000-00000000000000000399.avro") != NULL, "%s",
              errstr);
    sn_source_archive_destroy(a);
    teardown(&fx);
}

/* Through sn_source_t, as train and drift use it; and bad options. */
Test(source_archive, as_a_source_and_bad_options) {
    struct fixture fx;
    char path[PATH_MAX], errstr[512];
    struct rec r[10];
    sn_source_opts_t so;
    sn_source_t *src;
    sn_source_schema_t view = {0};
    sn_event_t ev;
    int n = 0, rc;

    setup(&fx);
    for (int i = 0; i < 10; i++) r[i] = (struct rec){"m", T0 + i * 1000, T0 + i * 1000, i, 0};
    write_object(&fx, "telemetry", 0, r, 10, path, sizeof(path));
    memset(&so, 0, sizeof(so));
    so.kind = SN_SOURCE_ARCHIVE;
    so.path = fx.url;
    so.from_ms = T0 + 2000;
    so.to_ms = T0 + 5000;
    so.conf = fx.conf;
    so.codec = fx.codec;
    view.nfields = (uint32_t)sn_codec_nfields(fx.codec);
    cr_assert_not_null(src = sn_source_new(&so, &view, errstr, sizeof(errstr)), "%s", errstr);
    while ((rc = sn_source_next(src, &ev, errstr, sizeof(errstr))) == 1) n++;
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 3);
    cr_assert_not_null(sn_source_archive(src));
    sn_source_destroy(src);

    so.to_ms = so.from_ms; /* empty range */
    cr_assert_null(sn_source_new(&so, &view, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "--from and --to") != NULL, "%s", errstr);
    so.to_ms = T0 + 5000;
    so.path = "http://nowhere/x";
    cr_assert_null(sn_source_new(&so, &view, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "file://DIR or s3://") != NULL, "%s", errstr);
    teardown(&fx);
}

/* The snappy decoder refuses references before the start and lengths past
 * the declared size. */
Test(source_archive, snappy_rejects_bad_references) {
    uint8_t ok[] = {5, 4 << 2, 'h', 'e', 'l', 'l', 'o'};
    uint8_t back[] = {8, 0 << 2, 'a', (4 << 2) | 1, 5}; /* offset 5 before a 1-byte output */
    uint8_t over[] = {2, 4 << 2, 'h', 'e', 'l', 'l', 'o'};
    uint8_t *out = NULL;
    size_t n = 0;

    cr_assert_eq(sn_container_unsnappy(ok, sizeof(ok), 100, &out, &n), 0);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(out, "hello", 5), 0);
    free(out);
    cr_assert_eq(sn_container_unsnappy(back, sizeof(back), 100, &out, &n), SN_ERR_INVALID);
    cr_assert_eq(sn_container_unsnappy(over, sizeof(over), 100, &out, &n), SN_ERR_INVALID);
    cr_assert_eq(sn_container_unsnappy(ok, sizeof(ok), 4, &out, &n), SN_ERR_NOMEM);
}
