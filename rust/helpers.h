/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of scst.ko: wrappers for static inlines and macros that bindgen
 * cannot bind, and small pieces of C that are cleaner in C.
 */
#ifndef SCST_RS_HELPERS_H
#define SCST_RS_HELPERS_H

#include <linux/kobject.h>
#include <linux/sysfs.h>

struct kobject *scst_rs_kobject_create_and_add(const char *name,
					       struct kobject *parent);
struct kobject *scst_rs_kernel_kobj(void);
void scst_rs_sysfs_attr_init(struct attribute *attr);
void scst_rs_sysfs_remove_file(struct kobject *kobj,
			       const struct attribute *attr);
void scst_rs_sysfs_remove_link(struct kobject *kobj, const char *name);

#endif /* SCST_RS_HELPERS_H */
