/* source_archive.c: the archive as an input, hour folder by hour folder.
 * See source_archive.h for the layout, the ordering and the bounds. */
#include "producers/source_archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/s3.h"
#include "schemas/container.h"

#define KEY_MAX 1024
#define PROGRESS_EVERY_S 5
#define DAY_MS 86400000LL

/* One listed object of the current hour folder. */
struct object {
    char *key; /* S3 key, or path relative to the root folder */
    int32_t partition;
    int64_t first, last, size;
};

/* An event waiting for its turn: the event less its (rare) tags, which are
 * held apart so that an untagged event costs ~350 bytes, not 2.4 KiB. */
struct pending {
    int64_t ts;
    uint64_t seq;
    uint32_t nvalues, ntags;
    sn_event_tag_t *tags; /* ntags, owned; NULL when none */
    char machine_id[SN_EVENT_ID_MAX];
    double values[SN_EVENT_FIELDS_MAX];
};

/* Last offset read per partition, for the exactly-once check. */
struct part_seen {
    int32_t partition;
    int64_t offset;
};

struct sn_source_archive {
    enum sn_source_archive_what what;
    sn_codec_t *codec;
    sn_s3_t *s3;    /* NULL for file:// */
    char *root;     /* file: absolute folder; S3: key prefix ("" or "p/") */
    char *location; /* printable */
    char *topic;
    int64_t from_ms, to_ms, lateness_ms;
    size_t max_object, max_pending;
    int progress;
    int64_t hour, last_hour; /* next hour folder to list, the last one (ms) */
    /* objects of the current folder */
    struct object *objs;
    size_t nobjs, capobjs, next_obj;
    /* S3: the listing of the current day folder */
    struct object *day;
    size_t nday, capday, day_prefix_len;
    int64_t day_ms;
    /* the open object */
    uint8_t *buf;
    sn_container_t *cur;
    /* exactly once */
    struct part_seen *parts;
    size_t nparts, capparts;
    /* events */
    struct pending *pend;
    size_t npend, cappend, emit_pos, emit_end;
    int64_t watermark; /* everything older was delivered (or could have been) */
    uint64_t seq;
    int finished;
    /* digest input */
    char *listing;
    size_t listing_len, listing_cap;
    sn_source_archive_stats_t st;
    time_t last_progress;
};

/* ---- helpers ---- */

