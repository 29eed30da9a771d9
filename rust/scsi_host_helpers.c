// SPDX-License-Identifier: GPL-2.0
/*
 * The SCSI host of scst_local: one Scsi_Host per session, whose commands go
 * to the Rust side (rust/scsi_host.rs) in process context.
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <scsi/scsi.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>
#include <scsi/scsi_eh.h>
#include <scsi/scsi_host.h>

#include "helpers.h"

/*
 * Implemented in Rust (rust/scsi_host.rs). The error handler returns
 * whether the session carried out the request; whether the midlayer may
 * take the commands back is decided here, from what this file tracks.
 */
int scst_rs_local_queuecommand(void *ops, struct scsi_cmnd *cmd);
bool scst_rs_local_eh(void *ops, struct scsi_cmnd *cmd, int kind);

struct scst_rs_host_priv {
	void *ops;
	/* Orders a command's completion against error handling's look. */
	spinlock_t lock;
};

/* Per command: the driver holds it, from queuecommand to completion. */
struct scst_rs_cmd_priv {
	bool owned;
};

static struct scst_rs_host_priv *host_priv(struct Scsi_Host *shost)
{
	return shost_priv(shost);
}

static struct scst_rs_cmd_priv *cmd_priv(struct scsi_cmnd *cmd)
{
	return scsi_cmd_priv(cmd);
}

static int scst_rs_qc(struct Scsi_Host *shost, struct scsi_cmnd *cmd)
{
	/* A new command: error handling cannot be looking at it yet. */
	cmd_priv(cmd)->owned = true;
	return scst_rs_local_queuecommand(host_priv(shost)->ops, cmd);
}

/* What the error handler looks for among the commands still owned. */
struct scst_rs_owned_query {
	struct scsi_device *sdev;	/* this device's, or NULL */
	struct scsi_target *starget;	/* this target's, or NULL */
	bool found;
};

static bool scst_rs_owned_one(struct scsi_cmnd *cmd, void *data)
{
	struct scst_rs_owned_query *q = data;

	if (!cmd_priv(cmd)->owned)
		return true;
	if (q->sdev && cmd->device != q->sdev)
		return true;
	if (q->starget && scsi_target(cmd->device) != q->starget)
		return true;
	q->found = true;
	return false;
}

/*
 * Whether the driver still holds a command the query covers. Under the
 * host's lock, so a command seen as released has finished its completion:
 * the midlayer may reuse it at once.
 */
static bool scst_rs_any_owned(struct Scsi_Host *shost,
			      struct scsi_device *sdev,
			      struct scsi_target *starget)
{
	struct scst_rs_owned_query q = {
		.sdev = sdev,
		.starget = starget,
	};
	unsigned long flags;

	spin_lock_irqsave(&host_priv(shost)->lock, flags);
	scsi_host_busy_iter(shost, scst_rs_owned_one, &q);
	spin_unlock_irqrestore(&host_priv(shost)->lock, flags);
	return q.found;
}

static bool scst_rs_cmd_owned(struct scsi_cmnd *cmd)
{
	struct scst_rs_host_priv *h = host_priv(cmd->device->host);
	unsigned long flags;
	bool owned;

	spin_lock_irqsave(&h->lock, flags);
	owned = cmd_priv(cmd)->owned;
	spin_unlock_irqrestore(&h->lock, flags);
	return owned;
}

/*
 * The midlayer finishes the commands an error handler covers once it
 * returns SUCCESS, and reuses them: SUCCESS only once the driver holds
 * none of them, whatever the session said.
 */
static int scst_rs_eh_abort(struct scsi_cmnd *cmd)
{
	bool ok = scst_rs_local_eh(host_priv(cmd->device->host)->ops, cmd, 0);

	return ok && !scst_rs_cmd_owned(cmd) ? SUCCESS : FAILED;
}

