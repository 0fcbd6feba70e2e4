/* bench_codec.c: single-thread decode rate of telemetry frames.
 *
 * Decodes N frames (default 1e6, cycling over 1024 distinct v1 telemetry
 * frames with tags) four ways in the same run, so the numbers compare on the
 * same machine and moment:
 *   memcpy        copy each frame's bytes (the floor: touching the data)
 *   avro-c raw    avro_value_read into a reused generic value, nothing else
 *                 (what a decoder without validation or extraction costs)
 *   validate      sn_wire_check only (the pre-validation walk)
 *   sn_codec      sn_codec_decode: frame, validation, avro-c, resolution,
 *                 all checks, filling sn_event_t
 *
 * Build (from the repo root, after cmake --build build-codec):
 *   cc -O2 -I. -DSN_SOURCE_DIR="\"$PWD\"" bench/bench_codec.c build-codec/libsn_schemas.a \
 *      build-codec/libsn_common.a $(pkg-config --libs avro-c jansson libcurl) -lpthread -lm \
 *      -o build-codec/bench_codec
 * or with bench/CMakeLists.txt once the top level has add_subdirectory(bench).
 * Run: build-codec/bench_codec [N] */
#include <avro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common_conf.h"
#include "schemas/codec.h"
#include "schemas/schemas_conf.h"
#include "schemas/wire.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif

#define NFRAMES 1024
#define FRAME_MAX 512

static double now_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *what, long n, double secs, double base) {
    printf("%-12s %10.0f events/s  %7.1f ns/event", what, n / secs, secs * 1e9 / n);
    if (base > 0) printf("  (%.1fx memcpy)", secs / base);
    printf("\n");
}

int main(int argc, char **argv) {
    const sn_conf_def_t *const tables[] = {sn_common_conf_defs, sn_schemas_conf_defs};
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    static uint8_t frames[NFRAMES][FRAME_MAX];
    static size_t lens[NFRAMES];
    static uint8_t sink[FRAME_MAX];
    char err[512];
    sn_conf_t *conf = sn_conf_new(tables, 2, err, sizeof(err));
    sn_codec_t *codec;
    sn_event_t ev;
    enum sn_codec_error_class cls;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    avro_reader_t reader;
    sn_wire_t *wire;
    double t0, t_memcpy, t_raw, t_check, t_codec;
    uint64_t check = 0;

    if (n <= 0 || !conf ||
        sn_conf_set(conf, "schema.dir", SN_SOURCE_DIR "/schemas", "bench", err, sizeof(err)) ||
        sn_conf_set(conf, "schema.reader", SN_SOURCE_DIR "/schemas/telemetry.avsc", "bench", err,
                    sizeof(err)) ||
        !(codec = sn_codec_new(conf, err, sizeof(err)))) {
        fprintf(stderr, "bench_codec: %s\n", err);
        return 1;
    }
    for (int i = 0; i < NFRAMES; i++) {
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.machine_id, sizeof(ev.machine_id), "machine-%05d", i);
        ev.ts_ms = 1700000000000 + i * 1000;
        ev.nvalues = 6;
        ev.values[0] = 298.1 + i * 0.01;
        ev.values[1] = 308.6 + i * 0.01;
        ev.values[2] = 1500 + i;
        ev.values[3] = 40.0 + (i % 17);
        ev.values[4] = i % 250;
        ev.values[5] = i % 3;
        ev.ntags = 2;
        snprintf(ev.tags[0].key, SN_EVENT_TAG_MAX, "site");
        snprintf(ev.tags[0].value, SN_EVENT_TAG_MAX, "plant-%d", i % 4);
        snprintf(ev.tags[1].key, SN_EVENT_TAG_MAX, "line");
        snprintf(ev.tags[1].value, SN_EVENT_TAG_MAX, "%d", i % 12);
        if (sn_codec_encode(codec, &ev, frames[i], FRAME_MAX, &lens[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_codec: encode: %s\n", err);
            return 1;
        }
    }
    {
        FILE *f = fopen(SN_SOURCE_DIR "/schemas/telemetry.avsc", "r");
        static char json[65536];
        size_t jl = f ? fread(json, 1, sizeof(json) - 1, f) : 0;

        if (f) fclose(f);
        if (avro_schema_from_json_length(json, jl, &schema) != 0) return 1;
    }
    iface = avro_generic_class_from_schema(schema);
    avro_generic_value_new(iface, &value);
    reader = avro_reader_memory(NULL, 0);
    wire = sn_wire_new(schema, err, sizeof(err));
    printf("bench_codec: %ld decodes of %d distinct v1 frames (%zu bytes each, 2 tags), one "
           "thread\n",
           n, NFRAMES, lens[0]);

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int k = (int)(i & (NFRAMES - 1));
        memcpy(sink, frames[k], lens[k]);
        check += sink[lens[k] - 1];
        __asm__ volatile("" : : "r"(sink) : "memory");
    }
    t_memcpy = now_s() - t0;

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int k = (int)(i & (NFRAMES - 1));
        avro_reader_memory_set_source(reader, (const char *)frames[k] + 5, (int64_t)lens[k] - 5);
        if (avro_value_read(reader, &value) != 0) return 1;
    }
    t_raw = now_s() - t0;

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int k = (int)(i & (NFRAMES - 1));
        if (sn_wire_check(wire, frames[k] + 5, lens[k] - 5, 1 << 20, &cls, err, sizeof(err)) != 0)
            return 1;
    }
    t_check = now_s() - t0;

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int k = (int)(i & (NFRAMES - 1));
        if (sn_codec_decode(codec, frames[k], lens[k], &ev, &cls, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_codec: decode: %s\n", err);
            return 1;
        }
        check += (uint64_t)ev.ts_ms;
    }
    t_codec = now_s() - t0;

    report("memcpy", n, t_memcpy, 0);
    report("avro-c raw", n, t_raw, t_memcpy);
    report("validate", n, t_check, t_memcpy);
    report("sn_codec", n, t_codec, t_memcpy);
    printf("sn_codec / avro-c raw = %.2f (checksum %llu)\n", t_codec / t_raw,
           (unsigned long long)(check & 0xffff));

    sn_wire_destroy(wire);
    avro_reader_free(reader);
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    sn_codec_destroy(codec);
    sn_conf_destroy(conf);
    return 0;
}
