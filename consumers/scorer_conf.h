/* scorer_conf.h: the config table of the scorer. */
#ifndef SN_SCORER_CONF_H
#define SN_SCORER_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_scorer_conf_defs[];

#endif
