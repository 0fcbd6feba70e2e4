#include "consumers/alerting.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "schemas/event.h"

/* A machine's state. Machines without an open incident are kept too (up to
 * max_known), so that a batch does not ask Redis about them again. */
struct incident {
    char machine_id[SN_EVENT_ID_MAX];
    sn_alert_mstate_t st;
    int32_t part;
    int64_t last_off;         /* offsets up to this one were decided (-1: none) */
    int64_t first_off;        /* the batch's first offset of the machine */
    sn_alert_mstate_t before; /* the state before it */
    uint64_t epoch;           /* the batch that first_off and before belong to */
    uint64_t listed;          /* the batch whose changed list holds it */
    int wanted;               /* on the list to restore, at want_off */
    int64_t want_off;
    struct incident *next;
};

/* A partition's decided offset (at-least-once). */
struct part {
    int32_t partition;
    int64_t decided;
};

/* A machine's entry before an observation since the checkpoint. */
struct undo {
    int had; /* the machine had an entry */
    struct incident copy;
};

struct sn_alerter {
    sn_alerter_opts_t opts;
    struct incident **buckets;
    size_t nbuckets;
    size_t nknown; /* entries, open or not */
    sn_alerter_stats_t stats;
    /* the journal since sn_alerter_checkpoint: one entry per observation, so
     * bounded by the batch that the caller checkpoints around */
    int journaling, journal_lost;
    struct undo *journal;
    size_t njournal, capjournal;
    sn_alerter_stats_t saved;
    /* per batch: the machines to restore and those whose state changed, each
     * at most once, so bounded by the batch's machines */
    uint64_t epoch;
    struct incident **wanted, **changed;
    size_t nwanted, capwanted, nchanged, capchanged;
    int changed_lost;
    /* at-least-once: per partition, the offset up to which every event was
     * decided and its alerts sent (restored; -1: none), and those to restore */
    struct part *parts;
    size_t nparts, capparts, last_part;
    size_t *wanted_parts;
    size_t nwanted_parts, capwanted_parts;
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
    size_t want;

    if (!a) return NULL;
    a->opts = *opts;
    a->epoch = 1;
    a->nbuckets = 1024;
    want = opts->max_open > opts->max_known ? opts->max_open : opts->max_known;
    while (a->nbuckets < want && a->nbuckets < (1u << 20)) a->nbuckets <<= 1;
    if (!(a->buckets = calloc(a->nbuckets, sizeof(*a->buckets)))) {
        free(a);
        return NULL;
    }
    return a;
}

/* Frees every entry, or (only_closed) those without an open incident or a
 * pending restore. */
static void drop_entries(sn_alerter_t *a, int only_closed) {
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct incident **slot = &a->buckets[i], *n;

        while ((n = *slot)) {
            if (only_closed && (n->st.open || n->wanted)) {
                slot = &n->next;
                continue;
            }
            *slot = n->next;
            if (n->st.open) a->stats.open_now--;
            a->nknown--;
            free(n);
        }
    }
}

void sn_alerter_destroy(sn_alerter_t *a) {
    if (!a) return;
    drop_entries(a, 0);
    free(a->buckets);
    free(a->journal);
    free(a->wanted);
    free(a->changed);
    free(a->parts);
    free(a->wanted_parts);
    free(a);
}

static struct incident **find(sn_alerter_t *a, const char *machine_id) {
    struct incident **slot = &a->buckets[hash(machine_id) & (a->nbuckets - 1)], *n;

    for (; (n = *slot); slot = &n->next)
        if (strcmp(n->machine_id, machine_id) == 0) break;
    return slot;
}

/* A new closed entry at slot (the end of its bucket), or NULL. */
static struct incident *create(sn_alerter_t *a, struct incident **slot, const char *machine_id) {
    struct incident *n = calloc(1, sizeof(*n));

    if (!n) return NULL;
    memcpy(n->machine_id, machine_id, strnlen(machine_id, SN_EVENT_ID_MAX - 1));
    n->last_off = -1;
    n->first_off = -1;
    *slot = n;
    a->nknown++;
    return n;
}

