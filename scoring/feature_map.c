/* feature_map.c: a bounded map from machine id to feature state.
 *
 * Open addressing with linear probing (kept at most half full) and an LRU list.
 * Each entry is one block: header, then the state's arrays. Growth and
 * allocation happen only when a new machine appears; at the cap the least
 * recently used entry's block is reused, so steady state allocates nothing. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scoring/feature_state.h"

struct node {
    char id[SN_EVENT_ID_MAX];
    uint64_t hash;
    struct node *prev, *next; /* LRU list, most recent first */
    sn_fentry_t e;
    /* the state's arrays follow, 8-aligned */
};

#define NODE_HEADER ((sizeof(struct node) + 7) / 8 * 8)

struct sn_fmap {
    const sn_feature_spec_t *spec;
    size_t max_entries;
    size_t state_bytes;
    struct node **table; /* NULL: empty slot */
    size_t cap;          /* power of two */
    size_t count;
    struct node *head, *tail;
    uint64_t tick, evicted;
};

/* FNV-1a: ids are short, and an adversarial id can at worst slow its own
 * lookups in a table that is at most half full. */
static uint64_t id_hash(const char *id) {
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static struct node *node_of(sn_fentry_t *e) {
    return (struct node *)(void *)((char *)e - offsetof(struct node, e));
}

sn_fmap_t *sn_fmap_new(const sn_feature_spec_t *spec, size_t max_entries) {
    sn_fmap_t *map = calloc(1, sizeof(*map));

    if (!map) return NULL;
    map->spec = spec;
    map->max_entries = max_entries ? max_entries : 1;
    map->state_bytes = sn_fstate_size(spec);
    map->cap = 64;
    if (!(map->table = calloc(map->cap, sizeof(*map->table)))) {
        free(map);
        return NULL;
    }
    return map;
}

void sn_fmap_destroy(sn_fmap_t *map) {
    struct node *n, *next;

    if (!map) return;
    for (n = map->head; n; n = next) {
        next = n->next;
        free(n);
    }
    free(map->table);
    free(map);
}

static size_t home_of(const sn_fmap_t *map, uint64_t h) { return (size_t)h & (map->cap - 1); }

static void table_put(sn_fmap_t *map, struct node *n) {
    size_t i = home_of(map, n->hash);

    while (map->table[i]) i = (i + 1) & (map->cap - 1);
    map->table[i] = n;
}

/* Backward-shift deletion: no tombstones, so probes stay short however many
 * machines come and go. */
static void table_remove(sn_fmap_t *map, struct node *n) {
    size_t mask = map->cap - 1, i = home_of(map, n->hash), j;

    while (map->table[i] != n) i = (i + 1) & mask;
    map->table[i] = NULL;
    for (j = (i + 1) & mask; map->table[j]; j = (j + 1) & mask) {
        size_t home = home_of(map, map->table[j]->hash);
        /* the entry at j may fill the hole at i unless its home lies in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            map->table[i] = map->table[j];
            map->table[j] = NULL;
            i = j;
        }
    }
}

/* Doubles the table before it gets more than half full. */
static int table_grow(sn_fmap_t *map) {
    struct node **old = map->table;
    size_t oldcap = map->cap;

    if ((map->count + 1) * 2 <= map->cap) return 0;
    if (!(map->table = calloc(oldcap * 2, sizeof(*map->table)))) {
        map->table = old;
        return -1;
    }
    map->cap = oldcap * 2;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i]) table_put(map, old[i]);
    free(old);
    return 0;
}

static void lru_unlink(sn_fmap_t *map, struct node *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        map->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        map->tail = n->prev;
    n->prev = n->next = NULL;
}

static void lru_push_front(sn_fmap_t *map, struct node *n) {
    n->prev = NULL;
    n->next = map->head;
    if (map->head) map->head->prev = n;
    map->head = n;
    if (!map->tail) map->tail = n;
}

sn_fentry_t *sn_fmap_get(sn_fmap_t *map, const char *id, int create, int *created) {
    uint64_t h = id_hash(id);
    struct node *n;

    map->tick++;
    if (created) *created = 0;
    for (size_t i = home_of(map, h);; i = (i + 1) & (map->cap - 1)) {
        n = map->table[i];
        if (!n) break;
        if (n->hash == h && strcmp(n->id, id) == 0) {
            if (n != map->head) {
                lru_unlink(map, n);
                lru_push_front(map, n);
            }
            return &n->e;
        }
    }
    if (!create) return NULL;
    if (map->count >= map->max_entries) {
        n = map->tail;
        lru_unlink(map, n);
        table_remove(map, n);
        map->count--;
        map->evicted++;
    } else {
        if (table_grow(map) != 0) return NULL;
        if (!(n = malloc(NODE_HEADER + map->state_bytes))) return NULL;
    }
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    n->hash = h;
    sn_fstate_init(&n->e.st, map->spec, (char *)n + NODE_HEADER);
    table_put(map, n);
    lru_push_front(map, n);
    map->count++;
    if (created) *created = 1;
    return &n->e;
}

void sn_fmap_remove(sn_fmap_t *map, sn_fentry_t *e) {
    struct node *n = node_of(e);

    lru_unlink(map, n);
    table_remove(map, n);
    map->count--;
    free(n);
}

uint64_t sn_fmap_tick(const sn_fmap_t *map) { return map->tick; }
size_t sn_fmap_count(const sn_fmap_t *map) { return map->count; }
uint64_t sn_fmap_evicted(const sn_fmap_t *map) { return map->evicted; }
