/* The keys of `sentinel archive` (consumers/archiver.c). The S3 client's own
 * keys (endpoint, region, credentials, retries, multipart) are s3.*. */
#include "consumers/archiver_conf.h"

const sn_conf_def_t sn_archiver_conf_defs[] = {
    {"archive.url", SN_CONF_STR, "file://archive", 0, 0, NULL, 0,
     "Where the archive goes: s3://bucket[/prefix] or file://DIR (a local folder, written "
     "with a temporary name, fsync and rename). Both use the same key layout."},
    {"archive.group.id", SN_CONF_STR, "sentinel-archiver", 0, 0, NULL, 0,
     "Consumer group of the archiver."},
    {"archive.topics", SN_CONF_STR, "telemetry,telemetry.scores", 0, 0, NULL, 0,
     "Comma-separated topics to archive."},
    {"archive.file.max.bytes", SN_CONF_INT, "67108864", 4096, 5368709120.0, NULL, 0,
     "An archive file is closed and uploaded once it reaches about this size."},
    {"archive.file.max.age.ms", SN_CONF_INT, "300000", 100, 86400000, NULL, 0,
     "An archive file is closed and uploaded this long after it was opened, full or not; "
     "bounds how old the newest archived data can be."},
    {"archive.file.max.records", SN_CONF_INT, "0", 0, 1000000000, NULL, 0,
     "An archive file is closed after this many records; 0 for no limit."},
    {"archive.block.bytes", SN_CONF_INT, "1048576", 4096, 67108864, NULL, 0,
     "Uncompressed size of an Avro block (the unit of snappy compression); one block per "
     "open file is held in memory."},
    {"archive.spool.dir", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Local folder for files being written, before upload; empty uses $TMPDIR or /tmp. "
     "Needs room for one file per assigned partition."},
    {"archive.batch.max.records", SN_CONF_INT, "5000", 1, 1000000, NULL, 0,
     "Most records taken from Kafka per micro-batch."},
    {"archive.batch.max.ms", SN_CONF_INT, "200", 1, 60000, NULL, 0,
     "A partial micro-batch is handled after this many milliseconds."},
    {"archive.retry.backoff.ms", SN_CONF_INT, "500", 1, 600000, NULL, 0,
     "While the sink is failing, the first retry waits up to this long (full jitter); the "
     "bound doubles per failure up to archive.retry.backoff.max.ms. Partitions stay paused "
     "meanwhile and nothing is committed."},
    {"archive.retry.backoff.max.ms", SN_CONF_INT, "30000", 1, 3600000, NULL, 0,
     "Largest retry delay bound while the sink is failing, in milliseconds."},
    {"archive.max.partitions", SN_CONF_INT, "1024", 1, 65536, NULL, 0,
     "Most partitions one archiver holds state and open files for; more is a fatal error."},
    {"archive.shutdown.timeout.ms", SN_CONF_INT, "30000", 0, 3600000, NULL, 0,
     "On SIGTERM, how long to keep trying to upload the open files before exiting without "
     "committing them (their records are consumed again on restart)."},
    SN_CONF_END,
};
