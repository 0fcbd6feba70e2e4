/* archive_file.c: what a record becomes in the archive, and the Avro object
 * container files it is written to. See archive_int.h for the design. */
#include <avro.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "consumers/archive_int.h"
#include "schemas/schema_store.h"
#include "schemas/wire.h"

/* ---- keys -------------------------------------------------------------------- */

int sn_archive_dir(char *out, size_t size, const char *prefix, const char *topic, int64_t ts_ms,
                   int32_t partition) {
    time_t t = (time_t)((ts_ms < 0 ? 0 : ts_ms) / 1000);
    struct tm tm;
    int n;

    gmtime_r(&t, &tm);
    n = snprintf(out, size, "%s%s%s/dt=%04d-%02d-%02d/hour=%02d/partition=%d/", prefix,
                 prefix[0] ? "/" : "", topic, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, (int)partition);
    return (n < 0 || (size_t)n >= size) ? SN_ERR_NOMEM : n;
}

int sn_archive_key(char *out, size_t size, const char *prefix, const char *topic, int64_t ts_ms,
                   int32_t partition, int64_t first, int64_t last) {
    int d = sn_archive_dir(out, size, prefix, topic, ts_ms, partition), n;

    if (d < 0) return d;
    n = snprintf(out + d, size - (size_t)d, "%020" PRId64 "-%020" PRId64 ".avro", first, last);
    return (n < 0 || (size_t)n >= size - (size_t)d) ? SN_ERR_NOMEM : d + n;
}

