// SPDX-License-Identifier: GPL-2.0
/*
 * Backing-file I/O for the vdisk handlers: open/close, size, and reads and
 * writes straight between a file (or block device) and a scatterlist.
 */
#include <linux/blkdev.h>
#include <linux/bvec.h>
#include <linux/err.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uio.h>

#include "helpers.h"
#include "sg_iter.h"

struct file *scst_rs_file_open(const char *path, bool read_only, bool direct,
			       bool dsync)
{
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_LARGEFILE;

	if (direct)
		flags |= O_DIRECT;
	if (dsync)
		flags |= O_DSYNC;
	return filp_open(path, flags, 0);
}

/* Creates or truncates a file only root may read (reservation keys). */
struct file *scst_rs_file_create(const char *path)
{
	return filp_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE, 0600);
}

void scst_rs_file_close(struct file *file)
{
	filp_close(file, NULL);
}

u64 scst_rs_file_size(struct file *file)
{
	/*
	 * The mapping's host: the file's own inode, or for a device node the
	 * block device's inode, which holds the device size (the node's
	 * inode on devtmpfs has size 0).
	 */
	return i_size_read(file->f_mapping->host);
}

bool scst_rs_file_is_bdev(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode);
}

bool scst_rs_file_is_regular(struct file *file)
{
	return S_ISREG(file_inode(file)->i_mode);
}

/* Whether I/O on @file honours RWF_NOWAIT (else it is refused outright). */
bool scst_rs_file_can_nowait(struct file *file)
{
	return file->f_mode & FMODE_NOWAIT;
}

/*
 * Sets @iter over @len bytes of the scatterlist @sgl (@nents entries) from
 * @skip bytes in, with the pages themselves: no bounce buffer. Release @b
 * with scst_rs_bvecs_release() once the iterator is used.
 */
int scst_rs_sg_iter(struct scst_rs_bvecs *b, struct iov_iter *iter,
		    unsigned int direction, struct scatterlist *sgl,
		    unsigned int nents, size_t skip, size_t len)
{
	struct scatterlist *sg;
	size_t at = 0, got = 0, off;
	unsigned int n = 0, i;

	b->v = b->stack;
	/* Size the array by the entries the range touches, not the list. */
	for_each_sg(sgl, sg, nents, i) {
		if (at >= skip + len)
			break;
		if (scst_rs_sg_part(sg, at, skip, skip + len, &off))
			n++;
		at += sg->length;
	}
	if (n > ARRAY_SIZE(b->stack)) {
		b->v = kmalloc_array(n, sizeof(*b->v), GFP_KERNEL);
		if (!b->v)
			return -ENOMEM;
	}
	at = 0;
	n = 0;
	for_each_sg(sgl, sg, nents, i) {
		size_t l;

		if (at >= skip + len)
			break;
		l = scst_rs_sg_part(sg, at, skip, skip + len, &off);
		at += sg->length;
		if (!l)
			continue;
		bvec_set_page(&b->v[n++], sg_page(sg), l, off);
		got += l;
	}
	if (got < len) {
		scst_rs_bvecs_release(b);
		return -EINVAL;
	}
	iov_iter_bvec(iter, direction, b->v, n, len);
	return 0;
}

void scst_rs_bvecs_release(struct scst_rs_bvecs *b)
{
	if (b->v != b->stack)
		kfree(b->v);
	b->v = b->stack;
}

/*
 * Reads or writes @len bytes at @pos between @file and the scatterlist
 * @sgl (@nents entries), starting @skip bytes into it. @dsync writes
 * through to stable storage (FUA on a block device opened O_DIRECT).
 */
/*
 * @nowait: return -EAGAIN (or a short count) rather than wait for I/O or a
 * lock, as RWF_NOWAIT has it.
 */
ssize_t scst_rs_file_rw_sg(struct file *file, struct scatterlist *sgl,
			   unsigned int nents, size_t skip, size_t len,
			   loff_t pos, bool write, bool dsync, bool nowait)
{
	rwf_t flags = (dsync ? RWF_DSYNC : 0) | (nowait ? RWF_NOWAIT : 0);
	struct scst_rs_bvecs b;
	struct iov_iter iter;
	ssize_t ret;

	ret = scst_rs_sg_iter(&b, &iter, write ? ITER_SOURCE : ITER_DEST, sgl,
			      nents, skip, len);
	if (ret)
		return ret;
	if (write)
		ret = vfs_iter_write(file, &iter, &pos, flags);
	else
		ret = vfs_iter_read(file, &iter, &pos, flags);
	scst_rs_bvecs_release(&b);
	return ret;
}

ssize_t scst_rs_file_read(struct file *file, void *buf, size_t len, loff_t pos)
{
	return kernel_read(file, buf, len, &pos);
}

ssize_t scst_rs_file_write(struct file *file, const void *buf, size_t len,
			   loff_t pos)
{
	return kernel_write(file, buf, len, &pos);
}

int scst_rs_file_sync(struct file *file, loff_t start, loff_t end)
{
	return vfs_fsync_range(file, start, end, 1);
}

int scst_rs_file_punch_hole(struct file *file, loff_t pos, loff_t len)
{
	return vfs_fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     pos, len);
}

loff_t scst_rs_file_seek(struct file *file, loff_t pos, bool hole)
{
	return vfs_llseek(file, pos, hole ? SEEK_HOLE : SEEK_DATA);
}

size_t scst_rs_sg_copy_from_buffer(struct scatterlist *sgl, unsigned int nents,
				   const void *buf, size_t len, size_t skip)
{
	return sg_pcopy_from_buffer(sgl, nents, buf, len, skip);
}

size_t scst_rs_sg_copy_to_buffer(struct scatterlist *sgl, unsigned int nents,
				 void *buf, size_t len, size_t skip)
{
	return sg_pcopy_to_buffer(sgl, nents, buf, len, skip);
}

size_t scst_rs_sg_zero(struct scatterlist *sgl, unsigned int nents,
		       size_t len, size_t skip)
{
	return sg_zero_buffer(sgl, nents, len, skip);
}
