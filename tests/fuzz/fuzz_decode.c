/* fuzz_decode.c: libFuzzer target for the telemetry, alert and score decoders.
 *
 * Every input is decoded by three codecs over the fixture schema directory
 * tests/data/codec (so the 4-byte schema id in the input picks among a dozen
 * writer schemas: v1, v2, one with every Avro type and a recursive record,
 * nullable key/time, reordered enums, a custom schema...): the v1 reader, the
 * v2 reader and the custom "press" reader, the last with a small allocation
 * cap. Besides "no crash, no leak, no UB" (ASan/UBSan/LSan), it checks
 * properties: a rejected frame has a class and a message; an accepted event
 * satisfies the sn_event_t contract (id 1..63 bytes, NUL-terminated; ts >= 0;
 * tags bounded; values finite or NaN only where the schema allows null) and
 * survives encode -> decode unchanged. Seeds: tests/fuzz/corpus_decode/. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common_conf.h"
#include "common/err.h"
#include "schemas/codec.h"
#include "schemas/schemas_conf.h"

#define DATA SN_SOURCE_DIR "/tests/data/codec"

static sn_codec_t *codecs[3];

static sn_codec_t *make(const char *const *kv) {
    const sn_conf_def_t *const tables[] = {sn_common_conf_defs, sn_schemas_conf_defs};
    char err[512];
    sn_conf_t *conf = sn_conf_new(tables, 2, err, sizeof(err));
    sn_codec_t *c;

    if (!conf) abort();
    for (size_t i = 0; kv[i]; i += 2)
        if (sn_conf_set(conf, kv[i], kv[i + 1], "fuzz", err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    if (!(c = sn_codec_new(conf, err, sizeof(err)))) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    sn_conf_destroy(conf);
    return c;
}

/* The codecs are destroyed at exit, before LeakSanitizer looks: avro-c keeps a
 * union's branch at offset 4 of its storage (generic.c avro_generic_union_t),
 * so live pointers inside a union branch are misaligned and invisible to
 * LSan, which would report the tags map of a cached value as leaked. */
static void destroy_codecs(void) {
    for (int k = 0; k < 3; k++) sn_codec_destroy(codecs[k]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    atexit(destroy_codecs);
    codecs[0] = make((const char *const[]){"schema.dir", DATA, "schema.reader",
                                           SN_SOURCE_DIR "/schemas/telemetry.avsc", NULL});
    codecs[1] = make((const char *const[]){"schema.dir", DATA, "schema.reader",
                                           DATA "/telemetry_v2.avsc", "schema.id", "4", NULL});
    codecs[2] = make((const char *const[]){"schema.dir", DATA, "schema.reader", DATA "/press.avsc",
                                           "schema.key.field", "press_id", "schema.time.field",
                                           "event_time", "schema.id", "10",
                                           "schema.max.alloc.bytes", "8192", NULL});
    return 0;
}

static void check_event(sn_codec_t *c, const sn_event_t *ev) {
    const char *nul = memchr(ev->machine_id, '\0', sizeof(ev->machine_id));
    uint8_t buf[8192];
    size_t len = 0;
    sn_event_t again;
    enum sn_codec_error_class cls;
    char err[512];

    if (!nul || nul == ev->machine_id || ev->ts_ms < 0 || ev->ntags > SN_EVENT_TAGS_MAX ||
        ev->nvalues != sn_codec_nfields(c))
        abort();
    for (uint32_t i = 0; i < ev->ntags; i++)
        if (!memchr(ev->tags[i].key, '\0', SN_EVENT_TAG_MAX) ||
            !memchr(ev->tags[i].value, '\0', SN_EVENT_TAG_MAX))
            abort();
    for (uint32_t i = 0; i < ev->nvalues; i++)
        if (isinf(ev->values[i])) abort();
    /* Round trip. The press reader converts microseconds to milliseconds, so
     * its ts only survives at millisecond precision: compare after one trip. */
    if (sn_codec_encode(c, ev, buf, sizeof(buf), &len, err, sizeof(err)) != 0) {
        /* A NaN from a null in a field that the writer had nullable but the
         * reader does not is impossible; everything decoded must encode,
         * except duplicate tag keys collapsing (a map). */
        fprintf(stderr, "fuzz: decoded event does not encode: %s\n", err);
        abort();
    }
    if (sn_codec_decode(c, buf, len, &again, &cls, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz: re-encoded event does not decode: %s (%s)\n", err,
                sn_codec_error_class_str(cls));
        abort();
    }
    if (strcmp(again.machine_id, ev->machine_id) != 0 || again.ts_ms != ev->ts_ms ||
        again.nvalues != ev->nvalues)
        abort();
    for (uint32_t i = 0; i < ev->nvalues; i++)
        if (!(again.values[i] == ev->values[i] || (isnan(again.values[i]) && isnan(ev->values[i]))))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    enum sn_codec_error_class cls;
    int32_t id;
    sn_event_t ev;
    sn_alert_t alert;
    sn_score_t score;

    for (int k = 0; k < 3; k++) {
        int rc;

        err[0] = '\0';
        rc = sn_codec_decode(codecs[k], data, size, &ev, &cls, &id, err, sizeof(err));
        if (rc == 0) {
            if (cls != SN_CODEC_OK) abort();
            check_event(codecs[k], &ev);
        } else if (cls == SN_CODEC_OK || cls >= SN_CODEC__CLASS_COUNT || !err[0] ||
                   ev.nvalues != 0 || rc == SN_ERR_TRANSIENT) {
            abort();
        }
    }
    if (sn_codec_decode_alert(codecs[0], data, size, &alert, &cls, err, sizeof(err)) == 0 &&
        (alert.nfeatures > SN_ALERT_FEATURES_MAX || (unsigned)alert.state > SN_ALERT_RESOLVED))
        abort();
    if (sn_codec_decode_score(codecs[0], data, size, &score, &cls, err, sizeof(err)) == 0 &&
        !isfinite(score.score))
        abort();
    return 0;
}
