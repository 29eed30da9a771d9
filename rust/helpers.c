// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers of scst.ko; see helpers.h.
 */
#include <linux/err.h>
#include <linux/slab.h>

#include "helpers.h"

static void scst_rs_kobj_release(struct kobject *kobj)
{
	kfree(kobj);
}

static const struct kobj_type scst_rs_dir_ktype = {
	.release = scst_rs_kobj_release,
	.sysfs_ops = &kobj_sysfs_ops,
};

/*
 * Like kobject_create_and_add(), but returns the error (e.g. -EEXIST)
 * instead of NULL, so that the caller can tell the admin why.
 */
struct kobject *scst_rs_kobject_create_and_add(const char *name,
					       struct kobject *parent)
{
	struct kobject *kobj;
	int err;

	kobj = kzalloc(sizeof(*kobj), GFP_KERNEL);
	if (!kobj)
		return ERR_PTR(-ENOMEM);
	kobject_init(kobj, &scst_rs_dir_ktype);
	err = kobject_add(kobj, parent, "%s", name);
	if (err) {
		kobject_put(kobj);
		return ERR_PTR(err);
	}
	return kobj;
}

struct kobject *scst_rs_kernel_kobj(void)
{
	return kernel_kobj;
}

/* sysfs_attr_init() is a macro declaring a static lockdep key. */
void scst_rs_sysfs_attr_init(struct attribute *attr)
{
	sysfs_attr_init(attr);
}

/*
 * Removing an entry from a directory that kobject_del() already removed
 * (its kernfs node is gone with it) would WARN in kernfs: skip it, the entry
 * went with the directory.
 */
void scst_rs_sysfs_remove_file(struct kobject *kobj,
			       const struct attribute *attr)
{
	if (kobj->sd)
		sysfs_remove_file(kobj, attr);
}

void scst_rs_sysfs_remove_link(struct kobject *kobj, const char *name)
{
	if (kobj->sd)
		sysfs_remove_link(kobj, name);
}