static char *dup_str(const char *s, size_t n) {
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* "<first>-<last>.avro" after the last '/', as the archiver names objects. */
static int parse_name(const char *key, int64_t *first, int64_t *last) {
    const char *name = strrchr(key, '/');
    char *end;

    name = name ? name + 1 : key;
    if (name[0] < '0' || name[0] > '9') return -1;
    *first = strtoll(name, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9') return -1;
    *last = strtoll(end + 1, &end, 10);
    return strcmp(end, ".avro") == 0 && *last >= *first ? 0 : -1;
}

/* The partition from the "partition=P/" folder of a key; -1 when none. */
static int32_t parse_partition(const char *key) {
    const char *p = strstr(key, "partition=");
    char *end;
    long v;

    if (!p) return -1;
    v = strtol(p + 10, &end, 10);
    return end != p + 10 && *end == '/' && v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
}

/* "<topic>/dt=YYYY-MM-DD/hour=HH/" of the hour starting at hour_ms. */
static void hour_dir(const sn_source_archive_t *a, int64_t hour_ms, char *out, size_t size) {
    time_t t = (time_t)(hour_ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, size, "%s/dt=%04d-%02d-%02d/hour=%02d/", a->topic, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
}

static int64_t floor_hour(int64_t ms) {
    int64_t h = ms / SN_SOURCE_ARCHIVE_HOUR_MS;

    if (ms < 0 && h * SN_SOURCE_ARCHIVE_HOUR_MS != ms) h--;
    return h * SN_SOURCE_ARCHIVE_HOUR_MS;
}

/* Appends key to a list of objects when it names an archive object. */
static int list_add(struct object **objs, size_t *n, size_t *cap, const char *key, int64_t size) {
    struct object *o;
    int64_t first, last;
    int32_t part = parse_partition(key);

    if (part < 0 || parse_name(key, &first, &last) != 0) return 0; /* not an archive object */
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;

        if (!(o = realloc(*objs, ncap * sizeof(*o)))) return SN_ERR_NOMEM;
        *objs = o;
        *cap = ncap;
    }
    o = &(*objs)[*n];
    if (!(o->key = strdup(key))) return SN_ERR_NOMEM;
    o->partition = part;
    o->first = first;
    o->last = last;
    o->size = size;
    (*n)++;
    return 0;
}

static int add_object(sn_source_archive_t *a, const char *key, int64_t size) {
    return list_add(&a->objs, &a->nobjs, &a->capobjs, key, size);
}

static void clear_day(sn_source_archive_t *a) {
    for (size_t i = 0; i < a->nday; i++) free(a->day[i].key);
    a->nday = 0;
    a->day_ms = INT64_MIN;
}

static void clear_objects(sn_source_archive_t *a) {
    for (size_t i = 0; i < a->nobjs; i++) free(a->objs[i].key);
    a->nobjs = a->next_obj = 0;
}

static int cmp_object(const void *x, const void *y) {
    const struct object *p = x, *q = y;

    if (p->partition != q->partition) return p->partition < q->partition ? -1 : 1;
    if (p->first != q->first) return p->first < q->first ? -1 : 1;
    return strcmp(p->key, q->key);
}

/* ---- listing ---- */

struct s3_list_ctx {
    sn_source_archive_t *a;
    int rc;
};

static int on_s3_object(void *opaque, const sn_s3_object_t *obj) {
    struct s3_list_ctx *ctx = opaque;
    sn_source_archive_t *a = ctx->a;

    if ((ctx->rc = list_add(&a->day, &a->nday, &a->capday, obj->key, obj->size)) != 0) return 1;
    return 0;
}

/* partition=P folders, then their objects; names starting with '.' are the
 * file sink's temporary copies and never objects. */
static int list_files(sn_source_archive_t *a, const char *dir, char *errstr, size_t errstr_size) {
    char path[PATH_MAX];
    DIR *d = NULL, *pd = NULL;
    struct dirent *e, *pe;
    int rc = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", a->root, dir) >= sizeof(path))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "path too long under %s", a->root);
    if (!(d = opendir(path))) {
        if (errno == ENOENT) return 0; /* no data that hour */
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    }
    while ((e = readdir(d))) {
        char sub[PATH_MAX];

        if (strncmp(e->d_name, "partition=", 10) != 0) continue;
        snprintf(sub, sizeof(sub), "%s/%s%s", a->root, dir, e->d_name);
        if (!(pd = opendir(sub))) continue; /* not a folder */
        while ((pe = readdir(pd))) {
            char key[KEY_MAX];
            struct stat st;

            if (pe->d_name[0] == '.') continue;
            if ((size_t)snprintf(key, sizeof(key), "%s%s/%s", dir, e->d_name, pe->d_name) >=
                sizeof(key))
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", a->root, key);
            if (stat(sub, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if ((rc = add_object(a, key, (int64_t)st.st_size)) != 0) {
                rc = sn_err_set(errstr, errstr_size, rc, "out of memory");
                goto out;
            }
        }
        closedir(pd);
        pd = NULL;
    }
out:
    if (pd) closedir(pd);
    closedir(d);
    return rc;
}

/* Lists the objects of one hour folder, sorted by partition and first
 * offset; the same key twice (a listing that repeats itself) is kept once. */
static int list_hour(sn_source_archive_t *a, int64_t hour_ms, char *errstr, size_t errstr_size) {
    char dir[KEY_MAX];
    size_t keep = 0;
    int rc;

    clear_objects(a);
    hour_dir(a, hour_ms, dir, sizeof(dir));
    a->st.hours++;
    if (a->s3) {
        /* One LIST per day folder, not per hour: a LIST costs a round trip
         * (0.25 s each on the local S3 server), and a range with a long
         * lateness spans many hours. The day's keys are kept until the
         * next day is needed. */
        int64_t day = hour_ms / DAY_MS * DAY_MS;
        char prefix[KEY_MAX + 256], hour[16];

        if (day != a->day_ms) {
            struct s3_list_ctx ctx = {a, 0};
            size_t dl = strlen(dir);

            clear_day(a);
            /* dir is "<topic>/dt=YYYY-MM-DD/hour=HH/": the day is dir less "hour=HH/" */
            snprintf(prefix, sizeof(prefix), "%s%.*s", a->root, (int)(dl - 8), dir);
            if ((rc = sn_s3_list(a->s3, prefix, NULL, 0, on_s3_object, &ctx, errstr,
                                 errstr_size)) != 0)
                return rc;
            if (ctx.rc) return sn_err_set(errstr, errstr_size, ctx.rc, "out of memory");
            a->day_ms = day;
            a->day_prefix_len = strlen(prefix);
        }
        snprintf(hour, sizeof(hour), "%.8s", dir + strlen(dir) - 8);
        for (size_t i = 0; i < a->nday; i++)
            if (strlen(a->day[i].key) > a->day_prefix_len &&
                strncmp(a->day[i].key + a->day_prefix_len, hour, 8) == 0 &&
                (rc = add_object(a, a->day[i].key, a->day[i].size)) != 0)
                return sn_err_set(errstr, errstr_size, rc, "out of memory");
    } else if ((rc = list_files(a, dir, errstr, errstr_size)) != 0) {
        return rc;
    }
    if (a->nobjs) qsort(a->objs, a->nobjs, sizeof(*a->objs), cmp_object);
    for (size_t i = 0; i < a->nobjs; i++) {
        if (keep && strcmp(a->objs[keep - 1].key, a->objs[i].key) == 0) {
            free(a->objs[i].key);
            continue;
        }
        a->objs[keep++] = a->objs[i];
    }
    a->nobjs = keep;
    return 0;
}

/* ---- objects ---- */

static int read_file(sn_source_archive_t *a, const struct object *o, uint8_t **out, size_t *len,
                     char *errstr, size_t errstr_size) {
    char path[PATH_MAX];
    struct stat st;
    uint8_t *buf = NULL;
    size_t got = 0;
    int fd, rc = 0;

    snprintf(path, sizeof(path), "%s/%s", a->root, o->key);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((size_t)st.st_size > a->max_object) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM,
                        "%s: %lld bytes, over archive.read.object.max.bytes", path,
                        (long long)st.st_size);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path,
                            n < 0 ? strerror(errno) : "shorter than its size");
            goto out;
        }
        got += (size_t)n;
    }
    *out = buf;
    *len = got;
    buf = NULL;
out:
    if (fd >= 0) close(fd);
    free(buf);
    return rc;
}

