/* drift_conf.h: the config keys of `sentinel drift` (drift.*). */
#ifndef SN_DRIFT_CONF_H
#define SN_DRIFT_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_drift_conf_defs[];

#endif
