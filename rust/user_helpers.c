// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers of scst.ko for /dev/scst_user: the misc device and its file
 * operations (which call back into Rust), poll wait queues, user buffers
 * pinned into scatterlists, and scatterlist-to-scatterlist copies.
 */
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/wait.h>

#include "helpers.h"

/* Set while the device is registered; the Rust side outlives it. */
static void *scst_rs_misc_ctx;

static int scst_rs_misc_open(struct inode *inode, struct file *file)
{
	void *private = NULL;
	int err;

	err = scst_rs_misc_cb_open(scst_rs_misc_ctx, &private);
	if (err)
		return err;
	file->private_data = private;
	return nonseekable_open(inode, file);
}

static int scst_rs_misc_release(struct inode *inode, struct file *file)
{
	scst_rs_misc_cb_release(file->private_data);
	return 0;
}

static long scst_rs_misc_ioctl(struct file *file, unsigned int cmd,
			       unsigned long arg)
{
	return scst_rs_misc_cb_ioctl(file->private_data, cmd, arg,
				     (file->f_flags & O_NONBLOCK) != 0);
}

static __poll_t scst_rs_misc_poll(struct file *file, poll_table *wait)
{
	struct scst_rs_pollq *q = NULL;
	unsigned int mask;

	mask = scst_rs_misc_cb_poll(file->private_data, &q);
	if (q)
		poll_wait(file, &q->head, wait);
	/* Ask again after queueing: an event between the two calls counts. */
	return (__poll_t)scst_rs_misc_cb_poll(file->private_data, &q) | mask;
}

static const struct file_operations scst_rs_misc_fops = {
	.owner = THIS_MODULE,
	.open = scst_rs_misc_open,
	.release = scst_rs_misc_release,
	.unlocked_ioctl = scst_rs_misc_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.poll = scst_rs_misc_poll,
};

static struct miscdevice scst_rs_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.fops = &scst_rs_misc_fops,
};

int scst_rs_misc_register(const char *name, void *ctx)
{
	int err;

	if (scst_rs_misc_ctx)
		return -EBUSY;
	scst_rs_misc_ctx = ctx;
	scst_rs_misc.name = name;
	err = misc_register(&scst_rs_misc);
	if (err)
		scst_rs_misc_ctx = NULL;
	return err;
}

void scst_rs_misc_deregister(void)
{
	misc_deregister(&scst_rs_misc);
	scst_rs_misc_ctx = NULL;
}

struct scst_rs_pollq *scst_rs_pollq_alloc(void)
{
	struct scst_rs_pollq *q = kmalloc(sizeof(*q), GFP_KERNEL);

	if (q)
		init_waitqueue_head(&q->head);
	return q;
}

void scst_rs_pollq_wake(struct scst_rs_pollq *q)
{
	wake_up_interruptible_poll(&q->head, EPOLLIN | EPOLLRDNORM);
}

void scst_rs_pollq_free(struct scst_rs_pollq *q)
{
	kfree(q);
}

struct scst_rs_ubuf {
	struct sg_table sgt;
	unsigned int npages;
	struct page *pages[];
};

/*
 * Pins @len bytes of the current process's memory at @addr for a long
 * time (FOLL_LONGTERM: the handler's buffer stays pinned while cached) and
 * describes them with a scatterlist. Runs in the owner's context.
 */
struct scst_rs_ubuf *scst_rs_ubuf_pin(unsigned long addr, size_t len,
				      int *err)
{
	unsigned long first = addr >> PAGE_SHIFT;
	unsigned long last = (addr + len - 1) >> PAGE_SHIFT;
	unsigned int n = last - first + 1;
	struct scst_rs_ubuf *b;
	int pinned;

	if (!len || addr + len < addr) {
		*err = -EINVAL;
		return NULL;
	}
	b = kvzalloc(struct_size(b, pages, n), GFP_KERNEL);
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	pinned = pin_user_pages_fast(addr & PAGE_MASK, n,
				     FOLL_WRITE | FOLL_LONGTERM, b->pages);
	if (pinned < 0) {
		*err = pinned;
		kvfree(b);
		return NULL;
	}
	b->npages = pinned;
	if (pinned != n) {
		*err = -EFAULT;
		goto fail;
	}
	*err = sg_alloc_table_from_pages(&b->sgt, b->pages, n,
					 offset_in_page(addr), len, GFP_KERNEL);
	if (*err)
		goto fail;
	return b;
fail:
	unpin_user_pages(b->pages, b->npages);
	kvfree(b);
	return NULL;
}

void scst_rs_ubuf_unpin(struct scst_rs_ubuf *b)
{
	sg_free_table(&b->sgt);
	unpin_user_pages_dirty_lock(b->pages, b->npages, true);
	kvfree(b);
}

struct scatterlist *scst_rs_ubuf_sg(struct scst_rs_ubuf *b,
				    unsigned int *nents)
{
	*nents = b->sgt.nents;
	return b->sgt.sgl;
}

size_t scst_rs_sg_copy_sg(struct scatterlist *dst, unsigned int dst_nents,
			  struct scatterlist *src, unsigned int src_nents,
			  size_t len)
{
	struct sg_mapping_iter d, s;
	size_t done = 0, doff = 0, soff = 0;

	sg_miter_start(&d, dst, dst_nents, SG_MITER_TO_SG);
	sg_miter_start(&s, src, src_nents, SG_MITER_FROM_SG);
	while (done < len) {
		size_t n;

		if (doff == d.length) {
			if (!sg_miter_next(&d))
				break;
			doff = 0;
		}
		if (soff == s.length) {
			if (!sg_miter_next(&s))
				break;
			soff = 0;
		}
		n = min3(d.length - doff, s.length - soff, len - done);
		memcpy(d.addr + doff, s.addr + soff, n);
		doff += n;
		soff += n;
		done += n;
	}
	sg_miter_stop(&s);
	sg_miter_stop(&d);
	return done;
}

void scst_rs_msleep(unsigned int ms)
{
	msleep(ms);
}
