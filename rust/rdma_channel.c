// SPDX-License-Identifier: GPL-2.0
/*
 * A connected RDMA channel, as srpt uses one: an accepted RDMA/CM id with
 * its protection domain, a completion queue from the device's pool, a
 * reliable-connected QP, a ring of receive units and one of send units;
 * and the transfers (RDMA READ and WRITE through the kernel's rdma_rw API)
 * of the commands on it.
 *
 * A channel may take its requests from a shared receive queue instead
 * of a ring of its own (SCST's use_srq): one per device, whose protection
 * domain its channels share. A receive completion then finds its channel
 * through the QP, and its unit goes back to the SRQ whatever became of
 * the channel.
 *
 * Completions run in the CQ pool's workqueue (IB_POLL_WORKQUEUE: process
 * context) and call the owner (Rust, rust/rdma.rs). A channel is counted:
 * the last reference queues its destruction on scst_rs_rdma_wq, so that a
 * reference may be dropped in any context, a completion or a CM handler
 * included, where draining the QP or destroying the id would deadlock.
 *
 * Posting takes no lock and leaves interrupts on: a poster counts itself
 * in (ch->posting) and backs off if the channel is closing; closing marks
 * the channel and waits until the posters that got in are out. So once a
 * channel is closing nothing more is posted, and the drain that follows
 * returns every unit and transfer posted before. The send queue's free
 * entries are an atomic count and a send unit is claimed with a bit, so
 * the completions, which run on other CPUs meanwhile, take no lock either.
 */
#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>
#include <rdma/rw.h>

#include "helpers.h"
#include "rdma_internal.h"

/* Rust (rust/rdma.rs). */
void scst_rs_ch_received(void *owner, struct scst_rs_ch *ch, const void *data,
			 u32 len);
void scst_rs_ch_sent(void *owner, struct scst_rs_ch *ch, u32 slot, bool ok);
void scst_rs_ch_read_done(void *owner, struct scst_rs_ch *ch, u64 cookie,
			  bool ok);
void scst_rs_ch_event(void *owner, struct scst_rs_ch *ch, int event);
void scst_rs_ch_released(void *owner);

/* A receive or send unit. */
struct scst_rs_iu {
	struct ib_cqe cqe;
	/* Its channel's, or (receive units only) a shared receive queue's. */
	struct scst_rs_ch *ch;
	struct scst_rs_srq *srq;
	void *buf;
	u64 dma;
	u32 index;
	/* Send units: posted (IU_BUSY), what that took of the send queue. */
	unsigned long state;
	u32 wrs;
	/* The RDMA WRITEs chained before the unit, freed with it. */
	struct scst_rs_xfer *xfer;
};

enum { IU_BUSY };

/* A region's slice of the buffer of up to this many pages needs no allocation. */
#define RW_INLINE_SG 2

/* One remote region's context, over its own slice of the buffer. */
struct scst_rs_rw {
	struct rdma_rw_ctx ctx;
	struct scatterlist *sgl;
	u32 nents;
	struct scatterlist inline_sg[RW_INLINE_SG];
};

struct scst_rs_xfer {
	struct ib_cqe cqe;
	struct scst_rs_ch *ch;
	u64 cookie;
	enum dma_data_direction dir;
	/* One of the channel's own (its send unit's), not allocated. */
	bool pooled;
	u32 slot;
	/* Contexts made, of `max`; the work requests they take. */
	u32 count;
	u32 max;
	u32 wrs;
	struct scst_rs_rw rw[];
};

/*
 * A shared receive queue and its units. Each channel on it holds a
 * reference, dropped once its QP is destroyed; the last destroys it. It
 * holds its device: the device's unregistration waits for it.
 */
struct scst_rs_srq {
	struct kref ref;
	struct ib_device *dev;
	struct ib_pd *pd;
	struct ib_srq *srq;
	u32 size;
	u32 req_size;
	struct scst_rs_iu *recv;
};

/* What an initiator waits before it retries a request the SRQ had no unit for. */
#define SRQ_RNR_TIMER IB_RNR_TIMER_000_64

enum { CH_CLOSE_QUEUED, CH_DRAINED };

/* How far a channel's teardown went, for scst_rs_ch_report(). */
enum ch_stage {
	CH_LIVE,
	CH_CLOSING,
	CH_CLOSED,
	CH_DESTROYING,
	CH_VERBS_GONE,
};

/* Every channel not yet freed, for scst_rs_ch_report(). */
static LIST_HEAD(all_channels);
static DEFINE_SPINLOCK(all_channels_lock);

