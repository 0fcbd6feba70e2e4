/* feature_redis.c: the Redis feature backend.
 *
 * Per batch: group the events by machine and send one EVALSHA per machine,
 * all pipelined (one round trip), except that the compare-and-sets are
 * combined, redis.cas.machines.max machines to a call of cas_script (see
 * there). Two kinds of call, one script:
 *
 *  - compare-and-set, the usual one: this process holds an exact copy of the
 *    machine's state (the cache, tagged with the version token stored in
 *    Redis), applies the events to it here with feature_state.c, and sends
 *    the result along with the events; the script stores the result if the
 *    stored version is still the copy's. Redis does no arithmetic.
 *  - apply-and-return, when the copy is missing or stale (first sight, a
 *    rebalance, a restart, an eviction from the cache) or when the compare
 *    fails: the script applies the events itself and returns the pre-batch
 *    state, and C replays the batch on it, checking each event's decision
 *    (applied, out of order, redelivered, too late) against the script's; a
 *    disagreement means the two diverged, which is fatal rather than
 *    silently wrong. For this path everything the script needs is computed
 *    here (bucket index, time within the bucket, derived values), so its
 *    only arithmetic is the bucket update, written to match rec_update() in
 *    feature_state.c operation by operation; values travel packed as IEEE
 *    doubles both ways.
 *
 * Either way the vectors come from the same C code as the in-memory backend,
 * and the stored bytes are the same whichever side computed them (a test
 * compares the two). */
#include "scoring/feature_redis.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "scoring/feature_state.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed state is little-endian IEEE doubles, read in place: port the loads"
#endif

#define ROUND_MACHINES_MAX 10000 /* script calls in one pipeline */
#define KEY_MAX 512
#define FIXED_ARGS 17 /* EVALSHA sha 1 key ARGV[1..13] */
/* HSET arguments of a stored result (touched buckets, meta, offsets) plus the
 * HDEL names (pruned buckets) of one call, and the numbers among them. */
#define RESULT_ARGS_MAX                                                                            \
    (2 * (SN_FEATURE_REDIS_CALL_MAX + 5 + SN_FMAP_OFFSETS_MAX) + SN_FEATURE_SPEC_BUCKETS_MAX +     \
     PRUNE_STEP)
/* Pruned buckets are deleted this many at a time (one HDEL instead of one per
 * bucket): a machine stores at most nbuckets + PRUNE_STEP - 1 buckets. */
#define PRUNE_STEP 8
#define EVENT_HEAD_BYTES (4 + 4 * 8) /* partition, offset, ts, bucket, t */

/* The update script. Its arithmetic must stay in step with rec_update() and
 * sn_fstate_apply() in feature_state.c; tests/unit/test_feature_redis.c
 * checks the two bit for bit. "#!lua" makes Redis 7 refuse it before it runs
 * when out of memory, instead of failing half way through its writes (all
 * writes come last). */
static const char update_script[] =
    "#!lua\n"
    "-- Sentinel feature state: one call per machine per batch, atomic.\n"
    "-- KEYS[1]: the machine's state hash. Fields: bucket index (decimal) -> packed\n"
    "-- record (8 little-endian doubles per windowed field); m -> packed doubles:\n"
    "-- watermark (ms), its bucket, events dropped as too late, then the last value\n"
    "-- and its time per windowed field; v -> version token; o:<partition> -> the\n"
    "-- last applied offset (decimal); u -> the undo record of the last call that\n"
    "-- changed the state (msgpack: {names, old values or false, first offset it\n"
    "-- applied per 'o:<partition>', the version it stored}), kept when ARGV[12].\n"
    "-- ARGV: 1 nbuckets, 2 ttl (s), 3 windowed fields, 4 lo, 5 hi, 6 nevents,\n"
    "-- 7 events (packed), 8 the caller's version ('' = no copy), 9 the version to\n"
    "-- store, 10 '1' = refresh the TTL, 11 prune step (buckets), 12 '1' = keep\n"
    "-- the undo record, 13 n = number of HSET arguments in the caller's result,\n"
    "-- 14..13+n those arguments, then the fields the caller's result deletes.\n"
    "--\n"
    "-- When the stored version equals the caller's, the caller already applied\n"
    "-- the events to its exact copy of this state: its result is stored as sent\n"
    "-- and 'c' returned. Otherwise the events are applied here and the PRE-batch\n"
    "-- state comes back for the caller to replay: {flags, version, m, name,\n"
    "-- value, ...} with one flag per event (a applied, o applied out of order,\n"
    "-- r redelivered, l too late), and the offsets and the retained buckets in\n"
    "-- [lo, hi] as name/value pairs.\n"
    "-- Only strings go back: Redis truncates Lua numbers to integers.\n"
    "--\n"
    "-- Undo: a call whose first event redoes the machine's last call from its\n"
    "-- start (an aborted Kafka transaction's batch, redelivered) first puts back\n"
    "-- the state before that call, so the events apply again and get the vectors\n"
    "-- they had, instead of counting as redelivered on a state that already\n"
    "-- holds the whole call.\n"
    "local key = KEYS[1]\n"
    "local ttl = tonumber(ARGV[2])\n"
    "local unpack, fmt, floor = unpack, string.format, math.floor\n"
    "local nb, nf = tonumber(ARGV[1]), tonumber(ARGV[3])\n"
    "local lo, hi, nev, blob = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]\n"
    "local efmt = '<i4dddd' .. string.rep('d', nf)\n"
    "\n"
    "-- the undo record of a call that writes names: their current values, and\n"
    "-- the version it stores (any later write, with or without an undo record,\n"
    "-- changes the version, which voids the record)\n"
    "local function undo(names, olds, first)\n"
    "  return cmsgpack.pack({names, olds, first, ARGV[9]})\n"
    "end\n"
    "\n"
    "if ARGV[8] ~= '' and redis.call('HGET', key, 'v') == ARGV[8] then\n"
    "  local n = tonumber(ARGV[13])\n"
    "  if n > 0 and ARGV[12] ~= '1' then\n"
    "    redis.call('HSET', key, unpack(ARGV, 14, 13 + n))\n"
    "    if ARGV[10] == '1' then redis.call('EXPIRE', key, ttl) end\n"
    "  elseif n > 0 then\n"
    "    local names, first, pos = {}, {}, 1\n"
    "    for i = 14, 13 + n, 2 do names[#names + 1] = ARGV[i] end\n"
    "    for i = 14 + n, #ARGV do names[#names + 1] = ARGV[i] end\n"
    "    for i = 1, nev do\n"
    "      local e = {struct.unpack(efmt, blob, pos)}\n"
    "      pos = e[6 + nf]\n"
    "      local okey = 'o:' .. e[1]\n"
    "      if e[2] >= 0 and (not first[okey] or e[2] < first[okey]) then first[okey] = e[2] end\n"
    "    end\n"
    "    local u = undo(names, redis.call('HMGET', key, unpack(names)), first)\n"
    "    redis.call('HSET', key, 'u', u, unpack(ARGV, 14, 13 + n))\n"
    "    if ARGV[10] == '1' then redis.call('EXPIRE', key, ttl) end\n"
    "  end\n"
    "  if #ARGV > 13 + n then redis.call('HDEL', key, unpack(ARGV, 14 + n, #ARGV)) end\n"
    "  return 'c'\n"
    "end\n"
    "\n"
    "local step = tonumber(ARGV[11])\n"
    "local rfmt = '<' .. string.rep('d', 8 * nf)\n"
    "local mfmt = '<ddd' .. string.rep('d', 2 * nf)\n"
    "local nrec, nlast = 8 * nf, 2 * nf\n"
    "\n"
    "local all, raw, offs, bs, cur, mraw, version, urec\n"
    "local function load()\n"
    "  all = redis.call('HGETALL', key)\n"
    "  raw, offs, bs, cur = {}, {}, {}, {}\n"
    "  mraw, version, urec = nil, '', nil\n"
    "  for i = 1, #all, 2 do\n"
    "    local f = all[i]\n"
    "    local b = tonumber(f)\n"
    "    cur[f] = all[i + 1]\n"
    "    if b then\n"
    "      raw[b] = all[i + 1]\n"
    "      bs[#bs + 1] = i\n"
    "    elseif f == 'm' then\n"
    "      mraw = all[i + 1]\n"
    "    elseif f == 'v' then\n"
    "      version = all[i + 1]\n"
    "    elseif f == 'u' then\n"
    "      urec = all[i + 1]\n"
    "    else\n"
    "      offs[f] = tonumber(all[i + 1])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "load()\n"
    "\n"
    "-- the first event redoes the last call from its start, in the only\n"
    "-- partition that call applied: put back the state before it\n"
    "if urec and nev > 0 then\n"
    "  local e = {struct.unpack(efmt, blob, 1)}\n"
    "  local okey, off = 'o:' .. e[1], e[2]\n"
    "  local u = cmsgpack.unpack(urec)\n"
    "  local names, olds, first, nfirst, before = u[1], u[2], u[3], 0, -1\n"
    "  for _ in pairs(first) do nfirst = nfirst + 1 end\n"
    "  for i = 1, #names do\n"
    "    if names[i] == okey and olds[i] then before = tonumber(olds[i]) end\n"
    "  end\n"
    "  if u[4] == version and off >= 0 and nfirst == 1 and first[okey] and\n"
    "     off <= first[okey] and off > before and offs[okey] and off <= offs[okey] then\n"
    "    local set, del = {}, {'u'}\n"
    "    for i = 1, #names do\n"
    "      if olds[i] then set[#set + 1] = names[i]; set[#set + 1] = olds[i]\n"
    "      else del[#del + 1] = names[i] end\n"
    "    end\n"
    "    if #set > 0 then redis.call('HSET', key, unpack(set)) end\n"
    "    redis.call('HDEL', key, unpack(del))\n"
    "    load()\n"
    "  end\n"
    "end\n"
    "local out = {'', '', mraw or ''}\n"
    "for f, o in pairs(offs) do out[#out + 1] = f; out[#out + 1] = fmt('%d', o) end\n"
    "local w, wb, dropped, last\n"
    "if mraw then\n"
    "  last = {struct.unpack(mfmt, mraw)}\n"
    "  w, wb, dropped = last[1], last[2], last[3]\n"
    "  table.remove(last, 1); table.remove(last, 1); table.remove(last, 1)\n"
    "  last[nlast + 1] = nil\n"
    "else\n"
    "  dropped = 0\n"
    "  last = {}\n"
    "  for k = 1, nf do last[2 * k - 1] = 0 / 0; last[2 * k] = -math.huge end\n"
    "end\n"
    "if wb then\n"
    "  if lo < wb - nb + 1 then lo = wb - nb + 1 end\n"
    "  if hi > wb then hi = wb end\n"
    "  for _, i in ipairs(bs) do\n"
    "    local b = tonumber(all[i])\n"
    "    if b >= lo and b <= hi then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end\n"
    "  end\n"
    "end\n"
    "local wb0 = wb\n"
    "\n"
    "-- apply, with exactly the IEEE operations of sn_fstate_apply / rec_update\n"
    "local flags, odirty, recs, first = {}, {}, {}, {}\n"
    "local changed = false\n"
    "local pos = 1\n"
    "for i = 1, nev do\n"
    "  local e = {struct.unpack(efmt, blob, pos)}\n"
    "  pos = e[6 + nf]\n"
    "  local p, off, ts, b, t = e[1], e[2], e[3], e[4], e[5]\n"
    "  local f, okey = 'a', nil\n"
    "  if off >= 0 then\n"
    "    okey = 'o:' .. p\n"
    "    if offs[okey] and off <= offs[okey] then f = 'r' end\n"
    "  end\n"
    "  if f ~= 'r' then\n"
    "    changed = true\n"
    "    if okey then\n"
    "      offs[okey] = off; odirty[okey] = true\n"
    "      if not first[okey] then first[okey] = off end\n"
    "    end\n"
    "    if wb and b <= wb - nb then\n"
    "      f = 'l'\n"
    "      dropped = dropped + 1\n"
    "    else\n"
    "      if w and ts < w then f = 'o' end\n"
    "      if not w or ts > w then w = ts; wb = b end\n"
    "      local r = recs[b]\n"
    "      if not r then\n"
    "        if raw[b] then\n"
    "          r = {struct.unpack(rfmt, raw[b])}\n"
    "          r[nrec + 1] = nil\n"
    "        else\n"
    "          r = {}\n"
    "          for k = 1, nrec do r[k] = 0 end\n"
    "        end\n"
    "        recs[b] = r\n"
    "      end\n"
    "      for k = 1, nf do\n"
    "        local v = e[5 + k]\n"
    "        if v == v then\n"
    "          local o = 8 * (k - 1)\n"
    "          local n1 = r[o + 1] + 1\n"
    "          local dv = v - r[o + 2]\n"
    "          local dt = t - r[o + 6]\n"
    "          if r[o + 1] == 0 then\n"
    "            r[o + 4] = v; r[o + 5] = v\n"
    "          else\n"
    "            if v < r[o + 4] then r[o + 4] = v end\n"
    "            if v > r[o + 5] then r[o + 5] = v end\n"
    "          end\n"
    "          r[o + 1] = n1\n"
    "          local mv = r[o + 2] + dv / n1\n"
    "          r[o + 2] = mv\n"
    "          local tm = r[o + 6] + dt / n1\n"
    "          r[o + 6] = tm\n"
    "          local ev = v - mv\n"
    "          local et = t - tm\n"
    "          r[o + 3] = r[o + 3] + dv * ev\n"
    "          r[o + 7] = r[o + 7] + dt * et\n"
    "          r[o + 8] = r[o + 8] + dt * ev\n"
    "          if ts >= last[2 * k] then last[2 * k - 1] = v; last[2 * k] = ts end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  flags[i] = f\n"
    "end\n"
    "out[1] = table.concat(flags)\n"
    "\n"
    "if changed then\n"
    "  local pruned = {}\n"
    "  -- buckets that left the retention go 'step' at a time (one HDEL, not one\n"
    "  -- per bucket): at most nb + step - 1 are stored\n"
    "  if wb0 and floor(wb / step) > floor(wb0 / step) then\n"
    "    local from = floor(wb0 / step) * step - nb + 1\n"
    "    local to = floor(wb / step) * step - nb\n"
    "    if to > wb0 then to = wb0 end\n"
    "    for b = from, to do pruned[#pruned + 1] = fmt('%d', b) end\n"
    "  end\n"
    "  local hs = {'v', ARGV[9], 'm', struct.pack(mfmt, w or 0, wb or 0, dropped, unpack(last))}\n"
    "  for k in pairs(odirty) do hs[#hs + 1] = k; hs[#hs + 1] = fmt('%d', offs[k]) end\n"
    "  for b, r in pairs(recs) do\n"
    "    if b > wb - nb then hs[#hs + 1] = fmt('%d', b); hs[#hs + 1] = struct.pack(rfmt, "
    "unpack(r)) end\n"
    "  end\n"
    "  if ARGV[12] == '1' then\n"
    "    local names, olds = {}, {}\n"
    "    for i = 1, #hs, 2 do names[#names + 1] = hs[i]; olds[#olds + 1] = cur[hs[i]] or false "
    "end\n"
    "    for _, b in ipairs(pruned) do names[#names + 1] = b; olds[#olds + 1] = cur[b] or false "
    "end\n"
    "    hs[#hs + 1] = 'u'; hs[#hs + 1] = undo(names, olds, first)\n"
    "  end\n"
    "  if #pruned > 0 then redis.call('HDEL', key, unpack(pruned)) end\n"
    "  redis.call('HSET', key, unpack(hs))\n"
    "  version = ARGV[9]\n"
    "  if ARGV[10] == '1' or not wb0 then redis.call('EXPIRE', key, ttl) end\n"
    "end\n"
    "out[2] = version\n"
    "return out\n";

