/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of scst.ko: wrappers for static inlines and macros that bindgen
 * cannot bind, and small pieces of C that are cleaner in C.
 */
#ifndef SCST_RS_HELPERS_H
#define SCST_RS_HELPERS_H

#include <linux/kobject.h>
#include <linux/poll.h>
#include <linux/sysfs.h>
#include <linux/wait.h>

struct kobject *scst_rs_kobject_create_and_add(const char *name,
					       struct kobject *parent);
struct kobject *scst_rs_kernel_kobj(void);
void scst_rs_sysfs_attr_init(struct attribute *attr);
void scst_rs_sysfs_remove_file(struct kobject *kobj,
			       const struct attribute *attr);
void scst_rs_sysfs_remove_link(struct kobject *kobj, const char *name);


/* Backing files (file_helpers.c) and their bios (bio_helpers.c). */
struct file;
struct scatterlist;
struct file *scst_rs_file_open(const char *path, bool read_only, bool direct,
			       bool dsync);
struct file *scst_rs_file_create(const char *path);
void scst_rs_file_close(struct file *file);
u64 scst_rs_file_size(struct file *file);
bool scst_rs_file_is_bdev(struct file *file);
bool scst_rs_file_is_regular(struct file *file);
bool scst_rs_file_can_nowait(struct file *file);
ssize_t scst_rs_file_rw_sg(struct file *file, struct scatterlist *sgl,
			   unsigned int nents, size_t skip, size_t len,
			   loff_t pos, bool write, bool dsync, bool nowait);
ssize_t scst_rs_file_read_nowait(struct file *file, struct scatterlist *sgl,
				 unsigned int nents, size_t skip, size_t len,
				 loff_t pos);
ssize_t scst_rs_file_read(struct file *file, void *buf, size_t len, loff_t pos);
ssize_t scst_rs_file_write(struct file *file, const void *buf, size_t len,
			   loff_t pos);
int scst_rs_file_sync(struct file *file, loff_t start, loff_t end);
int scst_rs_file_punch_hole(struct file *file, loff_t pos, loff_t len);
loff_t scst_rs_file_seek(struct file *file, loff_t pos, bool hole);
bool scst_rs_file_bios_nowait(struct file *file);
unsigned int scst_rs_file_physical_block_size(struct file *file);
bool scst_rs_file_atomic_write_unit(struct file *file, u32 *min, u32 *max);
int scst_rs_file_submit_bios(struct file *file, struct scatterlist *sgl,
			     unsigned int nents, size_t skip, size_t len,
			     u64 pos, bool write, bool fua, bool atomic,
			     bool nowait, void (*done)(void *ctx, int err),
			     void *ctx);
size_t scst_rs_sg_copy_from_buffer(struct scatterlist *sgl, unsigned int nents,
				   const void *buf, size_t len, size_t skip);
size_t scst_rs_sg_copy_to_buffer(struct scatterlist *sgl, unsigned int nents,
				 void *buf, size_t len, size_t skip);
size_t scst_rs_sg_zero(struct scatterlist *sgl, unsigned int nents,
		       size_t len, size_t skip);

/* The scst_local SCSI host (scsi_host_helpers.c). */
struct Scsi_Host;
struct scsi_cmnd;
struct Scsi_Host *scst_rs_local_host_add(void *ops, unsigned int max_lun);
void scst_rs_local_host_scan(struct Scsi_Host *shost);
void scst_rs_local_host_rescan(struct Scsi_Host *shost, const u64 *luns,
			       size_t nr);
void scst_rs_local_host_remove(struct Scsi_Host *shost);
unsigned int scst_rs_local_host_no(struct Scsi_Host *shost);
struct kobject *scst_rs_local_host_kobj(struct Scsi_Host *shost);
const u8 *scst_rs_cmd_cdb(struct scsi_cmnd *cmd, unsigned int *len);
u64 scst_rs_cmd_lun(struct scsi_cmnd *cmd);
u32 scst_rs_cmd_tag(struct scsi_cmnd *cmd);
int scst_rs_cmd_direction(struct scsi_cmnd *cmd);
struct scatterlist *scst_rs_cmd_sg(struct scsi_cmnd *cmd, unsigned int *nents,
				   unsigned int *len);
void scst_rs_cmd_done(struct scsi_cmnd *cmd, u8 status, const u8 *sense,
		      unsigned int sense_len, unsigned int resid, bool error);

/* Pass-through devices and their requests (scsi_pt_helpers.c). */
struct scsi_device;
struct scst_rs_pt;
struct scsi_device *scst_rs_sdev_get(unsigned int host, unsigned int channel,
				     unsigned int id, u64 lun);
void scst_rs_sdev_put(struct scsi_device *sdev);
u8 scst_rs_sdev_type(struct scsi_device *sdev);
bool scst_rs_sdev_online(struct scsi_device *sdev);
u64 scst_rs_sdev_bytes(struct scsi_device *sdev);
struct scst_rs_pt *scst_rs_pt_new(struct scsi_device *sdev, const u8 *cdb,
				  unsigned int cdb_len, bool write, size_t len,
				  unsigned int timeout_ms, int retries);