static int scst_rs_eh_device_reset(struct scsi_cmnd *cmd)
{
	struct Scsi_Host *shost = cmd->device->host;
	bool ok = scst_rs_local_eh(host_priv(shost)->ops, cmd, 1);

	return ok && !scst_rs_any_owned(shost, cmd->device, NULL) ?
		SUCCESS : FAILED;
}

static int scst_rs_eh_target_reset(struct scsi_cmnd *cmd)
{
	struct Scsi_Host *shost = cmd->device->host;
	bool ok = scst_rs_local_eh(host_priv(shost)->ops, cmd, 2);

	return ok && !scst_rs_any_owned(shost, NULL, scsi_target(cmd->device)) ?
		SUCCESS : FAILED;
}

/* kind 4: every target of the command's channel (scst_local has one). */
static int scst_rs_eh_bus_reset(struct scsi_cmnd *cmd)
{
	struct Scsi_Host *shost = cmd->device->host;
	bool ok = scst_rs_local_eh(host_priv(shost)->ops, cmd, 4);

	return ok && !scst_rs_any_owned(shost, NULL, NULL) ? SUCCESS : FAILED;
}

/*
 * The last step: after it, whatever it returns, the midlayer finishes
 * every command it holds. So it waits until the driver holds none; the
 * backends' own timeouts (a block device's, a scst_user handler's) bound
 * that, and the kernel log says it waits.
 */
static int scst_rs_eh_host_reset(struct scsi_cmnd *cmd)
{
	struct Scsi_Host *shost = cmd->device->host;
	unsigned int waited_ms = 0;

	scst_rs_local_eh(host_priv(shost)->ops, cmd, 3);
	while (scst_rs_any_owned(shost, NULL, NULL)) {
		if (waited_ms && waited_ms % 30000 == 0)
			shost_printk(KERN_WARNING, shost,
				     "host reset: waiting for commands still executing (%u s)\n",
				     waited_ms / 1000);
		msleep(100);
		waited_ms += 100;
	}
	return SUCCESS;
}

static const struct scsi_host_template scst_rs_local_template = {
	.module = THIS_MODULE,
	.name = "scst_local",
	.proc_name = "scst_local",
	.queuecommand = scst_rs_qc,
	/*
	 * queuecommand may be called in atomic context: it only records the
	 * command and hands it to the core, whose workers execute it.
	 */
	.eh_abort_handler = scst_rs_eh_abort,
	.eh_device_reset_handler = scst_rs_eh_device_reset,
	.eh_target_reset_handler = scst_rs_eh_target_reset,
	.eh_bus_reset_handler = scst_rs_eh_bus_reset,
	.eh_host_reset_handler = scst_rs_eh_host_reset,
	.cmd_size = sizeof(struct scst_rs_cmd_priv),
	.can_queue = 64,
	.cmd_per_lun = 32,
	.this_id = -1,
	.sg_tablesize = 256,
	.max_sectors = 2048,
	.skip_settle_delay = 1,
};

struct Scsi_Host *scst_rs_local_host_add(void *ops, unsigned int max_lun)
{
	struct Scsi_Host *shost;
	int err;

	shost = scsi_host_alloc(&scst_rs_local_template,
				sizeof(struct scst_rs_host_priv));
	if (!shost)
		return ERR_PTR(-ENOMEM);
	host_priv(shost)->ops = ops;
	spin_lock_init(&host_priv(shost)->lock);
	shost->max_id = 1;
	shost->max_channel = 0;
	shost->max_lun = max_lun;
	/* Every CDB the midlayer can carry: variable-length ones included. */
	shost->max_cmd_len = sizeof_field(struct scsi_cmnd, cmnd);
	err = scsi_add_host(shost, NULL);
	if (err) {
		scsi_host_put(shost);
		return ERR_PTR(err);
	}
	return shost;
}

void scst_rs_local_host_scan(struct Scsi_Host *shost)
{
	scsi_scan_host(shost);
}