struct scst_rs_ch {
	/* SCST_RS_CM_CHANNEL: what the CM handler finds in id->context. */
	int kind;
	struct kref ref;
	struct rdma_cm_id *id;
	struct ib_device *dev;
	/* Its own, or its shared receive queue's. */
	struct ib_pd *pd;
	struct scst_rs_srq *srq;
	struct ib_cq *cq;
	u32 cq_size;
	struct ib_qp *qp;
	u32 port;
	void *owner;
	/* Posts under way; no new one once closing; free send queue entries. */
	atomic_t posting;
	bool closing;
	atomic_t sq_avail;
	struct scst_rs_ch_config cfg;
	/* The id's context before it was the channel's (the listener's). */
	void *listener;
	struct scst_rs_iu *recv;
	struct scst_rs_iu *send;
	unsigned long flags;
	struct work_struct close_work;
	struct work_struct destroy_work;
	struct list_head all;
	enum ch_stage stage;
	atomic_t xfers;
	/*
	 * A one-region transfer per send unit, as most commands need, so
	 * that they allocate none; taken with a bit of xfer_busy.
	 */
	void *xfer_pool;
	size_t xfer_stride;
	unsigned long *xfer_busy;
};

/* The channel's memory, once nothing refers to it. */
static void ch_free(struct scst_rs_ch *ch)
{
	bitmap_free(ch->xfer_busy);
	kfree(ch->xfer_pool);
	kfree(ch);
}

static void ch_listed(struct scst_rs_ch *ch)
{
	spin_lock_irq(&all_channels_lock);
	list_add_tail(&ch->all, &all_channels);
	spin_unlock_irq(&all_channels_lock);
}

static void ch_unlisted(struct scst_rs_ch *ch)
{
	unsigned long flags;

	spin_lock_irqsave(&all_channels_lock, flags);
	list_del(&ch->all);
	spin_unlock_irqrestore(&all_channels_lock, flags);
}

/*
 * Says, for each channel not yet freed, its references and how far its
 * teardown went: what a removal that waits for channels reports.
 */
void scst_rs_ch_report(void)
{
	struct scst_rs_ch *ch;

	spin_lock_irq(&all_channels_lock);
	list_for_each_entry(ch, &all_channels, all)
		pr_info("scst: RDMA channel %p: %u references, %d transfers, stage %d, flags %#lx, closing %d\n",
			ch, kref_read(&ch->ref), atomic_read(&ch->xfers),
			READ_ONCE(ch->stage), READ_ONCE(ch->flags),
			READ_ONCE(ch->closing));
	spin_unlock_irq(&all_channels_lock);
}

static void ch_release(struct kref *ref);

void scst_rs_ch_get(struct scst_rs_ch *ch)
{
	kref_get(&ch->ref);
}

/* A reference, unless the channel is being destroyed already. */
bool scst_rs_ch_tryget(struct scst_rs_ch *ch)
{
	return kref_get_unless_zero(&ch->ref);
}

void scst_rs_ch_put(struct scst_rs_ch *ch)
{
	kref_put(&ch->ref, ch_release);
}

static void recv_done(struct ib_cq *cq, struct ib_wc *wc);
static void send_done(struct ib_cq *cq, struct ib_wc *wc);

static void post_end(struct scst_rs_ch *ch)
{
	/* A full barrier before the read of closing: see stop_posting(). */
	if (atomic_dec_and_test(&ch->posting) && READ_ONCE(ch->closing))
		wake_up_var(&ch->posting);
}

/*
 * A post may start: the channel is not closing, and will not finish
 * closing until post_end(). Any context.
 */
static bool post_begin(struct scst_rs_ch *ch)
{
	atomic_inc(&ch->posting);
	/* Pairs with stop_posting(): one of the two sees the other. */
	smp_mb__after_atomic();
	if (READ_ONCE(ch->closing) || !ch->qp) {
		post_end(ch);
		return false;
	}
	return true;
}

/*
 * Posts receive unit `iu` (`len` bytes) to its shared receive queue, or
 * else to its channel's QP.
 */
static int post_unit(struct scst_rs_iu *iu, u32 len, struct ib_pd *pd)
{
	struct ib_sge sge = {
		.addr = iu->dma,
		.length = len,
		.lkey = pd->local_dma_lkey,
	};
	struct ib_recv_wr wr = {
		.wr_cqe = &iu->cqe,
		.sg_list = &sge,
		.num_sge = 1,
	};

	if (iu->srq)
		return ib_post_srq_recv(iu->srq->srq, &wr, NULL);
	return ib_post_recv(iu->ch->qp, &wr, NULL);
}

static int post_recv(struct scst_rs_iu *iu)
{
	return post_unit(iu, iu->ch->cfg.req_size, iu->ch->pd);
}

static void free_ius(struct ib_device *dev, struct scst_rs_iu *ius, u32 n,
		     u32 size, enum dma_data_direction dir)
{
	u32 i;

	if (!ius)
		return;
	for (i = 0; i < n; i++) {
		if (!ius[i].buf)
			continue;
		ib_dma_unmap_single(dev, ius[i].dma, size, dir);
		kfree(ius[i].buf);
	}
	kvfree(ius);
}

