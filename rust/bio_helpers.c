// SPDX-License-Identifier: GPL-2.0
/*
 * vdisk_blockio's own bios: a command's scatterlist range read from or
 * written to a block device as bios the handler builds, completed later
 * from the bios' end_io, in whatever context the device completes them.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>

#include "helpers.h"
#include "sg_iter.h"

/* The bios of one range, and who hears when the last one ends. */
struct scst_rs_bio_batch {
	/* Bios in flight, plus one held by the submitter until it is done. */
	atomic_t pending;
	/* The first error any bio had. */
	blk_status_t status;
	void (*done)(void *ctx, int err);
	void *ctx;
};

static void scst_rs_bio_batch_put(struct scst_rs_bio_batch *b)
{
	void (*done)(void *ctx, int err);
	void *ctx;
	int err;

	if (!atomic_dec_and_test(&b->pending))
		return;
	err = blk_status_to_errno(READ_ONCE(b->status));
	done = b->done;
	ctx = b->ctx;
	kfree(b);
	done(ctx, err);
}

static void scst_rs_bio_end_io(struct bio *bio)
{
	struct scst_rs_bio_batch *b = bio->bi_private;
	struct bvec_iter_all iter;
	struct bio_vec *bv;

	if (bio->bi_status)
		cmpxchg(&b->status, BLK_STS_OK, bio->bi_status);
	/* The references taken as the pages were added. */
	bio_for_each_segment_all(bv, bio, iter)
		put_page(bv->bv_page);
	bio_put(bio);
	scst_rs_bio_batch_put(b);
}

static void scst_rs_bio_submit(struct scst_rs_bio_batch *b, struct bio *bio)
{
	atomic_inc(&b->pending);
	bio->bi_private = b;
	bio->bi_end_io = scst_rs_bio_end_io;
	submit_bio(bio);
}

/* Whether bios to the block device behind @file may be submitted with
 * REQ_NOWAIT (scst_rs_file_submit_bios with @nowait). */
bool scst_rs_file_bios_nowait(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode) && bdev_nowait(file_bdev(file));
}

/* The physical block size of the block device behind @file; 0 for a file. */
unsigned int scst_rs_file_physical_block_size(struct file *file)
{
	if (!S_ISBLK(file_inode(file)->i_mode))
		return 0;
	return bdev_physical_block_size(file_bdev(file));
}

/*
 * Whether the block device behind @file writes atomically (REQ_ATOMIC); if
 * so, the smallest and largest atomic write in bytes in @min and @max.
 */
bool scst_rs_file_atomic_write_unit(struct file *file, u32 *min, u32 *max)
{
	struct block_device *bdev;

	if (!S_ISBLK(file_inode(file)->i_mode))
		return false;
	bdev = file_bdev(file);
	if (!bdev_can_atomic_write(bdev))
		return false;
	*min = queue_atomic_write_unit_min_bytes(bdev_get_queue(bdev));
	*max = queue_atomic_write_unit_max_bytes(bdev_get_queue(bdev));
	return true;
}

/*
 * Whether @len bytes from @skip in @sgl go to @bdev as bios the block layer
 * need not split: a REQ_NOWAIT bio that needs splitting ends with EAGAIN.
 */
static bool scst_rs_bios_fit(struct block_device *bdev, struct scatterlist *sgl,
			     size_t skip, size_t len)
{
	size_t first = sgl->offset + skip;

	if (len > (size_t)queue_max_sectors(bdev_get_queue(bdev)) << SECTOR_SHIFT)
		return false;
	/* Pages the range spans, at most (a page per segment). */
	return DIV_ROUND_UP(offset_in_page(first) + len, PAGE_SIZE) <=
	       min_t(unsigned int, bdev_max_segments(bdev), BIO_MAX_VECS);
}

/*
 * Reads (or, with @write, writes) @len bytes at byte offset @pos of the
 * block device behind @file, between it and the scatterlist @sgl (@nents
 * entries) from @skip bytes in. @fua writes reach stable storage before
 * they complete. An @atomic write goes as one REQ_ATOMIC bio, written
 * whole or not at all; one that needs more fails before anything starts. Every page is referenced until its bio ends. Process
 * context; with @nowait it never sleeps: the bios go with REQ_NOWAIT, and
 * where the device would make them wait (no request free, a split needed,
 * no memory at hand) @done hears -EAGAIN.
 *
 * Returns 0 when @done(@ctx, errno) will be called exactly once, from the
 * end_io of the last bio (any context, hard interrupt included) or from
 * here; a negative errno when nothing was submitted and @done never will.
 */
