/* sentinel version: our version and the libraries we actually run with. */
#include <stdio.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/kafka.h"
#include "common/versions.h"
#include "schemas/versions.h"
#include "scoring/versions.h"

int cmd_version(int argc, char **argv) {
    char xgb[32];

    (void)argc;
    (void)argv;
    printf("sentinel %s\n", SN_VERSION);
    printf("  librdkafka %s\n", sn_kafka_version());
    printf("  avro-c %s\n", sn_schemas_avro_version());
    printf("  xgboost %s\n", sn_scoring_xgboost_version(xgb, sizeof(xgb)));
    printf("  hiredis %s\n", sn_scoring_hiredis_version());
    printf("  libcurl %s\n", sn_curl_version());
    return SN_EXIT_OK;
}