void scst_rs_pt_get(struct scst_rs_pt *pt);
void scst_rs_pt_abort(struct scst_rs_pt *pt);
void scst_rs_pt_put(struct scst_rs_pt *pt);
int scst_rs_pt_start(struct scst_rs_pt *pt, struct scatterlist *sgl,
		     unsigned int nents, void (*done)(void *ctx), void *ctx);
bool scst_rs_pt_outcome(struct scst_rs_pt *pt, int *result,
			unsigned int *resid, u8 *sense, unsigned int sense_max,
			unsigned int *sense_len);
size_t scst_rs_pt_copy_in(struct scst_rs_pt *pt, struct scatterlist *sgl,
			  unsigned int nents, size_t len);
int scst_rs_sdev_watch_start(void (*removed)(void *ctx, unsigned int host,
					     unsigned int channel,
					     unsigned int id, u64 lun),
			     void *ctx);
void scst_rs_sdev_watch_stop(void);

/* Kernel TCP sockets, page buffers, owned workqueues (net_helpers.c). */
struct socket;
struct scst_rs_pages;
struct workqueue_struct;
int scst_rs_tcp_listen(bool ipv6, const u8 *addr, u16 port, int backlog,
		       struct socket **out);
int scst_rs_sock_accept(struct socket *listener, struct socket **out);
void scst_rs_sock_shutdown(struct socket *sock);
void scst_rs_sock_release(struct socket *sock);
int scst_rs_sock_addr(struct socket *sock, bool peer, char *buf, size_t len);
int scst_rs_sock_local_ip(struct socket *sock, char *buf, size_t len);
int scst_rs_sock_recv(struct socket *sock, void *buf, size_t len,
		      unsigned int stall_ms);
bool scst_rs_sock_rx_pending(struct socket *sock);
void scst_rs_sock_set_cork(struct socket *sock, bool on);
int scst_rs_sock_recv_idle(struct socket *sock, void *buf, size_t len,
			   unsigned int idle_ms, unsigned int stall_ms);
u32 scst_rs_crc32c(u32 crc, const void *buf, size_t len);
u32 scst_rs_crc32c_sg(u32 crc, struct scatterlist *sgl, unsigned int nents,
		      size_t skip, size_t len);
int scst_rs_sock_recv_sg(struct socket *sock, struct scatterlist *sgl,
			 unsigned int nents, size_t skip, size_t len,
			 unsigned int stall_ms);
int scst_rs_sock_send(struct socket *sock, const void *const *bufs,
		      const size_t *lens, size_t nr, bool more);
int scst_rs_sock_send_sg(struct socket *sock, const void *head, size_t head_len,
			 struct scatterlist *sgl, unsigned int nents,
			 size_t skip, size_t len, const void *tail,
			 size_t tail_len, bool more, bool by_ref);
struct scst_rs_pages *scst_rs_pages_alloc(size_t len);
void scst_rs_pages_free(struct scst_rs_pages *p);
struct scatterlist *scst_rs_pages_sg(struct scst_rs_pages *p,
				     unsigned int *nents);
struct workqueue_struct *scst_rs_alloc_workqueue(const char *name, bool wide);
bool scst_rs_net_ratelimit(void);
void scst_rs_destroy_workqueue(struct workqueue_struct *wq);
void scst_rs_drain_workqueue(struct workqueue_struct *wq);
int scst_rs_shash_digest(const char *alg, const void *const *bufs,
			 const size_t *lens, size_t nr, u8 *out, size_t out_len);
void scst_rs_random_bytes(void *buf, size_t len);

/* /dev/scst_user (user_helpers.c). */
struct scst_rs_pollq {
	wait_queue_head_t head;
};
struct scst_rs_ubuf;
int scst_rs_misc_register(const char *name, void *ctx);
void scst_rs_misc_deregister(void);
struct scst_rs_pollq *scst_rs_pollq_alloc(void);
void scst_rs_pollq_wake(struct scst_rs_pollq *q);
void scst_rs_pollq_free(struct scst_rs_pollq *q);
struct scst_rs_ubuf *scst_rs_ubuf_pin(unsigned long addr, size_t len,
				      int *err);
void scst_rs_ubuf_unpin(struct scst_rs_ubuf *b);
struct scatterlist *scst_rs_ubuf_sg(struct scst_rs_ubuf *b,
				    unsigned int *nents);
size_t scst_rs_sg_copy_sg(struct scatterlist *dst, unsigned int dst_nents,
			  struct scatterlist *src, unsigned int src_nents,
			  size_t len);
void scst_rs_msleep(unsigned int ms);

/*
 * Poll masks as this architecture defines them (bindgen takes an enum's
 * value from the compiler; the __poll_t casts of the macros it cannot).
 */
