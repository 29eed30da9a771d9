/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between scst.ko and scst_srpt.ko.
 *
 * ib_core's and rdma_cm's exports are plain EXPORT_SYMBOLs, which
 * symbol_get() refuses, so a module that calls them depends on those
 * modules and cannot load without them. scst.ko must load everywhere, so
 * it links none of them: scst_srpt.ko does, and hands scst.ko a table of
 * the functions (scst_rdma_attach()) when it loads. The SRP target itself
 * lives in scst.ko, where it shares the core's Rust types; the table is
 * withdrawn (scst_rdma_detach()) only after every RDMA object is gone.
 * Static inlines of the RDMA headers (ib_post_send(), ib_dma_map_single())
 * link nothing and are called directly.
 */
#ifndef SCST_RS_RDMA_OPS_H
#define SCST_RS_RDMA_OPS_H

#include <linux/types.h>

struct ib_client;
struct ib_device;
struct ib_pd;
struct ib_cq;
struct ib_qp;
struct ib_qp_init_attr;
struct ib_qp_attr;
struct ib_srq;
struct ib_srq_init_attr;
struct ib_usrq_object;
struct ib_udata;
struct ib_cqe;
struct ib_send_wr;
struct rdma_cm_id;
struct rdma_cm_event;
struct rdma_conn_param;
struct rdma_rw_ctx;
struct scatterlist;
struct sockaddr;
struct net;
union ib_gid;
enum ib_poll_context;
enum rdma_ucm_port_space;
enum ib_qp_type;
enum dma_data_direction;
enum ib_event_type;
enum rdma_link_layer;

/* Bumped whenever the table changes, so that a stale scst_srpt.ko is told. */
#define SCST_RDMA_OPS_VERSION 4

struct scst_rdma_ops {
	unsigned int version;
	unsigned int size;
	int (*ib_register_client)(struct ib_client *client);
	void (*ib_unregister_client)(struct ib_client *client);
	void (*ib_set_client_data)(struct ib_device *device,
				   struct ib_client *client, void *data);
	int (*rdma_query_gid)(struct ib_device *device, u32 port_num,
			      int index, union ib_gid *gid);
	enum rdma_link_layer (*rdma_port_get_link_layer)(struct ib_device *device,
							 u32 port_num);
	struct ib_pd *(*alloc_pd)(struct ib_device *device,
				     unsigned int flags, const char *caller);
	int (*ib_dealloc_pd_user)(struct ib_pd *pd, struct ib_udata *udata);
	struct ib_cq *(*ib_cq_pool_get)(struct ib_device *dev,
					unsigned int nr_cqe, int comp_vector_hint,
					enum ib_poll_context poll_ctx);
	void (*ib_cq_pool_put)(struct ib_cq *cq, unsigned int nr_cqe);
	void (*ib_drain_qp)(struct ib_qp *qp);
	void (*ib_drain_sq)(struct ib_qp *qp);
	int (*ib_modify_qp)(struct ib_qp *qp, struct ib_qp_attr *qp_attr,
			    int qp_attr_mask);
	struct ib_srq *(*ib_create_srq_user)(struct ib_pd *pd,
					     struct ib_srq_init_attr *init,
					     struct ib_usrq_object *uobject,
					     struct ib_udata *udata);
	int (*ib_destroy_srq_user)(struct ib_srq *srq, struct ib_udata *udata);
	void (*ib_device_put)(struct ib_device *device);
	int (*rdma_set_min_rnr_timer)(struct rdma_cm_id *id, u8 min_rnr_timer);
	struct rdma_cm_id *(*create_kernel_id)(
		struct net *net,
		int (*handler)(struct rdma_cm_id *, struct rdma_cm_event *),
		void *context, enum rdma_ucm_port_space ps,
		enum ib_qp_type qp_type, const char *caller);
	int (*rdma_bind_addr)(struct rdma_cm_id *id, struct sockaddr *addr);
	int (*rdma_set_afonly)(struct rdma_cm_id *id, int afonly);
	int (*rdma_listen)(struct rdma_cm_id *id, int backlog);
	int (*rdma_accept)(struct rdma_cm_id *id,
			   struct rdma_conn_param *conn_param);
	int (*rdma_reject)(struct rdma_cm_id *id, const void *private_data,
			   u8 private_data_len, u8 reason);
	int (*rdma_disconnect)(struct rdma_cm_id *id);
	int (*rdma_notify)(struct rdma_cm_id *id, enum ib_event_type event);
	void (*rdma_destroy_id)(struct rdma_cm_id *id);
	int (*rdma_create_qp)(struct rdma_cm_id *id, struct ib_pd *pd,
			      struct ib_qp_init_attr *qp_init_attr);
	void (*rdma_destroy_qp)(struct rdma_cm_id *id);
	int (*rdma_rw_ctx_init)(struct rdma_rw_ctx *ctx, struct ib_qp *qp,
				u32 port_num, struct scatterlist *sg,
				u32 sg_cnt, u32 sg_offset, u64 remote_addr,
				u32 rkey, enum dma_data_direction dir);
	void (*rdma_rw_ctx_destroy)(struct rdma_rw_ctx *ctx, struct ib_qp *qp,
				    u32 port_num, struct scatterlist *sg,
				    u32 sg_cnt, enum dma_data_direction dir);
	struct ib_send_wr *(*rdma_rw_ctx_wrs)(struct rdma_rw_ctx *ctx,
					      struct ib_qp *qp, u32 port_num,
					      struct ib_cqe *cqe,
					      struct ib_send_wr *chain_wr);
};

/* SCST's ib_srpt module parameters, as scst_srpt.ko was loaded with. */
struct scst_srpt_params {
	u16 rdma_cm_port;
	u32 srp_max_req_size;
	u32 srp_max_rsp_size;
	u32 srp_max_rdma_size;
	u32 srpt_sq_size;
	u32 srpt_srq_size;
	bool use_srq;
	u64 srpt_service_guid;
};

int scst_rdma_attach(const struct scst_rdma_ops *ops,
		     const struct scst_srpt_params *params);
void scst_rdma_detach(const struct scst_rdma_ops *ops);

#endif
