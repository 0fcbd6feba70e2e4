/* archiver_conf.h: the config table of the archiver (consumers/archiver.c). */
#ifndef SN_ARCHIVER_CONF_H
#define SN_ARCHIVER_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_archiver_conf_defs[];

#endif