/* Units of a channel `ch`, or of a shared receive queue `srq`. */
static struct scst_rs_iu *alloc_ius(struct ib_device *dev,
				    struct scst_rs_ch *ch,
				    struct scst_rs_srq *srq, u32 n, u32 size,
				    enum dma_data_direction dir,
				    void (*done)(struct ib_cq *, struct ib_wc *))
{
	struct scst_rs_iu *ius = kvcalloc(n, sizeof(*ius), GFP_KERNEL);
	u32 i;

	if (!ius)
		return NULL;
	for (i = 0; i < n; i++) {
		struct scst_rs_iu *iu = &ius[i];

		iu->ch = ch;
		iu->srq = srq;
		iu->index = i;
		iu->cqe.done = done;
		iu->buf = kzalloc(size, GFP_KERNEL);
		if (!iu->buf)
			goto fail;
		iu->dma = ib_dma_map_single(dev, iu->buf, size, dir);
		if (ib_dma_mapping_error(dev, iu->dma)) {
			kfree(iu->buf);
			iu->buf = NULL;
			goto fail;
		}
	}
	return ius;
fail:
	free_ius(dev, ius, n, size, dir);
	return NULL;
}

static int post_srq_recv(struct scst_rs_iu *iu)
{
	return post_unit(iu, iu->srq->req_size, iu->srq->pd);
}

static void srq_free(struct scst_rs_srq *srq)
{
	if (srq->srq)
		scst_rs_rdma->ib_destroy_srq_user(srq->srq, NULL);
	/* Destroyed, the SRQ holds none of its units any more. */
	free_ius(srq->dev, srq->recv, srq->size, srq->req_size,
		 DMA_FROM_DEVICE);
	if (srq->pd)
		scst_rs_rdma->ib_dealloc_pd_user(srq->pd, NULL);
	if (srq->dev)
		scst_rs_rdma->ib_device_put(srq->dev);
	kfree(srq);
	scst_rs_rdma_object_put();
}

/*
 * A shared receive queue of up to `size` units of `req_size` bytes on
 * `dev` (fewer where the device allows fewer), every unit posted.
 */
struct scst_rs_srq *scst_rs_srq_create(struct ib_device *dev, u32 size,
				       u32 req_size, int *err)
{
	struct ib_srq_init_attr init = {};
	struct scst_rs_srq *srq;
	u32 i;
	int ret = -ENOMEM;

	srq = kzalloc(sizeof(*srq), GFP_KERNEL);
	if (!srq)
		goto out;
	kref_init(&srq->ref);
	srq->req_size = req_size;
	srq->size = min_t(u32, size, dev->attrs.max_srq_wr);
	scst_rs_rdma_object_get();
	ret = -ENODEV;
	if (!ib_device_try_get(dev))
		goto fail;
	srq->dev = dev;
	ret = -EOPNOTSUPP;
	if (!dev->attrs.max_srq || !srq->size)
		goto fail;
	srq->pd = scst_rs_rdma->alloc_pd(dev, 0, "scst_srpt");
	if (IS_ERR(srq->pd)) {
		ret = PTR_ERR(srq->pd);
		srq->pd = NULL;
		goto fail;
	}
	init.attr.max_wr = srq->size;
	init.attr.max_sge = 1;
	init.srq_type = IB_SRQT_BASIC;
	srq->srq = scst_rs_rdma->ib_create_srq_user(srq->pd, &init, NULL,
						    NULL);
	if (IS_ERR(srq->srq)) {
		ret = PTR_ERR(srq->srq);
		srq->srq = NULL;
		goto fail;
	}
	ret = -ENOMEM;
	srq->recv = alloc_ius(dev, NULL, srq, srq->size, req_size,
			      DMA_FROM_DEVICE, recv_done);
	if (!srq->recv)
		goto fail;
	for (i = 0; i < srq->size; i++) {
		ret = post_srq_recv(&srq->recv[i]);
		if (ret)
			goto fail;
	}
	return srq;
fail:
	srq_free(srq);
out:
	*err = ret;
	return NULL;
}

/* The units the device gave. */
u32 scst_rs_srq_size(const struct scst_rs_srq *srq)
{
	return srq->size;
}

static void srq_release(struct kref *ref)
{
	srq_free(container_of(ref, struct scst_rs_srq, ref));
}

/* Drops a reference; the last destroys the SRQ: process context. */
void scst_rs_srq_put(struct scst_rs_srq *srq)
{
	might_sleep();
	kref_put(&srq->ref, srq_release);
}

void scst_rs_srq_get(struct scst_rs_srq *srq)
{
	kref_get(&srq->ref);
}

static void qp_event(struct ib_event *event, void *context)
{
	struct scst_rs_ch *ch = context;

	/* The first request may arrive before the CM's RTU: say it came. */
	if (event->event == IB_EVENT_COMM_EST && ch->id)
		scst_rs_rdma->rdma_notify(ch->id, event->event);
	else if (event->event != IB_EVENT_QP_LAST_WQE_REACHED)
		pr_info_ratelimited("scst: RDMA channel QP event %d\n",
				    event->event);
}

