/* archiver.c: the archiver's loop. See archiver.h for the guarantees and
 * archive_int.h for the file format.
 *
 * One thread does everything, top to bottom: take a micro-batch, append each
 * record to its partition's open file (rotating on schema, hour, size, count),
 * upload closed files in order, commit the last offset of each uploaded file,
 * close files that got old. A failing sink pauses the partitions and the
 * batch in hand waits, position kept, until the sink answers again.
 *
 * Offsets are committed through sn_consumer_commit_batch(), which takes
 * records: each file keeps the consumed record of its last offset (its
 * librdkafka message) and commits it as a batch of one after the upload.
 * That record is "stolen" from the micro-batch it came in: the batch is
 * compacted before it is released so the message is not freed twice. */
#include "consumers/archiver.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "consumers/archive_int.h"
#include "consumers/consumer.h"

#define TOPIC_MAX 256
#define TOPICS_MAX 64
#define POLL_MS 100
#define DATUM_MAX (256u << 20) /* bound on one archived record */
#define HOUR_MS 3600000LL
#define SPOOL_DIR_MAX (PATH_MAX - 128) /* room for "/<seq>.avro" */

struct part;

/* One archive file: open (w != NULL) or closed and queued for upload. */
struct afile {
    struct afile *next;
    struct part *part; /* NULL once the partition is gone */
    char topic[TOPIC_MAX];
    int32_t partition;
    sn_archive_file_t *w;
    const sn_archive_kind_t *kind;
    char spool[PATH_MAX];
    char key[SN_ARCHIVE_KEY_MAX];
    int64_t first, last, first_ts, min_ts, hour, records, opened_ms, in_bytes;
    sn_record_t end; /* the record at `last`, committed after the upload */
    int has_end;
    long end_idx; /* index of end in the batch in hand, -1 once it is ours alone */
};

struct part {
    int used;
    char topic[TOPIC_MAX];
    int32_t partition;
    struct afile *open;
    int64_t last_seen;           /* highest offset handled, -1 before any */
    int verify;                  /* look for an existing object before the next file */
    int64_t skip_until;          /* records up to here are already archived */
    int64_t skip_from, nskipped; /* for one log line once the walk ends */
    struct afile skipf;          /* holds the last skipped record, to commit it */
};

struct aux {
    uint8_t drop;   /* polled before its partition was revoked */
    uint8_t stolen; /* its message belongs to a file now */
};

struct sn_archiver {
    sn_consumer_t *c;
    sn_archive_sink_t *sink;
    sn_archive_schemas_t *schemas;
    sn_batch_t batch;
    struct aux *aux;
    size_t pos; /* next record of the batch to handle */
    struct part *parts;
    size_t max_parts;
    struct part *last_part;
    struct afile *qhead, *qtail;
    sn_archive_buf_t datum;
    char spool_dir[SPOOL_DIR_MAX];
    uint64_t seq;
    char *topics[TOPICS_MAX];
    size_t ntopics;

    int64_t max_bytes, max_age_ms, max_records, backoff_ms, backoff_max_ms, shutdown_ms,
        idle_exit_ms;
    size_t block_bytes;

    int down, attempt;
    int64_t retry_at_ms, last_record_ms, down_since_ms;
    uint64_t rng;
    int ready;
    uint64_t sink_retries_seen;

    sn_metrics_t *metrics;
    sn_httpd_t *httpd;
    sn_counter_t *m_bytes, *m_objects, *m_retries, *m_failures, *m_records, *m_invalid, *m_skipped;
    sn_histogram_t *m_upload;
    atomic_int_fast64_t oldest_ts_ms; /* Kafka timestamp of the oldest unarchived record, -1 */

    atomic_uint_fast64_t st_records, st_objects, st_bytes, st_invalid, st_skipped, st_retries,
        st_failures, st_in_bytes;
    atomic_int_fast64_t first_record_ms, last_upload_ms; /* monotonic, 0 before any */
    /* An idle exit waited idle_exit_ms for nothing: busy time is up to the
     * start of that wait, plus the final flush after it. */
    atomic_int_fast64_t idle_start_ms, final_flush_ms;
};

static int64_t mono_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t hour_of(int64_t ts) { return (ts < 0 ? 0 : ts) / HOUR_MS; }

/* ---- metrics ------------------------------------------------------------------ */

static double oldest_unarchived(void *opaque) {
    sn_archiver_t *a = opaque;
    int64_t ts = atomic_load(&a->oldest_ts_ms);

    if (ts < 0) return 0.0;
    return wall_ms() > ts ? (double)(wall_ms() - ts) / 1000.0 : 0.0;
}