/* The compare-and-set of many machines in one call: the first branch of
 * update_script, for each key in turn. Redis's cost is per script call (~12
 * us of its CPU for a one-event call, whatever the call does), and a scorer
 * batch of a large fleet holds about one event per machine, so one call per
 * machine made that the whole cost. A machine whose stored version moved is
 * left alone ('x') and sent again as a plain call of update_script. Its keys
 * may lie in different Redis Cluster slots, so it is only for a single
 * Redis (redis.cas.machines.max = 1 turns it off). */
static const char cas_script[] =
    "#!lua\n"
    "-- Sentinel feature state: stores the results of many machines, each if\n"
    "-- its stored version is still the one the caller's copy had.\n"
    "-- KEYS[i]: machine i's state hash. ARGV[1]: ttl (s); then per machine:\n"
    "-- the caller's version, '1' = refresh the TTL, n, n HSET arguments, d, d\n"
    "-- fields to delete. Returns one character per machine: c stored, x the\n"
    "-- version moved (nothing written).\n"
    "local ttl = tonumber(ARGV[1])\n"
    "local unpack = unpack\n"
    "local out = {}\n"
    "local p = 2\n"
    "for i = 1, #KEYS do\n"
    "  local key, expect, refresh = KEYS[i], ARGV[p], ARGV[p + 1]\n"
    "  local n = tonumber(ARGV[p + 2])\n"
    "  local s = p + 3\n"
    "  local d = tonumber(ARGV[s + n])\n"
    "  p = s + n + 1 + d\n"
    "  if redis.call('HGET', key, 'v') == expect then\n"
    "    if n > 0 then\n"
    "      redis.call('HSET', key, unpack(ARGV, s, s + n - 1))\n"
    "      if refresh == '1' then redis.call('EXPIRE', key, ttl) end\n"
    "    end\n"
    "    if d > 0 then redis.call('HDEL', key, unpack(ARGV, s + n + 1, s + n + d)) end\n"
    "    out[i] = 'c'\n"
    "  else\n"
    "    out[i] = 'x'\n"
    "  end\n"
    "end\n"
    "return table.concat(out)\n";

/* A RESP array being built by hand: the arguments of one multi-machine call
 * come from buffers reused machine after machine, so they are serialised as
 * they are made (hiredis's argv interface wants them all at once). */
struct resp {
    char *buf;
    size_t len, cap;
    size_t n; /* bulk strings */
};

struct group {
    const char *id; /* borrowed from the batch */
    uint64_t hash;
    size_t first, last; /* event indexes, linked through next[] */
    size_t cursor;      /* next event to send */
    size_t remaining;   /* events not yet applied */
    /* the call in flight */
    size_t chunk_first, chunk_n;
    sn_fentry_t *entry;            /* cached state, or NULL: replay on the scratch state */
    int cas;                       /* sent as a compare-and-set of the entry's result */
    int changed;                   /* the result changes the state */
    int resend;                    /* NOSCRIPT or a moved version: send again */
    int inflight;                  /* sent in the current pipeline, reply not read yet */
    int multi;                     /* sent in a multi-machine compare-and-set */
    int refresh;                   /* the call refreshes the TTL */
    int64_t sent_at;               /* monotonic seconds when it was queued */
    char expect[SN_FMAP_TAG_MAX];  /* compare-and-set: the version the copy had */
    char version[SN_FMAP_TAG_MAX]; /* the version the call stores if it changes the state */
};

struct sn_feature_redis {
    const sn_feature_spec_t *spec;
    char url[256];
    int is_unix;
    char host[256];
    int port, db;
    char username[128], password[256];
    struct timeval tv;
    char prefix[64];
    long long ttl_s;
    size_t cache_max;

    redisContext *ctx;
    char sha[41], cas_sha[41];
    size_t multi_max;  /* machines per multi-machine call; 1: none */
    struct resp mkeys; /* the multi-machine call being built: its keys, */
    struct resp margs; /* its arguments */
    struct resp mcmd;  /* and the whole command */
    size_t *mcalls;    /* [cap] members of each multi call sent, in order */
    size_t nmcalls;    /* multi calls in the pipeline */
    size_t *mmembers;  /* [cap] their groups, call after call */
    size_t nmembers;
    int opened; /* connections opened so far */

