#include "schemas/wire.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

enum wtype {
    W_NULL,
    W_BOOL,
    W_INT,
    W_LONG,
    W_FLOAT,
    W_DOUBLE,
    W_BYTES,
    W_STRING,
    W_FIXED,
    W_ENUM,
    W_ARRAY,
    W_MAP,
    W_UNION,
    W_RECORD,
};

struct node {
    enum wtype type;
    uint32_t n;           /* fixed size, enum symbols, union branches, record fields */
    size_t min_size;      /* fewest bytes one value takes (a lower bound) */
    size_t mem_size;      /* avro-c storage of one value in a generic array/map (upper bound) */
    struct node **kids;   /* array/map: 1, union: n branches, record: n fields */
    const char **names;   /* record field names, borrowed from the schema */
    avro_schema_t schema; /* borrowed; identifies named types while compiling */
};

struct sn_wire {
    struct node **nodes; /* every node, for destroy */
    size_t nnodes;
    struct node *root;
};

struct cursor {
    const uint8_t *p, *end;
    size_t max_len;
    const char *field; /* innermost record field being read, for messages */
    enum sn_codec_error_class *cls;
    char *errstr;
    size_t errstr_size;
};

static void node_free(struct node *n) {
    if (!n) return;
    free(n->kids);
    free(n->names);
    free(n);
}

void sn_wire_destroy(sn_wire_t *wire) {
    if (!wire) return;
    for (size_t i = 0; i < wire->nnodes; i++) node_free(wire->nodes[i]);
    free(wire->nodes);
    free(wire);
}

/* Named types (record, enum, fixed) are compiled once and shared, so that a
 * recursive schema (a link back to an enclosing record) becomes a cycle in the
 * graph instead of infinite compilation. Lookup is linear: schemas are small
 * and this runs once per writer id. */
static struct node *find_named(const sn_wire_t *w, avro_schema_t s) {
    for (size_t i = 0; i < w->nnodes; i++)
        if (w->nodes[i]->schema == s) return w->nodes[i];
    return NULL;
}

static struct node *add_node(sn_wire_t *w, avro_schema_t s, enum wtype t, uint32_t nkids,
                             char *errstr, size_t errstr_size) {
    struct node *n = NULL;
    struct node **grown = NULL;

    if (w->nnodes >= SN_WIRE_MAX_NODES) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "schema has more than %d nodes",
                   SN_WIRE_MAX_NODES);
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    grown = n ? realloc(w->nodes, (w->nnodes + 1) * sizeof(*grown)) : NULL;
    if (!grown) goto nomem;
    w->nodes = grown;
    if (nkids) {
        n->kids = calloc(nkids, sizeof(*n->kids));
        if (!n->kids) goto nomem;
    }
    n->type = t;
    n->schema = s;
    w->nodes[w->nnodes++] = n;
    return n;
nomem:
    free(n);
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory compiling schema");
    return NULL;
}

