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
#include <linux/magic.h>
#include <linux/pagemap.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/swap.h>
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

/*
 * A regular file of tmpfs: its page cache is the file itself (no server
 * whose copy could be newer, nothing to revalidate), so a read may copy
 * from it directly. shmem does not honour RWF_NOWAIT.
 */
static bool cache_is_file(struct file *file)
{
	struct inode *inode = file_inode(file);

	return S_ISREG(inode->i_mode) && inode->i_sb->s_magic == TMPFS_MAGIC;
}

/*
 * Whether @file can be read without blocking (scst_rs_file_read_nowait()):
 * its filesystem honours RWF_NOWAIT, or it is a tmpfs file.
 */
bool scst_rs_file_can_nowait(struct file *file)
{
	return (file->f_mode & FMODE_NOWAIT) || cache_is_file(file);
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

/*
 * Copies @len bytes at @pos of a tmpfs file's page cache into @iter, never
 * sleeping: -EAGAIN unless every page of the range is there and up to
 * date, within the file's size (a hole, a page swapped out or only
 * fallocated is a blocking read's to serve). Without the page lock, as
 * filemap_read() copies: a write the range races with may be seen in part,
 * as with any read beside a write.
 */
static ssize_t read_cached(struct file *file, struct iov_iter *iter,
			   size_t len, loff_t pos)
{
	struct address_space *mapping = file->f_mapping;
	size_t done = 0;

	if (pos < 0 || pos + len > i_size_read(mapping->host))
		return -EAGAIN;
	while (done < len) {
		loff_t at = pos + done;
		struct folio *folio = filemap_get_folio(mapping, at >> PAGE_SHIFT);
		size_t off, n;

		if (IS_ERR(folio))
			return -EAGAIN;
		if (!folio_test_uptodate(folio)) {
			folio_put(folio);
			return -EAGAIN;
		}
		off = offset_in_folio(folio, at);
		n = min_t(size_t, folio_size(folio) - off, len - done);
		if (copy_folio_to_iter(folio, off, n, iter) != n) {
			folio_put(folio);
			return -EFAULT;
		}
		folio_mark_accessed(folio);
		folio_put(folio);
		done += n;
	}
	return done;
}

/*
 * Reads @len bytes at @pos of @file into the scatterlist @sgl (@nents
 * entries) from @skip bytes in, without waiting for I/O: -EAGAIN (or a
 * short count) where it would have to, -EOPNOTSUPP for a file that cannot
 * be read so (see scst_rs_file_can_nowait()).
 */
ssize_t scst_rs_file_read_nowait(struct file *file, struct scatterlist *sgl,
				 unsigned int nents, size_t skip, size_t len,
				 loff_t pos)
{
	struct scst_rs_bvecs b;
	struct iov_iter iter;
	ssize_t ret;

	if (file->f_mode & FMODE_NOWAIT)
		return scst_rs_file_rw_sg(file, sgl, nents, skip, len, pos,
					  false, false, true);
	if (!cache_is_file(file))
		return -EOPNOTSUPP;
	ret = scst_rs_sg_iter(&b, &iter, ITER_DEST, sgl, nents, skip, len);
	if (ret)
		return ret;
	ret = read_cached(file, &iter, len, pos);
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