    sn_fmap_t *cache;
    sn_fstate_t scratch;
    void *scratch_mem;
    double vals[SN_FEATURE_SPEC_FIELDS_MAX];
    double *meta;       /* [3 + 2 * nwf] the packed 'm' field being sent */
    uint64_t *touched;  /* [nbuckets] call number that last touched each ring slot */
    int64_t *touched_b; /* [nbuckets] and the bucket it touched there */

    /* per-batch scratch, grown to the largest batch seen */
    size_t cap;
    size_t *next;
    uint8_t *eflags; /* every event's SN_FEATURES_* bits */
    struct group *groups;
    size_t ngroups;
    int32_t *gtable; /* group index + 1, 0: empty; 2 * cap slots, power of two */
    size_t gtable_cap;
    size_t *round; /* groups in the current round */
    unsigned char *blob;
    size_t blob_cap;

    /* the script call being built */
    const char **argv;   /* [FIXED_ARGS + RESULT_ARGS_MAX] */
    size_t *argvlen;     /* same */
    char (*numbers)[24]; /* [RESULT_ARGS_MAX] text of the numbers among them */

    char version_base[40];
    uint64_t version_seq;
    int undo; /* keep the undo record of each machine's last call */
    sn_feature_redis_stats_t stats;
};

/* ---- configuration ---- */

/* Accepts redis://host[:port][/db] and unix:///path. Credentials in the URL
 * are refused: the URL is not a secret key, so it would be printed by
 * `sentinel config`. */
static int parse_url(sn_feature_redis_t *r, const char *url, char *errstr, size_t errstr_size) {
    const char *p, *slash, *colon;
    char *end;
    long v;

    snprintf(r->url, sizeof(r->url), "%s", url);
    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        if (p[0] != '/' || strlen(p) >= 108)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "redis.url: \"%s\": expected unix:///absolute/path (under 108 bytes)",
                              url);
        r->is_unix = 1;
        snprintf(r->host, sizeof(r->host), "%s", p);
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_UNSUPPORTED,
                          "redis.url: TLS (rediss://) is not supported by this build's hiredis; "
                          "use a TLS sidecar and redis://");
    if (strncmp(url, "redis://", 8) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "redis.url: \"%s\": expected redis://host[:port][/db] or unix:///path",
                          url);
    p = url + 8;
    if (strchr(p, '@'))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "redis.url: credentials in the URL are not accepted; set redis.username "
                          "and redis.password");
    slash = strchr(p, '/');
    colon = strchr(p, ':');
    if (colon && slash && colon > slash) colon = NULL;
    {
        size_t hlen = (size_t)((colon ? colon : slash ? slash : p + strlen(p)) - p);
        if (hlen == 0 || hlen >= sizeof(r->host))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "redis.url: \"%s\": bad host",
                              url);
        memcpy(r->host, p, hlen);
        r->host[hlen] = '\0';
    }
    r->port = 6379;
    if (colon) {
        errno = 0;
        v = strtol(colon + 1, &end, 10);
        if (errno || end == colon + 1 || v < 1 || v > 65535 || (*end && *end != '/'))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "redis.url: \"%s\": bad port",
                              url);
        r->port = (int)v;
    }
    if (slash && slash[1]) {
        errno = 0;
        v = strtol(slash + 1, &end, 10);
        if (errno || *end || v < 0 || v > 100000)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "redis.url: \"%s\": bad database number", url);
        r->db = (int)v;
    }
    return 0;
}

/* A version token unique to this handle and call: a random base per handle
 * (so two scorers never mint the same one) and a counter. */
static void version_init(sn_feature_redis_t *r) {
    uint64_t seed = 0;
    struct timespec ts;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        if (read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed)) seed = 0;
        close(fd);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    seed ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)ts.tv_sec ^
            ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)r;
    snprintf(r->version_base, sizeof(r->version_base), "%016" PRIx64, seed);
}

sn_feature_redis_t *sn_feature_redis_new(const sn_conf_t *conf, const sn_feature_spec_t *spec,
                                         char *errstr, size_t errstr_size) {
    return sn_feature_redis_new_prefix(conf, spec, sn_conf_str(conf, "redis.key.prefix"), errstr,
                                       errstr_size);
}

/* The prefix is a parameter so that two backends of one process (the
 * production model and a challenger with the same layout) can keep their
 * states apart: with one prefix they would share the hashes, and the second
 * to apply a batch would see every event as a redelivery. */
sn_feature_redis_t *sn_feature_redis_new_prefix(const sn_conf_t *conf,
                                                const sn_feature_spec_t *spec, const char *prefix,
                                                char *errstr, size_t errstr_size) {
    sn_feature_redis_t *r = NULL;
    int64_t timeout_ms = sn_conf_int(conf, "redis.timeout.ms");
    int64_t cache = sn_conf_int(conf, "feature.cache.machines");

    if (!spec->bound) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "features: the spec is not bound to a schema (sn_feature_spec_bind)");
        goto fail;
    }
    if (!(r = calloc(1, sizeof(*r)))) goto nomem;
    r->spec = spec;
    if (parse_url(r, sn_conf_str(conf, "redis.url"), errstr, errstr_size) != 0) goto fail;
    if (!prefix[0] || strlen(prefix) >= sizeof(r->prefix) || strpbrk(prefix, "{}")) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "redis.key.prefix: \"%s\": 1 to %zu bytes without '{' or '}' (the hash tag "
                   "holds the machine id)",
                   prefix, sizeof(r->prefix) - 1);
        goto fail;
    }
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    if (strlen(sn_conf_str(conf, "redis.username")) >= sizeof(r->username) ||
        strlen(sn_conf_str(conf, "redis.password")) >= sizeof(r->password)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "redis.username or redis.password too long");
        goto fail;
    }
    snprintf(r->username, sizeof(r->username), "%s", sn_conf_str(conf, "redis.username"));
    snprintf(r->password, sizeof(r->password), "%s", sn_conf_str(conf, "redis.password"));
    r->tv.tv_sec = (time_t)(timeout_ms / 1000);
    r->tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
    r->ttl_s = sn_conf_int(conf, "feature.state.ttl.s");
    if (r->ttl_s * 1000 < spec->retention_ms) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "feature.state.ttl.s (%lld s) is shorter than the feature spec's retention "
                   "(%lld ms): state would expire while still in use",
                   r->ttl_s, (long long)spec->retention_ms);
        goto fail;
    }
    r->cache_max = (size_t)cache;
    r->multi_max = (size_t)sn_conf_int(conf, "redis.cas.machines.max");
    if (r->multi_max > ROUND_MACHINES_MAX) r->multi_max = ROUND_MACHINES_MAX;
    if (r->cache_max && !(r->cache = sn_fmap_new(spec, r->cache_max))) goto nomem;
    if (!(r->scratch_mem = malloc(sn_fstate_size(spec)))) goto nomem;
    sn_fstate_init(&r->scratch, spec, r->scratch_mem);
    if (!(r->meta = calloc(3 + 2 * (size_t)spec->nwf, sizeof(double))) ||
        !(r->touched = calloc((size_t)spec->nbuckets, sizeof(*r->touched))) ||
        !(r->touched_b = calloc((size_t)spec->nbuckets, sizeof(*r->touched_b))) ||
        !(r->argv = malloc((FIXED_ARGS + RESULT_ARGS_MAX) * sizeof(*r->argv))) ||
        !(r->argvlen = malloc((FIXED_ARGS + RESULT_ARGS_MAX) * sizeof(*r->argvlen))) ||
        !(r->numbers = malloc(RESULT_ARGS_MAX * sizeof(*r->numbers))))
        goto nomem;
    r->blob_cap =
        (size_t)SN_FEATURE_REDIS_CALL_MAX * (EVENT_HEAD_BYTES + (size_t)spec->nwf * sizeof(double));
    if (!(r->blob = malloc(r->blob_cap))) goto nomem;
    version_init(r);
    return r;
nomem:
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
fail:
    sn_feature_redis_destroy(r);
    return NULL;
}

void sn_feature_redis_destroy(sn_feature_redis_t *r) {
    if (!r) return;
    if (r->ctx) redisFree(r->ctx);
    sn_fmap_destroy(r->cache);
    free(r->scratch_mem);
    free(r->meta);
    free(r->touched);
    free(r->touched_b);
    free(r->argv);
    free(r->argvlen);
    free(r->numbers);
    free(r->next);
    free(r->eflags);
    free(r->groups);
    free(r->gtable);
    free(r->round);
    free(r->mcalls);
    free(r->mmembers);
    free(r->mkeys.buf);
    free(r->margs.buf);
    free(r->mcmd.buf);
    free(r->blob);
    memset(r->password, 0, sizeof(r->password));
    free(r);
}

void sn_feature_redis_set_undo(sn_feature_redis_t *r, int on) { r->undo = on != 0; }

void sn_feature_redis_stats(const sn_feature_redis_t *r, sn_feature_redis_stats_t *out) {
    *out = r->stats;
}

/* The machine id goes inside the hash tag, escaped so that a '}' in an id
 * cannot end the tag early: '%' -> "%25", '}' -> "%7D". Ids without those
 * characters appear verbatim. The layout id keeps states of specs with a
 * different bucket layout apart (a model rollout with a new spec starts fresh
 * keys instead of misreading old records). */
static int machine_key(const sn_feature_redis_t *r, const char *machine_id, const char *suffix,
                       char *buf, size_t size) {
    char esc[SN_EVENT_ID_MAX * 3];
    size_t j = 0;
    int n;

    if (!machine_id[0]) return SN_ERR_INVALID;
    for (const char *p = machine_id; *p && j + 4 < sizeof(esc); p++) {
        if (*p == '%' || *p == '}') {
            esc[j++] = '%';
            esc[j++] = *p == '%' ? '2' : '7';
            esc[j++] = *p == '%' ? '5' : 'D';
        } else {
            esc[j++] = *p;
        }
    }
    esc[j] = '\0';
    n = snprintf(buf, size, "%s:{%s}:%s", r->prefix, esc, suffix);
    if (n < 0 || (size_t)n >= size) return SN_ERR_NOMEM;
    return n;
}