/* The QP, shrinking the send queue while the device refuses it. */
static int create_qp(struct scst_rs_ch *ch)
{
	const struct ib_device_attr *attrs = &ch->dev->attrs;
	u32 sq = ch->cfg.sq_size;
	int ret;

	for (;;) {
		struct ib_qp_init_attr init = {
			.event_handler = qp_event,
			.qp_context = ch,
			.send_cq = ch->cq,
			.recv_cq = ch->cq,
			.sq_sig_type = IB_SIGNAL_REQ_WR,
			.qp_type = IB_QPT_RC,
			.port_num = ch->port,
		};

		/*
		 * Half the queue for responses, half for RDMA contexts (which
		 * the rw API widens by the registrations they need). One more
		 * send and receive each for the drain's markers.
		 */
		init.cap.max_send_wr = min_t(u32, sq / 2 + 1, attrs->max_qp_wr);
		init.cap.max_rdma_ctxs = sq / 2;
		init.cap.max_send_sge = min_t(u32, attrs->max_send_sge, 16);
		if (ch->srq) {
			init.srq = ch->srq->srq;
		} else {
			init.cap.max_recv_wr = ch->cfg.rq_size + 1;
			init.cap.max_recv_sge = 1;
		}
		ret = scst_rs_rdma->rdma_create_qp(ch->id, ch->pd, &init);
		if (!ret) {
			ch->qp = ch->id->qp;
			atomic_set(&ch->sq_avail, init.cap.max_send_wr - 1);
			ch->cfg.sq_size = sq;
			return 0;
		}
		if (sq <= 32)
			return ret;
		sq /= 2;
	}
}

/*
 * The channel of a connect request's id, with its receive units posted,
 * before it is accepted. `cfg` says what is wanted and, on return, what
 * the device gave.
 */
struct scst_rs_ch *scst_rs_ch_create(struct rdma_cm_id *id,
				     struct scst_rs_ch_config *cfg,
				     void *owner, int *err)
{
	struct scst_rs_ch *ch;
	u32 i;
	int ret = -ENOMEM;

	ch = kzalloc(sizeof(*ch), GFP_KERNEL);
	if (!ch)
		goto out;
	ch->kind = SCST_RS_CM_CHANNEL;
	kref_init(&ch->ref);
	ch->id = id;
	ch->dev = id->device;
	ch->port = id->port_num;
	ch->owner = owner;
	ch->cfg = *cfg;
	ch->cfg.rq_size = min_t(u32, cfg->rq_size, ch->dev->attrs.max_qp_wr - 1);
	ch->cfg.tx_count = min(cfg->tx_count, ch->cfg.rq_size);

	if (cfg->srq) {
		ret = -EINVAL;
		if (cfg->srq->dev != ch->dev ||
		    cfg->srq->req_size != cfg->req_size)
			goto fail;
		kref_get(&cfg->srq->ref);
		ch->srq = cfg->srq;
		ch->pd = ch->srq->pd;
		/*
		 * Credits keep the queue from running out, but should a
		 * request find it empty (a unit rxe lost), the initiator
		 * retries it after the timer the receiver-not-ready NAK
		 * names: by default 655 ms, its whole send queue stalled.
		 */
		ret = scst_rs_rdma->rdma_set_min_rnr_timer(id, SRQ_RNR_TIMER);
		if (ret)
			goto fail;
	} else {
		ch->pd = scst_rs_rdma->alloc_pd(ch->dev, 0, "scst_srpt");
		if (IS_ERR(ch->pd)) {
			ret = PTR_ERR(ch->pd);
			ch->pd = NULL;
			goto fail;
		}
	}
	/* Every work request may complete (a flush completes them all). */
	ch->cq_size = ch->cfg.rq_size + 1 + ch->cfg.sq_size * 3 + 1;
	ch->cq = scst_rs_rdma->ib_cq_pool_get(ch->dev, ch->cq_size,
					      ch->cfg.comp_vector,
					      IB_POLL_WORKQUEUE);
	if (IS_ERR(ch->cq)) {
		ret = PTR_ERR(ch->cq);
		ch->cq = NULL;
		goto fail;
	}
	ret = create_qp(ch);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	ch->send = alloc_ius(ch->dev, ch, NULL, ch->cfg.tx_count,
			     ch->cfg.rsp_size, DMA_TO_DEVICE, send_done);
	if (!ch->send)
		goto fail;
	ch->xfer_stride = ALIGN(struct_size_t(struct scst_rs_xfer, rw, 1),
				sizeof(long));
	ch->xfer_pool = kcalloc(ch->cfg.tx_count, ch->xfer_stride, GFP_KERNEL);
	ch->xfer_busy = bitmap_zalloc(ch->cfg.tx_count, GFP_KERNEL);
	if (!ch->xfer_pool || !ch->xfer_busy)
		goto fail;
	if (!ch->srq) {
		ch->recv = alloc_ius(ch->dev, ch, NULL, ch->cfg.rq_size,
				     ch->cfg.req_size, DMA_FROM_DEVICE,
				     recv_done);
		if (!ch->recv)
			goto fail;
		for (i = 0; i < ch->cfg.rq_size; i++) {
			ret = post_recv(&ch->recv[i]);
			if (ret)
				goto fail;
		}
	}
	*cfg = ch->cfg;
	/* The CM handler finds the channel from now on. */
	ch->listener = id->context;
	id->context = ch;
	scst_rs_rdma_object_get();
	ch_listed(ch);
	return ch;
fail:
	/*
	 * Nothing was connected: what was posted is drained with the QP,
	 * and nothing arrived for it from a shared receive queue.
	 */
	if (ch->qp) {
		if (ch->srq)
			scst_rs_rdma->ib_drain_sq(ch->qp);
		else
			scst_rs_rdma->ib_drain_qp(ch->qp);
		scst_rs_rdma->rdma_destroy_qp(id);
	}
	free_ius(ch->dev, ch->recv, ch->cfg.rq_size, ch->cfg.req_size,
		 DMA_FROM_DEVICE);
	free_ius(ch->dev, ch->send, ch->cfg.tx_count, ch->cfg.rsp_size,
		 DMA_TO_DEVICE);
	if (ch->cq)
		scst_rs_rdma->ib_cq_pool_put(ch->cq, ch->cq_size);
	if (ch->srq)
		scst_rs_srq_put(ch->srq);
	else if (ch->pd)
		scst_rs_rdma->ib_dealloc_pd_user(ch->pd, NULL);
	ch_free(ch);
	ch = NULL;
out:
	*err = ret;
	return NULL;
}

