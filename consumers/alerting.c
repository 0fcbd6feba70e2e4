#include "consumers/alerting.h"

#include <stdlib.h>
#include <string.h>

#include "schemas/event.h"

struct incident {
    char machine_id[SN_EVENT_ID_MAX];
    int64_t last_notify_ms;
    uint32_t below;
    struct incident *next;
};

struct sn_alerter {
    sn_alerter_opts_t opts;
    struct incident **buckets;
    size_t nbuckets;
    sn_alerter_stats_t stats;
};

/* FNV-1a: machine ids are short, and this is not exposed to hash flooding any
 * more than the bounded map lets it be. */
static size_t hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

sn_alerter_t *sn_alerter_new(const sn_alerter_opts_t *opts) {
    sn_alerter_t *a = calloc(1, sizeof(*a));

    if (!a) return NULL;
    a->opts = *opts;
    a->nbuckets = 1024;
    while (a->nbuckets < opts->max_open && a->nbuckets < (1u << 20)) a->nbuckets <<= 1;
    if (!(a->buckets = calloc(a->nbuckets, sizeof(*a->buckets)))) {
        free(a);
        return NULL;
    }
    return a;
}

void sn_alerter_destroy(sn_alerter_t *a) {
    if (!a) return;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct incident *n, *next;

        for (n = a->buckets[i]; n; n = next) {
            next = n->next;
            free(n);
        }
    }
    free(a->buckets);
    free(a);
}

enum sn_alerting_action sn_alerter_observe(sn_alerter_t *a, const char *machine_id, int64_t ts_ms,
                                           double score, double threshold) {
    struct incident **slot = &a->buckets[hash(machine_id) & (a->nbuckets - 1)], *n;

    for (; (n = *slot); slot = &n->next)
        if (strcmp(n->machine_id, machine_id) == 0) break;

    if (score >= threshold) {
        if (!n) {
            a->stats.opened++;
            if (a->stats.open_now >= a->opts.max_open || !(n = calloc(1, sizeof(*n)))) {
                a->stats.untracked++;
                return SN_ALERTING_OPEN;
            }
            memcpy(n->machine_id, machine_id, strnlen(machine_id, SN_EVENT_ID_MAX - 1));
            n->last_notify_ms = ts_ms;
            *slot = n;
            a->stats.open_now++;
            return SN_ALERTING_OPEN;
        }
        n->below = 0;
        if (ts_ms - n->last_notify_ms >= a->opts.cooldown_ms) {
            n->last_notify_ms = ts_ms;
            a->stats.renotified++;
            return SN_ALERTING_RENOTIFY;
        }
        return SN_ALERTING_NONE;
    }
    if (!n || ++n->below < a->opts.resolve_after) return SN_ALERTING_NONE;
    *slot = n->next;
    free(n);
    a->stats.open_now--;
    a->stats.resolved++;
    return SN_ALERTING_RESOLVE;
}

void sn_alerter_stats(const sn_alerter_t *a, sn_alerter_stats_t *out) { *out = a->stats; }