/* Appends n to a per-batch list; 0 or SN_ERR_NOMEM. */
static int push(struct incident ***list, size_t *len, size_t *cap, struct incident *n) {
    if (*len == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        struct incident **p = realloc(*list, c * sizeof(*p));

        if (!p) return SN_ERR_NOMEM;
        *list = p;
        *cap = c;
    }
    (*list)[(*len)++] = n;
    return 0;
}

/* Records n's entry (NULL: none) before observe changes it. A journal that
 * cannot grow is marked lost, and the rollback then says so. */
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
    if ((u->had = n != NULL)) u->copy = *n;
    memcpy(u->copy.machine_id, machine_id, strnlen(machine_id, SN_EVENT_ID_MAX - 1));
}

void sn_alerter_checkpoint(sn_alerter_t *a) {
    a->journaling = 1;
    a->journal_lost = 0;
    a->njournal = 0;
    a->saved = a->stats;
}

/* Undoes the journal newest first, so that a machine observed several times
 * ends in its entry before the first observation. The batch's changed list
 * goes too: the redo lists its changes again. */
int sn_alerter_rollback(sn_alerter_t *a) {
    int rc = a->journal_lost ? SN_ERR_NOMEM : 0;

    if (!a->journaling) return SN_ERR_INVALID;
    while (a->njournal > 0 && rc == 0) {
        const struct undo *u = &a->journal[--a->njournal];
        struct incident **slot = find(a, u->copy.machine_id), *n = *slot;

        if (!u->had) {
            if (n) {
                *slot = n->next;
                a->nknown--;
                free(n);
            }
            continue;
        }
        if (!n && !(n = create(a, slot, u->copy.machine_id))) {
            rc = SN_ERR_NOMEM;
            break;
        }
        {
            struct incident *next = n->next;

            *n = u->copy;
            n->next = next;
        }
    }
    a->stats = a->saved;
    a->nchanged = 0;
    a->changed_lost = 0;
    a->epoch++; /* the redo takes each machine's state before the batch again */
    sn_alerter_checkpoint(a);
    return rc;
}

void sn_alerter_batch_begin(sn_alerter_t *a) {
    a->epoch++;
    a->nwanted = a->nchanged = a->nwanted_parts = 0;
    a->changed_lost = 0;
    if (a->nknown > a->stats.open_now + a->opts.max_known) drop_entries(a, 1);
}

void sn_alerter_forget(sn_alerter_t *a) {
    a->nwanted = a->nchanged = a->nwanted_parts = 0;
    a->nparts = a->last_part = 0;
    a->changed_lost = 0;
    a->njournal = 0;
    drop_entries(a, 0);
}

/* The index of partition's entry, or nparts when there is none. */
static size_t find_part(sn_alerter_t *a, int32_t partition) {
    if (a->last_part < a->nparts && a->parts[a->last_part].partition == partition)
        return a->last_part;
    for (size_t i = 0; i < a->nparts; i++)
        if (a->parts[i].partition == partition) return a->last_part = i;
    return a->nparts;
}

/* At-least-once, a partition met for the first time: listed to restore its
 * decided offset. 0 or SN_ERR_NOMEM. */
static int want_part(sn_alerter_t *a, int32_t partition) {
    if (a->opts.redo_uncommitted || find_part(a, partition) < a->nparts) return 0;
    if (a->nparts == a->capparts) {
        size_t c = a->capparts ? 2 * a->capparts : 16;
        struct part *p = realloc(a->parts, c * sizeof(*p));

        if (!p) return SN_ERR_NOMEM;
        a->parts = p;
        a->capparts = c;
    }
    if (a->nwanted_parts == a->capwanted_parts) {
        size_t c = a->capwanted_parts ? 2 * a->capwanted_parts : 16;
        size_t *p = realloc(a->wanted_parts, c * sizeof(*p));

        if (!p) return SN_ERR_NOMEM;
        a->wanted_parts = p;
        a->capwanted_parts = c;
    }
    a->parts[a->nparts].partition = partition;
    a->parts[a->nparts].decided = -1;
    a->wanted_parts[a->nwanted_parts++] = a->nparts++;
    return 0;
}

size_t sn_alerter_nwanted_partitions(const sn_alerter_t *a) { return a->nwanted_parts; }

int32_t sn_alerter_wanted_partition(const sn_alerter_t *a, size_t i) {
    return a->parts[a->wanted_parts[i]].partition;
}

