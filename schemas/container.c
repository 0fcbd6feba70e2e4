/* container.c: the archive's Avro object container files, read with bounds
 * checks at every step. See container.h. */
#include "schemas/container.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define META_MAX 64 /* header metadata entries */

enum codec_kind { CODEC_NULL, CODEC_SNAPPY };

struct sn_container {
    sn_codec_t *codec;
    sn_codec_writer_t *writer;
    char name[512];
    const uint8_t *p, *end; /* the unread rest of the file */
    uint8_t sync[16];
    enum codec_kind kind;
    int raw;
    int broken;               /* a structural error was returned: stay at the end */
    uint8_t *block;           /* the current block, uncompressed (snappy) */
    const uint8_t *bp, *bend; /* the unread datums of the current block */
    int64_t left;             /* datums left in the current block */
    uint64_t block_no;
};

/* ---- helpers ---- */

static int rd_long(const uint8_t **p, const uint8_t *end, int64_t *out) {
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;

        if (*p >= end) return -1;
        b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

static int rd_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n) {
    int64_t len;

    if (rd_long(p, end, &len) != 0 || len < 0 || len > end - *p) return -1;
    *s = *p;
    *n = (size_t)len;
    *p += len;
    return 0;
}

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t x = i;

        for (int k = 0; k < 8; k++) x = (x & 1) ? 0xedb88320u ^ (x >> 1) : x >> 1;
        crc_table[i] = x;
    }
}

/* CRC-32 (IEEE): the Avro snappy codec's check of each block. A byte at a
 * time is enough on the read side: decoding costs far more. */
static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;

    pthread_once(&crc_once, crc_init);
    while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* A structural error: the object is unusable from here on. */
static int broken(sn_container_t *c, char *errstr, size_t errstr_size, const char *what) {
    c->broken = 1;
    return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s (block %" PRIu64 ")", c->name, what,
                      c->block_no);
}

/* ---- snappy ---- */

/* The snappy block format: a varint length, then literals and back
 * references. Every length and offset is checked against the output so far
 * and the input left: archive objects come from storage anyone may write. */
int sn_container_unsnappy(const uint8_t *src, size_t n, size_t max, uint8_t **out,
                          size_t *out_len) {
    const uint8_t *p = src, *end = src + n;
    uint64_t want = 0;
    uint8_t *dst = NULL;
    size_t d = 0;
    int shift = 0;

    for (;;) {
        if (p >= end || shift > 35) return SN_ERR_INVALID;
        want |= (uint64_t)(*p & 0x7f) << shift;
        shift += 7;
        if (!(*p++ & 0x80)) break;
    }
    if (want > max) return SN_ERR_NOMEM;
    if (!(dst = malloc(want ? want : 1))) return SN_ERR_NOMEM;
    while (p < end) {
        uint8_t tag = *p++;
        size_t len, off;

        if ((tag & 3) == 0) { /* literal */
            len = (size_t)(tag >> 2);
            if (len >= 60) {
                size_t nb = len - 59;

                if (nb > 4 || (size_t)(end - p) < nb) goto bad;
                len = 0;
                for (size_t i = 0; i < nb; i++) len |= (size_t)p[i] << (8 * i);
                p += nb;
            }
            len++;
            if ((size_t)(end - p) < len || want - d < len) goto bad;
            memcpy(dst + d, p, len);
            p += len;
            d += len;
            continue;
        }
        if ((tag & 3) == 1) {
            if (p >= end) goto bad;
            len = 4 + ((tag >> 2) & 7);
            off = ((size_t)(tag >> 5) << 8) | *p++;
        } else if ((tag & 3) == 2) {
            if (end - p < 2) goto bad;
            len = 1 + (tag >> 2);
            off = (size_t)p[0] | ((size_t)p[1] << 8);
            p += 2;
        } else {
            if (end - p < 4) goto bad;
            len = 1 + (tag >> 2);
            off = (size_t)p[0] | ((size_t)p[1] << 8) | ((size_t)p[2] << 16) | ((size_t)p[3] << 24);
            p += 4;
        }
        if (off == 0 || off > d || want - d < len) goto bad;
        for (size_t i = 0; i < len; i++, d++) dst[d] = dst[d - off]; /* may overlap */
    }
    if (d != want) goto bad;
    *out = dst;
    *out_len = d;
    return 0;
bad:
    free(dst);
    return SN_ERR_INVALID;
}

