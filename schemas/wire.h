/* wire.h (internal to schemas/): a non-allocating validator of Avro binary.
 *
 * Walks one record against its writer schema the way a decoder would, but
 * only checks: every varint well formed and in range, every length and block
 * count non-negative and within the bytes left, every union and enum index in
 * range, booleans 0 or 1, nesting bounded, and the record ending exactly at the
 * end of the buffer. avro-c is only handed data that passed, so its
 * allocate-before-check reads never see an absurd length. The schema is
 * compiled once per writer id into a small node graph (recursive named types
 * become cycles, bounded at walk time by the depth limit). */
#ifndef SN_SCHEMAS_WIRE_H
#define SN_SCHEMAS_WIRE_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "schemas/codec.h"

#define SN_WIRE_MAX_DEPTH 32         /* nested records/arrays/maps/unions */
#define SN_WIRE_MAX_NODES 4096       /* schema nodes per writer schema */
#define SN_WIRE_MAX_EMPTY_ITEMS 4096 /* items of a zero-byte type per array */

typedef struct sn_wire sn_wire_t;

/* Compiles schema (borrowed; must outlive the result, which keeps field names
 * pointing into it). NULL with errstr on an unsupported or oversized schema. */
sn_wire_t *sn_wire_new(avro_schema_t schema, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_wire_destroy(sn_wire_t *wire);

/* Validates buf[0..len) (borrowed) as exactly one record. max_len bounds any
 * single string/bytes length (the allocation cap). Returns 0, or SN_ERR_INVALID
 * with *cls and a message naming the field. */
int sn_wire_check(const sn_wire_t *wire, const uint8_t *buf, size_t len, size_t max_len,
                  enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);

/* Walks the one record at the start of buf[0..len) (borrowed) as
 * sn_wire_check does, and sets *used to its length in bytes: bytes may follow
 * (the next datum of a container block). */
int sn_wire_measure(const sn_wire_t *wire, const uint8_t *buf, size_t len, size_t max_len,
                    size_t *used, enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF). */
int sn_wire_utf8_valid(const char *s, size_t len);

#endif
