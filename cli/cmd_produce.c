/* sentinel produce: telemetry from a CSV file, JSON lines or a synthetic fleet
 * into the telemetry topic, Avro in the Confluent framing, keyed by machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "producers/produce.h"

#define MAP_MAX 64

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: sentinel produce [options] (--csv FILE | --jsonl FILE | --fleet N --events M)\n\n"
        "Publishes telemetry to the telemetry topic (topic.telemetry), Avro with the\n"
        "Confluent framing, keyed by machine id, with an idempotent producer. Exits 1\n"
        "when any event was not delivered or any input row was bad (each is logged).\n\n"
        "input:\n"
        "  --csv FILE          CSV with a header line ('-' for standard input)\n"
        "  --preset ai4i       the column mapping of the bundled AI4I data\n"
        "                      (data/ai4i2020.csv); implies --machine-id ai4i-mill\n"
        "  --map FIELD=COLUMN  map a CSV column to a schema field, the key or time field,\n"
        "                      or tag.NAME (repeatable); default: columns named like fields\n"
        "  --ts-column COLUMN  CSV column with the event time in epoch milliseconds\n"
        "  --jsonl FILE        JSON lines, one object per event ('-' for standard input)\n"
        "  --fleet N           a synthetic fleet of N machines (drift, noise, failures)\n"
        "  --seed S            the fleet's seed (default 1): same seed, same events\n"
        "  --failures-out FILE write the fleet's failures as machine_id,ts_ms,mode lines\n"
        "time and ids:\n"
        "  --machine-id ID     machine id for inputs that have none\n"
        "  --start TIME        time of the first row, epoch milliseconds or 'now'\n"
        "                      (default: now, floored to the hour)\n"
        "  --step MS           time between rows, or between fleet steps (default 1000)\n"
        "how much and how fast:\n"
        "  --skip N            read but do not send the first N events (replay a tail)\n"
        "  --events N          send at most N events (required with --fleet)\n"
        "  --rate R            events per second (default: as fast as possible)\n"
        "  --topic TOPIC       produce to TOPIC instead of topic.telemetry\n"
        "  --shift FIELD=D     add D to FIELD of every event sent (repeatable): a controlled\n"
        "                      sensor shift for drift drills\n"
        "  -q, --quiet         no progress line\n");
    cli_conf_usage(out);
}

static int parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    unsigned long long v;

    if (*s == '-') goto bad;
    v = strtoull(s, &end, 10);
    if (end == s || *end) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "sentinel produce: %s expects a non-negative integer, got '%s'\n", opt, s);
    return -1;
}

int cmd_produce(int argc, char **argv) {
    enum {
        O_CSV = 256,
        O_PRESET,
        O_MAP,
        O_TSCOL,
        O_JSONL,
        O_FLEET,
        O_SEED,
        O_FOUT,
        O_MID,
        O_START,
        O_STEP,
        O_SKIP,
        O_EVENTS,
        O_RATE,
        O_TOPIC,
        O_SHIFT
    };
    static const struct option longopts[] = {{"csv", required_argument, NULL, O_CSV},
                                             {"preset", required_argument, NULL, O_PRESET},
                                             {"map", required_argument, NULL, O_MAP},
                                             {"ts-column", required_argument, NULL, O_TSCOL},
                                             {"jsonl", required_argument, NULL, O_JSONL},
                                             {"fleet", required_argument, NULL, O_FLEET},
                                             {"seed", required_argument, NULL, O_SEED},
                                             {"failures-out", required_argument, NULL, O_FOUT},
                                             {"machine-id", required_argument, NULL, O_MID},
                                             {"start", required_argument, NULL, O_START},
                                             {"step", required_argument, NULL, O_STEP},
                                             {"skip", required_argument, NULL, O_SKIP},
                                             {"events", required_argument, NULL, O_EVENTS},
                                             {"rate", required_argument, NULL, O_RATE},
                                             {"topic", required_argument, NULL, O_TOPIC},
                                             {"shift", required_argument, NULL, O_SHIFT},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *map[MAP_MAX], *shift[SN_PRODUCE_SHIFT_MAX];
    sn_produce_opts_t o;
    sn_produce_result_t res;
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    FILE *fout = NULL;
    const char *fout_path = NULL, *start = NULL;
    char errstr[512];
    int opt, nmap = 0, quiet = 0, inputs = 0, rc = SN_EXIT_USAGE;
    uint64_t u;

    memset(&o, 0, sizeof(o));
    o.source.step_ms = 1000;
    o.source.seed = 1;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "qh", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case O_CSV:
            o.source.kind = SN_SOURCE_CSV;
            o.source.path = optarg;
            inputs++;
            break;
        case O_JSONL:
            o.source.kind = SN_SOURCE_JSONL;
            o.source.path = optarg;
            inputs++;
            break;
        case O_FLEET:
            if (parse_u64("--fleet", optarg, &u) || u == 0 || u > 1000000) {
                fprintf(stderr, "sentinel produce: --fleet expects 1..1000000 machines\n");
                return SN_EXIT_USAGE;
            }
            o.source.kind = SN_SOURCE_FLEET;
            o.source.machines = (uint32_t)u;
            inputs++;
            break;
        case O_PRESET:
            if (strcmp(optarg, "ai4i") != 0) {
                fprintf(stderr, "sentinel produce: unknown preset '%s' (known: ai4i)\n", optarg);
                return SN_EXIT_USAGE;
            }
            o.source.map = sn_source_ai4i_map;
            o.source.nmap = sn_source_ai4i_nmap;
            if (!o.source.machine_id) o.source.machine_id = "ai4i-mill";
            break;
        case O_MAP:
            if (nmap >= MAP_MAX) {
                fprintf(stderr, "sentinel produce: at most %d --map options\n", MAP_MAX);
                return SN_EXIT_USAGE;
            }
            map[nmap++] = optarg;
            break;
        case O_TSCOL: o.source.ts_column = optarg; break;
        case O_SEED:
            if (parse_u64("--seed", optarg, &o.source.seed)) return SN_EXIT_USAGE;
            break;
        case O_FOUT: fout_path = optarg; break;
        case O_MID: o.source.machine_id = optarg; break;
        case O_START: start = optarg; break;
        case O_STEP:
            if (parse_u64("--step", optarg, &u) || u > 86400000ULL) return SN_EXIT_USAGE;
            o.source.step_ms = (int64_t)u;
            break;
        case O_SKIP:
            if (parse_u64("--skip", optarg, &o.skip)) return SN_EXIT_USAGE;
            break;
        case O_EVENTS:
            if (parse_u64("--events", optarg, &o.count)) return SN_EXIT_USAGE;
            break;
        case O_RATE: {
            char *end;

            o.rate = strtod(optarg, &end);
            if (end == optarg || *end || !(o.rate >= 0) || o.rate > 1e9) {
                fprintf(stderr, "sentinel produce: --rate expects events per second, got '%s'\n",
                        optarg);
                return SN_EXIT_USAGE;
            }
            break;
        }
        case O_TOPIC: o.topic = optarg; break;
        case O_SHIFT:
            if (o.nshift >= SN_PRODUCE_SHIFT_MAX) {
                fprintf(stderr, "sentinel produce: at most %d --shift options\n",
                        SN_PRODUCE_SHIFT_MAX);
                return SN_EXIT_USAGE;
            }
            shift[o.nshift++] = optarg;
            o.shift = shift;
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc || inputs != 1) {
        fprintf(stderr, "sentinel produce: give exactly one of --csv, --jsonl, --fleet\n");
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (nmap) {
        o.source.map = map;
        o.source.nmap = (size_t)nmap;
    }
    if (o.source.kind == SN_SOURCE_FLEET && !o.count) {
        fprintf(stderr, "sentinel produce: --fleet needs --events N\n");
        return SN_EXIT_USAGE;
    }
    if (!start || strcmp(start, "now") == 0) {
        int64_t now_ms = (int64_t)time(NULL) * 1000;

        o.source.start_ms = start ? now_ms : now_ms - now_ms % 3600000;
    } else if (parse_u64("--start", start, &u)) {
        return SN_EXIT_USAGE;
    } else {
        o.source.start_ms = (int64_t)u;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    if (fout_path && !(fout = fopen(fout_path, "w"))) {
        fprintf(stderr, "sentinel produce: cannot write %s\n", fout_path);
        goto out;
    }
    o.source.failures_out = fout;
    o.progress = !quiet && isatty(STDERR_FILENO);
    cli_install_signals();
    o.stop = &cli_stop;

    rc = sn_produce_run(conf, &o, &res, errstr, sizeof(errstr));
    if (rc == SN_ERR_INVALID) {
        fprintf(stderr, "sentinel produce: %s\n", errstr);
        rc = SN_EXIT_USAGE;
        goto out;
    }
    printf("produced %llu events to %s in %.2f s (%.0f events/s): %llu delivered, %llu failed, "
           "%llu bad input rows\n",
           (unsigned long long)res.sent, o.topic ? o.topic : sn_conf_str(conf, "topic.telemetry"),
           res.seconds, res.seconds > 0 ? (double)res.sent / res.seconds : 0.0,
           (unsigned long long)res.delivered, (unsigned long long)res.failed,
           (unsigned long long)res.bad);
    if (rc != 0) fprintf(stderr, "sentinel produce: %s\n", errstr);
    rc = (rc != 0 || res.bad || res.failed || res.delivered != res.sent) ? SN_EXIT_RUNTIME
                                                                         : SN_EXIT_OK;
out:
    if (fout) fclose(fout);
    sn_conf_destroy(conf);
    return rc;
}
