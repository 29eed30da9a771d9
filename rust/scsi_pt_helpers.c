// SPDX-License-Identifier: GPL-2.0
/*
 * Pass-through: SCSI devices of the local SCSI stack, looked up by
 * H:C:I:L and held, and commands sent to them as the block layer's
 * passthrough requests (REQ_OP_DRV_IN/OUT) over the command's own pages,
 * or over a bounce buffer where the device's limits refuse those pages.
 * A request completes from its end_io, in whatever context the device
 * completes it (hard interrupt included); its outcome stays readable
 * until the owner drops it (rust/scsi_pt.rs).
 */
#include <linux/bio.h>
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/err.h>
#include <linux/mutex.h>
#include <linux/refcount.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <scsi/scsi.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>
#include <scsi/scsi_driver.h>
#include <scsi/scsi_host.h>

#include "helpers.h"

struct scsi_device *scst_rs_sdev_get(unsigned int host, unsigned int channel,
				     unsigned int id, u64 lun)
{
	struct Scsi_Host *shost = scsi_host_lookup(host);
	struct scsi_device *sdev;

	if (!shost)
		return NULL;
	/* Takes a reference to the device (and its driver's module). */
	sdev = scsi_device_lookup(shost, channel, id, lun);
	scsi_host_put(shost);
	return sdev;
}

void scst_rs_sdev_put(struct scsi_device *sdev)
{
	scsi_device_put(sdev);
}

u8 scst_rs_sdev_type(struct scsi_device *sdev)
{
	return sdev->type;
}

/* Whether it takes commands: not offline, not being removed. */
bool scst_rs_sdev_online(struct scsi_device *sdev)
{
	enum scsi_device_state state = READ_ONCE(sdev->sdev_state);

	return state != SDEV_CANCEL && state != SDEV_DEL &&
	       scsi_device_online(sdev);
}

/* The device's capacity in bytes as its upper driver last read it. */
u64 scst_rs_sdev_bytes(struct scsi_device *sdev)
{
	struct request_queue *q = sdev->request_queue;

	return q && q->disk ? (u64)get_capacity(q->disk) << SECTOR_SHIFT : 0;
}

/* One command of a pass-through device. */
struct scst_rs_pt {
	/* The owner's, and one while the request is in flight. */
	refcount_t ref;
	struct scsi_device *sdev;
	/*
	 * Until it is started; the block layer's afterwards, until its end_io
	 * (which clears it under the lock, against an abort).
	 */
	struct request *rq;
	spinlock_t lock;
	/* Bit 0: started (at most once). */
	unsigned long flags;
	bool write;
	/* Where the data went when the command's pages could not. */
	void *bounce;
	size_t len;
	/* The outcome, set before `ended` is (release). */
	int result;
	unsigned int resid;
	unsigned int sense_len;
	u8 sense[SCSI_SENSE_BUFFERSIZE];
	bool ended;
	void (*done)(void *ctx);
	void *ctx;
};

/*
 * A request for @cdb to @sdev moving @len bytes (to the device with
 * @write), failing after @timeout_ms with the midlayer's @retries; may
 * sleep. NULL or an ERR_PTR on failure.
 */
struct scst_rs_pt *scst_rs_pt_new(struct scsi_device *sdev, const u8 *cdb,
				  unsigned int cdb_len, bool write, size_t len,
				  unsigned int timeout_ms, int retries)
{
	struct scsi_cmnd *scmd;
	struct scst_rs_pt *pt;
	struct request *rq;

	if (!cdb_len || cdb_len > sizeof(scmd->cmnd))
		return ERR_PTR(-EINVAL);
	pt = kzalloc(sizeof(*pt), GFP_KERNEL);
	if (!pt)
		return ERR_PTR(-ENOMEM);
	rq = scsi_alloc_request(sdev->request_queue,
				write ? REQ_OP_DRV_OUT : REQ_OP_DRV_IN, 0);
	if (IS_ERR(rq)) {
		kfree(pt);
		return ERR_CAST(rq);
	}
	scmd = blk_mq_rq_to_pdu(rq);
	memcpy(scmd->cmnd, cdb, cdb_len);
	scmd->cmd_len = cdb_len;
	scmd->allowed = retries;
	rq->timeout = msecs_to_jiffies(timeout_ms);
	refcount_set(&pt->ref, 1);
	spin_lock_init(&pt->lock);
	pt->sdev = sdev;
	pt->rq = rq;
	pt->write = write;
	pt->len = len;
	return pt;
}

