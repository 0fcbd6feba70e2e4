#include "schemas/avro_alloc.h"

#include <avro.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static _Thread_local size_t tls_cap;     /* 0: not armed */
static _Thread_local size_t tls_refused; /* last refused request since arm */
static atomic_ullong stat_refusals;
static atomic_size_t stat_largest_refused;
static atomic_size_t stat_largest_granted;

/* Raises *slot to v if v is larger; lock-free so that it is safe on any thread. */
static void atomic_max(atomic_size_t *slot, size_t v) {
    size_t cur = atomic_load_explicit(slot, memory_order_relaxed);

    while (v > cur && !atomic_compare_exchange_weak_explicit(slot, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

/* The avro-c allocator contract is Lua's: nsize 0 frees and returns NULL,
 * otherwise realloc. osize is not trusted (avro-c passes approximate sizes in
 * places), so it is not used for accounting. A refused request returns NULL
 * and leaves ptr untouched, as realloc would on failure. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (tls_cap != 0) {
        if (nsize > tls_cap) {
            tls_refused = nsize;
            atomic_fetch_add_explicit(&stat_refusals, 1, memory_order_relaxed);
            atomic_max(&stat_largest_refused, nsize);
            return NULL;
        }
        atomic_max(&stat_largest_granted, nsize);
    }
    return realloc(ptr, nsize);
}

/* Both the default allocator and this one are realloc/free underneath, so a
 * block allocated before installation can be freed after it. */
static void install(void) { avro_set_allocator(capped_alloc, NULL); }

void sn_avro_alloc_install(void) { pthread_once(&install_once, install); }

void sn_avro_alloc_arm(size_t cap) {
    tls_cap = cap;
    tls_refused = 0;
}

size_t sn_avro_alloc_refused(void) { return tls_refused; }

void sn_avro_alloc_stats(sn_avro_alloc_stats_t *out) {
    out->refusals = atomic_load(&stat_refusals);
    out->largest_refused = atomic_load(&stat_largest_refused);
    out->largest_granted_armed = atomic_load(&stat_largest_granted);
}

void sn_avro_alloc_stats_reset(void) {
    atomic_store(&stat_refusals, 0);
    atomic_store(&stat_largest_refused, 0);
    atomic_store(&stat_largest_granted, 0);
}