/* Accepts the connection with `data` (the login response). */
int scst_rs_ch_accept(struct scst_rs_ch *ch, const void *data, u8 len)
{
	struct rdma_conn_param param = {
		.private_data = data,
		.private_data_len = len,
		.responder_resources = 4,
		.initiator_depth = 4,
		.flow_control = 1,
		.rnr_retry_count = 7,
	};

	return scst_rs_rdma->rdma_accept(ch->id, &param);
}

/*
 * No post starts from now on, and those under way have ended: what the
 * drain needs (nobody else posts). Sleeps, but only for posts, which
 * never wait.
 */
static void stop_posting(struct scst_rs_ch *ch)
{
	WRITE_ONCE(ch->closing, true);
	/* Pairs with post_begin() and post_end(). */
	smp_mb();
	wait_var_event(&ch->posting, !atomic_read(&ch->posting));
}

/*
 * How long a QP on a shared receive queue is given to say that it takes
 * no more of the queue's units (Last WQE Reached) once in the error state.
 */
#define LAST_WQE_TIMEOUT (10 * HZ)

/*
 * Every unit and transfer posted on the QP, and every unit it took from a
 * shared receive queue, completes before this returns; posting stopped.
 */
static void drain(struct scst_rs_ch *ch)
{
	struct ib_qp_attr attr = { .qp_state = IB_QPS_ERR };

	if (test_and_set_bit(CH_DRAINED, &ch->flags))
		return;
	if (!ch->srq) {
		scst_rs_rdma->ib_drain_qp(ch->qp);
		return;
	}
	/*
	 * ib_drain_qp() would poll the CQ itself, which is the pool's. In
	 * the error state the QP takes no more units from the SRQ once it
	 * says Last WQE Reached; what it took before is flushed to the CQ
	 * ahead of the send queue's drain marker. siw never says it: it
	 * flushes the receive in progress within the state change.
	 */
	if (!scst_rs_rdma->ib_modify_qp(ch->qp, &attr, IB_QP_STATE) &&
	    ch->dev->ops.driver_id != RDMA_DRIVER_SIW &&
	    !wait_for_completion_timeout(&ch->qp->srq_completion,
					 LAST_WQE_TIMEOUT))
		pr_info_ratelimited("scst: RDMA channel: no Last WQE Reached from %s\n",
				    dev_name(&ch->dev->dev));
	scst_rs_rdma->ib_drain_sq(ch->qp);
}

/* The channel's QP, CQ, units and PD, now; the id is the CM's to destroy. */
static void destroy_verbs(struct scst_rs_ch *ch)
{
	if (ch->qp) {
		drain(ch);
		scst_rs_rdma->rdma_destroy_qp(ch->id);
		ch->qp = NULL;
	}
	free_ius(ch->dev, ch->recv, ch->cfg.rq_size, ch->cfg.req_size,
		 DMA_FROM_DEVICE);
	ch->recv = NULL;
	free_ius(ch->dev, ch->send, ch->cfg.tx_count, ch->cfg.rsp_size,
		 DMA_TO_DEVICE);
	ch->send = NULL;
	if (ch->cq) {
		scst_rs_rdma->ib_cq_pool_put(ch->cq, ch->cq_size);
		ch->cq = NULL;
	}
	if (ch->srq) {
		/* Its QP, which held the SRQ, is gone. */
		scst_rs_srq_put(ch->srq);
		ch->srq = NULL;
	} else if (ch->pd) {
		scst_rs_rdma->ib_dealloc_pd_user(ch->pd, NULL);
	}
	ch->pd = NULL;
}

/*
 * The connect request was not accepted after all (the accept failed):
 * called in the request's handler, which then has the CM destroy the id.
 * Drops the creator's reference.
 */
void scst_rs_ch_abandon(struct scst_rs_ch *ch)
{
	stop_posting(ch);
	destroy_verbs(ch);
	/* The CM destroys the id once the handler returns. */
	ch->id->context = ch->listener;
	ch->id = NULL;
	scst_rs_ch_put(ch);
}