int sn_archive_parse_name(const char *name, int64_t *first, int64_t *last) {
    const char *slash = strrchr(name, '/');
    char *end;

    if (slash) name = slash + 1;
    if (name[0] < '0' || name[0] > '9') return SN_ERR_INVALID;
    *first = strtoll(name, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9') return SN_ERR_INVALID;
    *last = strtoll(end + 1, &end, 10);
    if (strcmp(end, ".avro") != 0 || *last < *first) return SN_ERR_INVALID;
    return 0;
}

/* ---- small encoders ---------------------------------------------------------- */

void sn_archive_buf_free(sn_archive_buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Doubling growth, never past b->max (0: unbounded, for callers that bound
 * what they append themselves). */
static int buf_reserve(sn_archive_buf_t *b, size_t extra) {
    size_t want = b->len + extra, cap = b->cap ? b->cap : 4096;
    uint8_t *p;

    if (want <= b->cap) return 0;
    if (b->max && want > b->max) return SN_ERR_NOMEM;
    while (cap < want) cap *= 2;
    if (b->max && cap > b->max) cap = b->max;
    if (!(p = realloc(b->p, cap))) return SN_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(sn_archive_buf_t *b, const void *p, size_t n) {
    if (buf_reserve(b, n)) return SN_ERR_NOMEM;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* Avro int and long: zig-zag, then base-128 varint. */
static int buf_long(sn_archive_buf_t *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    uint8_t tmp[10];
    size_t n = 0;

    do {
        uint8_t byte = z & 0x7f;

        z >>= 7;
        tmp[n++] = byte | (z ? 0x80 : 0);
    } while (z);
    return buf_add(b, tmp, n);
}

static int buf_bytes(sn_archive_buf_t *b, const void *p, size_t n) {
    return buf_long(b, (int64_t)n) || buf_add(b, p, n) ? SN_ERR_NOMEM : 0;
}

/* ---- archive schemas --------------------------------------------------------------- */

enum kind_state { KIND_OK, KIND_BAD };

struct sn_archive_kind {
    int32_t id;
    enum kind_state state;
    char err[512]; /* KIND_BAD: why its records go raw */
    char *json;    /* archive schema text */
    avro_schema_t writer;
    sn_wire_t *wire;
};

struct sn_archive_schemas {
    sn_schema_store_t *store;
    struct sn_archive_kind *kinds[SN_ARCHIVE_KINDS_MAX];
    size_t nkinds;
    struct sn_archive_kind raw;
    struct sn_archive_kind *last; /* the previous record's kind: the common case */
    size_t max_alloc;             /* schema.max.alloc.bytes, the validator's bound */
};

static const char *const META_FIELDS =
    "[{\"name\":\"kafka_partition\",\"type\":\"int\",\"doc\":\"Kafka partition of the record.\"},"
    "{\"name\":\"kafka_offset\",\"type\":\"long\",\"doc\":\"Kafka offset of the record.\"},"
    "{\"name\":\"kafka_timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-"
    "millis\"},"
    "\"doc\":\"Kafka timestamp of the record (ms since the epoch; -1 when it had none).\"}]";

static const char *const RAW_SCHEMA =
    "{\"type\":\"record\",\"name\":\"RawRecord\",\"namespace\":\"sentinel.archive\","
    "\"doc\":\"A Kafka record that was not a valid Avro frame of a known schema, kept as bytes.\","
    "\"fields\":[{\"name\":\"key\",\"type\":[\"null\",\"bytes\"]},"
    "{\"name\":\"value\",\"type\":[\"null\",\"bytes\"]},"
    "{\"name\":\"error\",\"type\":\"string\",\"doc\":\"Why the value was not decoded.\"},"
    "{\"name\":\"kafka_partition\",\"type\":\"int\"},{\"name\":\"kafka_offset\",\"type\":\"long\"},"
    "{\"name\":\"kafka_timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-"
    "millis\"}}]}";

sn_archive_schemas_t *sn_archive_schemas_new(const sn_conf_t *conf, char *errstr,
                                             size_t errstr_size) {
    sn_archive_schemas_t *s = calloc(1, sizeof(*s));

    if (!s) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!(s->store = sn_schema_store_new(conf, errstr, errstr_size))) {
        free(s);
        return NULL;
    }
    s->max_alloc = (size_t)sn_conf_int(conf, "schema.max.alloc.bytes");
    s->raw.id = SN_ARCHIVE_RAW_ID;
    s->raw.state = KIND_OK;
    s->raw.json = (char *)RAW_SCHEMA;
    return s;
}

static void kind_free(struct sn_archive_kind *k) {
    if (!k) return;
    sn_wire_destroy(k->wire);
    if (k->writer) avro_schema_decref(k->writer);
    free(k->json);
    free(k);
}

void sn_archive_schemas_destroy(sn_archive_schemas_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nkinds; i++) kind_free(s->kinds[i]);
    sn_schema_store_destroy(s->store);
    free(s);
}

int32_t sn_archive_kind_id(const sn_archive_kind_t *k) { return k->id; }

const char *sn_archive_kind_schema(const sn_archive_kind_t *k) { return k->json; }

/* The archive schema: the writer's record with the Kafka fields appended, or
 * the writer wrapped in a record when appending is not possible. */
static char *archive_schema_json(const char *writer_json, char *why, size_t why_size) {
    json_error_t jerr;
    json_t *w = json_loads(writer_json, JSON_DECODE_ANY, &jerr), *meta = NULL, *out = NULL;
    json_t *fields;
    char *text = NULL;
    int flat = 0;

    meta = json_loads(META_FIELDS, 0, &jerr);
    if (!w || !meta) {
        snprintf(why, why_size, "writer schema is not JSON: %s", jerr.text);
        goto out;
    }
    if (json_is_object(w) && json_is_string(json_object_get(w, "type")) &&
        strcmp(json_string_value(json_object_get(w, "type")), "record") == 0 &&
        json_is_array(fields = json_object_get(w, "fields"))) {
        size_t i;
        json_t *f;

        flat = 1;
        json_array_foreach(fields, i, f) {
            const char *n = json_string_value(json_object_get(f, "name"));

            if (n && (strcmp(n, "kafka_partition") == 0 || strcmp(n, "kafka_offset") == 0 ||
                      strcmp(n, "kafka_timestamp") == 0))
                flat = 0;
        }
    }
    if (flat) {
        out = json_deep_copy(w);
        json_array_extend(json_object_get(out, "fields"), meta);
    } else {
        json_t *vf = json_pack("{s:s,s:O}", "name", "value", "type", w);

        out = json_pack("{s:s,s:s,s:s,s:[o]}", "type", "record", "name", "ArchivedValue",
                        "namespace", "sentinel.archive", "fields", vf);
        if (out) json_array_extend(json_object_get(out, "fields"), meta);
    }
    if (!out || !(text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        snprintf(why, why_size, "out of memory");
out:
    json_decref(w);
    json_decref(meta);
    json_decref(out);
    return text;
}

/* Loads the kind of writer schema id: a registry that cannot be reached is
 * transient (the caller retries); an unknown id or an unusable schema makes a
 * BAD kind whose records are archived raw. */
static int kind_load(sn_archive_schemas_t *s, int32_t id, struct sn_archive_kind **out,
                     char *errstr, size_t errstr_size) {
    struct sn_archive_kind *k;
    char *wjson = NULL, why[256];
    int rc;

    *out = NULL;
    if (s->nkinds >= SN_ARCHIVE_KINDS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "more than %d writer schema ids",
                          SN_ARCHIVE_KINDS_MAX);
    rc = sn_schema_store_fetch(s->store, id, &wjson, why, sizeof(why));
    if (rc == SN_ERR_TRANSIENT || rc == SN_ERR_FATAL || rc == SN_ERR_IO || rc == SN_ERR_NOMEM) {
        free(wjson);
        return sn_err_set(errstr, errstr_size, rc == SN_ERR_NOMEM ? SN_ERR_NOMEM : SN_ERR_TRANSIENT,
                          "schema id %d: %s", (int)id, why);
    }
    if (!(k = calloc(1, sizeof(*k)))) {
        free(wjson);
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    }
    k->id = id;
    k->state = KIND_BAD;
    if (rc != 0) {
        snprintf(k->err, sizeof(k->err), "unknown schema id %d: %s", (int)id, why);
    } else if (avro_schema_from_json_length(wjson, strlen(wjson), &k->writer) != 0) {
        snprintf(k->err, sizeof(k->err), "schema id %d does not parse: %s", (int)id,
                 avro_strerror());
        k->writer = NULL;
    } else if (!(k->wire = sn_wire_new(k->writer, why, sizeof(why)))) {
        snprintf(k->err, sizeof(k->err), "schema id %d: %s", (int)id, why);
    } else if (!(k->json = archive_schema_json(wjson, why, sizeof(why)))) {
        snprintf(k->err, sizeof(k->err), "schema id %d: %s", (int)id, why);
    } else {
        k->state = KIND_OK;
    }
    if (k->state == KIND_BAD) sn_log_warn("archive", "%s; its records are archived raw", k->err);
    free(wjson);
    s->kinds[s->nkinds++] = k;
    *out = k;
    return 0;
}

/* RawRecord: key and value as ["null","bytes"] unions, then the reason; the
 * Kafka fields are appended by the caller as for any kind. */
static int encode_raw(sn_archive_schemas_t *s, const sn_record_t *r, const char *why,
                      sn_archive_buf_t *out, const sn_archive_kind_t **kind) {
    out->len = 0;
    if ((r->key ? buf_long(out, 1) || buf_bytes(out, r->key, r->keylen) : buf_long(out, 0)) ||
        (r->value ? buf_long(out, 1) || buf_bytes(out, r->value, r->len) : buf_long(out, 0)) ||
        buf_bytes(out, why, strlen(why)))
        return SN_ERR_NOMEM;
    *kind = &s->raw;
    return 0;
}

/* The fast path is one id comparison, a validation walk and a memcpy: the
 * frame's Avro bytes are already the archive datum minus three varints. */
int sn_archive_encode(sn_archive_schemas_t *s, const sn_record_t *r, sn_archive_buf_t *out,
                      const sn_archive_kind_t **kind, int *invalid, char *errstr,
                      size_t errstr_size) {
    const uint8_t *v = r->value;
    struct sn_archive_kind *k = NULL;
    char why[512];
    int32_t id;
    int rc;

    *invalid = 0;
    out->len = 0;
    if (!v || r->len < 5 || v[0] != 0) {
        snprintf(why, sizeof(why), "%s",
                 !v           ? "null value"
                 : r->len < 5 ? "shorter than a frame header"
                              : "bad magic byte");
        goto raw;
    }
    id = (int32_t)(((uint32_t)v[1] << 24) | ((uint32_t)v[2] << 16) | ((uint32_t)v[3] << 8) | v[4]);
    if (s->last && s->last->id == id) {
        k = s->last;
    } else {
        for (size_t i = 0; i < s->nkinds; i++)
            if (s->kinds[i]->id == id) k = s->kinds[i];
        if (!k && (rc = kind_load(s, id, &k, errstr, errstr_size)) != 0) return rc;
        s->last = k;
    }
    if (k->state != KIND_OK) {
        snprintf(why, sizeof(why), "%s", k->err);
        goto raw;
    }
    {
        enum sn_codec_error_class cls = SN_CODEC_OK;

        if (sn_wire_check(k->wire, v + 5, r->len - 5, s->max_alloc, &cls, why, sizeof(why)) != 0)
            goto raw;
    }
    if (buf_add(out, v + 5, r->len - 5) || buf_long(out, r->partition) ||
        buf_long(out, r->offset) || buf_long(out, r->timestamp_ms))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM,
                          "record at %s/%d/%" PRId64 " too large", r->topic, (int)r->partition,
                          r->offset);
    *kind = k;
    return 0;
raw:
    *invalid = 1;
    if (encode_raw(s, r, why, out, kind) || buf_long(out, r->partition) ||
        buf_long(out, r->offset) || buf_long(out, r->timestamp_ms))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM,
                          "record at %s/%d/%" PRId64 " too large", r->topic, (int)r->partition,
                          r->offset);
    return 0;
}

/* ---- CRC-32 and snappy ------------------------------------------------------------- */

/* CRC-32, slicing by 8 (eight table lookups per 8 bytes instead of one per
 * byte): the Avro snappy codec appends it, big-endian, to every block, and a
 * byte-at-a-time loop was the archiver's largest cost in a profile. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t x = i;

        for (int k = 0; k < 8; k++) x = (x & 1) ? 0xedb88320u ^ (x >> 1) : x >> 1;
        crc_table[0][i] = x;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t sn_archive_crc32(const void *buf, size_t n) {
    const uint8_t *p = buf;
    uint32_t c = 0xffffffffu;

    pthread_once(&crc_once, crc_init);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n >= 8) {
        uint32_t lo, hi;

        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
            crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
#endif
    while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

#define SNAPPY_FRAGMENT 65536 /* offsets stay below 64 KiB: 1- and 2-byte copy tags */
#define SNAPPY_TABLE_BITS 14
#define SNAPPY_MARGIN 15

size_t sn_archive_snappy_bound(size_t n) { return 32 + n + n / 6; }

static uint32_t load32(const uint8_t *p) {
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static uint64_t load64(const uint8_t *p) {
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

static uint32_t snappy_hash(uint32_t u) { return (u * 0x1e35a7bdu) >> (32 - SNAPPY_TABLE_BITS); }

static size_t emit_literal(uint8_t *d, const uint8_t *lit, size_t n) {
    size_t i = 0, m = n - 1;

    if (m < 60) {
        d[i++] = (uint8_t)(m << 2);
    } else if (m < 256) {
        d[i++] = 60 << 2;
        d[i++] = (uint8_t)m;
    } else {
        d[i++] = 61 << 2;
        d[i++] = (uint8_t)m;
        d[i++] = (uint8_t)(m >> 8);
    }
    memcpy(d + i, lit, n);
    return i + n;
}

static size_t emit_copy(uint8_t *d, size_t offset, size_t len) {
    size_t i = 0;

    while (len >= 68) {
        d[i++] = 63 << 2 | 2;
        d[i++] = (uint8_t)offset;
        d[i++] = (uint8_t)(offset >> 8);
        len -= 64;
    }
    if (len > 64) {
        d[i++] = 59 << 2 | 2;
        d[i++] = (uint8_t)offset;
        d[i++] = (uint8_t)(offset >> 8);
        len -= 60;
    }
    if (len >= 12 || offset >= 2048) {
        d[i++] = (uint8_t)((len - 1) << 2 | 2);
        d[i++] = (uint8_t)offset;
        d[i++] = (uint8_t)(offset >> 8);
        return i;
    }
    d[i++] = (uint8_t)((offset >> 8) << 5 | (len - 4) << 2 | 1);
    d[i++] = (uint8_t)offset;
    return i;
}

/* One fragment of at most 64 KiB: greedy matching of 4-byte sequences found
 * through a hash table, with the skip heuristic of the reference encoder
 * (look further apart the longer nothing matched), as in Go's snappy. */
static size_t encode_fragment(const uint8_t *src, size_t n, uint8_t *dst) {
    uint16_t table[1 << SNAPPY_TABLE_BITS];
    size_t d = 0, next_emit = 0, s = 1, limit = n - SNAPPY_MARGIN, candidate = 0;
    uint32_t next_hash;

    memset(table, 0, sizeof(table));
    next_hash = snappy_hash(load32(src + s));
    for (;;) {
        size_t skip = 32, next_s = s;

        for (;;) {
            size_t step;

            s = next_s;
            step = skip >> 5;
            next_s = s + step;
            skip += step;
            if (next_s > limit) goto remainder;
            candidate = table[next_hash];
            table[next_hash] = (uint16_t)s;
            next_hash = snappy_hash(load32(src + next_s));
            if (load32(src + s) == load32(src + candidate)) break;
        }
        d += emit_literal(dst + d, src + next_emit, s - next_emit);
        for (;;) {
            size_t base = s, i = candidate + 4;
            uint64_t x;
            uint32_t prev_hash, cur_hash;

            s += 4;
            while (s < n && src[i] == src[s]) i++, s++;
            d += emit_copy(dst + d, base - candidate, s - base);
            next_emit = s;
            if (s >= limit) goto remainder;
            x = load64(src + s - 1);
            prev_hash = snappy_hash((uint32_t)x);
            table[prev_hash] = (uint16_t)(s - 1);
            cur_hash = snappy_hash((uint32_t)(x >> 8));
            candidate = table[cur_hash];
            table[cur_hash] = (uint16_t)s;
            if ((uint32_t)(x >> 8) != load32(src + candidate)) {
                next_hash = snappy_hash((uint32_t)(x >> 16));
                s++;
                break;
            }
        }
    }
remainder:
    if (next_emit < n) d += emit_literal(dst + d, src + next_emit, n - next_emit);
    return d;
}

/* The snappy block format: a varint length, then literals and copies; input
 * is cut in 64 KiB fragments like the reference encoder, which keeps every
 * offset in two bytes and the hash table small. */
size_t sn_archive_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst) {
    size_t d = 0, v = n;

    do { /* the preamble: the uncompressed length as a varint */
        dst[d++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    for (size_t off = 0; off < n; off += SNAPPY_FRAGMENT) {
        size_t len = n - off < SNAPPY_FRAGMENT ? n - off : SNAPPY_FRAGMENT;

        if (len < 1 + 1 + SNAPPY_MARGIN)
            d += emit_literal(dst + d, src + off, len);
        else
            d += encode_fragment(src + off, len, dst + d);
    }
    return d;
}

/* ---- object container files -------------------------------------------------------- */

struct sn_archive_file {
    int fd;
    char *path;
    uint8_t sync[16];
    sn_archive_buf_t block; /* encoded datums of the block being filled */
    sn_archive_buf_t out;   /* the block as written: count, size, snappy, crc, sync */
    int64_t block_count;
    size_t block_bytes;
    int64_t written;     /* bytes in the file */
    int64_t raw_flushed; /* uncompressed bytes of the blocks written */
    int64_t records;
};

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return SN_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The header is written at once, so a file on disk is always a valid (maybe
 * empty) container up to its last whole block. */
sn_archive_file_t *sn_archive_file_open(const char *path, const char *schema_json, uint64_t seed,
                                        size_t block_bytes, char *errstr, size_t errstr_size) {
    sn_archive_file_t *f = calloc(1, sizeof(*f));
    sn_archive_buf_t hdr = {0};
    uint64_t a, b, x = seed;

    if (!f) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->fd = -1;
    f->block_bytes = block_bytes;
    a = splitmix(&x);
    b = splitmix(&x);
    memcpy(f->sync, &a, 8);
    memcpy(f->sync + 8, &b, 8);
    if (!(f->path = strdup(path))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    /* Header: magic, the metadata map {avro.schema, avro.codec}, sync marker. */
    if (buf_add(&hdr, "Obj\x01", 4) || buf_long(&hdr, 2) || buf_bytes(&hdr, "avro.schema", 11) ||
        buf_bytes(&hdr, schema_json, strlen(schema_json)) || buf_bytes(&hdr, "avro.codec", 10) ||
        buf_bytes(&hdr, "snappy", 6) || buf_long(&hdr, 0) || buf_add(&hdr, f->sync, 16)) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (write_all(f->fd, hdr.p, hdr.len) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    f->written = (int64_t)hdr.len;
    sn_archive_buf_free(&hdr);
    return f;
fail:
    sn_archive_buf_free(&hdr);
    sn_archive_file_discard(f);
    return NULL;
}

/* One block: count, size, snappy data, CRC, sync, written with one write(). */
static int flush_block(sn_archive_file_t *f, char *errstr, size_t errstr_size) {
    size_t bound, clen;
    uint32_t crc;
    uint8_t be[4];

    if (f->block_count == 0) return 0;
    bound = sn_archive_snappy_bound(f->block.len);
    f->out.len = 0;
    if (buf_long(&f->out, f->block_count) || buf_reserve(&f->out, 10 + bound + 4 + 16))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    {
        /* the size varint precedes the data: compress after a gap, then move */
        size_t at = f->out.len, gap = 10;
        uint8_t *data = f->out.p + at + gap;

        clen = sn_archive_snappy_compress(f->block.p, f->block.len, data);
        crc = sn_archive_crc32(f->block.p, f->block.len);
        be[0] = (uint8_t)(crc >> 24), be[1] = (uint8_t)(crc >> 16), be[2] = (uint8_t)(crc >> 8),
        be[3] = (uint8_t)crc;
        buf_long(&f->out, (int64_t)(clen + 4)); /* fits: reserved above */
        memmove(f->out.p + f->out.len, data, clen);
        f->out.len += clen;
        buf_add(&f->out, be, 4);
        buf_add(&f->out, f->sync, 16);
    }
    if (write_all(f->fd, f->out.p, f->out.len) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", f->path, strerror(errno));
    f->written += (int64_t)f->out.len;
    f->raw_flushed += (int64_t)f->block.len;
    f->block.len = 0;
    f->block_count = 0;
    return 0;
}

/* A block is flushed before it would pass block_bytes; a record larger than
 * a block gets a block of its own (avro-c refuses such a record). */
int sn_archive_file_append(sn_archive_file_t *f, const void *datum, size_t len, char *errstr,
                           size_t errstr_size) {
    int rc;

    if (f->block_count > 0 && f->block.len + len > f->block_bytes &&
        (rc = flush_block(f, errstr, errstr_size)) != 0)
        return rc;
    if (buf_add(&f->block, datum, len))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    f->block_count++;
    f->records++;
    if (f->block.len >= f->block_bytes) return flush_block(f, errstr, errstr_size);
    return 0;
}

int64_t sn_archive_file_size(const sn_archive_file_t *f) {
    /* the pending block at the compression ratio seen so far */
    double ratio = f->raw_flushed > 0 ? (double)(f->written) / (double)f->raw_flushed : 1.0;

    if (ratio > 1.0) ratio = 1.0;
    return f->written + (int64_t)((double)f->block.len * ratio);
}

int64_t sn_archive_file_records(const sn_archive_file_t *f) { return f->records; }

int sn_archive_file_close(sn_archive_file_t *f, char *errstr, size_t errstr_size) {
    int rc = flush_block(f, errstr, errstr_size);

    if (close(f->fd) != 0 && rc == 0)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", f->path, strerror(errno));
    f->fd = -1;
    sn_archive_buf_free(&f->block);
    sn_archive_buf_free(&f->out);
    free(f->path);
    free(f);
    return rc;
}

void sn_archive_file_discard(sn_archive_file_t *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->path) unlink(f->path);
    sn_archive_buf_free(&f->block);
    sn_archive_buf_free(&f->out);
    free(f->path);
    free(f);
}
