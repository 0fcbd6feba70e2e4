/* scoring_conf.h: the config table of the scoring module's keys (Redis
 * connection and feature state). The CLI registers it with the others. */
#ifndef SN_SCORING_CONF_H
#define SN_SCORING_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_scoring_conf_defs[];

#endif