int sn_alerter_want(sn_alerter_t *a, const char *machine_id, int32_t partition, int64_t offset) {
    struct incident **slot = find(a, machine_id), *n = *slot;

    if (want_part(a, partition) != 0) return SN_ERR_NOMEM;
    if (n) return 0;
    if (!(n = create(a, slot, machine_id))) return SN_ERR_NOMEM;
    n->wanted = 1;
    n->part = partition;
    n->want_off = offset;
    if (push(&a->wanted, &a->nwanted, &a->capwanted, n) != 0) {
        *slot = NULL;
        a->nknown--;
        free(n);
        return SN_ERR_NOMEM;
    }
    return 1;
}

size_t sn_alerter_nwanted(const sn_alerter_t *a) { return a->nwanted; }

const char *sn_alerter_wanted(const sn_alerter_t *a, size_t i) { return a->wanted[i]->machine_id; }

/* A record whose batch included the offset now met was written by a batch
 * that is being delivered again: at-least-once its events were decided (and
 * sent), exactly-once they were not (its transaction did not commit). */
int sn_alerter_restore(sn_alerter_t *a, const sn_alert_record_t *const *recs,
                       const int64_t *decided) {
    for (size_t i = 0; i < a->nwanted_parts && decided; i++)
        a->parts[a->wanted_parts[i]].decided = decided[i];
    a->nwanted_parts = 0;
    for (size_t i = 0; i < a->nwanted; i++) {
        struct incident *n = a->wanted[i];
        const sn_alert_record_t *r = recs[i];

        n->wanted = 0;
        if (!r) continue;
        n->part = r->partition;
        if (a->opts.redo_uncommitted && n->want_off >= 0 && n->part == r->partition &&
            n->want_off <= r->last_offset) {
            n->st = r->before;
            n->last_off = -1;
        } else {
            n->st = r->after;
            n->last_off = r->last_offset;
        }
        /* not an observation: the checkpoint's count includes it too */
        if (n->st.open) a->stats.open_now++, a->saved.open_now++;
    }
    a->nwanted = 0;
    return 0;
}

int sn_alerter_nchanged(const sn_alerter_t *a) {
    return a->changed_lost ? SN_ERR_NOMEM : (int)a->nchanged;
}

void sn_alerter_changed(const sn_alerter_t *a, size_t i, const char **machine_id,
                        sn_alert_record_t *rec) {
    const struct incident *n = a->changed[i];

    *machine_id = n->machine_id;
    rec->partition = n->part;
    rec->first_offset = n->first_off;
    rec->last_offset = n->last_off;
    rec->before = n->before;
    rec->after = n->st;
}

/* Marks the batch's first sight of n: its state before, for the record. */
static void touch(sn_alerter_t *a, struct incident *n, int32_t partition, int64_t offset) {
    if (n->epoch != a->epoch) {
        n->epoch = a->epoch;
        n->before = n->st;
        n->first_off = offset;
    }
    n->part = partition;
    if (offset >= 0) n->last_off = offset;
}

static void changed(sn_alerter_t *a, struct incident *n) {
    if (n->listed == a->epoch) return;
    n->listed = a->epoch;
    if (push(&a->changed, &a->nchanged, &a->capchanged, n) != 0) a->changed_lost = 1;
}

enum sn_alerting_action sn_alerter_observe(sn_alerter_t *a, const char *machine_id, int64_t ts_ms,
                                           double score, double threshold) {
    return sn_alerter_observe_at(a, machine_id, 0, -1, ts_ms, score, threshold);
}