static void close_object(sn_source_archive_t *a) {
    sn_container_destroy(a->cur);
    a->cur = NULL;
    free(a->buf);
    a->buf = NULL;
}

static int listing_add(sn_source_archive_t *a, const struct object *o) {
    size_t need = strlen(o->key) + 32;

    if (a->listing_len + need > a->listing_cap) {
        size_t cap = a->listing_cap ? a->listing_cap * 2 : 4096;
        char *p;

        while (cap < a->listing_len + need) cap *= 2;
        if (!(p = realloc(a->listing, cap))) return SN_ERR_NOMEM;
        a->listing = p;
        a->listing_cap = cap;
    }
    a->listing_len +=
        (size_t)snprintf(a->listing + a->listing_len, need, "%s %" PRId64 "\n", o->key, o->size);
    return 0;
}

/* Fetches and opens objs[next_obj]; a RawRecord object is counted and left
 * closed (a->cur NULL). An object whose offsets overlap the last one read
 * in its partition is still read: its records already seen are dropped one
 * by one by the offset check. */
static int open_object(sn_source_archive_t *a, char *errstr, size_t errstr_size) {
    const struct object *o = &a->objs[a->next_obj++];
    char name[KEY_MAX + 300];
    size_t len = 0;
    int rc;

    for (size_t i = 0; i < a->nparts; i++)
        if (a->parts[i].partition == o->partition && o->first <= a->parts[i].offset) {
            a->st.overlapping++;
            sn_log_warn("archive",
                        "%s overlaps offsets read before (up to %" PRId64
                        "); its records already read are dropped",
                        o->key, a->parts[i].offset);
        }
    if (a->s3) {
        char *data = NULL;

        rc = sn_s3_get(a->s3, o->key, &data, &len, a->max_object, errstr, errstr_size);
        if (rc == SN_ERR_NOMEM)
            rc = sn_err_set(errstr, errstr_size, rc, "%s: over archive.read.object.max.bytes",
                            o->key);
        if (rc != 0) return rc;
        a->buf = (uint8_t *)data;
    } else if ((rc = read_file(a, o, &a->buf, &len, errstr, errstr_size)) != 0) {
        return rc;
    }
    a->st.objects++;
    a->st.bytes += len;
    if (listing_add(a, o) != 0) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "oom");
    snprintf(name, sizeof(name), "%s/%s", a->location, o->key);
    if (!(a->cur = sn_container_open(a->codec, a->buf, len, name, errstr, errstr_size))) {
        free(a->buf);
        a->buf = NULL;
        return SN_ERR_IO;
    }
    if (sn_container_is_raw(a->cur)) {
        a->st.raw_objects++;
        close_object(a);
    }
    return 0;
}

