/* The keys of the archive reader (producers/source_archive.c), used by
 * `sentinel train --input URL` and `sentinel drift --input URL`. Where the
 * archive is comes from the command line; the S3 client's keys are s3.*. */
#include "producers/source_archive_conf.h"

const sn_conf_def_t sn_source_archive_conf_defs[] = {
    {"archive.read.lateness.ms", SN_CONF_INT, "3600000", 0, 2592000000.0, NULL, 0,
     "How much later than its event time a record may have reached Kafka and still be "
     "delivered in event-time order. The hour folders from the one before --from to the one "
     "of (--to + this) are read; after hour folder H, events older than the end of H minus "
     "this are delivered, so about (this + 1 hour) of events is held. A record older than "
     "what was delivered already is dropped and counted as late. Raise it to read a "
     "backfill (old events produced recently); at most 30 days."},
    {"archive.read.buffer.events", SN_CONF_INT, "1000000", 1000, 100000000, NULL, 0,
     "Most events held while sorting by event time (about 350 bytes each); more is an error "
     "that names this key, never a silent cut."},
    {"archive.read.object.max.bytes", SN_CONF_INT, "536870912", 4096, 17179869184.0, NULL, 0,
     "Largest archive object read (it is held in memory while decoded); a larger one is an "
     "error."},
    SN_CONF_END};