int sn_feature_redis_key(const sn_feature_redis_t *r, const char *machine_id, char *buf,
                         size_t size) {
    char layout[16];

    snprintf(layout, sizeof(layout), "%08" PRIx32, r->spec->layout_id);
    return machine_key(r, machine_id, layout, buf, size);
}

/* ---- connection ---- */

static void conn_close(sn_feature_redis_t *r) {
    if (r->ctx) redisFree(r->ctx);
    r->ctx = NULL;
}

/* Maps a Redis error reply to what the caller should do. Waiting helps when
 * the server is loading, failing over, busy with a script or out of memory;
 * everything else (a script error, ACL, a cluster redirection this client
 * cannot follow) will not go away by itself. */
static int reply_error_class(const char *msg) {
    static const char *const transient[] = {"LOADING",     "BUSY",     "MASTERDOWN", "TRYAGAIN",
                                            "CLUSTERDOWN", "READONLY", "OOM",        "NOREPLICAS"};

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        size_t n = strlen(transient[i]);
        if (strncmp(msg, transient[i], n) == 0 && (msg[n] == ' ' || msg[n] == '\0'))
            return SN_ERR_TRANSIENT;
    }
    return SN_ERR_FATAL;
}

/* Runs one command on the open connection. I/O trouble closes the
 * connection and is transient; an error reply is classified. *out is the
 * reply on success (caller frees with freeReplyObject). */
static int command(sn_feature_redis_t *r, int argc, const char **argv, const size_t *lens,
                   redisReply **out, char *errstr, size_t errstr_size) {
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, lens);
    int rc;

    *out = NULL;
    if (!rep) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: %s: %s", r->url, argv[0],
                        r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        conn_close(r);
        return rc;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        rc = sn_err_set(errstr, errstr_size, reply_error_class(rep->str), "redis %s: %s: %s",
                        r->url, argv[0], rep->str);
        freeReplyObject(rep);
        return rc;
    }
    *out = rep;
    return 0;
}

/* Loads one script and keeps its SHA1 in sha (41 bytes). */
static int load_one(sn_feature_redis_t *r, const char *script, size_t len, char *sha, char *errstr,
                    size_t errstr_size) {
    const char *argv[] = {"SCRIPT", "LOAD", script};
    size_t lens[] = {6, 4, len};
    redisReply *rep;
    int rc = command(r, 3, argv, lens, &rep, errstr, errstr_size);

    if (rc != 0) return rc;
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        freeReplyObject(rep);
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                          "redis %s: SCRIPT LOAD: unexpected reply", r->url);
    }
    memcpy(sha, rep->str, 40);
    sha[40] = '\0';
    freeReplyObject(rep);
    return 0;
}

/* Loads the update script, and the multi-machine one when it is used. */
static int script_load(sn_feature_redis_t *r, char *errstr, size_t errstr_size) {
    int rc = load_one(r, update_script, sizeof(update_script) - 1, r->sha, errstr, errstr_size);

    if (rc == 0 && r->multi_max > 1)
        rc = load_one(r, cas_script, sizeof(cas_script) - 1, r->cas_sha, errstr, errstr_size);
    if (rc == 0) r->stats.script_loads++;
    return rc;
}

/* Connects, authenticates, selects the database and loads the script. Any
 * failure leaves no connection behind, so the next call starts over. */
static int conn_open(sn_feature_redis_t *r, char *errstr, size_t errstr_size) {
    redisReply *rep = NULL;
    char dbtext[16];
    int rc;

    r->ctx = r->is_unix ? redisConnectUnixWithTimeout(r->host, r->tv)
                        : redisConnectWithTimeout(r->host, r->port, r->tv);
    if (!r->ctx || r->ctx->err) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: connect: %s", r->url,
                        r->ctx ? r->ctx->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(r->ctx, r->tv) != REDIS_OK) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: cannot set the timeout",
                        r->url);
        goto fail;
    }
    if (!r->is_unix) redisEnableKeepAlive(r->ctx);
    if (r->password[0]) {
        const char *argv[] = {"AUTH", r->username, r->password};
        size_t lens[] = {4, strlen(r->username), strlen(r->password)};
        int off = r->username[0] ? 0 : 1;

        if (off) argv[1] = "AUTH", lens[1] = 4;
        if ((rc = command(r, 3 - off, argv + off, lens + off, &rep, errstr, errstr_size)) != 0)
            goto fail;
        freeReplyObject(rep);
    }
    if (r->db) {
        const char *argv[] = {"SELECT", dbtext};
        size_t lens[2];

        snprintf(dbtext, sizeof(dbtext), "%d", r->db);
        lens[0] = 6;
        lens[1] = strlen(dbtext);
        if ((rc = command(r, 2, argv, lens, &rep, errstr, errstr_size)) != 0) goto fail;
        freeReplyObject(rep);
    }
    if ((rc = script_load(r, errstr, errstr_size)) != 0) goto fail;
    if (r->opened++ > 0) r->stats.reconnects++;
    sn_log_info("features", "connected to redis %s", r->url);
    return 0;
fail:
    conn_close(r);
    return rc;
}

/* ---- one batch ---- */

/* Writing to a connection the server has closed raises SIGPIPE, which kills
 * a process that did not ignore it. Like libcurl, block it in this thread
 * while talking to Redis and swallow one that we caused, so the library is
 * safe whatever the host program does with signals (the write then fails with
 * EPIPE: a transient error). */
