// SPDX-License-Identifier: GPL-2.0
/*
 * The SCSI host of scst_local: one Scsi_Host per session, whose commands go
 * to the Rust side (rust/scsi_host.rs) in process context.
 */
#include <linux/err.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <scsi/scsi.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>
#include <scsi/scsi_eh.h>
#include <scsi/scsi_host.h>

#include "helpers.h"

/* Implemented in Rust (rust/scsi_host.rs). */
int scst_rs_local_queuecommand(void *ops, struct scsi_cmnd *cmd);
int scst_rs_local_eh(void *ops, struct scsi_cmnd *cmd, int kind);

struct scst_rs_host_priv {
	void *ops;
};

static void *host_ops(struct Scsi_Host *shost)
{
	return ((struct scst_rs_host_priv *)shost_priv(shost))->ops;
}

static int scst_rs_qc(struct Scsi_Host *shost, struct scsi_cmnd *cmd)
{
	return scst_rs_local_queuecommand(host_ops(shost), cmd);
}

static int scst_rs_eh_abort(struct scsi_cmnd *cmd)
{
	return scst_rs_local_eh(host_ops(cmd->device->host), cmd, 0);
}

static int scst_rs_eh_device_reset(struct scsi_cmnd *cmd)
{
	return scst_rs_local_eh(host_ops(cmd->device->host), cmd, 1);
}

static int scst_rs_eh_target_reset(struct scsi_cmnd *cmd)
{
	return scst_rs_local_eh(host_ops(cmd->device->host), cmd, 2);
}

static int scst_rs_eh_host_reset(struct scsi_cmnd *cmd)
{
	return scst_rs_local_eh(host_ops(cmd->device->host), cmd, 3);
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
	.eh_host_reset_handler = scst_rs_eh_host_reset,
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
	((struct scst_rs_host_priv *)shost_priv(shost))->ops = ops;
	shost->max_id = 1;
	shost->max_channel = 0;
	shost->max_lun = max_lun;
	shost->max_cmd_len = 16;
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
	scsi_done(cmd);
}