/* ---- the file ---- */

/* Header: magic, the metadata map, the sync marker. The schema text is
 * compiled into a writer of the codec; the codec must be null or snappy
 * (what the archiver writes). */
sn_container_t *sn_container_open(sn_codec_t *codec, const void *buf, size_t len, const char *name,
                                  char *errstr, size_t errstr_size) {
    sn_container_t *c = calloc(1, sizeof(*c));
    const uint8_t *schema = NULL, *cname = NULL;
    size_t schema_len = 0, cname_len = 0, nmeta = 0;
    char why[256];

    if (!c) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->codec = codec;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->p = buf;
    c->end = c->p + len;
    if (len < 4 || memcmp(c->p, "Obj\x01", 4) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: not an Avro object container file",
                   c->name);
        goto fail;
    }
    c->p += 4;
    for (;;) {
        int64_t count, size;

        if (rd_long(&c->p, c->end, &count) != 0) goto truncated;
        if (count == 0) break;
        if (count < 0) {
            count = -count;
            if (rd_long(&c->p, c->end, &size) != 0) goto truncated;
        }
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *k, *v;
            size_t kl, vl;

            if (++nmeta > META_MAX) {
                sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: more than %d header entries",
                           c->name, META_MAX);
                goto fail;
            }
            if (rd_bytes(&c->p, c->end, &k, &kl) != 0 || rd_bytes(&c->p, c->end, &v, &vl) != 0)
                goto truncated;
            if (kl == 11 && memcmp(k, "avro.schema", 11) == 0) schema = v, schema_len = vl;
            if (kl == 10 && memcmp(k, "avro.codec", 10) == 0) cname = v, cname_len = vl;
        }
    }
    if (c->end - c->p < 16) goto truncated;
    memcpy(c->sync, c->p, 16);
    c->p += 16;
    if (!schema) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: no avro.schema in the header", c->name);
        goto fail;
    }
    if (!cname || (cname_len == 4 && memcmp(cname, "null", 4) == 0)) {
        c->kind = CODEC_NULL;
    } else if (cname_len == 6 && memcmp(cname, "snappy", 6) == 0) {
        c->kind = CODEC_SNAPPY;
    } else {
        sn_err_set(errstr, errstr_size, SN_ERR_UNSUPPORTED,
                   "%s: codec \"%.*s\" (the archive writes snappy or null)", c->name,
                   (int)(cname_len < 32 ? cname_len : 32), (const char *)cname);
        goto fail;
    }
    if (!(c->writer =
              sn_codec_writer_new(codec, (const char *)schema, schema_len, why, sizeof(why)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: header schema: %s", c->name, why);
        goto fail;
    }
    c->raw = strcmp(sn_codec_writer_name(c->writer), "RawRecord") == 0;
    return c;
truncated:
    sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: truncated inside the header", c->name);
fail:
    sn_container_destroy(c);
    return NULL;
}

void sn_container_destroy(sn_container_t *c) {
    if (!c) return;
    sn_codec_writer_destroy(c->codec, c->writer);
    free(c->block);
    free(c);
}

int sn_container_is_raw(const sn_container_t *c) { return c->raw; }

const char *sn_container_schema_name(const sn_container_t *c) {
    return sn_codec_writer_name(c->writer);
}

/* Moves to the next block with datums: count, size, data, sync marker. A
 * block that ends past the file, a wrong sync marker or CRC is a damaged
 * object (a partial upload, a truncated copy). Returns 1, 0 at the end. */
static int next_block(sn_container_t *c, char *errstr, size_t errstr_size) {
    while (c->left == 0) {
        int64_t count, size;
        const uint8_t *data;

        if (c->p == c->end) return 0;
        c->block_no++;
        if (rd_long(&c->p, c->end, &count) != 0 || rd_long(&c->p, c->end, &size) != 0)
            return broken(c, errstr, errstr_size, "truncated in a block header");
        if (count < 0 || size < 0)
            return broken(c, errstr, errstr_size, "negative block count or size");
        if (size > c->end - c->p || c->end - c->p - size < 16)
            return broken(c, errstr, errstr_size, "truncated: a block runs past the end");
        data = c->p;
        c->p += size;
        if (memcmp(c->p, c->sync, 16) != 0)
            return broken(c, errstr, errstr_size, "sync marker does not match the header's");
        c->p += 16;
        free(c->block);
        c->block = NULL;
        if (c->kind == CODEC_NULL) {
            c->bp = data;
            c->bend = data + size;
        } else {
            size_t n = 0;
            uint32_t crc;
            int rc;

            if (size < 4) return broken(c, errstr, errstr_size, "snappy block without its CRC");
            rc = sn_container_unsnappy(data, (size_t)size - 4, SN_CONTAINER_BLOCK_MAX, &c->block,
                                       &n);
            if (rc == SN_ERR_NOMEM)
                return broken(c, errstr, errstr_size, "a block over 64 MiB uncompressed");
            if (rc != 0) return broken(c, errstr, errstr_size, "malformed snappy data");
            crc = ((uint32_t)data[size - 4] << 24) | ((uint32_t)data[size - 3] << 16) |
                  ((uint32_t)data[size - 2] << 8) | data[size - 1];
            if (crc != crc32_ieee(c->block, n))
                return broken(c, errstr, errstr_size, "CRC-32 of the block does not match");
            c->bp = c->block;
            c->bend = c->block + n;
        }
        c->left = count;
        if (count == 0 && c->bp != c->bend)
            return broken(c, errstr, errstr_size, "bytes in a block of 0 records");
    }
    return 1;
}

/* The next datum's bounds in the current block; its length comes from the
 * validator's walk, since datums carry no length. */
static int next_datum(sn_container_t *c, const uint8_t **d, size_t *n, char *errstr,
                      size_t errstr_size) {
    char why[256];
    int rc;

    if (c->broken) return 0;
    if ((rc = next_block(c, errstr, errstr_size)) <= 0) return rc;
    if (sn_codec_writer_measure(c->codec, c->writer, c->bp, (size_t)(c->bend - c->bp), n, why,
                                sizeof(why)) != 0) {
        char what[320];

        snprintf(what, sizeof(what), "a record does not fit its block: %s", why);
        return broken(c, errstr, errstr_size, what);
    }
    *d = c->bp;
    c->bp += *n;
    if (--c->left == 0 && c->bp != c->bend)
        return broken(c, errstr, errstr_size, "bytes after the last record of a block");
    return 1;
}

static void fill_meta(const sn_container_t *c, sn_container_meta_t *meta) {
    int64_t v = -1;

    if (!meta) return;
    meta->partition = sn_codec_writer_long(c->writer, "kafka_partition", &v) == 0 ? (int32_t)v : -1;
    meta->offset = sn_codec_writer_long(c->writer, "kafka_offset", &v) == 0 ? v : -1;
    meta->timestamp_ms = sn_codec_writer_long(c->writer, "kafka_timestamp", &v) == 0 ? v : -1;
}

int sn_container_next_event(sn_container_t *c, sn_event_t *ev, sn_container_meta_t *meta,
                            char *errstr, size_t errstr_size) {
    const uint8_t *d = NULL;
    size_t n = 0;
    char why[512];
    int rc;

    if ((rc = next_datum(c, &d, &n, errstr, errstr_size)) <= 0) return rc;
    if ((rc = sn_codec_decode_datum(c->codec, c->writer, d, n, ev, NULL, why, sizeof(why))) != 0)
        return sn_err_set(errstr, errstr_size, rc, "%s: a record: %s", c->name, why);
    fill_meta(c, meta);
    return 1;
}

int sn_container_next_score(sn_container_t *c, sn_score_t *sc, sn_container_meta_t *meta,
                            char *errstr, size_t errstr_size) {
    const uint8_t *d = NULL;
    size_t n = 0;
    char why[512];
    int rc;

    if ((rc = next_datum(c, &d, &n, errstr, errstr_size)) <= 0) return rc;
    if ((rc = sn_codec_decode_score_datum(c->codec, c->writer, d, n, sc, NULL, why, sizeof(why))) !=
        0)
        return sn_err_set(errstr, errstr_size, rc, "%s: a record: %s", c->name, why);
    fill_meta(c, meta);
    return 1;
}