enum sn_alerting_action sn_alerter_observe_at(sn_alerter_t *a, const char *machine_id,
                                              int32_t partition, int64_t offset, int64_t ts_ms,
                                              double score, double threshold) {
    struct incident **slot = find(a, machine_id), *n = *slot;

    if (a->journaling) journal(a, machine_id, n);
    if (offset >= 0 && n && partition == n->part && offset <= n->last_off)
        return SN_ALERTING_NONE; /* decided before the restart, and sent */
    if (offset >= 0 && a->nparts) {
        size_t i = find_part(a, partition);

        if (i < a->nparts && offset <= a->parts[i].decided) return SN_ALERTING_NONE; /* same */
    }

    if (score >= threshold) {
        if (!n || !n->st.open) {
            a->stats.opened++;
            if (a->stats.open_now >= a->opts.max_open ||
                (!n && !(n = create(a, slot, machine_id)))) {
                a->stats.untracked++;
                return SN_ALERTING_OPEN;
            }
            touch(a, n, partition, offset);
            n->st.open = 1;
            n->st.last_notify_ms = ts_ms;
            n->st.below = 0;
            a->stats.open_now++;
            changed(a, n);
            return SN_ALERTING_OPEN;
        }
        touch(a, n, partition, offset);
        if (n->st.below) {
            n->st.below = 0;
            changed(a, n);
        }
        if (ts_ms - n->st.last_notify_ms >= a->opts.cooldown_ms) {
            n->st.last_notify_ms = ts_ms;
            a->stats.renotified++;
            changed(a, n);
            return SN_ALERTING_RENOTIFY;
        }
        return SN_ALERTING_NONE;
    }
    if (!n) return SN_ALERTING_NONE;
    touch(a, n, partition, offset);
    if (!n->st.open) return SN_ALERTING_NONE;
    changed(a, n);
    if (++n->st.below < a->opts.resolve_after) return SN_ALERTING_NONE;
    memset(&n->st, 0, sizeof(n->st));
    a->stats.open_now--;
    a->stats.resolved++;
    return SN_ALERTING_RESOLVE;
}

void sn_alerter_stats(const sn_alerter_t *a, sn_alerter_stats_t *out) { *out = a->stats; }

/* ---- the persisted record: "a1 <partition> <first> <last>" and the states
 * before and after, each "<open> <last notify ms> <below>"; text, so that it
 * reads in redis-cli. */

int sn_alert_record_format(const sn_alert_record_t *r, char *buf, size_t size) {
    int n = snprintf(buf, size,
                     "a1 %" PRId32 " %" PRId64 " %" PRId64 " %d %" PRId64 " %" PRIu32 " %d %" PRId64
                     " %" PRIu32,
                     r->partition, r->first_offset, r->last_offset, r->before.open != 0,
                     r->before.last_notify_ms, r->before.below, r->after.open != 0,
                     r->after.last_notify_ms, r->after.below);

    if (n < 0 || (size_t)n >= size) return SN_ERR_NOMEM;
    return n;
}

/* One space-separated integer in [lo, hi] at *p; advances *p. */
static int next_int(const char **p, long long lo, long long hi, long long *out) {
    char *end;
    long long v;

    if (**p != ' ') return -1;
    (*p)++;
    if (**p != '-' && (**p < '0' || **p > '9')) return -1;
    errno = 0;
    v = strtoll(*p, &end, 10);
    if (errno || end == *p || v < lo || v > hi) return -1;
    *p = end;
    *out = v;
    return 0;
}

static int parse_state(const char **p, sn_alert_mstate_t *st) {
    long long open, ms, below;

    if (next_int(p, 0, 1, &open) || next_int(p, INT64_MIN, INT64_MAX, &ms) ||
        next_int(p, 0, UINT32_MAX, &below))
        return -1;
    st->open = (int)open;
    st->last_notify_ms = ms;
    st->below = (uint32_t)below;
    return 0;
}

int sn_alert_record_parse(const char *text, sn_alert_record_t *rec, char *errstr,
                          size_t errstr_size) {
    const char *p = text;
    long long part, first, last;

    memset(rec, 0, sizeof(*rec));
    if (strncmp(p, "a1", 2) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "alert state \"%.40s\": not a version 1 record", text);
    p += 2;
    if (next_int(&p, 0, INT32_MAX, &part) || next_int(&p, -1, INT64_MAX, &first) ||
        next_int(&p, -1, INT64_MAX, &last) || parse_state(&p, &rec->before) ||
        parse_state(&p, &rec->after) || *p != '\0')
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "alert state \"%.80s\": expected a1 <partition> <first offset> <last "
                          "offset> and two states <open 0|1> <ms> <below>",
                          text);
    if (first > last)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "alert state \"%.80s\": first offset after the last", text);
    rec->partition = (int32_t)part;
    rec->first_offset = first;
    rec->last_offset = last;
    return 0;
}