struct sigpipe_guard {
    sigset_t old;
    int was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g) {
    sigset_t set, pending;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

static void sigpipe_restore(struct sigpipe_guard *g) {
    sigset_t set, pending;
    struct timespec zero = {0, 0};

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) sigtimedwait(&set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Grows the per-batch arrays to hold n events; allocation happens only when
 * a batch is larger than any before. */
static int reserve(sn_feature_redis_t *r, size_t n) {
    size_t cap = r->cap ? r->cap : 64, gcap;
    void *p;

    if (n <= r->cap) return 0;
    while (cap < n) cap *= 2;
    for (gcap = 1; gcap < 2 * cap; gcap *= 2) {
    }
    if (!(p = realloc(r->next, cap * sizeof(*r->next)))) return SN_ERR_NOMEM;
    r->next = p;
    if (!(p = realloc(r->eflags, cap * sizeof(*r->eflags)))) return SN_ERR_NOMEM;
    r->eflags = p;
    if (!(p = realloc(r->groups, cap * sizeof(*r->groups)))) return SN_ERR_NOMEM;
    r->groups = p;
    if (!(p = realloc(r->round, cap * sizeof(*r->round)))) return SN_ERR_NOMEM;
    r->round = p;
    if (!(p = realloc(r->mcalls, cap * sizeof(*r->mcalls)))) return SN_ERR_NOMEM;
    r->mcalls = p;
    if (!(p = realloc(r->mmembers, cap * sizeof(*r->mmembers)))) return SN_ERR_NOMEM;
    r->mmembers = p;
    if (!(p = realloc(r->gtable, gcap * sizeof(*r->gtable)))) return SN_ERR_NOMEM;
    r->gtable = p;
    r->gtable_cap = gcap;
    r->cap = cap;
    return 0;
}

static uint64_t id_hash(const char *id) {
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* Splits the batch into per-machine lists that keep the batch's order. */
static void group_events(sn_feature_redis_t *r, const sn_event_t *evs, size_t n) {
    size_t mask = r->gtable_cap - 1;

    memset(r->gtable, 0, r->gtable_cap * sizeof(*r->gtable));
    r->ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = id_hash(evs[i].machine_id);
        size_t s = (size_t)h & mask;
        struct group *g = NULL;

        for (; r->gtable[s]; s = (s + 1) & mask) {
            struct group *c = &r->groups[r->gtable[s] - 1];
            if (c->hash == h && strcmp(c->id, evs[i].machine_id) == 0) {
                g = c;
                break;
            }
        }
        r->next[i] = SIZE_MAX;
        if (g) {
            r->next[g->last] = i;
            g->last = i;
            g->remaining++;
            continue;
        }
        g = &r->groups[r->ngroups++];
        memset(g, 0, sizeof(*g));
        g->id = evs[i].machine_id;
        g->hash = h;
        g->first = g->last = g->cursor = i;
        g->remaining = 1;
        r->gtable[s] = (int32_t)r->ngroups;
    }
}

static int64_t monotonic_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;

    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The offset slot of partition in a cached entry; a free slot is claimed
 * when create is set. NULL when absent (or no slot is free): unlike the
 * in-memory engine, the cache never forgets an offset, it gives up the copy. */
static struct sn_foffset *entry_offset(sn_fentry_t *e, int32_t partition, int create) {
    struct sn_foffset *free_slot = NULL;

    for (int i = 0; i < SN_FMAP_OFFSETS_MAX; i++) {
        struct sn_foffset *o = &e->offsets[i];
        if (o->used && o->partition == partition) return o;
        if (!o->used && !free_slot) free_slot = o;
    }
    if (create && free_slot) {
        free_slot->used = 1;
        free_slot->partition = partition;
        free_slot->offset = -1;
    }
    return create ? free_slot : NULL;
}

/* Whether the entry has room for every partition of the chunk. */
static int offsets_fit(sn_fentry_t *e, size_t first, size_t n, const size_t *next,
                       const int32_t *partitions, const int64_t *offsets) {
    int32_t seen[SN_FMAP_OFFSETS_MAX + 1];
    int nseen = 0, used = 0;
    size_t i = first;

    if (!offsets) return 1;
    for (int k = 0; k < SN_FMAP_OFFSETS_MAX; k++) used += e->offsets[k].used != 0;
    for (size_t c = 0; c < n; c++, i = next[i]) {
        int32_t p = partitions ? partitions[i] : 0;
        int known = 0;

        if (offsets[i] < 0 || entry_offset(e, p, 0)) continue;
        for (int k = 0; k < nseen; k++) known |= seen[k] == p;
        if (known) continue;
        if (used + nseen >= SN_FMAP_OFFSETS_MAX) return 0;
        seen[nseen++] = p;
    }
    return 1;
}

/* Whether the copy already holds one of the chunk's offsets. Such a chunk goes
 * to the script rather than being flagged redelivered here: when it redoes the
 * machine's last call (the batch of an aborted transaction), the script undoes
 * that call and applies the events again, so they get the vectors they had. */
static int chunk_redelivers(sn_fentry_t *e, size_t first, size_t n, const size_t *next,
                            const int32_t *partitions, const int64_t *offsets) {
    size_t i = first;

    if (!offsets) return 0;
    for (size_t c = 0; c < n; c++, i = next[i]) {
        struct sn_foffset *o;

        if (offsets[i] < 0) continue;
        o = entry_offset(e, partitions ? partitions[i] : 0, 0);
        if (o && o->offset >= 0 && offsets[i] <= o->offset) return 1;
    }
    return 0;
}

static void put_le32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }
static void put_double(unsigned char *p, double v) { memcpy(p, &v, 8); }

/* Writes v in decimal into buf (at least 21 bytes), NUL-terminated, and
 * returns the length: the numbers of every call (offsets, buckets, lengths)
 * went through snprintf, a measurable share of the scorer's CPU. */
static size_t i64_text(char *buf, int64_t v) {
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[len++] = '-';
    while (n) buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* Applies group g's chunk to its cached copy, here: the redelivery check on
 * the copy's offsets, the bucket update, every event's vector (into out, and
 * its flags into r->eflags). Appends the HSET arguments of the result (the
 * touched buckets still retained, the meta, the changed offsets) and the
 * HDEL names (buckets that left the retention, PRUNE_STEP at a time, the same
 * rule as the script) to r->argv from position *k. The copy's tag is cleared
 * first: until Redis confirms, the copy is not the stored state. */
static void apply_locally(sn_feature_redis_t *r, struct group *g, const sn_event_t *evs,
                          const int32_t *partitions, const int64_t *offsets, float *out,
                          const char *version, size_t *k, size_t *nset) {
    const sn_feature_spec_t *spec = r->spec;
    sn_fentry_t *e = g->entry;
    sn_fstate_t *st = &e->st;
    size_t nfeat = spec->nfeatures, stride = (size_t)spec->nwf * SN_FREC_DOUBLES;
    size_t i = g->chunk_first, nnum = 0, nset_pos, ntouched = 0;
    int64_t touched[SN_FEATURE_REDIS_CALL_MAX];
    struct sn_foffset *dirty[SN_FMAP_OFFSETS_MAX];
    int ndirty = 0, has0 = st->has_wm;
    int64_t wb0 = st->wmb;
    uint64_t call = r->version_seq;

    e->tag[0] = '\0';
    g->changed = 0;
    for (size_t c = 0; c < g->chunk_n; c++, i = r->next[i]) {
        const sn_event_t *ev = &evs[i];
        int f = 0;

        sn_fspec_values(spec, ev, r->vals);
        if (offsets && offsets[i] >= 0) {
            struct sn_foffset *o = entry_offset(e, partitions ? partitions[i] : 0, 1);
            int isdirty = 0;

            if (o->offset >= 0 && offsets[i] <= o->offset) {
                f = SN_FEATURES_REDELIVERED;
            } else {
                o->offset = offsets[i];
                for (int d = 0; d < ndirty; d++) isdirty |= dirty[d] == o;
                if (!isdirty) dirty[ndirty++] = o;
            }
        }
        if (!f) {
            g->changed = 1;
            f = sn_fstate_apply(st, spec, r->vals, ev->ts_ms);
            if (f & SN_FEATURES_APPLIED) {
                int64_t b = sn_fstate_bucket(ev->ts_ms, spec->bucket_ms);
                int64_t s = b % spec->nbuckets;
                if (s < 0) s += spec->nbuckets;
                /* by bucket, not slot: a jump ahead can reuse a slot in one chunk */
                if (r->touched[s] != call || r->touched_b[s] != b) {
                    r->touched[s] = call;
                    r->touched_b[s] = b;
                    touched[ntouched++] = b;
                }
            }
        }
        r->eflags[i] = (uint8_t)f;
        sn_fstate_features(st, spec, r->vals, ev->ts_ms, out + i * nfeat);
    }
#define ARG(s, l) (r->argv[*k] = (s), r->argvlen[*k] = (l), (*k)++)
#define NUM(v) (i64_text(r->numbers[nnum], (v)), r->numbers[nnum++])
    nset_pos = *k;
    ARG("0", 1); /* the count, filled in below */
    if (g->changed) {
        const char *s;
        size_t mlen = (3 + 2 * (size_t)spec->nwf) * sizeof(double);

        r->meta[0] = (double)st->wm;
        r->meta[1] = (double)st->wmb;
        r->meta[2] = (double)st->dropped;
        memcpy(r->meta + 3, st->last, (size_t)spec->nwf * 2 * sizeof(double));
        ARG("v", 1);
        ARG(version, strlen(version));
        ARG("m", 1);
        ARG((const char *)r->meta, mlen);
        for (int d = 0; d < ndirty; d++) {
            char *o = r->numbers[nnum++];

            memcpy(o, "o:", 2);
            ARG(o, 2 + i64_text(o + 2, dirty[d]->partition));
            s = NUM(dirty[d]->offset);
            ARG(s, strlen(s));
        }
        for (size_t t = 0; t < ntouched; t++) {
            int64_t b = touched[t], slot = b % spec->nbuckets;
            if (b <= st->wmb - spec->nbuckets) continue; /* pruned later in the chunk */
            if (slot < 0) slot += spec->nbuckets;
            s = NUM(b);
            ARG(s, strlen(s));
            ARG((const char *)(st->rec + (size_t)slot * stride), stride * sizeof(double));
        }
    }
    *nset = *k - nset_pos - 1;
    i64_text(r->numbers[nnum], (int64_t)*nset);
    r->argv[nset_pos] = r->numbers[nnum];
    r->argvlen[nset_pos] = strlen(r->numbers[nnum]);
    nnum++;
    if (g->changed && has0 && floordiv(st->wmb, PRUNE_STEP) > floordiv(wb0, PRUNE_STEP)) {
        int64_t from = floordiv(wb0, PRUNE_STEP) * PRUNE_STEP - spec->nbuckets + 1;
        int64_t to = floordiv(st->wmb, PRUNE_STEP) * PRUNE_STEP - spec->nbuckets;
        if (to > wb0) to = wb0;
        for (int64_t b = from; b <= to; b++) {
            const char *s = NUM(b);
            ARG(s, strlen(s));
        }
    }
#undef NUM
#undef ARG
}

/* Whether group g's next chunk can go as a compare-and-set: the cache holds
 * a current copy of the machine's state, with room for its partitions'
 * offsets, and none of the chunk's offsets is already applied (such a chunk
 * goes to the script, see chunk_redelivers). */
static int cas_possible(const sn_feature_redis_t *r, const struct group *g,
                        const int32_t *partitions, const int64_t *offsets) {
    return g->entry && g->entry->tag[0] &&
           offsets_fit(g->entry, g->chunk_first, g->chunk_n, r->next, partitions, offsets) &&
           !chunk_redelivers(g->entry, g->chunk_first, g->chunk_n, r->next, partitions, offsets);
}

/* Decides how group g's next chunk goes (compare-and-set or plain call) and
 * mints the version token it stores. The TTL is refreshed every ttl/16
 * seconds of this process's clock per machine (and whenever a state is
 * created), not on every call. */
static void prepare_call(sn_feature_redis_t *r, struct group *g, const int32_t *partitions,
                         const int64_t *offsets) {
    int64_t now = monotonic_s();

    snprintf(g->version, sizeof(g->version), "%s-%" PRIx64, r->version_base, ++r->version_seq);
    g->refresh = !g->entry || g->entry->aux == 0 || now - g->entry->aux >= r->ttl_s / 16;
    g->sent_at = now;
    g->cas = cas_possible(r, g, partitions, offsets);
    g->expect[0] = '\0';
    if (g->cas) snprintf(g->expect, sizeof(g->expect), "%s", g->entry->tag);
}

/* Queues the script call for group g's next chunk of events: a
 * compare-and-set when prepare_call says so, else a plain call that has the
 * script apply the events and return the state. */
static int append_call(sn_feature_redis_t *r, struct group *g, const sn_event_t *evs,
                       const int32_t *partitions, const int64_t *offsets, float *out, char *errstr,
                       size_t errstr_size) {
    const sn_feature_spec_t *spec = r->spec;
    char key[KEY_MAX], nbt[24], ttlt[24], nft[24], lo_text[24], hi_text[24], nevt[24], stept[24];
    size_t len = 0, k = 0, nset = 0;
    int64_t minb = INT64_MAX, maxb = INT64_MIN;
    size_t i = g->chunk_first;

    if (sn_feature_redis_key(r, g->id, key, sizeof(key)) < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "machine id \"%s\": key too long",
                          g->id);
    prepare_call(r, g, partitions, offsets);
    for (size_t c = 0; c < g->chunk_n; c++, i = r->next[i]) {
        const sn_event_t *ev = &evs[i];
        int64_t b = sn_fstate_bucket(ev->ts_ms, spec->bucket_ms);
        unsigned char *p = r->blob + len;

        if (b < minb) minb = b;
        if (b > maxb) maxb = b;
        sn_fspec_values(spec, ev, r->vals);
        put_le32(p, partitions ? partitions[i] : 0);
        put_double(p + 4, offsets && offsets[i] >= 0 ? (double)offsets[i] : -1.0);
        put_double(p + 12, (double)ev->ts_ms);
        put_double(p + 20, (double)b);
        put_double(p + 28, sn_fstate_bucket_t(ev->ts_ms, b, spec->bucket_ms));
        p += EVENT_HEAD_BYTES;
        for (int w = 0; w < spec->nwf; w++, p += 8) put_double(p, r->vals[spec->wf_field[w]]);
        len = (size_t)(p - r->blob);
    }
    snprintf(nbt, sizeof(nbt), "%d", spec->nbuckets);
    snprintf(ttlt, sizeof(ttlt), "%lld", r->ttl_s);
    snprintf(nft, sizeof(nft), "%d", spec->nwf);
    /* A cached copy must be complete, so a miss returns every retained bucket;
     * without one, only the buckets the chunk's windows can reach. */
    if (g->entry) {
        snprintf(lo_text, sizeof(lo_text), "%lld", -(long long)SN_FSTATE_TS_LIMIT);
        snprintf(hi_text, sizeof(hi_text), "%lld", (long long)SN_FSTATE_TS_LIMIT);
    } else {
        snprintf(lo_text, sizeof(lo_text), "%lld",
                 (long long)(minb - spec->max_window_buckets + 1));
        snprintf(hi_text, sizeof(hi_text), "%lld", (long long)maxb);
    }
    snprintf(nevt, sizeof(nevt), "%zu", g->chunk_n);
    snprintf(stept, sizeof(stept), "%d", PRUNE_STEP);
#define ARG(s, l) (r->argv[k] = (s), r->argvlen[k] = (l), k++)
    ARG("EVALSHA", 7);
    ARG(r->sha, 40);
    ARG("1", 1);
    ARG(key, strlen(key));
    ARG(nbt, strlen(nbt));
    ARG(ttlt, strlen(ttlt));
    ARG(nft, strlen(nft));
    ARG(lo_text, strlen(lo_text));
    ARG(hi_text, strlen(hi_text));
    ARG(nevt, strlen(nevt));
    ARG((const char *)r->blob, len);
    ARG(g->expect, strlen(g->expect));
    ARG(g->version, strlen(g->version));
    ARG(g->refresh ? "1" : "0", 1);
    ARG(stept, strlen(stept));
    ARG(r->undo ? "1" : "0", 1);
#undef ARG
    if (g->cas) {
        apply_locally(r, g, evs, partitions, offsets, out, g->version, &k, &nset);
    } else {
        r->argv[k] = "0";
        r->argvlen[k++] = 1;
    }
    if (redisAppendCommandArgv(r->ctx, (int)k, r->argv, r->argvlen) != REDIS_OK)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "redis: cannot queue a command");
    return 0;
}

/* ---- the multi-machine compare-and-set ---- */

static void resp_reset(struct resp *b) { b->len = b->n = 0; }

/* Appends bytes as they are (a header, or another resp's contents). */
static int resp_raw(struct resp *b, const void *p, size_t len) {
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        char *q;

        while (cap - b->len < len) cap *= 2;
        if (!(q = realloc(b->buf, cap))) return SN_ERR_NOMEM;
        b->buf = q;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    return 0;
}

/* Appends one bulk string: $<len>\r\n<bytes>\r\n. */
static int resp_bulk(struct resp *b, const void *p, size_t len) {
    char head[32];
    size_t n = 1;

    head[0] = '$';
    n += i64_text(head + 1, (int64_t)len);
    memcpy(head + n, "\r\n", 2);
    if (resp_raw(b, head, n + 2) || resp_raw(b, p, len) || resp_raw(b, "\r\n", 2))
        return SN_ERR_NOMEM;
    b->n++;
    return 0;
}

static int resp_bulk_str(struct resp *b, const char *s) { return resp_bulk(b, s, strlen(s)); }

/* Queues the multi-machine call built so far (EVALSHA cas_sha nkeys keys...
 * ttl machine arguments...) and starts the next one. */
static int multi_send(sn_feature_redis_t *r, char *errstr, size_t errstr_size) {
    char head[32], nkeys[24];
    int n;

    if (r->mkeys.n == 0) return 0;
    resp_reset(&r->mcmd);
    n = snprintf(head, sizeof(head), "*%zu\r\n", 3 + r->mkeys.n + r->margs.n);
    snprintf(nkeys, sizeof(nkeys), "%zu", r->mkeys.n);
    if (resp_raw(&r->mcmd, head, (size_t)n) || resp_bulk(&r->mcmd, "EVALSHA", 7) ||
        resp_bulk(&r->mcmd, r->cas_sha, 40) || resp_bulk_str(&r->mcmd, nkeys) ||
        resp_raw(&r->mcmd, r->mkeys.buf, r->mkeys.len) ||
        resp_raw(&r->mcmd, r->margs.buf, r->margs.len))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if (redisAppendFormattedCommand(r->ctx, r->mcmd.buf, r->mcmd.len) != REDIS_OK)
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "redis: cannot queue a command");
    r->mcalls[r->nmcalls++] = r->mkeys.n;
    resp_reset(&r->mkeys);
    resp_reset(&r->margs);
    return 0;
}

