/* common_conf.h: the config table of keys shared by every subcommand. */
#ifndef SN_COMMON_CONF_H
#define SN_COMMON_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_common_conf_defs[];

#endif
