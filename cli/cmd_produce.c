#include <stdio.h>

#include "cli/cli.h"
#include "common/err.h"

int cmd_produce(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sentinel produce: not built yet\n");
    return SN_EXIT_RUNTIME;
}