/* Applies group g's chunk to its cached copy (which prepare_call found
 * current) and adds the result to the multi-machine call being built, which
 * is queued when it holds redis.cas.machines.max machines. */
static int multi_add(sn_feature_redis_t *r, struct group *g, size_t gi, const sn_event_t *evs,
                     const int32_t *partitions, const int64_t *offsets, float *out, char *errstr,
                     size_t errstr_size) {
    char key[KEY_MAX], ttlt[24], num[24];
    size_t k = 0, nset = 0;
    int rc = 0;

    if (sn_feature_redis_key(r, g->id, key, sizeof(key)) < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "machine id \"%s\": key too long",
                          g->id);
    prepare_call(r, g, partitions, offsets);
    apply_locally(r, g, evs, partitions, offsets, out, g->version, &k, &nset);
    if (r->mkeys.n == 0) {
        snprintf(ttlt, sizeof(ttlt), "%lld", r->ttl_s);
        rc |= resp_bulk_str(&r->margs, ttlt);
    }
    i64_text(num, (int64_t)(k - 1 - nset)); /* the HDEL names after the HSET arguments */
    rc |= resp_bulk_str(&r->mkeys, key);
    rc |= resp_bulk_str(&r->margs, g->expect);
    rc |= resp_bulk(&r->margs, g->refresh ? "1" : "0", 1);
    for (size_t a = 0; a <= nset; a++) rc |= resp_bulk(&r->margs, r->argv[a], r->argvlen[a]);
    rc |= resp_bulk_str(&r->margs, num);
    for (size_t a = nset + 1; a < k; a++) rc |= resp_bulk(&r->margs, r->argv[a], r->argvlen[a]);
    if (rc) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    g->multi = 1;
    r->mmembers[r->nmembers++] = gi;
    if (r->mkeys.n >= r->multi_max) return multi_send(r, errstr, errstr_size);
    return 0;
}

static int parse_i64(const redisReply *e, int64_t *out) {
    char buf[32], *end;
    long long v;

    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof(buf)) return -1;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || *end || v <= -SN_FSTATE_TS_LIMIT || v >= SN_FSTATE_TS_LIMIT) return -1;
    *out = v;
    return 0;
}

/* Loads the pre-batch state of a reply ({flags, version, m, name, value,
 * ...}) into st, and the offsets into e when there is an entry (*complete = 0
 * when they do not fit). Anything malformed is fatal: the script and this
 * code disagree about the format. */
static int load_state(sn_feature_redis_t *r, sn_fstate_t *st, sn_fentry_t *e, const redisReply *rep,
                      int *complete) {
    const sn_feature_spec_t *spec = r->spec;
    size_t reclen = (size_t)spec->nwf * SN_FREC_DOUBLES * sizeof(double);
    size_t mlen = (3 + 2 * (size_t)spec->nwf) * sizeof(double);
    const redisReply *m = rep->element[2];

    *complete = 1;
    sn_fstate_reset(st, spec);
    if (e) memset(e->offsets, 0, sizeof(e->offsets));
    if (m->len > 0) {
        double h[3];

        if (m->len != mlen) return -1;
        memcpy(h, m->str, sizeof(h));
        if (!(fabs(h[0]) < (double)SN_FSTATE_TS_LIMIT) ||
            !(fabs(h[1]) < (double)SN_FSTATE_TS_LIMIT) ||
            !(h[2] >= 0 && h[2] < (double)SN_FSTATE_TS_LIMIT))
            return -1;
        st->has_wm = 1;
        st->wm = (int64_t)h[0];
        st->wmb = (int64_t)h[1];
        st->dropped = (uint64_t)h[2];
        memcpy(st->last, m->str + sizeof(h), mlen - sizeof(h));
    }
    if ((rep->elements - 3) % 2 != 0) return -1;
    for (size_t i = 3; i < rep->elements; i += 2) {
        const redisReply *name = rep->element[i], *val = rep->element[i + 1];
        int64_t b, s, off;

        if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) return -1;
        if (name->len > 2 && name->str[0] == 'o' && name->str[1] == ':') {
            char pbuf[16], *end;
            long p;
            struct sn_foffset *o;

            if (name->len - 2 >= sizeof(pbuf) || parse_i64(val, &off) != 0) return -1;
            memcpy(pbuf, name->str + 2, name->len - 2);
            pbuf[name->len - 2] = '\0';
            p = strtol(pbuf, &end, 10);
            if (*end || p < INT32_MIN || p > INT32_MAX) return -1;
            if (!e) continue;
            if (!(o = entry_offset(e, (int32_t)p, 1)))
                *complete = 0;
            else
                o->offset = off;
            continue;
        }
        if (parse_i64(name, &b) != 0 || val->len != reclen || !st->has_wm || b > st->wmb ||
            b <= st->wmb - spec->nbuckets)
            return -1;
        s = b % spec->nbuckets;
        if (s < 0) s += spec->nbuckets;
        st->bidx[s] = b;
        memcpy(st->rec + (size_t)s * spec->nwf * SN_FREC_DOUBLES, val->str, reclen);
    }
    return 0;
}