static void metrics_init(sn_archiver_t *a) {
    double bounds[14];
    sn_metrics_t *m = a->metrics;

    if (!m) return;
    sn_metrics_buckets_exponential(bounds, 14, 0.005, 2.5);
    a->m_bytes =
        sn_metrics_counter(m, "sentinel_archive_bytes_total", "Bytes of archive objects uploaded.");
    a->m_objects =
        sn_metrics_counter(m, "sentinel_archive_objects_total", "Archive objects uploaded.");
    a->m_upload =
        sn_metrics_histogram(m, "sentinel_archive_upload_seconds",
                             "Time to upload one archive object, retries included.", bounds, 14);
    a->m_retries = sn_metrics_counter(m, "sentinel_archive_retries_total",
                                      "Upload requests retried (by the S3 client or, after it "
                                      "gave up, by the archiver's backoff).");
    a->m_failures = sn_metrics_counter(m, "sentinel_archive_failures_total",
                                       "Uploads that failed after the S3 client's retries; the "
                                       "archiver pauses and tries again.");
    a->m_records =
        sn_metrics_counter(m, "sentinel_archive_records_total", "Records archived and committed.");
    a->m_invalid = sn_metrics_counter(m, "sentinel_archive_invalid_records_total",
                                      "Records archived raw: not a valid Avro frame of a known "
                                      "schema.");
    a->m_skipped = sn_metrics_counter(m, "sentinel_archive_skipped_records_total",
                                      "Records found already archived after a restart, skipped.");
    sn_metrics_gauge_fn(m, "sentinel_archive_oldest_unarchived_seconds",
                        "Age (by Kafka timestamp) of the oldest consumed record not archived yet; "
                        "0 when everything consumed is archived.",
                        oldest_unarchived, a);
}

static void count_retries(sn_archiver_t *a, uint64_t n) {
    if (!n) return;
    sn_counter_add(a->m_retries, n);
    atomic_fetch_add(&a->st_retries, n);
}

/* The S3 client retries on its own; its counter is folded into ours. */
static void sync_sink_retries(sn_archiver_t *a) {
    uint64_t r = sn_archive_sink_retries(a->sink);

    if (r > a->sink_retries_seen) count_retries(a, r - a->sink_retries_seen);
    a->sink_retries_seen = r;
}

static void update_oldest(sn_archiver_t *a) {
    int64_t oldest = -1;

    for (size_t i = 0; i < a->max_parts; i++) {
        struct afile *f = a->parts[i].used ? a->parts[i].open : NULL;

        if (f && (oldest < 0 || f->min_ts < oldest)) oldest = f->min_ts;
    }
    for (struct afile *f = a->qhead; f; f = f->next)
        if (oldest < 0 || f->min_ts < oldest) oldest = f->min_ts;
    atomic_store(&a->oldest_ts_ms, oldest);
}

/* ---- partitions and the records they hold ------------------------------------- */

static struct part *part_find(sn_archiver_t *a, const char *topic, int32_t partition) {
    struct part *p = a->last_part;

    if (p && p->used && p->partition == partition && strcmp(p->topic, topic) == 0) return p;
    for (size_t i = 0; i < a->max_parts; i++) {
        p = &a->parts[i];
        if (p->used && p->partition == partition && strcmp(p->topic, topic) == 0)
            return a->last_part = p;
    }
    return NULL;
}

/* A partition seen for the first time since its assignment starts in verify
 * mode: its first file must not overlap an object uploaded before a crash. */
static struct part *part_get(sn_archiver_t *a, const char *topic, int32_t partition) {
    struct part *p = part_find(a, topic, partition);

    if (p) return p;
    for (size_t i = 0; i < a->max_parts; i++) {
        p = &a->parts[i];
        if (p->used) continue;
        memset(p, 0, sizeof(*p));
        p->used = 1;
        snprintf(p->topic, sizeof(p->topic), "%s", topic);
        p->partition = partition;
        p->last_seen = -1;
        p->skip_until = -1;
        p->verify = 1;
        return a->last_part = p;
    }
    return NULL;
}

/* Makes batch record idx the end of f, giving back the previous end. */
static void end_set(sn_archiver_t *a, struct afile *f, size_t idx) {
    if (f->has_end) {
        if (f->end_idx >= 0) {
            a->aux[f->end_idx].stolen = 0; /* back to the batch, released with it */
        } else {
            sn_batch_t one = {&f->end, 1, 1};

            sn_consumer_release_batch(&one);
        }
    }
    f->end = a->batch.records[idx];
    f->end_idx = (long)idx;
    f->has_end = 1;
    a->aux[idx].stolen = 1;
}

static void end_release(sn_archiver_t *a, struct afile *f) {
    if (!f->has_end) return;
    if (f->end_idx >= 0) {
        a->aux[f->end_idx].stolen = 0;
    } else {
        sn_batch_t one = {&f->end, 1, 1};

        sn_consumer_release_batch(&one);
    }
    f->has_end = 0;
}

/* Stores the offset after f's last record (the message is freed by it; if it
 * was stolen from the batch in hand, compaction drops its slot). */
static void end_commit(sn_archiver_t *a, struct afile *f) {
    char errstr[256];
    sn_batch_t one = {&f->end, 1, 1};

    if (!f->has_end) return;
    if (sn_consumer_commit_batch(a->c, &one, errstr, sizeof(errstr)) != 0)
        sn_log_warn("archive", "%s/%d: %s", f->topic, (int)f->partition, errstr);
    f->has_end = 0;
}

/* Drops the slots of stolen records from the batch, so that releasing it
 * frees every message exactly once. Positions move down accordingly. */