/* 1 when (partition, offset) is new, and remembers it; 0 when seen; -1 out
 * of memory. */
static int first_time(sn_source_archive_t *a, int32_t partition, int64_t offset) {
    for (size_t i = 0; i < a->nparts; i++) {
        if (a->parts[i].partition != partition) continue;
        if (offset <= a->parts[i].offset) return 0;
        a->parts[i].offset = offset;
        return 1;
    }
    if (a->nparts == a->capparts) {
        size_t cap = a->capparts ? a->capparts * 2 : 16;
        struct part_seen *p = realloc(a->parts, cap * sizeof(*p));

        if (!p) return -1;
        a->parts = p;
        a->capparts = cap;
    }
    a->parts[a->nparts++] = (struct part_seen){partition, offset};
    return 1;
}

static void progress(sn_source_archive_t *a, int force) {
    time_t now = time(NULL);

    if (!a->progress || (!force && now - a->last_progress < PROGRESS_EVERY_S)) return;
    a->last_progress = now;
    sn_log_info("archive",
                "%s: %" PRIu64 " hour folders, %" PRIu64 " objects (%" PRIu64
                " raw, skipped), %.1f MB, %" PRIu64 " records, %" PRIu64 " delivered",
                a->location, a->st.hours, a->st.objects, a->st.raw_objects,
                (double)a->st.bytes / 1e6, a->st.records, a->st.delivered);
}

/* Moves to the next object that has records: the next of this folder, or
 * the first of a later folder. Returns 1 with a->cur open, 0 when the range
 * is done. stop_at_hour: return 0 at the end of the current folder instead
 * (the event path sorts between folders). */
static int next_object(sn_source_archive_t *a, int stop_at_hour, char *errstr, size_t errstr_size) {
    int rc;

    while (!a->cur) {
        if (a->next_obj < a->nobjs) {
            if ((rc = open_object(a, errstr, errstr_size)) != 0) return rc;
            progress(a, 0);
            continue;
        }
        if (stop_at_hour || a->hour > a->last_hour) return 0;
        if ((rc = list_hour(a, a->hour, errstr, errstr_size)) != 0) return rc;
        a->hour += SN_SOURCE_ARCHIVE_HOUR_MS;
    }
    return 1;
}

/* ---- events ---- */