static void count(sn_feature_redis_t *r, int f) {
    if (f & SN_FEATURES_APPLIED)
        r->stats.applied++;
    else if (f & SN_FEATURES_REDELIVERED)
        r->stats.redelivered++;
    else
        r->stats.dropped_late++;
}

/* Group g's compare-and-set was stored: what apply_locally computed stands,
 * and the copy is what Redis now holds. */
static void cas_stored(sn_feature_redis_t *r, struct group *g) {
    sn_fentry_t *e = g->entry;
    size_t i = g->chunk_first;

    r->stats.cache_hits++;
    for (size_t c = 0; c < g->chunk_n; c++, i = r->next[i]) count(r, r->eflags[i]);
    if (g->refresh && g->changed) e->aux = g->sent_at;
    snprintf(e->tag, sizeof(e->tag), "%s", g->changed ? g->version : g->expect);
    g->cursor = i;
    g->remaining -= g->chunk_n;
}

/* Handles the reply to group g's call: a confirmed compare-and-set keeps what
 * apply_locally computed; otherwise the chunk is replayed on the state the
 * reply carries, and each event's decision is checked against the script's. */
static int process_reply(sn_feature_redis_t *r, struct group *g, const redisReply *rep,
                         const sn_event_t *evs, const int32_t *partitions, const int64_t *offsets,
                         float *out, char *errstr, size_t errstr_size) {
    const sn_feature_spec_t *spec = r->spec;
    size_t nfeat = spec->nfeatures, i = g->chunk_first;
    sn_fentry_t *e = g->entry;
    sn_fstate_t *st = e ? &e->st : &r->scratch;
    const char *fl = "";
    int complete = 1, changed = 0;
    size_t c = 0;

    if (rep->type == REDIS_REPLY_STRING && rep->len == 1 && rep->str[0] == 'c') {
        if (!g->cas) goto bad;
        cas_stored(r, g);
        return 0;
    } else {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) goto bad;
        for (size_t k = 0; k < 3; k++)
            if (rep->element[k]->type != REDIS_REPLY_STRING) goto bad;
        if (rep->element[0]->len != g->chunk_n) goto bad;
        fl = rep->element[0]->str;
        if (load_state(r, st, e, rep, &complete) != 0) goto bad;
        if (e) r->stats.cache_misses++;
        for (c = 0; c < g->chunk_n; c++, i = r->next[i]) {
            const sn_event_t *ev = &evs[i];
            int f, want;

            sn_fspec_values(spec, ev, r->vals);
            switch (fl[c]) {
            case 'a': want = SN_FEATURES_APPLIED; break;
            case 'o': want = SN_FEATURES_APPLIED | SN_FEATURES_OUT_OF_ORDER; break;
            case 'l': want = SN_FEATURES_DROPPED_LATE; break;
            case 'r': want = SN_FEATURES_REDELIVERED; break;
            default: goto bad;
            }
            if (e && offsets && offsets[i] >= 0) {
                /* mirror the script's offset bookkeeping in the copy */
                struct sn_foffset *o = entry_offset(e, partitions ? partitions[i] : 0, 1);
                int seen = o && o->offset >= 0 && offsets[i] <= o->offset;

                if (!o)
                    complete = 0;
                else if (complete && seen != (want == SN_FEATURES_REDELIVERED))
                    goto diverged;
                else if (!seen)
                    o->offset = offsets[i];
            }
            if (want == SN_FEATURES_REDELIVERED) {
                f = want;
            } else if ((f = sn_fstate_apply(st, spec, r->vals, ev->ts_ms)) != want) {
                goto diverged;
            } else {
                changed = 1;
            }
            count(r, f);
            r->eflags[i] = (uint8_t)f;
            sn_fstate_features(st, spec, r->vals, ev->ts_ms, out + i * nfeat);
        }
        if (e) {
            if (g->refresh && changed) e->aux = g->sent_at; /* the script set the TTL */
            /* the copy now equals Redis's state at the version the script reports */
            if (complete && rep->element[1]->len > 0 && rep->element[1]->len < sizeof(e->tag)) {
                memcpy(e->tag, rep->element[1]->str, rep->element[1]->len);
                e->tag[rep->element[1]->len] = '\0';
            } else {
                e->tag[0] = '\0';
            }
        }
    }
    g->cursor = i;
    g->remaining -= g->chunk_n;
    return 0;
diverged:
    if (e) sn_fmap_remove(r->cache, e);
    g->entry = NULL;
    return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                      "features: machine \"%s\": Redis and the replay disagree about the event "
                      "at %lld (script says '%c'): the backends diverged",
                      g->id, (long long)evs[i].ts_ms, fl[c]);
bad:
    if (e) sn_fmap_remove(r->cache, e);
    g->entry = NULL;
    return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                      "features: machine \"%s\": malformed reply from the update script", g->id);
}

/* Reads the replies to the multi-machine calls of the pipeline, which were
 * queued first. A machine whose version moved ('x') is marked for a resend as
 * a plain call (apply_locally cleared its copy's tag); NOSCRIPT marks every
 * machine of the call, and sets *noscript. */
static int read_multi(sn_feature_redis_t *r, size_t *nresend, int *noscript, char *errstr,
                      size_t errstr_size) {
    size_t m = 0;

    for (size_t c = 0; c < r->nmcalls; c++) {
        size_t nm = r->mcalls[c];
        redisReply *rep = NULL;
        int rc = 0;

        if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep)
            return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: %s", r->url,
                              r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            *noscript = 1;
        } else if (rep->type == REDIS_REPLY_ERROR) {
            rc = sn_err_set(errstr, errstr_size, reply_error_class(rep->str),
                            "redis %s: feature update of %zu machines: %s", r->url, nm, rep->str);
        } else if (rep->type != REDIS_REPLY_STRING || rep->len != nm) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                            "features: malformed reply from the multi-machine script");
        }
        for (size_t j = 0; j < nm && rc == 0; j++) {
            struct group *g = &r->groups[r->mmembers[m + j]];
            char f = rep->type == REDIS_REPLY_STRING ? rep->str[j] : 'x';

            g->inflight = g->multi = 0;
            if (f == 'c') {
                cas_stored(r, g);
            } else if (f == 'x') {
                if (rep->type == REDIS_REPLY_STRING) r->stats.cas_moved++;
                g->resend = 1;
                (*nresend)++;
            } else {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                                "features: malformed reply from the multi-machine script");
            }
        }
        freeReplyObject(rep);
        if (rc != 0) return rc;
        m += nm;
    }
    return 0;
}

/* Sends the calls of the groups in r->round[0..n) (only those marked for a
 * resend when only_resend) and reads the replies in order: first the
 * multi-machine compare-and-sets (when redis.cas.machines.max > 1), then one
 * call per remaining machine. NOSCRIPT or a moved version marks a group for
 * a resend (*noscript says whether the scripts must be loaded again); any
 * other failure closes the connection (the pipeline's remaining replies are
 * abandoned with it). */
static int run_pipeline(sn_feature_redis_t *r, size_t n, int only_resend, const sn_event_t *evs,
                        const int32_t *partitions, const int64_t *offsets, float *out,
                        size_t *nresend, int *noscript, char *errstr, size_t errstr_size) {
    size_t sent = 0;
    int rc = 0;

    *nresend = 0;
    *noscript = 0;
    r->nmcalls = r->nmembers = 0;
    resp_reset(&r->mkeys);
    resp_reset(&r->margs);
    for (size_t k = 0; k < n; k++) {
        struct group *g = &r->groups[r->round[k]];

        g->multi = 0;
        if (only_resend && !g->resend) continue;
        /* cas_script keeps no undo record: with it on, each machine its own call */
        if (r->multi_max < 2 || r->undo || !cas_possible(r, g, partitions, offsets)) continue;
        g->resend = 0;
        if ((rc = multi_add(r, g, r->round[k], evs, partitions, offsets, out, errstr,
                            errstr_size)) != 0)
            goto fail;
        g->inflight = 1;
    }
    if ((rc = multi_send(r, errstr, errstr_size)) != 0) goto fail;
    sent += r->nmcalls;
    r->stats.multi_calls += r->nmcalls;
    for (size_t k = 0; k < n; k++) {
        struct group *g = &r->groups[r->round[k]];
        if (g->multi || (only_resend && !g->resend)) continue;
        g->resend = 0;
        if ((rc = append_call(r, g, evs, partitions, offsets, out, errstr, errstr_size)) != 0)
            goto fail;
        g->inflight = 1;
        sent++;
    }
    r->stats.round_trips++;
    r->stats.calls += sent;
    if ((rc = read_multi(r, nresend, noscript, errstr, errstr_size)) != 0) goto fail;
    for (size_t k = 0; k < n; k++) {
        struct group *g = &r->groups[r->round[k]];
        redisReply *rep = NULL;

        if (!g->inflight) continue;
        g->inflight = 0;
        if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: %s", r->url,
                            r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            goto fail;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            if (strncmp(rep->str, "NOSCRIPT", 8) == 0) {
                /* the copy's tag was cleared when the call was built, so the
                 * resend is a plain call that rereads the state */
                g->resend = 1;
                (*nresend)++;
                *noscript = 1;
                freeReplyObject(rep);
                continue;
            }
            rc = sn_err_set(errstr, errstr_size, reply_error_class(rep->str),
                            "redis %s: feature update for machine \"%s\": %s", r->url, g->id,
                            rep->str);
            freeReplyObject(rep);
            goto fail;
        }
        rc = process_reply(r, g, rep, evs, partitions, offsets, out, errstr, errstr_size);
        freeReplyObject(rep);
        if (rc != 0) goto fail;
    }
    return 0;
fail:
    for (size_t k = 0; k < n; k++)
        r->groups[r->round[k]].inflight = r->groups[r->round[k]].multi = 0;
    conn_close(r);
    return rc;
}

/* Sends rounds of at most one call per machine until every event is applied.
 * Usually one round: more only for a machine with more than
 * SN_FEATURE_REDIS_CALL_MAX events or a batch of more than
 * ROUND_MACHINES_MAX machines. One call per machine per pipeline keeps a
 * machine's calls in order even when some come back NOSCRIPT and are sent
 * again. */