static void compact(sn_archiver_t *a) {
    size_t j = 0, pos = a->pos;

    for (size_t i = 0; i < a->batch.n; i++) {
        if (a->aux[i].stolen) {
            if (i < a->pos) pos--;
            continue;
        }
        a->batch.records[j] = a->batch.records[i];
        a->aux[j] = a->aux[i];
        j++;
    }
    a->batch.n = j;
    a->pos = pos;
    for (size_t i = 0; i < a->max_parts; i++)
        if (a->parts[i].used) {
            if (a->parts[i].open) a->parts[i].open->end_idx = -1;
            a->parts[i].skipf.end_idx = -1;
        }
    for (struct afile *f = a->qhead; f; f = f->next) f->end_idx = -1;
}

/* ---- files ------------------------------------------------------------------------ */

/* The sync marker of a file comes from its identity, so writing the same
 * records again gives the same bytes (FNV-1a of the topic, mixed). */
static uint64_t seed_of(const char *topic, int32_t partition, int64_t first) {
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = topic; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h ^= (uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL;
    return h ^ (uint64_t)first * 0xc2b2ae3d27d4eb4fULL;
}

/* dt/hour of the key come from the first record's Kafka timestamp, known now,
 * so the key depends on the data only; a missing timestamp counts as 0. */
static struct afile *file_open(sn_archiver_t *a, struct part *p, const sn_record_t *r,
                               const sn_archive_kind_t *kind, char *errstr, size_t errstr_size) {
    struct afile *f = calloc(1, sizeof(*f));

    if (!f) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->part = p;
    snprintf(f->topic, sizeof(f->topic), "%s", p->topic);
    f->partition = p->partition;
    f->kind = kind;
    f->first = f->last = r->offset;
    f->first_ts = r->timestamp_ms < 0 ? 0 : r->timestamp_ms;
    f->min_ts = r->timestamp_ms < 0 ? wall_ms() : r->timestamp_ms;
    f->hour = hour_of(r->timestamp_ms);
    f->opened_ms = mono_ms();
    f->end_idx = -1;
    snprintf(f->spool, sizeof(f->spool), "%s/%" PRIu64 ".avro", a->spool_dir, ++a->seq);
    if (!(f->w = sn_archive_file_open(f->spool, sn_archive_kind_schema(kind),
                                      seed_of(p->topic, p->partition, r->offset), a->block_bytes,
                                      errstr, errstr_size))) {
        free(f);
        return NULL;
    }
    p->open = f;
    return f;
}

static void file_free(sn_archiver_t *a, struct afile *f) {
    end_release(a, f);
    if (f->w)
        sn_archive_file_discard(f->w);
    else
        unlink(f->spool);
    free(f);
}

/* Closes the partition's open file and queues it for upload. */
static int file_close(sn_archiver_t *a, struct afile *f, char *errstr, size_t errstr_size) {
    int rc;

    if (f->part && f->part->open == f) f->part->open = NULL;
    rc = sn_archive_file_close(f->w, errstr, errstr_size);
    f->w = NULL;
    if (rc != 0) {
        file_free(a, f);
        return SN_ERR_FATAL; /* the spool disk failed: restart from the last commit */
    }
    if (sn_archive_key(f->key, sizeof(f->key), sn_archive_sink_prefix(a->sink), f->topic,
                       f->first_ts, f->partition, f->first, f->last) < 0) {
        file_free(a, f);
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "archive key too long");
    }
    f->next = NULL;
    if (a->qtail)
        a->qtail->next = f;
    else
        a->qhead = f;
    a->qtail = f;
    return 0;
}

static void queue_remove(sn_archiver_t *a, struct afile *f) {
    struct afile **pp = &a->qhead, *prev = NULL;

    while (*pp && *pp != f) prev = *pp, pp = &(*pp)->next;
    if (!*pp) return;
    *pp = f->next;
    if (a->qtail == f) a->qtail = prev;
    f->next = NULL;
}

/* Full jitter over an exponentially growing bound. */
static int64_t backoff(sn_archiver_t *a) {
    int64_t cap = a->backoff_ms;
    uint64_t x = a->rng;

    for (int i = 1; i < a->attempt && cap < a->backoff_max_ms; i++) cap *= 2;
    if (cap > a->backoff_max_ms) cap = a->backoff_max_ms;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    a->rng = x;
    return (int64_t)(x % (uint64_t)(cap + 1));
}

/* The sink (or the schema registry) failed: stop fetching, keep what is in
 * hand, and try again later. */
static void set_down(sn_archiver_t *a, const char *why) {
    int64_t d;

    a->attempt++;
    d = backoff(a);
    a->retry_at_ms = mono_ms() + d;
    if (!a->down) {
        a->down = 1;
        a->down_since_ms = mono_ms();
        sn_consumer_pause(a->c, 1);
        sn_log_warn("archive", "pausing consumption, will retry in %lld ms: %s", (long long)d, why);
    } else {
        sn_log_warn("archive", "still failing (attempt %d), retry in %lld ms: %s", a->attempt,
                    (long long)d, why);
    }
}