static int cmp_pending(const void *x, const void *y) {
    const struct pending *p = x, *q = y;
    int c;

    if (p->ts != q->ts) return p->ts < q->ts ? -1 : 1;
    if ((c = strcmp(p->machine_id, q->machine_id)) != 0) return c;
    return (p->seq > q->seq) - (p->seq < q->seq);
}

static int add_pending(sn_source_archive_t *a, const sn_event_t *ev, char *errstr,
                       size_t errstr_size) {
    struct pending *p;

    if (a->npend == a->max_pending)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM,
                          "more than %zu events of %s to hold while sorting by event time "
                          "(archive.read.buffer.events; lower archive.read.lateness.ms or "
                          "raise the bound)",
                          a->max_pending, a->location);
    if (a->npend == a->cappend) {
        size_t cap = a->cappend ? a->cappend * 2 : 4096;

        if (cap > a->max_pending) cap = a->max_pending;
        if (!(p = realloc(a->pend, cap * sizeof(*p))))
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        a->pend = p;
        a->cappend = cap;
    }
    p = &a->pend[a->npend];
    p->ts = ev->ts_ms;
    p->seq = a->seq++;
    p->nvalues = ev->nvalues;
    p->ntags = ev->ntags;
    p->tags = NULL;
    memcpy(p->machine_id, ev->machine_id, sizeof(p->machine_id));
    memcpy(p->values, ev->values, ev->nvalues * sizeof(double));
    if (ev->ntags) {
        if (!(p->tags = malloc(ev->ntags * sizeof(*p->tags))))
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        memcpy(p->tags, ev->tags, ev->ntags * sizeof(*p->tags));
    }
    a->npend++;
    return 0;
}

/* Reads every object of the next hour folder into the buffer, then sorts
 * and marks what is old enough to deliver. Bad records are counted and
 * skipped (the first few logged): one bad record must not stop a month's
 * read, while a damaged object does. */
static int fill(sn_source_archive_t *a, char *errstr, size_t errstr_size) {
    sn_event_t *ev = malloc(sizeof(*ev));
    int64_t hour = a->hour;
    int rc = 0, r;

    if (!ev) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    /* what was delivered leaves the buffer */
    for (size_t i = 0; i < a->emit_pos; i++) free(a->pend[i].tags);
    if (a->emit_pos)
        memmove(a->pend, a->pend + a->emit_pos, (a->npend - a->emit_pos) * sizeof(*a->pend));
    a->npend -= a->emit_pos;
    a->emit_pos = a->emit_end = 0;
    if (a->hour > a->last_hour) {
        a->finished = 1;
        a->watermark = INT64_MAX;
        goto sort;
    }
    if ((rc = list_hour(a, hour, errstr, errstr_size)) != 0) goto out;
    a->hour += SN_SOURCE_ARCHIVE_HOUR_MS;
    for (;;) {
        sn_container_meta_t meta;
        char why[512];

        if ((r = next_object(a, 1, errstr, errstr_size)) <= 0) {
            rc = r;
            if (r < 0) goto out;
            break;
        }
        while ((r = sn_container_next_event(a->cur, ev, &meta, why, sizeof(why))) != 0) {
            if (r == SN_ERR_INVALID) {
                if (a->st.bad++ < 10) sn_log_warn("archive", "skipping a record: %s", why);
                continue;
            }
            if (r < 0) {
                rc = sn_err_set(errstr, errstr_size, r, "%s", why);
                goto out;
            }
            a->st.records++;
            if ((r = first_time(a, meta.partition, meta.offset)) <= 0) {
                if (r < 0) {
                    rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
                    goto out;
                }
                a->st.duplicates++;
                continue;
            }
            if (ev->ts_ms < a->from_ms || ev->ts_ms >= a->to_ms) {
                a->st.outside++;
                continue;
            }
            if (ev->ts_ms < a->watermark) {
                a->st.late++;
                continue;
            }
            if ((rc = add_pending(a, ev, errstr, errstr_size)) != 0) goto out;
        }
        close_object(a);
    }
    a->watermark = hour + SN_SOURCE_ARCHIVE_HOUR_MS - a->lateness_ms;
sort:
    if (a->npend) qsort(a->pend, a->npend, sizeof(*a->pend), cmp_pending);
    while (a->emit_end < a->npend && a->pend[a->emit_end].ts < a->watermark) a->emit_end++;
out:
    free(ev);
    return rc;
}

