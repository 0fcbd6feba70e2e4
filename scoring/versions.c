#include "scoring/versions.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <xgboost/c_api.h>

#define STR2(x) #x
#define STR(x) STR2(x)

const char *sn_scoring_xgboost_version(char *buf, size_t size) {
    int major = 0, minor = 0, patch = 0;

    XGBoostVersion(&major, &minor, &patch);
    snprintf(buf, size, "%d.%d.%d", major, minor, patch);
    return buf;
}

const char *sn_scoring_hiredis_version(void) {
    return STR(HIREDIS_MAJOR) "." STR(HIREDIS_MINOR) "." STR(HIREDIS_PATCH);
}