static void pt_free(struct scst_rs_pt *pt)
{
	/* Never started: the request is still ours. */
	if (pt->rq)
		blk_mq_free_request(pt->rq);
	kvfree(pt->bounce);
	kfree(pt);
}

/* Another owner's reference. */
void scst_rs_pt_get(struct scst_rs_pt *pt)
{
	refcount_inc(&pt->ref);
}

/*
 * Asks the device to abort the request, if it is in flight: its timeout
 * expires now, and the SCSI error handler aborts it at the device (a
 * request the driver has not started yet is not affected). Any context.
 */
void scst_rs_pt_abort(struct scst_rs_pt *pt)
{
	unsigned long flags;

	spin_lock_irqsave(&pt->lock, flags);
	if (pt->rq && test_bit(0, &pt->flags))
		blk_abort_request(pt->rq);
	spin_unlock_irqrestore(&pt->lock, flags);
}

void scst_rs_pt_put(struct scst_rs_pt *pt)
{
	if (refcount_dec_and_test(&pt->ref))
		pt_free(pt);
}

static void pt_bio_end_io(struct bio *bio)
{
	struct bvec_iter_all iter;
	struct bio_vec *bv;

	/* The references taken as the pages were added. */
	bio_for_each_segment_all(bv, bio, iter)
		put_page(bv->bv_page);
	bio_uninit(bio);
	kfree(bio);
}

/* Ends the bios mapped so far: the request moves no data again. */
static void pt_unmap(struct request *rq)
{
	struct bio *bio = rq->bio, *next;

	for (; bio; bio = next) {
		next = bio->bi_next;
		bio->bi_next = NULL;
		pt_bio_end_io(bio);
	}
	rq->bio = rq->biotail = NULL;
	rq->__data_len = 0;
	rq->nr_phys_segments = 0;
}

/* A bio for up to @pages more pages of the request. */
static struct bio *pt_bio(struct scst_rs_pt *pt, unsigned int pages)
{
	unsigned int n = min_t(unsigned int, pages, BIO_MAX_VECS);
	struct bio *bio = bio_kmalloc(n, GFP_KERNEL);

	if (bio)
		bio_init(bio, NULL, bio->bi_inline_vecs, n, req_op(pt->rq));
	return bio;
}

/* Appends @bio to the request, or ends it. */
static int pt_append(struct scst_rs_pt *pt, struct bio *bio)
{
	int ret;

	bio->bi_end_io = pt_bio_end_io;
	ret = blk_rq_append_bio(pt->rq, bio);
	if (ret)
		pt_bio_end_io(bio);
	return ret;
}

/*
 * The command's pages as the request's bios, unless the queue's limits
 * (segments, boundaries, size) refuse them: then nothing is left mapped.
 * Page by page, as the block layer maps kernel buffers: an entry may span
 * pages, and the queue decides which of them one segment may join (a
 * device may not let a segment cross a page). A bio holds BIO_MAX_VECS
 * pages at most; a larger command takes several.
 */
