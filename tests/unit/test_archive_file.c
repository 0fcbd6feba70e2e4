/* The archive's pieces (consumers/archive_file.c, archive_sink.c) and the
 * archiver end to end on librdkafka's mock cluster with a file:// sink.
 *
 * Files are read back with avro-c's reader, an implementation independent of
 * our writer (it decompresses with libsnappy and checks each block's CRC). */
#include <avro.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common_conf.h"
#include "common/err.h"
#include "common/kafka.h"
#include "common/metrics_conf.h"
#include "common/s3_conf.h"
#include "consumers/archive_int.h"
#include "consumers/archiver.h"
#include "consumers/archiver_conf.h"
#include "producers/producer.h"
#include "schemas/codec.h"
#include "schemas/schemas_conf.h"

static sn_conf_t *make_conf(const char *const *kv) {
    static const sn_conf_def_t *const tables[] = {sn_common_conf_defs, sn_metrics_conf_defs,
                                                  sn_schemas_conf_defs, sn_s3_conf_defs,
                                                  sn_archiver_conf_defs};
    char errstr[512];
    sn_conf_t *conf = sn_conf_new(tables, 5, errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(
        sn_conf_set(conf, "schema.dir", SN_SOURCE_DIR "/schemas", "test", errstr, sizeof(errstr)),
        0, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "schema.reader", SN_SOURCE_DIR "/schemas/telemetry.avsc", "test",
                             errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "log.level", "warn", "test", errstr, sizeof(errstr)), 0);
    for (; kv && kv[0]; kv += 2)
        cr_assert_eq(sn_conf_set(conf, kv[0], kv[1], "test", errstr, sizeof(errstr)), 0, "%s: %s",
                     kv[0], errstr);
    return conf;
}

static char *tmpdir(void) {
    char tmpl[] = "/tmp/sn-archive-test-XXXXXX";
    char *d = mkdtemp(tmpl);

    cr_assert_not_null(d);
    return strdup(d);
}

