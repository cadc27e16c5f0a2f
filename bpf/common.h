/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef XSYN_COMMON_H
#define XSYN_COMMON_H

#include "kernel.h"
#include "include/bpf_helpers.h"
#include "include/bpf_endian.h"
#include "include/bpf_core_read.h"
#include "proto.h"

#endif /* XSYN_COMMON_H */