static struct node *compile(sn_wire_t *w, avro_schema_t s, int depth, char *errstr,
                            size_t errstr_size) {
    struct node *n = NULL;

    if (depth > SN_WIRE_MAX_DEPTH * 4) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "schema nested too deeply");
        return NULL;
    }
    if (is_avro_link(s)) s = avro_schema_link_target(s);
    if ((is_avro_record(s) || is_avro_enum(s) || is_avro_fixed(s)) && (n = find_named(w, s)))
        return n;

    switch (avro_typeof(s)) {
    case AVRO_NULL: return add_node(w, s, W_NULL, 0, errstr, errstr_size);
    case AVRO_BOOLEAN: return add_node(w, s, W_BOOL, 0, errstr, errstr_size);
    case AVRO_INT32: return add_node(w, s, W_INT, 0, errstr, errstr_size);
    case AVRO_INT64: return add_node(w, s, W_LONG, 0, errstr, errstr_size);
    case AVRO_FLOAT: return add_node(w, s, W_FLOAT, 0, errstr, errstr_size);
    case AVRO_DOUBLE: return add_node(w, s, W_DOUBLE, 0, errstr, errstr_size);
    case AVRO_BYTES: return add_node(w, s, W_BYTES, 0, errstr, errstr_size);
    case AVRO_STRING: return add_node(w, s, W_STRING, 0, errstr, errstr_size);
    case AVRO_FIXED:
        if (!(n = add_node(w, s, W_FIXED, 0, errstr, errstr_size))) return NULL;
        n->n = (uint32_t)avro_schema_fixed_size(s);
        return n;
    case AVRO_ENUM:
        if (!(n = add_node(w, s, W_ENUM, 0, errstr, errstr_size))) return NULL;
        n->n = (uint32_t)avro_schema_enum_number_of_symbols(s);
        return n;
    case AVRO_ARRAY:
    case AVRO_MAP:
        if (!(n = add_node(w, s, is_avro_array(s) ? W_ARRAY : W_MAP, 1, errstr, errstr_size)))
            return NULL;
        n->n = 1;
        n->kids[0] =
            compile(w, is_avro_array(s) ? avro_schema_array_items(s) : avro_schema_map_values(s),
                    depth + 1, errstr, errstr_size);
        return n->kids[0] ? n : NULL;
    case AVRO_UNION: {
        size_t nb = avro_schema_union_size(s);

        if (nb == 0 || nb > 1024) {
            sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "union with %zu branches", nb);
            return NULL;
        }
        if (!(n = add_node(w, s, W_UNION, (uint32_t)nb, errstr, errstr_size))) return NULL;
        n->n = (uint32_t)nb;
        for (size_t i = 0; i < nb; i++)
            if (!(n->kids[i] =
                      compile(w, avro_schema_union_branch(s, i), depth + 1, errstr, errstr_size)))
                return NULL;
        return n;
    }
    case AVRO_RECORD: {
        size_t nf = avro_schema_record_size(s);

        if (nf > 4096) {
            sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "record with %zu fields", nf);
            return NULL;
        }
        if (!(n = add_node(w, s, W_RECORD, (uint32_t)nf, errstr, errstr_size))) return NULL;
        n->n = (uint32_t)nf;
        if (nf && !(n->names = calloc(nf, sizeof(*n->names)))) {
            sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory compiling schema");
            return NULL;
        }
        for (size_t i = 0; i < nf; i++) {
            n->names[i] = avro_schema_record_field_name(s, (int)i);
            if (!(n->kids[i] = compile(w, avro_schema_record_field_get_by_index(s, (int)i),
                                       depth + 1, errstr, errstr_size)))
                return NULL;
        }
        return n;
    }
    default:
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "unsupported Avro type %d",
                   (int)avro_typeof(s));
        return NULL;
    }
}

/* A lower bound of the encoded size of one value, used to refuse an array or
 * map whose item count cannot fit in the bytes left. Recursion (cycles) is cut
 * off at a small depth by answering 0, which only weakens the bound. */
static size_t min_size(const struct node *n, int depth) {
    size_t sum = 0, m;

    if (depth > 8) return 0;
    switch (n->type) {
    case W_NULL: return 0;
    case W_FLOAT: return 4;
    case W_DOUBLE: return 8;
    case W_FIXED: return n->n;
    case W_RECORD:
        for (uint32_t i = 0; i < n->n; i++) sum += min_size(n->kids[i], depth + 1);
        return sum;
    case W_UNION:
        m = SIZE_MAX;
        for (uint32_t i = 0; i < n->n; i++) {
            size_t b = min_size(n->kids[i], depth + 1);
            if (b < m) m = b;
        }
        return 1 + m;
    default: return 1; /* bool, varints, strings, enum, array, map */
    }
}

/* An upper bound of what avro-c's generic value needs to store one item of
 * this type inside an array or map (its raw array element, not counting the
 * string bytes, which are allocated and capped separately). Generous on
 * purpose: the validator must refuse before avro-c reaches the allocation
 * cap, because avro-c 1.11.1 does not survive a failed allocation in its
 * array and map code (map.c dereferences a failed append; array.c keeps the
 * old size after losing its buffer). Cycles are cut off with a large answer. */