int scst_rs_file_submit_bios(struct file *file, struct scatterlist *sgl,
			     unsigned int nents, size_t skip, size_t len,
			     u64 pos, bool write, bool fua, bool atomic,
			     bool nowait, void (*done)(void *ctx, int err),
			     void *ctx)
{
	gfp_t gfp = nowait ? GFP_NOWAIT : GFP_NOIO;
	struct block_device *bdev;
	struct scst_rs_bio_batch *b;
	struct scatterlist *sg;
	struct blk_plug plug;
	struct bio *bio = NULL;
	blk_opf_t opf;
	sector_t sector;
	size_t at = 0, left = len;
	unsigned int i;

	if (!S_ISBLK(file_inode(file)->i_mode))
		return -ENOTBLK;
	bdev = file_bdev(file);
	if (!len || (pos | len) & (bdev_logical_block_size(bdev) - 1))
		return -EINVAL;
	if (atomic && (!write || !bdev_can_atomic_write(bdev) ||
		       len > queue_atomic_write_unit_max_bytes(bdev_get_queue(bdev)) ||
		       DIV_ROUND_UP(offset_in_page(sgl->offset + skip) + len, PAGE_SIZE) >
			       BIO_MAX_VECS))
		return -EINVAL;
	if (nowait && (!bdev_nowait(bdev) || !scst_rs_bios_fit(bdev, sgl, skip, len))) {
		done(ctx, -EAGAIN);
		return 0;
	}
	b = kmalloc(sizeof(*b), gfp);
	if (!b) {
		if (!nowait)
			return -ENOMEM;
		done(ctx, -EAGAIN);
		return 0;
	}
	atomic_set(&b->pending, 1);
	b->status = BLK_STS_OK;
	b->done = done;
	b->ctx = ctx;
	/* As direct I/O writes: synchronous for the initiator, so not held
	 * back by writeback throttling. */
	opf = write ? REQ_OP_WRITE | REQ_SYNC | REQ_IDLE : REQ_OP_READ;
	if (write && fua)
		opf |= REQ_FUA;
	if (atomic)
		opf |= REQ_ATOMIC;
	if (nowait)
		opf |= REQ_NOWAIT;
	sector = pos >> SECTOR_SHIFT;

	blk_start_plug(&plug);
	for_each_sg(sgl, sg, nents, i) {
		size_t off, l;

		if (at >= skip + len)
			break;
		l = scst_rs_sg_part(sg, at, skip, skip + len, &off);
		at += sg->length;
		while (l) {
			struct page *page = nth_page(sg_page(sg), off >> PAGE_SHIFT);
			unsigned int in_page = offset_in_page(off);
			unsigned int n = min_t(size_t, l, PAGE_SIZE - in_page);

			if (!bio) {
				unsigned int vecs = bio_max_segs(
					DIV_ROUND_UP(left + in_page, PAGE_SIZE));

				/* Never fails where it may sleep. */
				bio = bio_alloc(bdev, vecs, opf, gfp);
				if (!bio) {
					cmpxchg(&b->status, BLK_STS_OK, BLK_STS_AGAIN);
					goto out;
				}
				bio->bi_iter.bi_sector = sector;
			}
			if (bio_add_page(bio, page, n, in_page) != n) {
				if (!bio->bi_vcnt) {
					/* Not even one page fits: give up. */
					bio_put(bio);
					bio = NULL;
					goto out;
				}
				/* An atomic write is one bio or nothing. */
				if (atomic) {
					struct bvec_iter_all iter;
					struct bio_vec *bv;

					bio_for_each_segment_all(bv, bio, iter)
						put_page(bv->bv_page);
					bio_put(bio);
					bio = NULL;
					goto out;
				}
				/* Full: it goes, and a new one takes the page. */
				sector += bio_sectors(bio);
				scst_rs_bio_submit(b, bio);
				bio = NULL;
				continue;
			}
			get_page(page);
			off += n;
			l -= n;
			left -= n;
		}
	}
	if (bio)
		scst_rs_bio_submit(b, bio);
out:
	blk_finish_plug(&plug);
	/* A list shorter than the range: what it had went, the rest fails
	 * (or, with @nowait and no bio at hand, runs again where it may wait). */
	if (left)
		cmpxchg(&b->status, BLK_STS_OK, BLK_STS_IOERR);
	scst_rs_bio_batch_put(b);
	return 0;
}