enum scst_rs_poll_mask {
	SCST_RS_POLL_IN = (__force unsigned int)(EPOLLIN | EPOLLRDNORM),
	SCST_RS_POLL_ERR = (__force unsigned int)EPOLLERR,
};

#ifndef __BINDGEN__
/* Implemented in Rust (rust/misc.rs). */
int scst_rs_misc_cb_open(void *ctx, void **private);
void scst_rs_misc_cb_release(void *private);
long scst_rs_misc_cb_ioctl(void *private, unsigned int cmd, unsigned long arg,
			   bool nonblock);
unsigned int scst_rs_misc_cb_poll(void *private, struct scst_rs_pollq **q);
#endif

/* The RDMA stack, through scst_srpt.ko (rdma_helpers.c, rdma_ops.h). */
#include "rdma_ops.h"
int scst_rs_rdma_set_handler(void *handler);
const struct scst_srpt_params *scst_rs_srpt_params(void);
int scst_rs_ib_register_client(void);
void scst_rs_ib_unregister_client(void);
const char *scst_rs_ib_device_name(struct ib_device *dev);
u32 scst_rs_ib_first_port(struct ib_device *dev);
u32 scst_rs_ib_last_port(struct ib_device *dev);
int scst_rs_ib_port_gid(struct ib_device *dev, u32 port, u8 *gid);
u64 scst_rs_ib_node_guid(struct ib_device *dev);
const char *scst_rs_ib_link_layer(struct ib_device *dev, u32 port);
u32 scst_rs_ib_comp_vectors(struct ib_device *dev);
struct scst_rs_listener;
struct scst_rs_listener *scst_rs_cm_listen(u16 port, void *ctx, int *err);
void scst_rs_cm_destroy(struct scst_rs_listener *l);
int scst_rs_cm_reject(struct rdma_cm_id *id, const void *data, u8 len);
struct ib_device *scst_rs_cm_device(struct rdma_cm_id *id);
u32 scst_rs_cm_port(struct rdma_cm_id *id);
size_t scst_rs_cm_peer_name(struct rdma_cm_id *id, char *buf, size_t len);

/* What a CM id's context points to (an int first). */
enum { SCST_RS_CM_LISTENER = 1, SCST_RS_CM_CHANNEL = 2 };

/* Connected channels (rdma_channel.c). */
struct scst_rs_ch;
struct scst_rs_srq;
struct scst_rs_xfer;
struct scatterlist;
struct ib_device;

/* What a channel is made with: asked for, then given. */
struct scst_rs_ch_config {
	/* Receive units, and the largest request they take. */
	u32 rq_size;
	u32 req_size;
	/* Send units (at most rq_size), and the largest response. */
	u32 tx_count;
	u32 rsp_size;
	/* Send queue entries, half of them for RDMA transfers. */
	u32 sq_size;
	/* The completion vector its CQ should take; -1: the pool's choice. */
	int comp_vector;
	/*
	 * The shared receive queue its requests arrive in, whose request
	 * size is req_size; NULL: a ring of rq_size units of its own.
	 */
	struct scst_rs_srq *srq;
};

/* What a channel's owner is told (scst_rs_ch_event()). */
enum {
	SCST_RS_CH_ESTABLISHED = 1,
	SCST_RS_CH_CLOSED = 2,
	SCST_RS_CH_FAILED = 3,
};

struct scst_rs_srq *scst_rs_srq_create(struct ib_device *dev, u32 size,
				       u32 req_size, int *err);
u32 scst_rs_srq_size(const struct scst_rs_srq *srq);
void scst_rs_srq_get(struct scst_rs_srq *srq);
void scst_rs_srq_put(struct scst_rs_srq *srq);
struct scst_rs_ch *scst_rs_ch_create(struct rdma_cm_id *id,
				     struct scst_rs_ch_config *cfg,
				     void *owner, int *err);
int scst_rs_ch_accept(struct scst_rs_ch *ch, const void *data, u8 len);
void scst_rs_ch_abandon(struct scst_rs_ch *ch);
void scst_rs_ch_get(struct scst_rs_ch *ch);
bool scst_rs_ch_tryget(struct scst_rs_ch *ch);
void scst_rs_ch_put(struct scst_rs_ch *ch);
void scst_rs_ch_close(struct scst_rs_ch *ch);
void scst_rs_ch_report(void);
int scst_rs_ch_send(struct scst_rs_ch *ch, u32 slot, const void *data,
		    u32 len, struct scst_rs_xfer *x);
int scst_rs_ch_read(struct scst_rs_ch *ch, struct scst_rs_xfer *x,
		    u64 cookie);
struct scst_rs_xfer *scst_rs_xfer_alloc(struct scst_rs_ch *ch, u32 max,
					bool write, u32 slot);
int scst_rs_xfer_add(struct scst_rs_xfer *x, struct scatterlist *sgl,
		     u32 nents, u32 offset, u32 len, u64 remote, u32 rkey);
void scst_rs_xfer_free(struct scst_rs_xfer *x);

#endif /* SCST_RS_HELPERS_H */
