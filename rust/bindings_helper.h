/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers bound by scst.ko's own bindgen rule (see Kbuild), for what
 * kernel::bindings of 6.12 does not reach. bindgen_parameters allowlists
 * what is used, so the output stays small.
 */
#include <linux/kobject.h>
#include <linux/sysfs.h>

#include "helpers.h"