/* Stops posting, disconnects, and drains: every posted unit completes. */
static void close_now(struct scst_rs_ch *ch)
{
	if (READ_ONCE(ch->stage) < CH_CLOSING)
		WRITE_ONCE(ch->stage, CH_CLOSING);
	stop_posting(ch);
	if (ch->id)
		scst_rs_rdma->rdma_disconnect(ch->id);
	if (ch->qp)
		drain(ch);
	if (READ_ONCE(ch->stage) < CH_CLOSED)
		WRITE_ONCE(ch->stage, CH_CLOSED);
}

static void close_work(struct work_struct *work)
{
	struct scst_rs_ch *ch = container_of(work, struct scst_rs_ch,
					     close_work);

	close_now(ch);
	scst_rs_ch_put(ch);
}

/* Closes the channel, on the RDMA workqueue; any context. Idempotent. */
void scst_rs_ch_close(struct scst_rs_ch *ch)
{
	if (test_and_set_bit(CH_CLOSE_QUEUED, &ch->flags))
		return;
	scst_rs_ch_get(ch);
	INIT_WORK(&ch->close_work, close_work);
	queue_work(scst_rs_rdma_wq, &ch->close_work);
}

static void destroy_work(struct work_struct *work)
{
	struct scst_rs_ch *ch = container_of(work, struct scst_rs_ch,
					     destroy_work);
	void *owner = ch->owner;

	/* A close queued earlier held a reference: it ran. */
	WRITE_ONCE(ch->stage, CH_DESTROYING);
	close_now(ch);
	destroy_verbs(ch);
	WRITE_ONCE(ch->stage, CH_VERBS_GONE);
	/* Its handlers wait: never from one of them (this is a work item). */
	if (ch->id)
		scst_rs_rdma->rdma_destroy_id(ch->id);
	ch_unlisted(ch);
	ch_free(ch);
	scst_rs_ch_released(owner);
	scst_rs_rdma_object_put();
}

static void ch_release(struct kref *ref)
{
	struct scst_rs_ch *ch = container_of(ref, struct scst_rs_ch, ref);

	if (!ch->id && !ch->qp) {
		/* Abandoned: nothing left to drain or destroy. */
		void *owner = ch->owner;

		ch_unlisted(ch);
		ch_free(ch);
		scst_rs_ch_released(owner);
		scst_rs_rdma_object_put();
		return;
	}
	INIT_WORK(&ch->destroy_work, destroy_work);
	queue_work(scst_rs_rdma_wq, &ch->destroy_work);
}

int scst_rs_ch_cm_event(struct rdma_cm_id *id, struct rdma_cm_event *event)
{
	struct scst_rs_ch *ch = id->context;
	int kind;

	switch (event->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		kind = SCST_RS_CH_ESTABLISHED;
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_ADDR_CHANGE:
		kind = SCST_RS_CH_CLOSED;
		break;
	default:
		return 0;
	}
	scst_rs_ch_event(ch->owner, ch, kind);
	/* The id is destroyed with the channel, never by the CM. */
	return 0;
}

/* A completion that failed other than by a flush ends the channel. */
static void completion_failed(struct scst_rs_ch *ch, struct ib_wc *wc,
			      const char *what)
{
	if (wc->status == IB_WC_WR_FLUSH_ERR)
		return;
	/* (ib_wc_status_msg() is ib_core's: the number says it.) */
	pr_info_ratelimited("scst: RDMA %s failed: work completion status %d\n",
			    what, wc->status);
	scst_rs_ch_event(ch->owner, ch, SCST_RS_CH_FAILED);
}

/* A unit of a shared receive queue goes back to it. */
static void srq_repost(struct scst_rs_iu *iu)
{
	if (post_srq_recv(iu))
		pr_info_ratelimited("scst: RDMA shared receive unit not reposted\n");
}

static void recv_done(struct ib_cq *cq, struct ib_wc *wc)
{
	struct scst_rs_iu *iu = container_of(wc->wr_cqe, struct scst_rs_iu,
					     cqe);
	/* A shared unit's QP is its channel's until the drain returned. */
	struct scst_rs_ch *ch = iu->srq ? wc->qp->qp_context : iu->ch;

	if (wc->status != IB_WC_SUCCESS) {
		completion_failed(ch, wc, "receive");
		if (iu->srq)
			srq_repost(iu);
		return;
	}
	ib_dma_sync_single_for_cpu(ch->dev, iu->dma, ch->cfg.req_size,
				   DMA_FROM_DEVICE);
	scst_rs_ch_received(ch->owner, ch, iu->buf,
			    min(wc->byte_len, ch->cfg.req_size));
	ib_dma_sync_single_for_device(ch->dev, iu->dma, ch->cfg.req_size,
				      DMA_FROM_DEVICE);
	if (iu->srq) {
		srq_repost(iu);
		return;
	}
	if (!post_begin(ch))
		return;
	if (post_recv(iu))
		pr_info_ratelimited("scst: RDMA receive not reposted\n");
	post_end(ch);
}

