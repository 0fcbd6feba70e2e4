#include "consumers/alerting.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "schemas/event.h"

struct incident {
    char machine_id[SN_EVENT_ID_MAX];
    int64_t last_notify_ms;
    uint32_t below;
    struct incident *next;
};

/* A machine's state before an observation since the checkpoint. */
struct undo {
    char machine_id[SN_EVENT_ID_MAX];
    int had; /* an incident was open */
    int64_t last_notify_ms;
    uint32_t below;
};

struct sn_alerter {
    sn_alerter_opts_t opts;
    struct incident **buckets;
    size_t nbuckets;
    sn_alerter_stats_t stats;
    /* the journal since sn_alerter_checkpoint: one entry per observation, so
     * bounded by the batch that the caller checkpoints around */
    int journaling, journal_lost;
    struct undo *journal;
    size_t njournal, capjournal;
    sn_alerter_stats_t saved;
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
    free(a->journal);
    free(a);
}

/* Records n's state (NULL: no open incident) before observe changes it. A
 * journal that cannot grow is marked lost, and the rollback then says so. */
static void journal(sn_alerter_t *a, const char *machine_id, const struct incident *n) {
    struct undo *u;

    if (a->njournal == a->capjournal) {
        size_t cap = a->capjournal ? 2 * a->capjournal : 256;
        struct undo *p = realloc(a->journal, cap * sizeof(*p));

        if (!p) {
            a->journal_lost = 1;
            return;
        }
        a->journal = p;
        a->capjournal = cap;
    }
    u = &a->journal[a->njournal++];
    memset(u, 0, sizeof(*u));
    memcpy(u->machine_id, machine_id, strnlen(machine_id, SN_EVENT_ID_MAX - 1));
    if ((u->had = n != NULL)) {
        u->last_notify_ms = n->last_notify_ms;
        u->below = n->below;
    }
}

void sn_alerter_checkpoint(sn_alerter_t *a) {
    a->journaling = 1;
    a->journal_lost = 0;
    a->njournal = 0;
    a->saved = a->stats;
}

/* Undoes the journal newest first, so that a machine observed several times
 * ends in its state before the first observation. */
int sn_alerter_rollback(sn_alerter_t *a) {
    int rc = a->journal_lost ? SN_ERR_NOMEM : 0;

    if (!a->journaling) return SN_ERR_INVALID;
    while (a->njournal > 0 && rc == 0) {
        const struct undo *u = &a->journal[--a->njournal];
        struct incident **slot = &a->buckets[hash(u->machine_id) & (a->nbuckets - 1)], *n;

        for (; (n = *slot); slot = &n->next)
            if (strcmp(n->machine_id, u->machine_id) == 0) break;
        if (!u->had) {
            if (n) {
                *slot = n->next;
                free(n);
            }
            continue;
        }
        if (!n) {
            if (!(n = calloc(1, sizeof(*n)))) {
                rc = SN_ERR_NOMEM;
                break;
            }
            memcpy(n->machine_id, u->machine_id, sizeof(n->machine_id));
            *slot = n;
        }
        n->last_notify_ms = u->last_notify_ms;
        n->below = u->below;
    }
    a->stats = a->saved;
    sn_alerter_checkpoint(a);
    return rc;
}

enum sn_alerting_action sn_alerter_observe(sn_alerter_t *a, const char *machine_id, int64_t ts_ms,
                                           double score, double threshold) {
    struct incident **slot = &a->buckets[hash(machine_id) & (a->nbuckets - 1)], *n;

    for (; (n = *slot); slot = &n->next)
        if (strcmp(n->machine_id, machine_id) == 0) break;
    if (a->journaling) journal(a, machine_id, n);

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