static void rm_rf(const char *path) {
    char cmd[PATH_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

/* ---- keys ------------------------------------------------------------------------ */

Test(archive_file, key_layout) {
    char key[SN_ARCHIVE_KEY_MAX];
    int64_t f, l;

    /* 2024-01-15T12:34:56Z */
    cr_assert_gt(
        sn_archive_key(key, sizeof(key), "arch/v1", "telemetry", 1705322096000LL, 3, 100, 250), 0);
    cr_assert_str_eq(key, "arch/v1/telemetry/dt=2024-01-15/hour=12/partition=3/"
                          "00000000000000000100-00000000000000000250.avro");
    cr_assert_gt(sn_archive_key(key, sizeof(key), "", "t.scores", -1, 0, 0, 0), 0);
    cr_assert_str_eq(key, "t.scores/dt=1970-01-01/hour=00/partition=0/"
                          "00000000000000000000-00000000000000000000.avro");
    cr_assert_eq(
        sn_archive_parse_name("a/b/00000000000000000100-00000000000000000250.avro", &f, &l), 0);
    cr_assert_eq(f, 100);
    cr_assert_eq(l, 250);
    cr_assert_eq(
        sn_archive_parse_name(".00000000000000000100-00000000000000000250.avro.tmp", &f, &l),
        SN_ERR_INVALID);
    cr_assert_eq(sn_archive_parse_name("5-4.avro", &f, &l), SN_ERR_INVALID);
    cr_assert_eq(sn_archive_key(key, 40, "p", "telemetry", 0, 1, 2, 3), SN_ERR_NOMEM);
}

Test(archive_file, crc32_check_value) {
    cr_assert_eq(sn_archive_crc32("123456789", 9), 0xCBF43926u);
}

/* ---- container files ------------------------------------------------------------------ */

static const char *LONG_SCHEMA =
    "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"t\",\"doc\":\"kept\",\"fields\":["
    "{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"s\",\"type\":\"bytes\"}]}";

static size_t enc_long(uint8_t *p, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;

    do {
        p[n] = z & 0x7f;
        z >>= 7;
        if (z) p[n] |= 0x80;
        n++;
    } while (z);
    return n;
}

/* Writes records of varied size and compressibility (one far larger than a
 * block), reads them back with avro-c and compares every field. */
Test(archive_file, ocf_roundtrip_read_by_avro_c) {
    char *dir = tmpdir(), path[PATH_MAX], errstr[256];
    enum { N = 3000 };
    static uint8_t payload[300000];
    uint8_t *datum = malloc(sizeof(payload) + 32);
    sn_archive_file_t *f;
    uint64_t x = 42;

    for (size_t i = 0; i < sizeof(payload); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        payload[i] = (i % 1000) < 500 ? (uint8_t)(i % 7) : (uint8_t)x;
    }
    snprintf(path, sizeof(path), "%s/x.avro", dir);
    f = sn_archive_file_open(path, LONG_SCHEMA, 7, 4096, errstr, sizeof(errstr));
    cr_assert_not_null(f, "%s", errstr);
    for (int i = 0; i < N; i++) {
        size_t len = i == 1234 ? sizeof(payload) : (size_t)(i * 37 % 900), n = 0;

        n += enc_long(datum + n, 1705322096000LL + i);
        n += enc_long(datum + n, (int64_t)len);
        memcpy(datum + n, payload + (i % 1000), len > sizeof(payload) - 1000 ? len - 1000 : len);
        if (len > sizeof(payload) - 1000) memcpy(datum + n, payload, len);
        n += len;
        cr_assert_eq(sn_archive_file_append(f, datum, n, errstr, sizeof(errstr)), 0, "%s", errstr);
    }
    cr_assert_eq(sn_archive_file_records(f), N);
    cr_assert_eq(sn_archive_file_close(f, errstr, sizeof(errstr)), 0, "%s", errstr);

    {
        avro_file_reader_t r;
        avro_schema_t ws;
        avro_value_iface_t *iface;
        avro_value_t v;
        int i = 0;
        char *text = NULL;
        FILE *fp = fopen(path, "rb");
        char head[2048];
        size_t hn = fread(head, 1, sizeof(head) - 1, fp);

        fclose(fp);
        head[hn] = '\0';
        (void)text;
        cr_assert(memmem(head, hn, "timestamp-millis", 16) != NULL,
                  "the schema text is written as given, logicalType included");
        cr_assert_eq(avro_file_reader(path, &r), 0, "%s", avro_strerror());
        ws = avro_file_reader_get_writer_schema(r);
        iface = avro_generic_class_from_schema(ws);
        avro_generic_value_new(iface, &v);
        while (avro_file_reader_read_value(r, &v) == 0) {
            avro_value_t fld;
            int64_t ts;
            const void *b;
            size_t blen, len = i == 1234 ? sizeof(payload) : (size_t)(i * 37 % 900);

            avro_value_get_by_name(&v, "ts", &fld, NULL);
            avro_value_get_long(&fld, &ts);
            cr_assert_eq(ts, 1705322096000LL + i);
            avro_value_get_by_name(&v, "s", &fld, NULL);
            avro_value_get_bytes(&fld, &b, &blen);
            cr_assert_eq(blen, len, "record %d", i);
            if (len <= sizeof(payload) - 1000)
                cr_assert_eq(memcmp(b, payload + (i % 1000), len), 0, "record %d", i);
            else
                cr_assert_eq(memcmp(b, payload, len), 0);
            i++;
        }
        cr_assert_eq(i, N, "avro-c read %d of %d records: %s", i, N, avro_strerror());
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        avro_schema_decref(ws);
        avro_file_reader_close(r);
    }
    free(datum);
    rm_rf(dir);
    free(dir);
}

/* ---- record encoding ------------------------------------------------------------------- */

static size_t telemetry_frame(sn_codec_t *codec, int i, uint8_t *buf, size_t size) {
    sn_event_t ev;
    char errstr[256];
    size_t len = 0;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "m-%03d", i % 17);
    ev.ts_ms = 1705322096000LL + i;
    ev.nvalues = (uint32_t)sn_codec_nfields(codec);
    for (uint32_t k = 0; k < ev.nvalues; k++)
        ev.values[k] = k == ev.nvalues - 1 ? i % 3 : 300.0 + i + k;
    cr_assert_eq(sn_codec_encode(codec, &ev, buf, size, &len, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    return len;
}

Test(archive_file, encode_frames_and_raw) {
    sn_conf_t *conf = make_conf(NULL);
    char errstr[512];
    sn_codec_t *codec = sn_codec_new(conf, errstr, sizeof(errstr));
    sn_archive_schemas_t *s = sn_archive_schemas_new(conf, errstr, sizeof(errstr));
    sn_archive_buf_t out = {0};
    const sn_archive_kind_t *kind = NULL;
    uint8_t frame[512], bad[8] = {1, 2, 3};
    sn_record_t r;
    int invalid = -1;
    size_t len;

    cr_assert_not_null(codec, "%s", errstr);
    cr_assert_not_null(s, "%s", errstr);
    len = telemetry_frame(codec, 5, frame, sizeof(frame));
    memset(&r, 0, sizeof(r));
    r.topic = "telemetry";
    r.partition = 2;
    r.offset = 77;
    r.timestamp_ms = 1705322096000LL;
    r.value = frame;
    r.len = len;
    cr_assert_eq(sn_archive_encode(s, &r, &out, &kind, &invalid, errstr, sizeof(errstr)), 0);
    cr_assert_eq(invalid, 0);
    cr_assert_eq(sn_archive_kind_id(kind), 1);
    cr_assert(strstr(sn_archive_kind_schema(kind), "\"kafka_offset\"") != NULL);
    cr_assert(strstr(sn_archive_kind_schema(kind), "timestamp-millis") != NULL);
    /* the frame's Avro bytes, then partition 2, offset 77 and the timestamp */
    cr_assert_eq(memcmp(out.p, frame + 5, len - 5), 0);
    cr_assert_eq(out.p[len - 5], 4);
    cr_assert_eq(out.p[len - 4], 154);
    cr_assert_eq(out.p[len - 3], 1);

    r.value = bad; /* not a frame */
    r.len = 3;
    cr_assert_eq(sn_archive_encode(s, &r, &out, &kind, &invalid, errstr, sizeof(errstr)), 0);
    cr_assert_eq(invalid, 1);
    cr_assert_eq(sn_archive_kind_id(kind), SN_ARCHIVE_RAW_ID);
    frame[1] = 0x7f; /* unknown schema id */
    r.value = frame;
    r.len = len;
    cr_assert_eq(sn_archive_encode(s, &r, &out, &kind, &invalid, errstr, sizeof(errstr)), 0);
    cr_assert_eq(invalid, 1);
    frame[1] = 0;
    r.len = len - 3; /* truncated Avro */
    cr_assert_eq(sn_archive_encode(s, &r, &out, &kind, &invalid, errstr, sizeof(errstr)), 0);
    cr_assert_eq(invalid, 1);
    r.value = NULL; /* tombstone */
    r.len = 0;
    cr_assert_eq(sn_archive_encode(s, &r, &out, &kind, &invalid, errstr, sizeof(errstr)), 0);
    cr_assert_eq(invalid, 1);

    sn_archive_buf_free(&out);
    sn_archive_schemas_destroy(s);
    sn_codec_destroy(codec);
    sn_conf_destroy(conf);
}

/* ---- the file sink ------------------------------------------------------------------------ */

Test(archive_file, file_sink_put_find_replace) {
    char *dir = tmpdir(), url[PATH_MAX + 16], src[PATH_MAX], errstr[256], dkey[512];
    sn_conf_t *conf = make_conf(NULL);
    sn_archive_sink_t *s;
    int64_t last = -1;
    FILE *fp;

    snprintf(url, sizeof(url), "file://%s/arch", dir);
    snprintf(src, sizeof(src), "%s/src", dir);
    fp = fopen(src, "w");
    fputs("one", fp);
    fclose(fp);
    s = sn_archive_sink_new(conf, url, errstr, sizeof(errstr));
    cr_assert_not_null(s, "%s", errstr);
    cr_assert_eq(sn_archive_sink_probe(s, errstr, sizeof(errstr)), 0, "%s", errstr);
    sn_archive_dir(dkey, sizeof(dkey), "", "t", 0, 1);
    cr_assert_eq(sn_archive_sink_find(s, dkey, 10, &last, errstr, sizeof(errstr)), SN_ERR_NOENT);
    cr_assert_eq(sn_archive_sink_put(s,
                                     "t/dt=1970-01-01/hour=00/partition=1/"
                                     "00000000000000000010-00000000000000000019.avro",
                                     src, errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_eq(sn_archive_sink_put(s,
                                     "t/dt=1970-01-01/hour=00/partition=1/"
                                     "00000000000000000020-00000000000000000029.avro",
                                     src, errstr, sizeof(errstr)),
                 0);
    cr_assert_eq(sn_archive_sink_find(s, dkey, 10, &last, errstr, sizeof(errstr)), 0);
    cr_assert_eq(last, 19);
    cr_assert_eq(sn_archive_sink_find(s, dkey, 20, &last, errstr, sizeof(errstr)), 0);
    cr_assert_eq(last, 29);
    cr_assert_eq(sn_archive_sink_find(s, dkey, 15, &last, errstr, sizeof(errstr)), SN_ERR_NOENT);
    /* again under the same key: replaced, no temporary left behind */
    cr_assert_eq(sn_archive_sink_put(s,
                                     "t/dt=1970-01-01/hour=00/partition=1/"
                                     "00000000000000000010-00000000000000000019.avro",
                                     src, errstr, sizeof(errstr)),
                 0);
    {
        char p[PATH_MAX + 64];
        DIR *d;
        struct dirent *e;
        int n = 0;

        snprintf(p, sizeof(p), "%s/arch/%s", dir, dkey);
        d = opendir(p);
        cr_assert_not_null(d);
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                n += e->d_name[0] != '.';
            else
                cr_assert_fail("temporary file %s left behind", e->d_name);
        closedir(d);
        cr_assert_eq(n, 2);
    }
    cr_assert_str_eq(sn_archive_sink_prefix(s), "");
    cr_assert(strncmp(sn_archive_sink_location(s), "file:///", 8) == 0);
    sn_archive_sink_destroy(s);
    cr_assert_null(sn_archive_sink_new(conf, "ftp://x", errstr, sizeof(errstr)));
    cr_assert_null(sn_archive_sink_new(conf, "s3://", errstr, sizeof(errstr)));
    sn_conf_destroy(conf);
    rm_rf(dir);
    free(dir);
}

/* ---- end to end on the mock cluster -------------------------------------------------------- */

struct seen {
    uint8_t *hit; /* [partition][offset] counts */
    int nparts, max_off;
    long records, raw;
};

/* Reads every visible .avro file under dir with avro-c and counts each
 * (partition, offset); fails on a temporary or unreadable file. */
static void scan(const char *dir, struct seen *s) {
    DIR *d = opendir(dir);
    struct dirent *e;

    cr_assert_not_null(d, "%s", dir);
    while ((e = readdir(d))) {
        char p[PATH_MAX + 300];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        cr_assert_neq(e->d_name[0], '.', "temporary file %s/%s visible", dir, e->d_name);
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        cr_assert_eq(stat(p, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            scan(p, s);
            continue;
        }
        {
            avro_file_reader_t r;
            avro_schema_t ws;
            avro_value_iface_t *iface;
            avro_value_t v;
            int64_t first, last, prev = -1;

            cr_assert_eq(sn_archive_parse_name(p, &first, &last), 0, "%s", p);
            cr_assert_eq(avro_file_reader(p, &r), 0, "%s: %s", p, avro_strerror());
            ws = avro_file_reader_get_writer_schema(r);
            iface = avro_generic_class_from_schema(ws);
            avro_generic_value_new(iface, &v);
            while (avro_file_reader_read_value(r, &v) == 0) {
                avro_value_t fld;
                int32_t part;
                int64_t off;

                avro_value_get_by_name(&v, "kafka_partition", &fld, NULL);
                avro_value_get_int(&fld, &part);
                avro_value_get_by_name(&v, "kafka_offset", &fld, NULL);
                avro_value_get_long(&fld, &off);
                cr_assert(part >= 0 && part < s->nparts && off >= 0 && off < s->max_off);
                cr_assert(off >= first && off <= last && off > prev, "%s: offset %ld", p,
                          (long)off);
                prev = off;
                s->hit[part * s->max_off + off]++;
                s->records++;
                if (avro_value_get_by_name(&v, "error", &fld, NULL) == 0) s->raw++;
            }
            cr_assert_eq(prev, last, "%s ends at its last offset", p);
            avro_value_decref(&v);
            avro_value_iface_decref(iface);
            avro_schema_decref(ws);
            avro_file_reader_close(r);
        }
    }
    closedir(d);
}

static volatile int never_stop = 0;

static void run_archiver(sn_conf_t *conf, const char *bootstrap, const char *url,
                         sn_archiver_stats_t *st) {
    char errstr[512];
    const char *topics[] = {"arch-test"};
    sn_archiver_opts_t o = {
        .bootstrap = bootstrap, .url = url, .topics = topics, .ntopics = 1, .idle_exit_ms = 5000};
    sn_archiver_t *a = sn_archiver_new(conf, &o, errstr, sizeof(errstr));

    cr_assert_not_null(a, "%s", errstr);
    cr_assert_eq(sn_archiver_run(a, &never_stop), 0);
    sn_archiver_stats(a, st);
    sn_archiver_destroy(a);
}

static void produce(sn_conf_t *conf, const char *bootstrap, int from, int n) {
    char errstr[512];
    sn_codec_t *codec = sn_codec_new(conf, errstr, sizeof(errstr));
    sn_producer_t *p = sn_producer_new(conf, bootstrap, errstr, sizeof(errstr));
    uint8_t frame[512];

    cr_assert_not_null(codec, "%s", errstr);
    cr_assert_not_null(p, "%s", errstr);
    for (int i = from; i < from + n; i++) {
        size_t len = telemetry_frame(codec, i, frame, sizeof(frame));
        char key[16];

        snprintf(key, sizeof(key), "m-%03d", i % 17);
        if (i % 97 == 0) len = 3; /* now and then a record that is not a valid frame */
        cr_assert_eq(sn_producer_send(p, "arch-test", -1, key, strlen(key), frame, len, NULL, 0,
                                      5000, errstr, sizeof(errstr)),
                     0, "%s", errstr);
    }
    cr_assert_eq(sn_producer_flush(p, 10000), 0);
    sn_producer_destroy(p, 1000);
    sn_codec_destroy(codec);
}

Test(archive_file, end_to_end_mock_exactly_once_and_restart, .timeout = 240) {
    char *dir = tmpdir(), url[PATH_MAX + 16], arch[PATH_MAX + 8], errstr[512];
    const char *kv[] = {"archive.file.max.records", "300", "archive.group.id", "g1",
                        "archive.batch.max.records", "500",
                        /* a member that left is forgotten by the mock cluster only when
                         * its session times out: keep that short for the rejoin below */
                        "kafka.session.timeout.ms", "6000", "kafka.heartbeat.interval.ms", "500",
                        NULL};
    sn_conf_t *conf = make_conf(kv);
    sn_kafka_mock_t *m = sn_kafka_mock_new(1, errstr, sizeof(errstr));
    sn_archiver_stats_t st;
    struct seen s = {0};
    enum { NP = 3, N1 = 2000, N2 = 700 };

    cr_assert_not_null(m, "%s", errstr);
    cr_assert_eq(sn_kafka_mock_topic(m, "arch-test", NP, errstr, sizeof(errstr)), 0);
    snprintf(url, sizeof(url), "file://%s/arch", dir);
    snprintf(arch, sizeof(arch), "%s/arch", dir);
    produce(conf, sn_kafka_mock_bootstraps(m), 0, N1);

    run_archiver(conf, sn_kafka_mock_bootstraps(m), url, &st);
    cr_assert_eq(st.records, N1, "archived %lu of %d", (unsigned long)st.records, N1);
    cr_assert_gt(st.objects, (uint64_t)(N1 / 300), "rotation by record count");
    cr_assert_gt(st.invalid, 0);

    /* A new group starts at offset 0 with every object already there, as after
     * a crash between upload and commit: nothing is written twice. */
    sn_conf_set(conf, "archive.group.id", "g2", "test", errstr, sizeof(errstr));
    sn_conf_set(conf, "archive.file.max.records", "250", "test", errstr, sizeof(errstr));
    produce(conf, sn_kafka_mock_bootstraps(m), N1, N2);
    run_archiver(conf, sn_kafka_mock_bootstraps(m), url, &st);
    cr_assert_eq(st.skipped, N1, "skipped %lu", (unsigned long)st.skipped);
    cr_assert_eq(st.records, N2);

    /* A group that only finds archived records commits them all the same:
     * its next run has nothing to walk. */
    sn_conf_set(conf, "archive.group.id", "g3", "test", errstr, sizeof(errstr));
    run_archiver(conf, sn_kafka_mock_bootstraps(m), url, &st);
    cr_assert_eq(st.skipped, N1 + N2);
    cr_assert_eq(st.records, 0);
    run_archiver(conf, sn_kafka_mock_bootstraps(m), url, &st);
    cr_assert_eq(st.skipped, 0, "skipped records were committed");
    cr_assert_eq(st.records, 0);

    s.nparts = NP;
    s.max_off = N1 + N2;
    s.hit = calloc((size_t)NP * (size_t)s.max_off, 1);
    scan(arch, &s);
    cr_assert_eq(s.records, N1 + N2);
    for (int p = 0; p < NP; p++)
        for (int o = 0; o < s.max_off; o++)
            cr_assert_leq(s.hit[p * s.max_off + o], 1, "partition %d offset %d twice", p, o);
    cr_assert_gt(s.raw, 0);
    free(s.hit);
    sn_kafka_mock_destroy(m);
    sn_conf_destroy(conf);
    rm_rf(dir);
    free(dir);
}
