/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What rdma_helpers.c (the attached table, the IB client, the listener)
 * shares with rdma_channel.c (connected channels).
 */
#ifndef SCST_RS_RDMA_INTERNAL_H
#define SCST_RS_RDMA_INTERNAL_H

#include <linux/workqueue.h>
#include <rdma/rdma_cm.h>

#include "rdma_ops.h"

/* The attached table: set while scst_srpt.ko is loaded. */
extern const struct scst_rdma_ops *scst_rs_rdma;

/*
 * Channels are closed and destroyed on it; detach drains it once the last
 * RDMA object is gone.
 */
extern struct workqueue_struct *scst_rs_rdma_wq;

/* Counts an RDMA object scst.ko holds: detach waits until none is left. */
void scst_rs_rdma_object_get(void);
void scst_rs_rdma_object_put(void);

/* A channel's CM event (rdma_channel.c), for the CM handler. */
int scst_rs_ch_cm_event(struct rdma_cm_id *id, struct rdma_cm_event *event);

#endif