static int pt_map_pages(struct scst_rs_pt *pt, struct scatterlist *sgl,
			unsigned int nents)
{
	struct request_queue *q = pt->rq->q;
	unsigned int i, pages = 0;
	struct page *last = NULL;
	struct scatterlist *sg;
	size_t left = pt->len;
	struct bio *bio;
	int ret;

	for_each_sg(sgl, sg, nents, i) {
		size_t l = min_t(size_t, sg->length, left);

		if (!l)
			break;
		pages += DIV_ROUND_UP(offset_in_page(sg->offset) + l, PAGE_SIZE);
		left -= l;
	}
	if (left || !pages)
		return -EINVAL;
	bio = pt_bio(pt, pages);
	if (!bio)
		return -ENOMEM;
	left = pt->len;
	for_each_sg(sgl, sg, nents, i) {
		size_t l = min_t(size_t, sg->length, left);
		size_t off = sg->offset;

		left -= l;
		for (; l; pages--) {
			struct page *page = nth_page(sg_page(sg),
						     off >> PAGE_SHIFT);
			unsigned int po = offset_in_page(off);
			unsigned int n = min_t(size_t, l, PAGE_SIZE - po);
			unsigned short vcnt = bio->bi_vcnt;

			if (vcnt == bio->bi_max_vecs) {
				/* Full: on to the next bio. */
				ret = pt_append(pt, bio);
				bio = ret ? NULL : pt_bio(pt, pages);
				if (!bio)
					goto fail;
				vcnt = 0;
				last = NULL;
			}
			get_page(page);
			if (bio_add_pc_page(q, bio, page, n, po) < n) {
				put_page(page);
				pt_bio_end_io(bio);
				ret = -EINVAL;
				goto fail;
			}
			/*
			 * Joined to the page the last part ended in: the bio
			 * holds that page once, and ends with one reference.
			 */
			if (bio->bi_vcnt == vcnt && page == last)
				put_page(page);
			last = page;
			off += n;
			l -= n;
		}
		if (!left)
			break;
	}
	ret = pt_append(pt, bio);
	if (!ret)
		return 0;
fail:
	pt_unmap(pt->rq);
	return ret ? ret : -ENOMEM;
}

/* A copy of the data, for a device whose limits refuse the pages. */
static int pt_map_bounce(struct scst_rs_pt *pt, struct scatterlist *sgl,
			 unsigned int nents)
{
	pt->bounce = kvzalloc(pt->len, GFP_KERNEL);
	if (!pt->bounce)
		return -ENOMEM;
	if (pt->write &&
	    sg_pcopy_to_buffer(sgl, nents, pt->bounce, pt->len, 0) != pt->len)
		return -EINVAL;
	return blk_rq_map_kern(pt->rq->q, pt->rq, pt->bounce, pt->len,
			       GFP_KERNEL);
}

static enum rq_end_io_ret pt_end_io(struct request *rq, blk_status_t status)
{
	struct scst_rs_pt *pt = rq->end_io_data;
	struct scsi_cmnd *scmd = blk_mq_rq_to_pdu(rq);
	unsigned long flags;

	pt->result = scmd->result;
	/* Failed before it reached the device: gone, or another error. */
	if (!pt->result && status)
		pt->result = DID_ERROR << 16;
	/* Whatever ended it on the way (abort, reset), the device is gone. */
	if ((pt->result >> 16) & 0xff && !scst_rs_sdev_online(pt->sdev))
		pt->result = (pt->result & ~(0xff << 16)) | DID_NO_CONNECT << 16;
	pt->resid = scmd->resid_len;
	pt->sense_len = min_t(unsigned int, scmd->sense_len,
			      SCSI_SENSE_BUFFERSIZE);
	memcpy(pt->sense, scmd->sense_buffer, pt->sense_len);
	/* The block layer frees the request as this returns. */
	spin_lock_irqsave(&pt->lock, flags);
	pt->rq = NULL;
	spin_unlock_irqrestore(&pt->lock, flags);
	/* Publishes the outcome above to scst_rs_pt_outcome/copy_in. */
	smp_store_release(&pt->ended, true);
	pt->done(pt->ctx);
	scst_rs_pt_put(pt);
	return RQ_END_IO_FREE;
}

/*
 * Maps the first @len bytes of @sgl (those given to scst_rs_pt_new) and
 * starts the request: 0 and @done(@ctx) is called once it ended, from any
 * context; else nothing started and @done is never called. With @sgl
 * NULL, the request moves no data. Where the queue refuses the pages,
 * the data goes through a copy. A request starts once at most (-EBUSY).
 * May sleep.
 */