int sn_source_archive_next_event(sn_source_archive_t *a, sn_event_t *ev, char *errstr,
                                 size_t errstr_size) {
    const struct pending *p;
    int rc;

    if (a->what != SN_SOURCE_ARCHIVE_EVENTS)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "not an event reader");
    while (a->emit_pos == a->emit_end) {
        if (a->finished) {
            progress(a, 1);
            return 0;
        }
        if ((rc = fill(a, errstr, errstr_size)) != 0) return rc == SN_ERR_INVALID ? SN_ERR_IO : rc;
    }
    p = &a->pend[a->emit_pos++];
    memcpy(ev->machine_id, p->machine_id, sizeof(ev->machine_id));
    ev->ts_ms = p->ts;
    ev->nvalues = p->nvalues;
    memcpy(ev->values, p->values, p->nvalues * sizeof(double));
    ev->ntags = p->ntags;
    if (p->ntags) memcpy(ev->tags, p->tags, p->ntags * sizeof(*p->tags));
    a->st.delivered++;
    return 1;
}

/* ---- scores ---- */

int sn_source_archive_next_score(sn_source_archive_t *a, sn_score_t *sc, char *errstr,
                                 size_t errstr_size) {
    sn_container_meta_t meta;
    char why[512];
    int r;

    if (a->what != SN_SOURCE_ARCHIVE_SCORES)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "not a score reader");
    for (;;) {
        if ((r = next_object(a, 0, errstr, errstr_size)) <= 0) {
            if (r == 0) progress(a, 1);
            return r == SN_ERR_INVALID ? SN_ERR_IO : r;
        }
        r = sn_container_next_score(a->cur, sc, &meta, why, sizeof(why));
        if (r == 0) {
            close_object(a);
            continue;
        }
        if (r == SN_ERR_INVALID) {
            if (a->st.bad++ < 10) sn_log_warn("archive", "skipping a record: %s", why);
            continue;
        }
        if (r < 0) return sn_err_set(errstr, errstr_size, r, "%s", why);
        a->st.records++;
        if ((r = first_time(a, meta.partition, meta.offset)) <= 0) {
            if (r < 0) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            a->st.duplicates++;
            continue;
        }
        if (sc->ts_ms < a->from_ms || sc->ts_ms >= a->to_ms) {
            a->st.outside++;
            continue;
        }
        a->st.delivered++;
        return 1;
    }
}

/* ---- the handle ---- */

/* file://DIR (relative made absolute, as the archiver's sink does) or
 * s3://bucket[/prefix]: the same spelling as archive.url. */