static void set_up(sn_archiver_t *a) {
    if (a->down) {
        sn_log_info("archive", "sink answers again after %lld ms and %d attempts; resuming",
                    (long long)(mono_ms() - a->down_since_ms), a->attempt);
        sn_consumer_pause(a->c, 0);
    }
    a->down = 0;
    a->attempt = 0;
}

/* One upload, timed and counted; the spool file stays until the commit. */
static int upload(sn_archiver_t *a, struct afile *f, char *errstr, size_t errstr_size) {
    struct timespec t0, t1;
    struct stat st;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = sn_archive_sink_put(a->sink, f->key, f->spool, errstr, errstr_size);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sync_sink_retries(a);
    if (rc != 0) {
        sn_counter_inc(a->m_failures);
        atomic_fetch_add(&a->st_failures, 1);
        return rc;
    }
    sn_histogram_observe(a->m_upload,
                         (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    if (stat(f->spool, &st) == 0) {
        sn_counter_add(a->m_bytes, (uint64_t)st.st_size);
        atomic_fetch_add(&a->st_bytes, (uint64_t)st.st_size);
    }
    sn_counter_inc(a->m_objects);
    sn_counter_add(a->m_records, (uint64_t)f->records);
    atomic_fetch_add(&a->st_objects, 1);
    atomic_fetch_add(&a->st_records, (uint64_t)f->records);
    atomic_fetch_add(&a->st_in_bytes, (uint64_t)f->in_bytes);
    atomic_store(&a->last_upload_ms, mono_ms());
    sn_log_debug("archive", "uploaded %s (%" PRId64 " records)", f->key, f->records);
    return 0;
}

/* Uploads the queued files in order and commits each after its upload.
 * SN_ERR_TRANSIENT when the sink is failing (the rest waits). */
static int pump(sn_archiver_t *a) {
    char errstr[512];

    while (a->qhead) {
        struct afile *f = a->qhead;

        if (a->down && mono_ms() < a->retry_at_ms) return SN_ERR_TRANSIENT;
        if (a->down) count_retries(a, 1);
        if (upload(a, f, errstr, sizeof(errstr)) != 0) {
            set_down(a, errstr);
            return SN_ERR_TRANSIENT;
        }
        set_up(a);
        end_commit(a, f);
        queue_remove(a, f);
        unlink(f->spool);
        free(f);
    }
    return 0;
}

/* ---- rebalance ------------------------------------------------------------------------ */

/* The partition goes to another member: its records still in the batch are
 * dropped (the new owner consumes them from the last commit), its files are
 * uploaded and committed now if the sink answers, else discarded uncommitted. */
static void on_revoke(void *opaque, const char *topic, int32_t partition) {
    sn_archiver_t *a = opaque;
    struct part *p = part_find(a, topic, partition);
    char errstr[512];
    int failed = 0;

    for (size_t i = 0; i < a->batch.n; i++) {
        const sn_record_t *r = &a->batch.records[i];

        if (r->partition == partition && strcmp(r->topic, topic) == 0) a->aux[i].drop = 1;
    }
    if (!p) return;
    if (p->open && file_close(a, p->open, errstr, sizeof(errstr)) != 0)
        sn_log_error("archive", "%s/%d: %s", topic, (int)partition, errstr);
    for (struct afile *f = a->qhead, *next; f; f = next) {
        next = f->next;
        if (f->part != p) continue;
        if (!failed && !a->down && upload(a, f, errstr, sizeof(errstr)) == 0) {
            end_commit(a, f);
        } else {
            if (!failed)
                sn_log_warn("archive",
                            "%s/%d revoked; its unuploaded files are dropped "
                            "uncommitted for the next owner: %s",
                            topic, (int)partition, a->down ? "sink failing" : errstr);
            failed = 1;
        }
        queue_remove(a, f);
        file_free(a, f);
    }
    end_commit(a, &p->skipf);
    memset(p, 0, sizeof(*p));
    if (a->last_part == p) a->last_part = NULL;
}

/* ---- the records --------------------------------------------------------------------- */

/* After an assignment, has this record's offset been archived already (an
 * upload whose commit was lost)? Skips up to that object's last offset. */
static int check_existing(sn_archiver_t *a, struct part *p, const sn_record_t *r, int *skip) {
    char dir[SN_ARCHIVE_KEY_MAX], errstr[512];
    int64_t last = -1;
    int rc;

    *skip = 0;
    if (sn_archive_dir(dir, sizeof(dir), sn_archive_sink_prefix(a->sink), p->topic, r->timestamp_ms,
                       p->partition) < 0)
        return SN_ERR_FATAL;
    rc = sn_archive_sink_find(a->sink, dir, r->offset, &last, errstr, sizeof(errstr));
    sync_sink_retries(a);
    if (rc == SN_ERR_NOENT) {
        p->verify = 0;
        end_commit(a, &p->skipf); /* skipped records are archived: commit them too */
        if (p->nskipped)
            sn_log_info("archive",
                        "%s/%d: %" PRId64 " records (offsets %" PRId64 " to %" PRId64
                        ") were already archived by a run that stopped before committing them; "
                        "skipped, archiving from offset %" PRId64,
                        p->topic, (int)p->partition, p->nskipped, p->skip_from, p->skip_until,
                        r->offset);
        return 0;
    }
    if (rc != 0) {
        set_down(a, errstr);
        return SN_ERR_TRANSIENT;
    }
    sn_log_debug("archive", "%s/%d: offsets %" PRId64 " to %" PRId64 " are already archived",
                 p->topic, (int)p->partition, r->offset, last);
    if (!p->nskipped) p->skip_from = r->offset;
    p->skip_until = last;
    *skip = 1;
    return 0;
}

/* A file has one schema and one hour (a later hour starts a new file; a late
 * record stays in the current one), and a size bound. */
static int should_rotate(const sn_archiver_t *a, const struct afile *f, const sn_record_t *r,
                         const sn_archive_kind_t *kind, size_t len) {
    return f->kind != kind || hour_of(r->timestamp_ms) > f->hour ||
           (f->records > 0 && sn_archive_file_size(f->w) + (int64_t)len > a->max_bytes);
}

static int full(const sn_archiver_t *a, const struct afile *f) {
    return sn_archive_file_size(f->w) >= a->max_bytes ||
           (a->max_records > 0 && f->records >= a->max_records);
}

/* Commits the last skipped record of partitions still walking a chain of
 * already archived objects (no file of theirs is open, so no later offset of
 * theirs was stored: the stored offset only moves forward). */
static void commit_skips(sn_archiver_t *a) {
    for (size_t i = 0; i < a->max_parts; i++)
        if (a->parts[i].used && !a->parts[i].open) end_commit(a, &a->parts[i].skipf);
}

/* Handles the batch from a->pos on. SN_ERR_TRANSIENT leaves a->pos at the
 * first record not done; a fatal error ends the run. */
static int process(sn_archiver_t *a) {
    char errstr[512];
    int rc;

    while (a->pos < a->batch.n) {
        size_t i = a->pos;
        const sn_record_t *r = &a->batch.records[i];
        const sn_archive_kind_t *kind = NULL;
        struct part *p;
        struct afile *f;
        int invalid = 0, skip;

        if (a->aux[i].drop) {
            a->pos++;
            continue;
        }
        if (!(p = part_get(a, r->topic, r->partition))) {
            sn_log_error("archive", "more than archive.max.partitions=%zu partitions",
                         a->max_parts);
            return SN_ERR_FATAL;
        }
        if (r->offset <= p->last_seen) { /* seen already (a seek after a pause) */
            a->pos++;
            continue;
        }
        if (!p->open && p->verify) {
            if (r->offset > p->skip_until) {
                if ((rc = check_existing(a, p, r, &skip)) != 0) return rc;
            }
            if (r->offset <= p->skip_until) {
                p->last_seen = r->offset;
                p->nskipped++;
                end_set(a, &p->skipf, i);
                sn_counter_inc(a->m_skipped);
                atomic_fetch_add(&a->st_skipped, 1);
                a->pos++;
                continue;
            }
        }
        if ((rc = sn_archive_encode(a->schemas, r, &a->datum, &kind, &invalid, errstr,
                                    sizeof(errstr))) != 0) {
            if (rc == SN_ERR_TRANSIENT) {
                set_down(a, errstr);
                return rc;
            }
            sn_log_error("archive", "%s", errstr);
            return SN_ERR_FATAL;
        }
        if ((f = p->open) && should_rotate(a, f, r, kind, a->datum.len) &&
            (rc = file_close(a, f, errstr, sizeof(errstr))) != 0)
            goto fatal;
        if (!(f = p->open) && !(f = file_open(a, p, r, kind, errstr, sizeof(errstr)))) {
            rc = SN_ERR_FATAL;
            goto fatal;
        }
        if ((rc = sn_archive_file_append(f->w, a->datum.p, a->datum.len, errstr, sizeof(errstr))) !=
            0)
            goto fatal;
        f->last = r->offset;
        f->records++;
        f->in_bytes += (int64_t)r->len;
        if (r->timestamp_ms >= 0 && r->timestamp_ms < f->min_ts) f->min_ts = r->timestamp_ms;
        end_set(a, f, i);
        p->last_seen = r->offset;
        a->pos++;
        if (invalid) {
            sn_counter_inc(a->m_invalid);
            atomic_fetch_add(&a->st_invalid, 1);
        }
        if (full(a, f) && (rc = file_close(a, f, errstr, sizeof(errstr))) != 0) goto fatal;
        if (a->qhead && (rc = pump(a)) != 0) return rc;
    }
    commit_skips(a);
    return 0;
fatal:
    sn_log_error("archive", "%s", errstr);
    return SN_ERR_FATAL;
}

/* Closes files open longer than archive.file.max.age.ms (all with force). */
static int close_old(sn_archiver_t *a, int force) {
    int64_t now = mono_ms();
    char errstr[512];

    for (size_t i = 0; i < a->max_parts; i++) {
        struct afile *f = a->parts[i].used ? a->parts[i].open : NULL;

        if (f && (force || now - f->opened_ms >= a->max_age_ms) &&
            file_close(a, f, errstr, sizeof(errstr)) != 0) {
            sn_log_error("archive", "%s", errstr);
            return SN_ERR_FATAL;
        }
    }
    return 0;
}

/* /readyz: ready once the group gave us partitions. */
static void set_ready(sn_archiver_t *a) {
    int ready = sn_consumer_assigned(a->c) > 0;

    if (ready == a->ready) return;
    a->ready = ready;
    if (ready) a->last_record_ms = mono_ms(); /* idle counts from the assignment */
    sn_httpd_set_ready(a->httpd, ready, ready ? NULL : "no partitions assigned");
}

/* ---- lifecycle ---------------------------------------------------------------------- */

/* Spool folders are per process ("sentinel-spool-<pid>"); those of processes
 * that are gone (killed) are removed, their files were never committed. */
static void clean_stale_spools(const char *base) {
    DIR *d = opendir(base);
    struct dirent *e;

    if (!d) return;
    while ((e = readdir(d))) {
        char path[PATH_MAX + 300], proc[64], *end;
        long pid;

        if (strncmp(e->d_name, "sentinel-spool-", 15) != 0) continue;
        pid = strtol(e->d_name + 15, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        snprintf(proc, sizeof(proc), "/proc/%ld", pid);
        if (access(proc, F_OK) == 0) continue;
        snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
        {
            DIR *sd = opendir(path);
            struct dirent *se;

            if (!sd) continue;
            while ((se = readdir(sd))) {
                char fp[PATH_MAX + 600];

                if (se->d_name[0] == '.') continue;
                snprintf(fp, sizeof(fp), "%s/%s", path, se->d_name);
                unlink(fp);
            }
            closedir(sd);
            rmdir(path);
        }
    }
    closedir(d);
}

/* archive.topics is "a,b,c"; a bounded number of topics. */
static int split_topics(sn_archiver_t *a, const char *list, char *errstr, size_t errstr_size) {
    const char *p = list;

    while (*p) {
        size_t n = strcspn(p, ",");

        while (n && *p == ' ') p++, n--;
        if (n) {
            if (a->ntopics >= TOPICS_MAX)
                return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "more than %d topics",
                                  TOPICS_MAX);
            if (!(a->topics[a->ntopics++] = strndup(p, n)))
                return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        }
        p += n;
        if (*p == ',') p++;
    }
    if (!a->ntopics) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "no topics to archive");
    return 0;
}

sn_archiver_t *sn_archiver_new(const sn_conf_t *conf, const sn_archiver_opts_t *opts, char *errstr,
                               size_t errstr_size) {
    sn_archiver_opts_t none;
    sn_archiver_t *a = calloc(1, sizeof(*a));
    sn_consumer_opts_t co;
    const char *spool = sn_conf_str(conf, "archive.spool.dir");
    char base[SPOOL_DIR_MAX - 64];
    int rc;

    memset(&none, 0, sizeof(none));
    if (!opts) opts = &none;
    if (!a) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&a->oldest_ts_ms, -1);
    a->max_bytes = sn_conf_int(conf, "archive.file.max.bytes");
    a->max_age_ms = sn_conf_int(conf, "archive.file.max.age.ms");
    a->max_records = sn_conf_int(conf, "archive.file.max.records");
    a->block_bytes = (size_t)sn_conf_int(conf, "archive.block.bytes");
    a->backoff_ms = sn_conf_int(conf, "archive.retry.backoff.ms");
    a->backoff_max_ms = sn_conf_int(conf, "archive.retry.backoff.max.ms");
    a->shutdown_ms = sn_conf_int(conf, "archive.shutdown.timeout.ms");
    a->max_parts = (size_t)sn_conf_int(conf, "archive.max.partitions");
    a->idle_exit_ms = opts->idle_exit_ms;
    a->rng = ((uint64_t)wall_ms() << 16) ^ (uint64_t)getpid() ^ 0x2545F4914F6CDD1DULL;
    a->datum.max = DATUM_MAX;
    a->metrics = opts->metrics;
    a->httpd = opts->httpd;
    if (!(a->parts = calloc(a->max_parts, sizeof(*a->parts))) ||
        !(a->aux =
              calloc((size_t)sn_conf_int(conf, "archive.batch.max.records"), sizeof(*a->aux)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (opts->ntopics) {
        for (size_t i = 0; i < opts->ntopics && i < TOPICS_MAX; i++)
            if (!(a->topics[a->ntopics++] = strdup(opts->topics[i]))) {
                sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
                goto fail;
            }
    } else if (split_topics(a, sn_conf_str(conf, "archive.topics"), errstr, errstr_size) != 0) {
        goto fail;
    }
    if (!(a->sink = sn_archive_sink_new(
              conf, opts->url ? opts->url : sn_conf_str(conf, "archive.url"), errstr, errstr_size)))
        goto fail;
    if ((rc = sn_archive_sink_probe(a->sink, errstr, errstr_size)) != 0) {
        if (rc != SN_ERR_TRANSIENT) goto fail;
        sn_log_warn("archive", "%s not reachable yet (will retry): %s",
                    sn_archive_sink_location(a->sink), errstr);
    }
    a->sink_retries_seen = sn_archive_sink_retries(a->sink);
    if (!(a->schemas = sn_archive_schemas_new(conf, errstr, errstr_size))) goto fail;

    if (!spool[0]) spool = getenv("TMPDIR");
    if (!spool || !spool[0]) spool = "/tmp";
    snprintf(base, sizeof(base), "%s", spool);
    if (mkdir(base, 0755) != 0 && errno != EEXIST) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "archive.spool.dir %s: %s", base,
                   strerror(errno));
        goto fail;
    }
    clean_stale_spools(base);
    snprintf(a->spool_dir, sizeof(a->spool_dir), "%s/sentinel-spool-%ld", base, (long)getpid());
    if (mkdir(a->spool_dir, 0700) != 0 && errno != EEXIST) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", a->spool_dir, strerror(errno));
        a->spool_dir[0] = '\0';
        goto fail;
    }

    memset(&co, 0, sizeof(co));
    co.group_id = sn_conf_str(conf, "archive.group.id");
    co.topics = (const char *const *)a->topics;
    co.ntopics = a->ntopics;
    co.bootstrap = opts->bootstrap;
    co.batch_max_records = (size_t)sn_conf_int(conf, "archive.batch.max.records");
    co.batch_max_ms = (int)sn_conf_int(conf, "archive.batch.max.ms");
    co.on_revoke = on_revoke;
    co.opaque = a;
    if (!(a->c = sn_consumer_new(conf, &co, errstr, errstr_size))) goto fail;
    metrics_init(a);
    sn_httpd_set_ready(a->httpd, 0, "no partitions assigned");
    sn_log_info("archive", "archiving %zu topics to %s (group %s, spool %s)", a->ntopics,
                sn_archive_sink_location(a->sink), co.group_id, a->spool_dir);
    return a;
fail:
    sn_archiver_destroy(a);
    return NULL;
}

