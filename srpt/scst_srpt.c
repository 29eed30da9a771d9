// SPDX-License-Identifier: GPL-2.0
/*
 * scst_srpt.ko: SCST's SRP target (ib_srpt) for scst-rs.
 *
 * The driver is part of scst.ko; this module is what links the RDMA stack
 * (see rust/rdma_ops.h for why), and carries SCST's ib_srpt parameters.
 * Loading it brings the SRP target up on every RDMA device, unloading it
 * takes the target down.
 */
#include <linux/module.h>
#include <rdma/ib_cache.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>
#include <rdma/rw.h>

#include "../rust/rdma_ops.h"

static u16 rdma_cm_port;
module_param(rdma_cm_port, ushort, 0444);
MODULE_PARM_DESC(rdma_cm_port,
		 "Port number RDMA/CM will bind to (0: no RDMA/CM listener).");

/* SCST's defaults: room for 128 descriptors or 8 KiB of immediate data. */
static unsigned int srp_max_req_size = 8276;
module_param(srp_max_req_size, uint, 0444);
MODULE_PARM_DESC(srp_max_req_size,
		 "Maximum size of SRP request messages in bytes.");

static unsigned int srp_max_rsp_size = 256;
module_param(srp_max_rsp_size, uint, 0444);
MODULE_PARM_DESC(srp_max_rsp_size,
		 "Maximum size of SRP response messages in bytes.");

static unsigned int srp_max_rdma_size = 65536;
module_param(srp_max_rdma_size, uint, 0444);
MODULE_PARM_DESC(srp_max_rdma_size,
		 "Maximum size of SRP RDMA transfers for new connections.");

static unsigned int srpt_sq_size = 256;
module_param(srpt_sq_size, uint, 0444);
MODULE_PARM_DESC(srpt_sq_size, "Per-channel send queue (SQ) size.");

static unsigned int srpt_srq_size = 4095;
module_param(srpt_srq_size, uint, 0444);
MODULE_PARM_DESC(srpt_srq_size, "Shared receive queue (SRQ) size.");

static bool use_srq;
module_param(use_srq, bool, 0444);
MODULE_PARM_DESC(use_srq, "Whether or not to use SRQ");

static unsigned long long srpt_service_guid;
module_param(srpt_service_guid, ullong, 0444);
MODULE_PARM_DESC(srpt_service_guid,
		 "Using this value for ioc_guid, id_ext, and cm_listen_id instead of using the node_guid of the first HCA.");

static const struct scst_rdma_ops ops = {
	.version = SCST_RDMA_OPS_VERSION,
	.size = sizeof(struct scst_rdma_ops),
	.ib_register_client = ib_register_client,
	.ib_unregister_client = ib_unregister_client,
	.ib_set_client_data = ib_set_client_data,
	.rdma_query_gid = rdma_query_gid,
	.rdma_port_get_link_layer = rdma_port_get_link_layer,
	.alloc_pd = __ib_alloc_pd,
	.ib_dealloc_pd_user = ib_dealloc_pd_user,
	.ib_cq_pool_get = ib_cq_pool_get,
	.ib_cq_pool_put = ib_cq_pool_put,
	.ib_drain_qp = ib_drain_qp,
	.ib_drain_sq = ib_drain_sq,
	.ib_modify_qp = ib_modify_qp,
	.ib_create_srq_user = ib_create_srq_user,
	.ib_destroy_srq_user = ib_destroy_srq_user,
	.ib_device_put = ib_device_put,
	.rdma_set_min_rnr_timer = rdma_set_min_rnr_timer,
	.create_kernel_id = __rdma_create_kernel_id,
	.rdma_bind_addr = rdma_bind_addr,
	.rdma_set_afonly = rdma_set_afonly,
	.rdma_listen = rdma_listen,
	.rdma_accept = rdma_accept,
	.rdma_reject = rdma_reject,
	.rdma_disconnect = rdma_disconnect,
	.rdma_notify = rdma_notify,
	.rdma_destroy_id = rdma_destroy_id,
	.rdma_create_qp = rdma_create_qp,
	.rdma_destroy_qp = rdma_destroy_qp,
	.rdma_rw_ctx_init = rdma_rw_ctx_init,
	.rdma_rw_ctx_destroy = rdma_rw_ctx_destroy,
	.rdma_rw_ctx_wrs = rdma_rw_ctx_wrs,
};

static int __init scst_srpt_init(void)
{
	const struct scst_srpt_params params = {
		.rdma_cm_port = rdma_cm_port,
		.srp_max_req_size = srp_max_req_size,
		.srp_max_rsp_size = srp_max_rsp_size,
		.srp_max_rdma_size = srp_max_rdma_size,
		.srpt_sq_size = srpt_sq_size,
		.srpt_srq_size = srpt_srq_size,
		.use_srq = use_srq,
		.srpt_service_guid = srpt_service_guid,
	};

	return scst_rdma_attach(&ops, &params);
}

static void __exit scst_srpt_exit(void)
{
	scst_rdma_detach(&ops);
}

module_init(scst_srpt_init);
module_exit(scst_srpt_exit);

MODULE_DESCRIPTION("SRP target over RDMA for scst-rs (SCST's ib_srpt)");
MODULE_LICENSE("GPL");
