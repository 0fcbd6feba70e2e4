/* avro_alloc.h (internal to schemas/): the capped avro-c allocator.
 *
 * avro-c 1.11 allocates a string's or bytes' claimed length before it checks
 * that the data holds that many bytes, so a 9-byte frame can make it ask for
 * gigabytes. avro-c has one process-global allocator (avro_set_allocator), so
 * the cap is per thread instead: a thread "arms" a cap around its decode call
 * and any single avro-c request above it fails (avro-c then returns ENOMEM);
 * on threads that are not armed the allocator is plain realloc/free, so other
 * avro-c users (the archiver's container files) are not limited.
 *
 * Thread safety: installation happens once (pthread_once) and never changes;
 * the cap and the "refused" note are thread-local; the statistics are atomic. */
#ifndef SN_SCHEMAS_AVRO_ALLOC_H
#define SN_SCHEMAS_AVRO_ALLOC_H

#include <stddef.h>

/* Installs the allocator into avro-c, once per process. Idempotent, thread-safe. */
void sn_avro_alloc_install(void);

/* Arms cap bytes (0 disarms) on the calling thread and clears its refused note. */
void sn_avro_alloc_arm(size_t cap);

/* Size of the last request refused on this thread since the last arm, 0 if none. */
size_t sn_avro_alloc_refused(void);

/* Process-wide statistics, for tests and metrics: number of refused requests,
 * the largest request refused, and the largest request granted on an armed
 * thread (so a test can prove nothing above the cap was allocated). */
typedef struct sn_avro_alloc_stats {
    unsigned long long refusals;
    size_t largest_refused;
    size_t largest_granted_armed;
} sn_avro_alloc_stats_t;

void sn_avro_alloc_stats(sn_avro_alloc_stats_t *out);

/* Resets the statistics (tests). */
void sn_avro_alloc_stats_reset(void);

#endif