static int apply_batch(sn_feature_redis_t *r, const sn_event_t *evs, const int32_t *partitions,
                       const int64_t *offsets, size_t n, float *out, char *errstr,
                       size_t errstr_size) {
    const sn_feature_spec_t *spec = r->spec;
    size_t pending;
    int rc;

    if (n > SN_FEATURE_REDIS_BATCH_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "features: batch of %zu events, more than %d", n,
                          SN_FEATURE_REDIS_BATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        const sn_event_t *ev = &evs[i];
        if (!ev->machine_id[0] || !memchr(ev->machine_id, 0, sizeof(ev->machine_id)) ||
            ev->ts_ms <= -SN_FSTATE_TS_LIMIT || ev->ts_ms >= SN_FSTATE_TS_LIMIT ||
            ev->nvalues < (uint32_t)spec->min_values ||
            (offsets && offsets[i] >= SN_FSTATE_TS_LIMIT))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "features: event %zu: empty machine id, time or offset beyond 2^53, "
                              "or fewer values than the spec's inputs",
                              i);
    }
    if (n == 0) return 0;
    if (reserve(r, n) != 0) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    group_events(r, evs, n);
    pending = r->ngroups;
    while (pending > 0) {
        size_t nround = 0, ncached = 0, nresend = 0;
        int noscript = 0;

        if (!r->ctx && (rc = conn_open(r, errstr, errstr_size)) != 0) return rc;
        for (size_t gi = 0; gi < r->ngroups && nround < ROUND_MACHINES_MAX; gi++) {
            struct group *g = &r->groups[gi];

            if (!g->remaining) continue;
            g->chunk_first = g->cursor;
            g->chunk_n =
                g->remaining < SN_FEATURE_REDIS_CALL_MAX ? g->remaining : SN_FEATURE_REDIS_CALL_MAX;
            g->entry = NULL;
            g->resend = g->inflight = g->cas = 0;
            /* getting every entry of the round before any reply is read means
             * no reply's replay can evict another round member's entry */
            if (r->cache && ncached < r->cache_max) {
                if (!(g->entry = sn_fmap_get(r->cache, g->id, 1, NULL)))
                    return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
                ncached++;
            }
            r->round[nround++] = gi;
        }
        rc = run_pipeline(r, nround, 0, evs, partitions, offsets, out, &nresend, &noscript, errstr,
                          errstr_size);
        if (rc != 0) return rc;
        if (nresend > 0) {
            /* the script cache was flushed (a restart, SCRIPT FLUSH, failover);
             * or another writer moved some versions: plain calls for those */
            if (noscript && (rc = script_load(r, errstr, errstr_size)) != 0) {
                conn_close(r);
                return rc;
            }
            rc = run_pipeline(r, nround, 1, evs, partitions, offsets, out, &nresend, &noscript,
                              errstr, errstr_size);
            if (rc != 0) return rc;
            if (nresend > 0) {
                conn_close(r);
                return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                                  "redis %s: the update script vanished again right after SCRIPT "
                                  "LOAD",
                                  r->url);
            }
        }
        pending = 0;
        for (size_t gi = 0; gi < r->ngroups; gi++)
            if (r->groups[gi].remaining) pending++;
    }
    r->stats.batches++;
    return 0;
}

int sn_feature_redis_apply_batch(sn_feature_redis_t *r, const sn_event_t *evs,
                                 const int32_t *partitions, const int64_t *offsets, size_t n,
                                 float *out, uint8_t *flags, char *errstr, size_t errstr_size) {
    struct sigpipe_guard g;
    int rc;

    sigpipe_block(&g);
    rc = apply_batch(r, evs, partitions, offsets, n, out, errstr, errstr_size);
    sigpipe_restore(&g);
    if (rc == 0 && flags && n) memcpy(flags, r->eflags, n);
    return rc;
}

/* ---- the scorer's alert state (consumers/alerting.h), next to the feature
 * state: <prefix>:{<machine>}:alert, in the same hash slot, with the same
 * TTL; and at-least-once each partition's decided offset,
 * <prefix>:alert-decided:<topic>:<partition> */

/* Keeps the stored record when it belongs to a later batch of the same
 * partition (its first offset is higher): a late write from a scorer that
 * lost the partition cannot undo its new owner's. A redone batch (the same
 * first offset) overwrites. The record starts "a1 <partition> <first offset>"
 * (consumers/alerting.c). A decided offset only grows. */
static const char alert_script[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local p, f = string.match(cur, '^a1 (%d+) (%-?%d+) ')\n"
    "  local np, nf = string.match(ARGV[1], '^a1 (%d+) (%-?%d+) ')\n"
    "  if p and np and p == np and tonumber(f) > tonumber(nf) then return 0 end\n"
    "  if not np and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "return 1\n";

/* Key i of a pipeline: machine i, then partition i - n. */
static int alert_key(const sn_feature_redis_t *r, const char *const *machines, size_t n,
                     const char *topic, const int32_t *partitions, size_t i, char *buf,
                     size_t size) {
    int len;

    if (i < n) return machine_key(r, machines[i], "alert", buf, size);
    len = snprintf(buf, size, "%s:alert-decided:%s:%" PRId32, r->prefix, topic, partitions[i - n]);
    return len < 0 || (size_t)len >= size ? SN_ERR_NOMEM : len;
}

/* One pipeline over n machines and np partitions: GETs (load: the records
 * go to out, val_size bytes each, "" for none; the decided offsets to
 * decided, -1 for none) or compare-and-set writes (vals and decided given).
 * Every reply is read even after an error one, so the connection stays in
 * step. */
static int alert_pipeline(sn_feature_redis_t *r, int load, const char *const *machines,
                          const char *const *vals, size_t n, char *out, size_t val_size,
                          const char *topic, const int32_t *partitions, int64_t *decided, size_t np,
                          char *errstr, size_t errstr_size) {
    char key[SN_EVENT_ID_MAX * 3 + 320], ttl[24], num[24];
    int rc = 0;

    if (n + np > SN_FEATURE_REDIS_BATCH_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "alert state: %zu keys", n + np);
    if (!r->ctx && (rc = conn_open(r, errstr, errstr_size)) != 0) return rc;
    snprintf(ttl, sizeof(ttl), "%lld", r->ttl_s);
    for (size_t i = 0; i < n + np; i++) {
        const char *argv[6];
        size_t lens[6];
        int argc;

        if (alert_key(r, machines, n, topic, partitions, i, key, sizeof(key)) < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "alert state: bad machine id \"%.64s\" or topic",
                              i < n ? machines[i] : "");
        if (!load) {
            if (i >= n) snprintf(num, sizeof(num), "%" PRId64, decided[i - n]);
            argv[0] = "EVAL", argv[1] = alert_script, argv[2] = "1", argv[3] = key;
            argv[4] = i < n ? vals[i] : num, argv[5] = ttl;
            argc = 6;
        } else {
            argv[0] = "GET", argv[1] = key;
            argc = 2;
        }
        for (int k = 0; k < argc; k++) lens[k] = strlen(argv[k]);
        if (redisAppendCommandArgv(r->ctx, argc, argv, lens) != REDIS_OK) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: alert state: %s",
                            r->url, r->ctx->errstr);
            conn_close(r);
            return rc;
        }
    }
    for (size_t i = 0; i < n + np; i++) {
        redisReply *rep = NULL;
        char *end;

        if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "redis %s: alert state: %s",
                            r->url, r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            conn_close(r);
            return rc;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            if (rc == 0)
                rc = sn_err_set(errstr, errstr_size, reply_error_class(rep->str),
                                "redis %s: alert state: %s", r->url, rep->str);
        } else if (load && rep->type == REDIS_REPLY_NIL) {
            if (i < n)
                out[i * val_size] = '\0';
            else
                decided[i - n] = -1;
        } else if (load && i < n && rep->type == REDIS_REPLY_STRING && rep->len < val_size) {
            memcpy(&out[i * val_size], rep->str, rep->len);
            out[i * val_size + rep->len] = '\0';
        } else if (load && i >= n && rep->type == REDIS_REPLY_STRING && rep->len > 0 &&
                   rep->len < 24) {
            errno = 0;
            decided[i - n] = strtoll(rep->str, &end, 10);
            if ((errno || *end || decided[i - n] < -1) && rc == 0)
                rc = sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                                "redis %s: alert state: decided offset \"%s\" is not an offset",
                                r->url, rep->str);
        } else if (load && rc == 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                            "redis %s: alert state: not a record (reply type %d)", r->url,
                            rep->type);
        }
        freeReplyObject(rep);
    }
    return rc;
}

int sn_feature_redis_alert_load(sn_feature_redis_t *r, const char *const *machines, size_t n,
                                char *vals, size_t val_size, const char *topic,
                                const int32_t *partitions, int64_t *decided, size_t np,
                                char *errstr, size_t errstr_size) {
    struct sigpipe_guard g;
    int rc;

    if (n + np == 0) return 0;
    sigpipe_block(&g);
    rc = alert_pipeline(r, 1, machines, NULL, n, vals, val_size, topic, partitions, decided, np,
                        errstr, errstr_size);
    sigpipe_restore(&g);
    if (rc == 0) r->stats.round_trips++;
    return rc;
}

int sn_feature_redis_alert_store(sn_feature_redis_t *r, const char *const *machines,
                                 const char *const *vals, size_t n, const char *topic,
                                 const int32_t *partitions, const int64_t *decided, size_t np,
                                 char *errstr, size_t errstr_size) {
    struct sigpipe_guard g;
    int rc;

    if (n + np == 0) return 0;
    sigpipe_block(&g);
    rc = alert_pipeline(r, 0, machines, vals, n, NULL, 0, topic, partitions, (int64_t *)decided, np,
                        errstr, errstr_size);
    sigpipe_restore(&g);
    if (rc == 0) r->stats.round_trips++;
    return rc;
}