static void xfer_destroy_rw(struct scst_rs_xfer *x)
{
	u32 i;

	for (i = 0; i < x->count; i++) {
		struct scst_rs_rw *rw = &x->rw[i];
		u32 j;

		scst_rs_rdma->rdma_rw_ctx_destroy(&rw->ctx, x->ch->qp,
						  x->ch->port, rw->sgl,
						  rw->nents, x->dir);
		for (j = 0; j < rw->nents; j++)
			put_page(sg_page(&rw->sgl[j]));
		if (rw->sgl != rw->inline_sg)
			kfree(rw->sgl);
	}
	x->count = 0;
}

void scst_rs_xfer_free(struct scst_rs_xfer *x)
{
	struct scst_rs_ch *ch = x->ch;

	xfer_destroy_rw(x);
	if (x->pooled)
		clear_bit_unlock(x->slot, ch->xfer_busy);
	else
		kfree(x);
	atomic_dec(&ch->xfers);
	scst_rs_ch_put(ch);
}

static void send_done(struct ib_cq *cq, struct ib_wc *wc)
{
	struct scst_rs_iu *iu = container_of(wc->wr_cqe, struct scst_rs_iu,
					     cqe);
	struct scst_rs_ch *ch = iu->ch;
	struct scst_rs_xfer *x;

	if (wc->status != IB_WC_SUCCESS)
		completion_failed(ch, wc, "send");
	/*
	 * The poster filled in the unit before it posted it, and the
	 * completion of what it posted comes after the post.
	 */
	x = iu->xfer;
	iu->xfer = NULL;
	atomic_add(iu->wrs, &ch->sq_avail);
	clear_bit_unlock(IU_BUSY, &iu->state);
	/* Unmapped before the owner hears: the data-in was read. */
	if (x)
		scst_rs_xfer_free(x);
	scst_rs_ch_sent(ch->owner, ch, iu->index, wc->status == IB_WC_SUCCESS);
}

static void read_done(struct ib_cq *cq, struct ib_wc *wc)
{
	struct scst_rs_xfer *x = container_of(wc->wr_cqe, struct scst_rs_xfer,
					      cqe);
	struct scst_rs_ch *ch = x->ch;
	u64 cookie = x->cookie;

	if (wc->status != IB_WC_SUCCESS)
		completion_failed(ch, wc, "RDMA READ");
	atomic_add(x->wrs, &ch->sq_avail);
	/* Unmapped first: the data is the CPU's. The xfer's ref holds ch. */
	scst_rs_ch_get(ch);
	scst_rs_xfer_free(x);
	scst_rs_ch_read_done(ch->owner, ch, cookie,
			     wc->status == IB_WC_SUCCESS);
	scst_rs_ch_put(ch);
}

/*
 * A transfer of up to `max` regions, RDMA WRITE (`write`) or READ, for
 * the command of send unit `slot` (any other number: none): that unit's
 * own when it has one region at most and the unit's is free.
 */
struct scst_rs_xfer *scst_rs_xfer_alloc(struct scst_rs_ch *ch, u32 max,
					bool write, u32 slot)
{
	struct scst_rs_xfer *x;

	if (max <= 1 && slot < ch->cfg.tx_count &&
	    !test_and_set_bit_lock(slot, ch->xfer_busy)) {
		x = ch->xfer_pool + slot * ch->xfer_stride;
		memset(x, 0, ch->xfer_stride);
		x->pooled = true;
		x->slot = slot;
	} else {
		x = kzalloc(struct_size(x, rw, max), GFP_KERNEL);
		if (!x)
			return NULL;
	}
	scst_rs_ch_get(ch);
	atomic_inc(&ch->xfers);
	x->ch = ch;
	x->max = max;
	x->dir = write ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
	x->cqe.done = read_done;
	return x;
}

/*
 * Adds the region of `len` bytes at `remote`/`rkey`, to or from `len`
 * bytes at `offset` of the scatterlist `sgl` (`nents` entries). The
 * region holds references to the pages, so that they outlive its DMA
 * whatever their owner does. -EAGAIN: the QP's registrations are all in
 * use; try again once a transfer ended.
 */
int scst_rs_xfer_add(struct scst_rs_xfer *x, struct scatterlist *sgl,
		     u32 nents, u32 offset, u32 len, u64 remote, u32 rkey)
{
	struct scst_rs_rw *rw;
	struct scatterlist *s, *first = NULL;
	u32 n = 0, left = len, skip = offset, first_off = 0, i;
	int ret;

	if (x->count >= x->max || !len || !x->ch->qp)
		return -EINVAL;
	rw = &x->rw[x->count];
	/* The entries of the slice: where it starts, and how many. */
	for_each_sg(sgl, s, nents, i) {
		u32 room;

		if (!first) {
			if (skip >= s->length) {
				skip -= s->length;
				continue;
			}
			first = s;
			first_off = skip;
		}
		room = s->length - (s == first ? first_off : 0);
		n++;
		if (room >= left) {
			left = 0;
			break;
		}
		left -= room;
	}
	if (!first || left)
		return -EINVAL;
	if (n <= RW_INLINE_SG) {
		rw->sgl = rw->inline_sg;
	} else {
		rw->sgl = kmalloc_array(n, sizeof(*rw->sgl), GFP_KERNEL);
		if (!rw->sgl)
			return -ENOMEM;
	}
	sg_init_table(rw->sgl, n);
	left = len;
	s = first;
	for (i = 0; i < n; i++, s = sg_next(s)) {
		u32 off = s->offset + (i ? 0 : first_off);
		u32 room = s->length - (i ? 0 : first_off);
		u32 take = min(room, left);

		get_page(sg_page(s));
		sg_set_page(&rw->sgl[i], sg_page(s), take, off);
		left -= take;
	}
	rw->nents = n;
	ret = scst_rs_rdma->rdma_rw_ctx_init(&rw->ctx, x->ch->qp, x->ch->port,
					     rw->sgl, n, 0, remote, rkey,
					     x->dir);
	if (ret < 0) {
		for (i = 0; i < n; i++)
			put_page(sg_page(&rw->sgl[i]));
		if (rw->sgl != rw->inline_sg)
			kfree(rw->sgl);
		rw->sgl = NULL;
		return ret;
	}
	x->wrs += ret;
	x->count++;
	return 0;
}

