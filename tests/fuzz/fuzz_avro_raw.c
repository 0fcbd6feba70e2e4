/* fuzz_avro_raw.c: libFuzzer target for avro-c 1.11.1 itself, WITHOUT the
 * codec's validator: avro_value_read() of the telemetry-with-every-type
 * fixture schema from raw bytes, with the capped allocator armed (1 MiB).
 *
 * This is evidence, not a gate: it shows what avro-c does with hostile
 * input on its own (see schemas/README.md "avro-c 1.11.1 defects"), which is
 * why sn_codec_decode() validates every frame before avro-c sees it. Run it
 * with -detect_leaks=0 to get past the leak it finds in seconds. */
#include <avro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "schemas/avro_alloc.h"
#include "schemas/schema_store.h"

static avro_value_iface_t *iface;
static avro_value_t value;
static avro_reader_t reader;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[256], *json = NULL;
    size_t len = 0;
    avro_schema_t schema;

    (void)argc;
    (void)argv;
    sn_avro_alloc_install();
    if (sn_schema_read_file(SN_SOURCE_DIR "/tests/data/codec/telemetry_extra.avsc", &json, &len,
                            err, sizeof(err)) != 0 ||
        avro_schema_from_json_length(json, len, &schema) != 0)
        abort();
    free(json);
    iface = avro_generic_class_from_schema(schema);
    if (!iface || avro_generic_value_new(iface, &value) != 0) abort();
    reader = avro_reader_memory(NULL, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A fresh value each time: a failed read can leave a reused one unusable. */
    avro_value_t v;

    if (avro_generic_value_new(iface, &v) != 0) return 0;
    avro_reader_memory_set_source(reader, (const char *)data, (int64_t)size);
    sn_avro_alloc_arm(1 << 20);
    (void)avro_value_read(reader, &v);
    sn_avro_alloc_arm(0);
    avro_value_decref(&v);
    return 0;
}