static size_t mem_size(const struct node *n, int depth) {
    size_t sum = 32, m = 0;

    if (depth > 8) return 4096;
    switch (n->type) {
    case W_BYTES:
    case W_STRING:
    case W_FIXED: return 64;
    case W_ARRAY:
    case W_MAP: return 128;
    case W_RECORD:
        for (uint32_t i = 0; i < n->n; i++) sum += mem_size(n->kids[i], depth + 1);
        return sum;
    case W_UNION:
        for (uint32_t i = 0; i < n->n; i++) {
            size_t b = mem_size(n->kids[i], depth + 1);
            if (b > m) m = b;
        }
        return 32 + m;
    default: return 16;
    }
}

sn_wire_t *sn_wire_new(avro_schema_t schema, char *errstr, size_t errstr_size) {
    sn_wire_t *w = calloc(1, sizeof(*w));

    if (!w) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!(w->root = compile(w, schema, 0, errstr, errstr_size))) goto fail;
    for (size_t i = 0; i < w->nnodes; i++) {
        w->nodes[i]->min_size = min_size(w->nodes[i], 0);
        w->nodes[i]->mem_size = mem_size(w->nodes[i], 0);
    }
    return w;
fail:
    sn_wire_destroy(w);
    return NULL;
}

static int fail(struct cursor *c, enum sn_codec_error_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the class and a message that names the field being read. */
static int fail(struct cursor *c, enum sn_codec_error_class cls, const char *fmt, ...) {
    va_list ap;
    int off = 0;

    *c->cls = cls;
    if (c->errstr && c->errstr_size) {
        if (c->field) off = snprintf(c->errstr, c->errstr_size, "field '%s': ", c->field);
        if (off < 0 || (size_t)off >= c->errstr_size) off = 0;
        va_start(ap, fmt);
        vsnprintf(c->errstr + off, c->errstr_size - (size_t)off, fmt, ap);
        va_end(ap);
    }
    return SN_ERR_INVALID;
}

/* Zig-zag varint of at most 10 bytes; the 10th may only carry the top bit. */
static int rd_long(struct cursor *c, int64_t *out) {
    uint64_t v = 0;

    for (int i = 0; i < 10; i++) {
        uint8_t b;

        if (c->p >= c->end) return fail(c, SN_CODEC_TRUNCATED, "data ends inside a varint");
        b = *c->p++;
        if (i == 9 && b > 1) return fail(c, SN_CODEC_BAD_VALUE, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
            return 0;
        }
    }
    return fail(c, SN_CODEC_BAD_VALUE, "varint longer than 10 bytes"); /* not reached */
}

static int need(struct cursor *c, size_t n, const char *what) {
    if ((size_t)(c->end - c->p) < n)
        return fail(c, SN_CODEC_TRUNCATED, "data ends inside %s (%zu of %zu bytes)", what,
                    (size_t)(c->end - c->p), n);
    c->p += n;
    return 0;
}

/* A string or bytes length: negative is malformed; longer than the data left
 * is truncation when it could be real, and a bad length when it is beyond
 * anything we would accept anyway (the 9-byte frame claiming 2 GiB). */
static int rd_len(struct cursor *c, const char *what) {
    int64_t len;
    size_t left;
    int rc;

    if ((rc = rd_long(c, &len)) != 0) return rc;
    left = (size_t)(c->end - c->p);
    if (len < 0) return fail(c, SN_CODEC_BAD_LENGTH, "negative %s length %" PRId64, what, len);
    if ((uint64_t)len > left) {
        if ((uint64_t)len > c->max_len)
            return fail(c, SN_CODEC_BAD_LENGTH, "%s length %" PRId64 " exceeds the %zu bytes left",
                        what, len, left);
        return fail(c, SN_CODEC_TRUNCATED, "data ends inside a %s (%zu of %" PRId64 " bytes)", what,
                    left, len);
    }
    if ((uint64_t)len >= c->max_len) /* avro-c allocates len + 1 */
        return fail(c, SN_CODEC_TOO_LARGE, "%s of %" PRId64 " bytes exceeds the %zu-byte cap", what,
                    len, c->max_len);
    c->p += len;
    return 0;
}

/* rd_len for a string whose bytes the caller wants to inspect: *start is
 * where they begin, c->p where they end. */
static int rd_long_peek_len(struct cursor *c, const uint8_t **start) {
    const uint8_t *before = c->p;
    int64_t len;
    int rc;

    if ((rc = rd_len(c, "map key")) != 0) return rc;
    /* re-read the varint just validated to find where the bytes start */
    c->p = before;
    (void)rd_long(c, &len);
    *start = c->p;
    c->p += len;
    return 0;
}

/* A map key: a string that also must not contain NUL, since avro-c stores
 * keys as C strings and would silently cut "a\0b" to "a". */
static int rd_key(struct cursor *c) {
    const uint8_t *start;
    int rc;

    if ((rc = rd_long_peek_len(c, &start)) != 0) return rc;
    if (memchr(start, '\0', (size_t)(c->p - start)))
        return fail(c, SN_CODEC_BAD_VALUE, "map key contains a NUL byte");
    return 0;
}

static int walk(struct cursor *c, const struct node *n, int depth);

/* Array and map blocks: a count, negated when a byte size follows; 0 ends. The
 * item count must be possible in the bytes left (or, for zero-byte items,
 * stay under a fixed bound), and a declared byte size must match. */
static int walk_blocks(struct cursor *c, const struct node *n, int depth) {
    const struct node *item = n->kids[0];
    size_t item_min = item->min_size + (n->type == W_MAP ? 1 : 0);
    uint64_t total = 0;
    int rc;

    for (;;) {
        int64_t count, bytes = -1;
        const uint8_t *start;
        size_t left;

        if ((rc = rd_long(c, &count)) != 0) return rc;
        if (count == 0) return 0;
        if (count < 0) {
            if (count == INT64_MIN)
                return fail(c, SN_CODEC_BAD_LENGTH, "block count %" PRId64, count);
            count = -count;
            if ((rc = rd_long(c, &bytes)) != 0) return rc;
            if (bytes < 0)
                return fail(c, SN_CODEC_BAD_LENGTH, "negative block size %" PRId64, bytes);
            if ((uint64_t)bytes > (size_t)(c->end - c->p))
                return fail(c,
                            (uint64_t)bytes > c->max_len ? SN_CODEC_BAD_LENGTH : SN_CODEC_TRUNCATED,
                            "block size %" PRId64 " exceeds the %zu bytes left", bytes,
                            (size_t)(c->end - c->p));
        }
        left = (size_t)(c->end - c->p);
        total += (uint64_t)count;
        if (item_min == 0 ? total > SN_WIRE_MAX_EMPTY_ITEMS : (uint64_t)count > left / item_min) {
            if (item_min == 0 || (uint64_t)count > c->max_len)
                return fail(c, item_min == 0 ? SN_CODEC_TOO_LARGE : SN_CODEC_BAD_LENGTH,
                            "block of %" PRId64 " items cannot fit in %zu bytes", count, left);
            return fail(c, SN_CODEC_TRUNCATED, "data ends inside a block of %" PRId64 " items",
                        count);
        }
        /* avro-c keeps all items in one array that doubles as it grows. */
        if (total > (c->max_len / 2) / (item->mem_size + (n->type == W_MAP ? 16 : 0)))
            return fail(c, SN_CODEC_TOO_LARGE,
                        "%" PRIu64 " %s would need more than the %zu-byte allocation cap", total,
                        n->type == W_MAP ? "map entries" : "array items", c->max_len);
        start = c->p;
        for (int64_t i = 0; i < count; i++) {
            if (n->type == W_MAP && (rc = rd_key(c)) != 0) return rc;
            if ((rc = walk(c, item, depth + 1)) != 0) return rc;
        }
        if (bytes >= 0 && (size_t)(c->p - start) != (size_t)bytes)
            return fail(c, SN_CODEC_BAD_LENGTH, "block declared %" PRId64 " bytes but used %zu",
                        bytes, (size_t)(c->p - start));
    }
}

static int walk(struct cursor *c, const struct node *n, int depth) {
    int64_t v;
    int rc;

    if (depth > SN_WIRE_MAX_DEPTH)
        return fail(c, SN_CODEC_TOO_LARGE, "nested deeper than %d", SN_WIRE_MAX_DEPTH);
    switch (n->type) {
    case W_NULL: return 0;
    case W_BOOL:
        if (c->p >= c->end) return fail(c, SN_CODEC_TRUNCATED, "data ends before a boolean");
        if (*c->p > 1) return fail(c, SN_CODEC_BAD_VALUE, "boolean byte %u", *c->p);
        c->p++;
        return 0;
    case W_INT:
        if ((rc = rd_long(c, &v)) != 0) return rc;
        if (v < INT32_MIN || v > INT32_MAX)
            return fail(c, SN_CODEC_BAD_VALUE, "int %" PRId64 " out of range", v);
        return 0;
    case W_LONG: return rd_long(c, &v);
    case W_FLOAT: return need(c, 4, "a float");
    case W_DOUBLE: return need(c, 8, "a double");
    case W_BYTES: return rd_len(c, "bytes");
    case W_STRING: return rd_len(c, "string");
    case W_FIXED: return need(c, n->n, "a fixed");
    case W_ENUM:
        if ((rc = rd_long(c, &v)) != 0) return rc;
        if (v < 0 || v >= (int64_t)n->n)
            return fail(c, SN_CODEC_BAD_VALUE, "enum index %" PRId64 " not in [0, %u)", v, n->n);
        return 0;
    case W_ARRAY:
    case W_MAP: return walk_blocks(c, n, depth);
    case W_UNION:
        if ((rc = rd_long(c, &v)) != 0) return rc;
        if (v < 0 || v >= (int64_t)n->n)
            return fail(c, SN_CODEC_BAD_VALUE, "union branch %" PRId64 " not in [0, %u)", v, n->n);
        return walk(c, n->kids[v], depth + 1);
    case W_RECORD: {
        const char *outer = c->field;

        for (uint32_t i = 0; i < n->n; i++) {
            c->field = n->names[i];
            if ((rc = walk(c, n->kids[i], depth + 1)) != 0) return rc;
        }
        c->field = outer;
        return 0;
    }
    }
    return fail(c, SN_CODEC_INTERNAL, "bad node");
}

int sn_wire_check(const sn_wire_t *wire, const uint8_t *buf, size_t len, size_t max_len,
                  enum sn_codec_error_class *cls, char *errstr, size_t errstr_size) {
    struct cursor c = {buf, buf + len, max_len, NULL, cls, errstr, errstr_size};
    int rc;

    if ((rc = walk(&c, wire->root, 0)) != 0) return rc;
    if (c.p != c.end)
        return fail(&c, SN_CODEC_TRAILING_BYTES, "%zu bytes after the end of the record",
                    (size_t)(c.end - c.p));
    *cls = SN_CODEC_OK;
    return 0;
}

/* The same walk without the end check: a container block holds datums back to
 * back with no lengths, so the only way to find where one ends is to walk it. */
int sn_wire_measure(const sn_wire_t *wire, const uint8_t *buf, size_t len, size_t max_len,
                    size_t *used, enum sn_codec_error_class *cls, char *errstr,
                    size_t errstr_size) {
    struct cursor c = {buf, buf + len, max_len, NULL, cls, errstr, errstr_size};
    int rc;

    if ((rc = walk(&c, wire->root, 0)) != 0) return rc;
    *used = (size_t)(c.p - buf);
    *cls = SN_CODEC_OK;
    return 0;
}

int sn_wire_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < len) {
        unsigned char b = s[i];
        uint32_t cp;
        size_t n;

        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf)
            n = 1, cp = b & 0x1f;
        else if (b >= 0xe0 && b <= 0xef)
            n = 2, cp = b & 0x0f;
        else if (b >= 0xf0 && b <= 0xf4)
            n = 3, cp = b & 0x07;
        else
            return 0;
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}