/* Closes every file and uploads for at most archive.shutdown.timeout.ms,
 * serving the group meanwhile; what is left is dropped uncommitted. */
static void flush_all(sn_archiver_t *a, volatile int *stop, int64_t budget_ms) {
    int64_t deadline = mono_ms() + budget_ms;

    commit_skips(a);
    if (close_old(a, 1) != 0) return;
    while (a->qhead && pump(a) != 0) {
        if (mono_ms() >= deadline || (stop && *stop > 1)) break;
        sn_consumer_serve(a->c, &a->batch, POLL_MS);
        sn_httpd_heartbeat(a->httpd);
    }
    if (a->qhead) {
        size_t n = 0;

        for (struct afile *f = a->qhead; f; f = f->next) n++;
        sn_log_error("archive",
                     "%zu files could not be uploaded before the shutdown deadline; "
                     "their records are consumed again at the next start",
                     n);
    }
    while (a->qhead) {
        struct afile *f = a->qhead;

        queue_remove(a, f);
        file_free(a, f);
    }
    update_oldest(a);
}

/* The loop: work in hand first (a held batch or queued uploads, respecting the
 * backoff while the sink fails), else a new micro-batch; then age-based
 * closes, the oldest-unarchived gauge and the idle exit. */
int sn_archiver_run(sn_archiver_t *a, volatile int *stop) {
    int rc = 0;

    a->last_record_ms = mono_ms();
    while (!*stop) {
        int n;

        sn_httpd_heartbeat(a->httpd);
        set_ready(a);
        if (a->pos < a->batch.n || a->qhead) {
            /* work in hand: once the backoff allows, upload what waits, then
             * go on with the batch where it stopped */
            if (a->down && mono_ms() < a->retry_at_ms) {
                sn_consumer_serve(a->c, &a->batch, POLL_MS);
                goto housekeeping;
            }
            if (a->qhead && pump(a) != 0) {
                sn_consumer_serve(a->c, &a->batch, POLL_MS);
                goto housekeeping;
            }
            if (a->down) count_retries(a, 1); /* a lookup or schema fetch is retried */
            rc = process(a);
            if (rc == SN_ERR_TRANSIENT) {
                rc = 0;
                goto housekeeping;
            }
            if (rc != 0) break;
            set_up(a);
            if (a->pos < a->batch.n) goto housekeeping;
        }
        compact(a);
        memset(a->aux, 0, a->batch.cap ? a->batch.cap * sizeof(*a->aux) : 0);
        n = sn_consumer_poll_batch(a->c, &a->batch, POLL_MS);
        a->pos = 0;
        if (n < 0) {
            rc = n;
            break;
        }
        if (n > 0) {
            if (!atomic_load(&a->first_record_ms)) atomic_store(&a->first_record_ms, mono_ms());
            rc = process(a);
            a->last_record_ms = mono_ms(); /* idle counts from the end of the work */
            if (rc == SN_ERR_TRANSIENT)
                rc = 0;
            else if (rc != 0)
                break;
        }
    housekeeping:
        if (close_old(a, 0) != 0) {
            rc = SN_ERR_FATAL;
            break;
        }
        if (a->qhead && !a->down) pump(a);
        update_oldest(a);
        if (a->down || a->pos < a->batch.n || a->qhead) a->last_record_ms = mono_ms();
        if (a->idle_exit_ms > 0 && !a->down && a->pos >= a->batch.n && a->ready &&
            mono_ms() - a->last_record_ms >= a->idle_exit_ms) {
            sn_log_info("archive", "idle for %lld ms: finishing", (long long)a->idle_exit_ms);
            atomic_store(&a->idle_start_ms, a->last_record_ms);
            break;
        }
    }
    {
        int64_t t0 = mono_ms();

        flush_all(a, stop, a->shutdown_ms);
        atomic_store(&a->final_flush_ms, mono_ms() - t0);
    }
    compact(a);
    sn_consumer_release_batch(&a->batch);
    a->pos = 0;
    if (sn_consumer_commit_sync(a->c) != 0) sn_log_warn("archive", "final commit failed");
    return rc;
}