static bool scst_rs_lun_listed(u64 lun, const u64 *luns, size_t nr)
{
	size_t i;

	for (i = 0; i < nr; i++)
		if (luns[i] == lun)
			return true;
	return false;
}

/*
 * Brings the host's devices in line with its target's LUNs, @luns (@nr
 * Linux LUN numbers): the devices of LUNs no longer there are removed, and
 * a scan (REPORT LUNS) adds the new ones. Process context; sleeps.
 */
void scst_rs_local_host_rescan(struct Scsi_Host *shost, const u64 *luns,
			       size_t nr)
{
	struct scsi_device *sdev;

	/* The iterator holds a reference on the device it yields, so the
	 * device stays listed while it is removed. */
	shost_for_each_device(sdev, shost) {
		if (!scst_rs_lun_listed(sdev->lun, luns, nr))
			scsi_remove_device(sdev);
	}
	scsi_scan_target(&shost->shost_gendev, 0, 0, SCAN_WILD_CARD,
			 SCSI_SCAN_RESCAN);
}

void scst_rs_local_host_remove(struct Scsi_Host *shost)
{
	scsi_remove_host(shost);
	scsi_host_put(shost);
}

unsigned int scst_rs_local_host_no(struct Scsi_Host *shost)
{
	return shost->host_no;
}

struct kobject *scst_rs_local_host_kobj(struct Scsi_Host *shost)
{
	return &shost->shost_gendev.kobj;
}

const u8 *scst_rs_cmd_cdb(struct scsi_cmnd *cmd, unsigned int *len)
{
	*len = cmd->cmd_len;
	return cmd->cmnd;
}

u64 scst_rs_cmd_lun(struct scsi_cmnd *cmd)
{
	return cmd->device->lun;
}

u32 scst_rs_cmd_tag(struct scsi_cmnd *cmd)
{
	struct request *rq = scsi_cmd_to_rq(cmd);

	/*
	 * scsi_ioctl_reset() (sg_reset) hands the error handler a request no
	 * queue allocated: it has no tag.
	 */
	if (!rq->mq_hctx)
		return U32_MAX;
	return blk_mq_unique_tag(rq);
}

/* 0: none, 1: to device (data-out), 2: from device (data-in). */
int scst_rs_cmd_direction(struct scsi_cmnd *cmd)
{
	switch (cmd->sc_data_direction) {
	case DMA_TO_DEVICE:
		return 1;
	case DMA_FROM_DEVICE:
		return 2;
	default:
		return 0;
	}
}

struct scatterlist *scst_rs_cmd_sg(struct scsi_cmnd *cmd, unsigned int *nents,
				   unsigned int *len)
{
	*nents = scsi_sg_count(cmd);
	*len = scsi_bufflen(cmd);
	return scsi_sglist(cmd);
}

/*
 * Completes @cmd with SCSI @status (and @sense), @resid bytes not
 * transferred, or with host byte DID_ERROR when @error is set.
 */
void scst_rs_cmd_done(struct scsi_cmnd *cmd, u8 status, const u8 *sense,
		      unsigned int sense_len, unsigned int resid, bool error)
{
	struct scst_rs_host_priv *h = host_priv(cmd->device->host);
	unsigned long flags;

	if (error) {
		cmd->result = DID_ERROR << 16;
	} else {
		cmd->result = status;
		if (sense_len)
			memcpy(cmd->sense_buffer, sense,
			       min_t(unsigned int, sense_len,
				     SCSI_SENSE_BUFFERSIZE));
	}
	scsi_set_resid(cmd, resid);
	/*
	 * Released and completed under the host's lock: error handling that
	 * sees the command released may reuse it at once.
	 */
	spin_lock_irqsave(&h->lock, flags);
	cmd_priv(cmd)->owned = false;
	scsi_done(cmd);
	spin_unlock_irqrestore(&h->lock, flags);
}