int scst_rs_pt_start(struct scst_rs_pt *pt, struct scatterlist *sgl,
		     unsigned int nents, void (*done)(void *ctx), void *ctx)
{
	struct request *rq = pt->rq;
	int ret = 0;

	if (pt->len && !sgl)
		return -EINVAL;
	if (test_and_set_bit(0, &pt->flags))
		return -EBUSY;
	if (pt->len) {
		ret = pt_map_pages(pt, sgl, nents);
		if (ret)
			ret = pt_map_bounce(pt, sgl, nents);
		if (ret)
			return ret;
	}
	pt->done = done;
	pt->ctx = ctx;
	refcount_inc(&pt->ref);
	rq->end_io = pt_end_io;
	rq->end_io_data = pt;
	blk_execute_rq_nowait(rq, false);
	return 0;
}

/*
 * The outcome of a request that ended: false while it has not. The
 * midlayer's result (host byte, status byte), the residual, and the sense
 * the device returned (up to @sense_max bytes).
 */
bool scst_rs_pt_outcome(struct scst_rs_pt *pt, int *result,
			unsigned int *resid, u8 *sense, unsigned int sense_max,
			unsigned int *sense_len)
{
	/* Pairs with pt_end_io's release: the outcome is complete. */
	if (!smp_load_acquire(&pt->ended))
		return false;
	*result = pt->result;
	*resid = pt->resid;
	*sense_len = min(pt->sense_len, sense_max);
	memcpy(sense, pt->sense, *sense_len);
	return true;
}

/*
 * Copies a bounced read's first @len bytes into @sgl, once the request
 * ended; returns the bytes copied (0 where nothing was bounced).
 */
size_t scst_rs_pt_copy_in(struct scst_rs_pt *pt, struct scatterlist *sgl,
			  unsigned int nents, size_t len)
{
	/* Pairs with pt_end_io's release: the device is done with it. */
	if (!smp_load_acquire(&pt->ended) || !pt->bounce || pt->write)
		return 0;
	return sg_pcopy_from_buffer(sgl, nents, pt->bounce,
				    min(len, pt->len), 0);
}

/*
 * Hears of SCSI devices leaving the local stack (hot-unplug, `delete`):
 * the SCSI device class's interface, whose remove_dev runs in process
 * context as each device goes. remove_dev is told only the device, so
 * there is one watch, of the one scst.ko.
 */
static struct {
	struct class_interface intf;
	/* Set before unregistering, which calls remove_dev for every device. */
	bool closing;
	void (*removed)(void *ctx, unsigned int host, unsigned int channel,
			unsigned int id, u64 lun);
	void *ctx;
} sdev_watch;

static DEFINE_MUTEX(sdev_watch_lock);

static void sdev_watch_remove(struct device *dev)
{
	struct scsi_device *sdev = to_scsi_device(dev->parent);

	if (READ_ONCE(sdev_watch.closing))
		return;
	sdev_watch.removed(sdev_watch.ctx, sdev->host->host_no, sdev->channel,
			   sdev->id, sdev->lun);
}

/*
 * Starts the watch: @removed(@ctx, ...) is called for each SCSI device
 * that leaves, until scst_rs_sdev_watch_stop returns. -EBUSY while one
 * runs already.
 */
int scst_rs_sdev_watch_start(void (*removed)(void *ctx, unsigned int host,
					     unsigned int channel,
					     unsigned int id, u64 lun),
			     void *ctx)
{
	int ret = -EBUSY;

	mutex_lock(&sdev_watch_lock);
	if (!sdev_watch.removed) {
		sdev_watch.intf.remove_dev = sdev_watch_remove;
		sdev_watch.closing = false;
		sdev_watch.removed = removed;
		sdev_watch.ctx = ctx;
		ret = scsi_register_interface(&sdev_watch.intf);
		if (ret)
			sdev_watch.removed = NULL;
	}
	mutex_unlock(&sdev_watch_lock);
	return ret;
}

/* Stops the watch: no call runs once this returns. */
void scst_rs_sdev_watch_stop(void)
{
	mutex_lock(&sdev_watch_lock);
	if (sdev_watch.removed) {
		WRITE_ONCE(sdev_watch.closing, true);
		scsi_unregister_interface(&sdev_watch.intf);
		sdev_watch.removed = NULL;
		sdev_watch.ctx = NULL;
	}
	mutex_unlock(&sdev_watch_lock);
}
