/* produce.h: the telemetry producer's run loop (`sentinel produce`, and the
 * demo's replay): read a source, encode each event in the Confluent framing,
 * produce it keyed by machine id at a controlled rate, and account for every
 * event: delivered, failed, or rejected as bad input with the reason logged. */
#ifndef SN_PRODUCE_H
#define SN_PRODUCE_H

#include <stdint.h>

#include "common/conf.h"
#include "producers/source.h"

typedef struct sn_produce_opts {
    sn_source_opts_t source; /* schema-independent parts; the schema view is the codec's */
    uint64_t skip;           /* events read and not sent first (replay a tail) */
    uint64_t count;          /* events to send after skip; 0: until the source ends */
    double rate;             /* events per second; 0: as fast as possible */
    const char *topic;       /* NULL: topic.telemetry */
    const char *bootstrap;   /* NULL: kafka.bootstrap.servers (mock cluster otherwise) */
    int progress;            /* print a progress line on stderr (a terminal) */
    volatile int *stop;      /* borrowed; stop early when it becomes non-zero */
    /* "FIELD=DELTA" pairs (borrowed): DELTA is added to FIELD of every event
     * sent, a controlled shift for drift drills. At most SN_PRODUCE_SHIFT_MAX. */
    const char *const *shift;
    size_t nshift;
} sn_produce_opts_t;

#define SN_PRODUCE_SHIFT_MAX 16

typedef struct sn_produce_result {
    uint64_t read;      /* events read from the source, skipped ones included */
    uint64_t bad;       /* rows the source or the encoder rejected (each logged) */
    uint64_t sent;      /* enqueued to Kafka */
    uint64_t delivered; /* acknowledged by the broker */
    uint64_t failed;    /* delivery failed */
    double seconds;
    char last_error[256];
} sn_produce_result_t;

/* Runs to the end of the source (or count, or *stop) and waits for every
 * delivery report (at most 30 s after the last send). conf is borrowed.
 * Returns 0 when every sent event was delivered; SN_ERR_TRANSIENT when some
 * failed; SN_ERR_INVALID for bad options. */
int sn_produce_run(const sn_conf_t *conf, const sn_produce_opts_t *opts, sn_produce_result_t *res,
                   char *errstr, size_t errstr_size);

#endif
