/* archiver.h: `sentinel archive`, every event of the archived topics to S3
 * (or a local folder) as Avro object container files.
 *
 * Layout, one object per file:
 *   <prefix>/<topic>/dt=YYYY-MM-DD/hour=HH/partition=P/<first>-<last>.avro
 * first and last are the Kafka offsets of the file's first and last record
 * (20 digits, zero-padded); dt and hour are the UTC hour of the first record's
 * Kafka timestamp, so the key of a file depends only on the data in it.
 * Each record carries kafka_partition, kafka_offset and kafka_timestamp (see
 * consumers/archive_int.h for the archive schema).
 *
 * Exactly once in the archive:
 *   - offsets are stored (committed) only after the file holding them is
 *     uploaded; a file is uploaded whole or not at all;
 *   - after a crash between an upload and its commit the consumer starts again
 *     at the file's first offset. Before opening a file at a partition's first
 *     record after an assignment, the archiver looks in the sink for an
 *     object starting at that offset (one LIST of
 *     ".../partition=P/<first>-"); if there is one, its records are already
 *     archived and are skipped up to its last offset, then the check repeats
 *     at the next record, so a chain of uploaded-but-uncommitted files is
 *     walked. The new files therefore never overlap the old ones, however
 *     differently they are cut (rotation by age is not deterministic). The
 *     skipped records are committed like archived ones;
 *   - records of a partition revoked while they were in hand are dropped
 *     (their new owner consumes them), the partition's files are uploaded and
 *     committed in the revocation callback, or discarded when that fails.
 * What this does not cover: committed offsets moved by hand into the middle
 * of an archived file, and a zombie member still uploading after it lost its
 * partitions. A reader can always de-duplicate by (topic, partition, offset).
 *
 * Failure: when an upload fails (after the S3 client's own retries) the
 * archiver pauses every partition, keeps serving the group, and retries with
 * exponential backoff and full jitter; nothing is committed meanwhile and at
 * most one closed file per partition waits on local disk. Memory holds one
 * Avro block per open file, one micro-batch, and the librdkafka message of
 * each file's last record (sn_consumer_commit_batch takes records, so the
 * record that commits a file is kept until its upload; it pins its fetch
 * buffer). */
#ifndef SN_ARCHIVER_H
#define SN_ARCHIVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "common/httpd.h"
#include "common/metrics.h"

typedef struct sn_archiver sn_archiver_t;

/* What the caller may override; every pointer is borrowed and must outlive
 * the archiver (metrics, httpd) or is copied (strings). */
typedef struct sn_archiver_opts {
    const char *bootstrap;     /* overrides kafka.bootstrap.servers (embedded mock cluster) */
    const char *url;           /* overrides archive.url */
    const char *const *topics; /* overrides archive.topics */
    size_t ntopics;
    sn_metrics_t *metrics; /* sentinel_archive_* metrics are registered here; may be NULL */
    sn_httpd_t *httpd;     /* readiness (an assignment) and heartbeat; may be NULL */
    int64_t idle_exit_ms;  /* > 0: sn_archiver_run returns once no record arrived for this
                              long and everything consumed is uploaded and committed */
} sn_archiver_opts_t;

/* Counters since the archiver was created (consistent enough to print; read
 * from any thread). */
typedef struct sn_archiver_stats {
    uint64_t records;  /* records uploaded and committed */
    uint64_t objects;  /* objects uploaded */
    uint64_t bytes;    /* bytes uploaded */
    uint64_t invalid;  /* records archived raw (not a valid frame of a known schema) */
    uint64_t skipped;  /* records found already archived (after a crash) and skipped */
    uint64_t retries;  /* upload retries (the S3 client's and the archiver's) */
    uint64_t failures; /* uploads that failed after the client's retries */
    uint64_t in_bytes; /* Kafka value bytes of the records uploaded */
    double busy_s;     /* from the first record consumed to the last upload, seconds */
} sn_archiver_stats_t;

/* Creates the archiver from the archive.*, s3.*, schema.* and kafka.* keys of
 * conf (borrowed for the call) and opts (borrowed for the call; may be NULL):
 * checks the sink (a missing bucket or refused credentials are errors; an
 * unreachable S3 is only logged), prepares the spool folder and joins the
 * consumer group. NULL with errstr on failure. */
sn_archiver_t *sn_archiver_new(const sn_conf_t *conf, const sn_archiver_opts_t *opts, char *errstr,
                               size_t errstr_size);

/* Runs until *stop becomes non-zero (a signal handler sets it) or, with
 * idle_exit_ms, until idle; then closes every file, uploads (for at most
 * archive.shutdown.timeout.ms), commits and returns. Returns 0, or a negative
 * sn_err on a fatal consumer error (a restart resumes from the last commit). */
int sn_archiver_run(sn_archiver_t *a, volatile int *stop);

/* Copies the counters into out. Thread-safe. */
void sn_archiver_stats(const sn_archiver_t *a, sn_archiver_stats_t *out);

/* "s3://bucket/prefix" or "file:///abs/dir" (borrowed). */
const char *sn_archiver_location(const sn_archiver_t *a);

/* Leaves the group and frees. NULL-safe. Files not uploaded are deleted from
 * the spool (their offsets were not committed). */
void sn_archiver_destroy(sn_archiver_t *a);

/* Raw PUT throughput of the sink of conf's archive.url (or url when not
 * NULL), for the benchmark: uploads count objects of size bytes of
 * incompressible data as "<prefix>/_bench/<pid>-<i>.bin" through the same
 * client and reports the seconds taken in *seconds. conf and url are borrowed
 * for the call. The objects are removed afterwards. */
int sn_archiver_put_bench(const sn_conf_t *conf, const char *url, int count, size_t size,
                          double *seconds, char *errstr, size_t errstr_size);

#endif