void sn_archiver_stats(const sn_archiver_t *a, sn_archiver_stats_t *out) {
    sn_archiver_t *m = (sn_archiver_t *)a;

    out->records = atomic_load(&m->st_records);
    out->objects = atomic_load(&m->st_objects);
    out->bytes = atomic_load(&m->st_bytes);
    out->invalid = atomic_load(&m->st_invalid);
    out->skipped = atomic_load(&m->st_skipped);
    out->retries = atomic_load(&m->st_retries);
    out->failures = atomic_load(&m->st_failures);
    out->in_bytes = atomic_load(&m->st_in_bytes);
    {
        int64_t f = atomic_load(&m->first_record_ms), l = atomic_load(&m->last_upload_ms);

        int64_t idle = atomic_load(&m->idle_start_ms);

        if (idle && l > idle) l = idle + atomic_load(&m->final_flush_ms);
        out->busy_s = (f && l > f) ? (double)(l - f) / 1000.0 : 0.0;
    }
}

const char *sn_archiver_location(const sn_archiver_t *a) {
    return sn_archive_sink_location(a->sink);
}

void sn_archiver_destroy(sn_archiver_t *a) {
    if (!a) return;
    if (a->metrics) sn_metrics_unregister_fn(a->metrics, a);
    if (a->c) {
        compact(a);
        sn_consumer_release_batch(&a->batch);
        a->pos = 0;
        sn_consumer_destroy(a->c); /* may call on_revoke: state still valid */
    }
    for (size_t i = 0; a->parts && i < a->max_parts; i++) {
        if (!a->parts[i].used) continue;
        end_release(a, &a->parts[i].skipf);
        if (a->parts[i].open) {
            struct afile *f = a->parts[i].open;

            a->parts[i].open = NULL;
            file_free(a, f);
        }
    }
    while (a->qhead) {
        struct afile *f = a->qhead;

        queue_remove(a, f);
        file_free(a, f);
    }
    sn_batch_free(&a->batch);
    if (a->spool_dir[0]) rmdir(a->spool_dir);
    sn_archive_schemas_destroy(a->schemas);
    sn_archive_sink_destroy(a->sink);
    sn_archive_buf_free(&a->datum);
    for (size_t i = 0; i < a->ntopics; i++) free(a->topics[i]);
    free(a->parts);
    free(a->aux);
    free(a);
}