/* The transfer's work requests, chained before `next` (or signaled). */
static struct ib_send_wr *xfer_wrs(struct scst_rs_xfer *x,
				   struct ib_send_wr *next)
{
	u32 i = x->count;

	while (i--) {
		struct ib_cqe *cqe = next ? NULL : &x->cqe;

		next = scst_rs_rdma->rdma_rw_ctx_wrs(&x->rw[i].ctx, x->ch->qp,
						     x->ch->port, cqe, next);
	}
	return next;
}

/*
 * Takes `wrs` entries of the send queue, unless they are not free
 * (-EAGAIN: try again once a send or transfer completed). Never takes
 * some and fails another poster meanwhile.
 */
static int take_sq(struct scst_rs_ch *ch, u32 wrs)
{
	int avail = atomic_read(&ch->sq_avail);

	do {
		if (avail < 0 || wrs > (u32)avail)
			return -EAGAIN;
	} while (!atomic_try_cmpxchg(&ch->sq_avail, &avail, avail - wrs));
	return 0;
}

/*
 * Posts the RDMA READs of `x`: `cookie` is told when they completed. 0:
 * the transfer is the channel's until then; else it is still the
 * caller's (-EAGAIN: the send queue is full for now).
 */
int scst_rs_ch_read(struct scst_rs_ch *ch, struct scst_rs_xfer *x, u64 cookie)
{
	struct ib_send_wr *first;
	int ret;

	if (x->ch != ch || !x->count || x->dir != DMA_FROM_DEVICE)
		return -EINVAL;
	x->cookie = cookie;
	if (!post_begin(ch))
		return -ESHUTDOWN;
	ret = take_sq(ch, x->wrs);
	if (!ret) {
		first = xfer_wrs(x, NULL);
		ret = ib_post_send(ch->qp, first, NULL);
		if (ret)
			atomic_add(x->wrs, &ch->sq_avail);
	}
	post_end(ch);
	return ret;
}

/*
 * Sends `len` bytes of `data` in send unit `slot`, after the RDMA WRITEs
 * of `x` (if any). 0: the unit (and the transfer) are the channel's until
 * the owner is told the send completed; else both are still the caller's
 * (-EAGAIN: the send queue is full for now; -EBUSY: the unit is in use).
 */
int scst_rs_ch_send(struct scst_rs_ch *ch, u32 slot, const void *data,
		    u32 len, struct scst_rs_xfer *x)
{
	struct scst_rs_iu *iu;
	struct ib_sge sge;
	struct ib_send_wr wr = {}, *first;
	u32 wrs = 1;
	int ret;

	if (slot >= ch->cfg.tx_count || len > ch->cfg.rsp_size || !ch->send)
		return -EINVAL;
	if (x && (x->ch != ch || x->dir != DMA_TO_DEVICE))
		return -EINVAL;
	if (x)
		wrs += x->wrs;
	iu = &ch->send[slot];
	if (!post_begin(ch))
		return -ESHUTDOWN;
	if (test_and_set_bit_lock(IU_BUSY, &iu->state)) {
		ret = -EBUSY;
		goto out;
	}
	ret = take_sq(ch, wrs);
	if (ret)
		goto idle;
	/* The completion may run on another CPU as soon as it is posted. */
	iu->wrs = wrs;
	iu->xfer = x;
	memcpy(iu->buf, data, len);
	ib_dma_sync_single_for_device(ch->dev, iu->dma, len, DMA_TO_DEVICE);
	sge.addr = iu->dma;
	sge.length = len;
	sge.lkey = ch->pd->local_dma_lkey;
	wr.wr_cqe = &iu->cqe;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = IB_WR_SEND;
	wr.send_flags = IB_SEND_SIGNALED;
	first = x && x->count ? xfer_wrs(x, &wr) : &wr;
	ret = ib_post_send(ch->qp, first, NULL);
	if (!ret)
		goto out;
	atomic_add(wrs, &ch->sq_avail);
	iu->xfer = NULL;
idle:
	clear_bit_unlock(IU_BUSY, &iu->state);
out:
	post_end(ch);
	return ret;
}
