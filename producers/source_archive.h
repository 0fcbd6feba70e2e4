/* source_archive.h: reading back what `sentinel archive` wrote.
 *
 * The archive layout (consumers/archive_int.h) is
 *   <root>/<topic>/dt=YYYY-MM-DD/hour=HH/partition=P/<first>-<last>.avro
 * with dt/hour from the first record's Kafka timestamp; root is file://DIR or
 * s3://bucket[/prefix], the same URL as archive.url.
 *
 * For an event-time range [from, to) the reader lists only the hour folders
 * that can hold it: from the hour before from's (an object opened then may
 * run into the range) to the hour of to + archive.read.lateness.ms (records
 * that reached Kafka late); S3 is listed one day folder per request and the
 * day's keys kept while its hours are read. Each listed object is fetched
 * once, whole (at
 * most archive.read.object.max.bytes), and decoded with the codec against
 * the reader schema; RawRecord objects (records that were not valid frames)
 * are skipped and counted. Within a partition a record whose offset is not
 * above the last one read is a duplicate (overlapping objects, which the
 * archiver never writes) and is dropped and counted, so every offset is
 * delivered at most once.
 *
 * Telemetry comes out in event-time order (by time, then machine id, then
 * read order), so in order per machine, with bounded memory: hour folders
 * are read one at a time, and after folder H the buffered events older than
 * the end of H minus the lateness are sorted and delivered; at most
 * archive.read.buffer.events are held (more is an error naming the key). A
 * record older than what was already delivered is dropped and counted as
 * late. Scores are streamed in archive order (no sort needed for a
 * distribution).
 *
 * A handle is used by one thread at a time. */
#ifndef SN_SOURCE_ARCHIVE_H
#define SN_SOURCE_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "schemas/codec.h"
#include "schemas/event.h"

#define SN_SOURCE_ARCHIVE_HOUR_MS 3600000LL

typedef struct sn_source_archive sn_source_archive_t;

enum sn_source_archive_what {
    SN_SOURCE_ARCHIVE_EVENTS = 0, /* telemetry, in event-time order */
    SN_SOURCE_ARCHIVE_SCORES = 1, /* scorer outputs (schemas/score.avsc) */
};

/* Options; strings are borrowed for sn_source_archive_new (copied). */
typedef struct sn_source_archive_opts {
    const char *url;        /* file://DIR or s3://bucket[/prefix] */
    const char *topic;      /* e.g. "telemetry" */
    int64_t from_ms, to_ms; /* event times from <= ts < to; both required */
    const sn_conf_t *conf;  /* archive.read.* and s3.* keys; borrowed for the call */
    sn_codec_t *codec;      /* borrowed; must outlive the handle */
    int progress;           /* log a progress line at most every 5 s */
} sn_source_archive_opts_t;

/* Counters of a read so far. */
typedef struct sn_source_archive_stats {
    uint64_t hours;       /* hour folders listed */
    uint64_t objects;     /* objects read (raw ones included) */
    uint64_t bytes;       /* their bytes */
    uint64_t raw_objects; /* RawRecord objects skipped */
    uint64_t records;     /* records decoded */
    uint64_t delivered;   /* records returned */
    uint64_t outside;     /* decoded but outside [from, to) */
    uint64_t bad;         /* records the codec refused (skipped) */
    uint64_t late;        /* older than what was delivered already: dropped */
    uint64_t duplicates;  /* offset already read in its partition: dropped */
    uint64_t overlapping; /* objects whose offset range overlaps one read before */
} sn_source_archive_stats_t;

/* Parses the URL and prepares the client; lists nothing yet. NULL with
 * errstr for a bad URL, a missing range or bad options. */
sn_source_archive_t *sn_source_archive_new(const sn_source_archive_opts_t *opts,
                                           enum sn_source_archive_what what, char *errstr,
                                           size_t errstr_size);

/* NULL-safe. */
void sn_source_archive_destroy(sn_source_archive_t *a);

/* The next event (EVENTS) or score (SCORES). 1 with the record, 0 at the
 * end, SN_ERR_INVALID for one bad record (skipped: call again), any other
 * negative sn_err when the archive cannot be read further (a damaged object,
 * S3 unreachable, the buffer bound): stop. */
int sn_source_archive_next_event(sn_source_archive_t *a, sn_event_t *ev, char *errstr,
                                 size_t errstr_size);
int sn_source_archive_next_score(sn_source_archive_t *a, sn_score_t *sc, char *errstr,
                                 size_t errstr_size);

void sn_source_archive_stats(const sn_source_archive_t *a, sn_source_archive_stats_t *out);

/* "s3://bucket/prefix" or "file:///abs/dir" (borrowed). */
const char *sn_source_archive_location(const sn_source_archive_t *a);

/* Hex SHA-256 of the sorted list of objects read ("key size" lines): what
 * identifies the training data of an archive read. */
void sn_source_archive_digest(const sn_source_archive_t *a, char hex[65]);

#endif