static int parse_url(sn_source_archive_t *a, const char *url, const sn_conf_t *conf, char *errstr,
                     size_t errstr_size) {
    char buf[PATH_MAX + 64];

    if (strncmp(url, "s3://", 5) == 0) {
        const char *b = url + 5, *slash = strchr(b, '/');
        size_t bl = slash ? (size_t)(slash - b) : strlen(b);
        const char *p = slash ? slash + 1 : "";
        size_t pl = strlen(p);
        char bucket[64];

        while (pl && p[pl - 1] == '/') pl--;
        if (bl == 0 || bl >= sizeof(bucket))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "expected s3://bucket[/prefix], got \"%s\"", url);
        memcpy(bucket, b, bl);
        bucket[bl] = '\0';
        snprintf(buf, sizeof(buf), "%.*s%s", (int)pl, p, pl ? "/" : "");
        if (!(a->root = strdup(buf))) return SN_ERR_NOMEM;
        if (!(a->s3 = sn_s3_new(conf, bucket, errstr, errstr_size))) return SN_ERR_INVALID;
        snprintf(buf, sizeof(buf), "s3://%s%s%.*s", bucket, pl ? "/" : "", (int)pl, p);
    } else if (strncmp(url, "file://", 7) == 0 && url[7]) {
        const char *d = url + 7;
        char cwd[PATH_MAX];
        size_t n;

        if (d[0] == '/') {
            snprintf(buf, sizeof(buf), "%s", d);
        } else {
            if (!getcwd(cwd, sizeof(cwd)))
                return sn_err_set(errstr, errstr_size, SN_ERR_IO, "getcwd: %s", strerror(errno));
            snprintf(buf, sizeof(buf), "%s/%s", cwd, d);
        }
        n = strlen(buf);
        while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
        if (!(a->root = strdup(buf))) return SN_ERR_NOMEM;
        snprintf(buf, sizeof(buf), "file://%s", a->root);
    } else {
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "expected an archive URL, file://DIR or s3://bucket[/prefix], got \"%s\"",
                          url);
    }
    if (!(a->location = strdup(buf))) return SN_ERR_NOMEM;
    return 0;
}

sn_source_archive_t *sn_source_archive_new(const sn_source_archive_opts_t *opts,
                                           enum sn_source_archive_what what, char *errstr,
                                           size_t errstr_size) {
    sn_source_archive_t *a = calloc(1, sizeof(*a));
    int rc;

    if (!a) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    a->what = what;
    a->codec = opts->codec;
    a->progress = opts->progress;
    if (!opts->url || !opts->topic || !*opts->topic || !opts->codec || !opts->conf) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "archive reader: URL, topic needed");
        goto fail;
    }
    if (opts->from_ms < 0 || opts->to_ms <= opts->from_ms) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "reading the archive needs a time range: --from and --to, to after from");
        goto fail;
    }
    if (strchr(opts->topic, '/')) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "bad topic \"%s\"", opts->topic);
        goto fail;
    }
    if ((rc = parse_url(a, opts->url, opts->conf, errstr, errstr_size)) != 0) {
        if (rc == SN_ERR_NOMEM) sn_err_set(errstr, errstr_size, rc, "out of memory");
        goto fail;
    }
    if (!(a->topic = dup_str(opts->topic, strlen(opts->topic)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    a->from_ms = opts->from_ms;
    a->to_ms = opts->to_ms;
    a->lateness_ms = sn_conf_int(opts->conf, "archive.read.lateness.ms");
    a->max_pending = (size_t)sn_conf_int(opts->conf, "archive.read.buffer.events");
    a->max_object = (size_t)sn_conf_int(opts->conf, "archive.read.object.max.bytes");
    a->hour = floor_hour(a->from_ms) - SN_SOURCE_ARCHIVE_HOUR_MS;
    a->last_hour = floor_hour(a->to_ms - 1 + a->lateness_ms);
    a->watermark = INT64_MIN;
    a->day_ms = INT64_MIN;
    return a;
fail:
    sn_source_archive_destroy(a);
    return NULL;
}

void sn_source_archive_destroy(sn_source_archive_t *a) {
    if (!a) return;
    close_object(a);
    clear_objects(a);
    free(a->objs);
    clear_day(a);
    free(a->day);
    for (size_t i = 0; i < a->npend; i++) free(a->pend[i].tags);
    free(a->pend);
    free(a->parts);
    free(a->listing);
    sn_s3_destroy(a->s3);
    free(a->root);
    free(a->location);
    free(a->topic);
    free(a);
}

void sn_source_archive_stats(const sn_source_archive_t *a, sn_source_archive_stats_t *out) {
    *out = a->st;
}

const char *sn_source_archive_location(const sn_source_archive_t *a) { return a->location; }

void sn_source_archive_digest(const sn_source_archive_t *a, char hex[65]) {
    sn_s3_sha256_hex(a->listing ? a->listing : "", a->listing_len, hex);
}