/* Uploads one random file count times under distinct keys, timed; the keys
 * are removed afterwards so a benchmark leaves nothing behind. */
int sn_archiver_put_bench(const sn_conf_t *conf, const char *url, int count, size_t size,
                          double *seconds, char *errstr, size_t errstr_size) {
    sn_archive_sink_t *sink = NULL;
    char path[PATH_MAX], key[SN_ARCHIVE_KEY_MAX];
    const char *tmp = getenv("TMPDIR");
    uint64_t x = (uint64_t)wall_ms() | 1;
    struct timespec t0, t1;
    FILE *f = NULL;
    int rc = 0;

    *seconds = 0;
    snprintf(path, sizeof(path), "%s/sentinel-putbench-%ld.bin", tmp && tmp[0] ? tmp : "/tmp",
             (long)getpid());
    if (!(sink = sn_archive_sink_new(conf, url ? url : sn_conf_str(conf, "archive.url"), errstr,
                                     errstr_size)))
        return SN_ERR_INVALID;
    if (!(f = fopen(path, "wb"))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < size; i += 8) { /* incompressible, so no layer can cheat */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        fwrite(&x, 1, size - i < 8 ? size - i : 8, f);
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    f = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < count; i++) {
        const char *pre = sn_archive_sink_prefix(sink);

        snprintf(key, sizeof(key), "%s%s_bench/%ld-%d.bin", pre, pre[0] ? "/" : "", (long)getpid(),
                 i);
        if ((rc = sn_archive_sink_put(sink, key, path, errstr, errstr_size)) != 0) goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int i = 0; i < count; i++) {
        const char *pre = sn_archive_sink_prefix(sink);
        char e2[256];

        snprintf(key, sizeof(key), "%s%s_bench/%ld-%d.bin", pre, pre[0] ? "/" : "", (long)getpid(),
                 i);
        sn_archive_sink_delete(sink, key, e2, sizeof(e2));
    }
out:
    if (f) fclose(f);
    unlink(path);
    sn_archive_sink_destroy(sink);
    return rc;
}
