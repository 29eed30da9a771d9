// SPDX-License-Identifier: GPL-2.0
/*
 * scst.ko's side of the RDMA stack: the table scst_srpt.ko attaches (see
 * rdma_ops.h), the IB client the SRP target registers through it, and the
 * static inlines of the RDMA headers, which link nothing.
 */
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/wait.h>
#include <net/net_namespace.h>
#include <rdma/ib_cm.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>

#include "helpers.h"
#include "rdma_ops.h"

/* Rust (rust/rdma.rs). */
int scst_rs_rdma_attach(void *handler);
void scst_rs_rdma_detach(void *handler);
int scst_rs_ib_add(void *handler, struct ib_device *dev, void **data);
void scst_rs_ib_remove(void *handler, struct ib_device *dev, void *data);
int scst_rs_cm_connect_request(void *ctx, struct rdma_cm_id *id,
			       const void *data, u8 len);

/*
 * Serializes attach, detach and the handler's coming and going. Under it,
 * `ops` is set only while `handler` is, and the IB client registered only
 * while `ops` is set.
 */
static DEFINE_MUTEX(rdma_lock);
static void *handler;
static const struct scst_rdma_ops *ops;
static struct scst_srpt_params params;
/* The IB client is registered (under rdma_lock). */
static bool client_registered;

/*
 * RDMA objects scst.ko holds (CM ids). The table stays attached until they
 * are gone: detach waits for them, so that no object can outlive the
 * functions that destroy it.
 */
static atomic_t live_objects = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(live_objects_wait);

static void object_put(void)
{
	if (atomic_dec_and_test(&live_objects))
		wake_up(&live_objects_wait);
}

static int client_add(struct ib_device *dev);
static void client_remove(struct ib_device *dev, void *data);

static struct ib_client client = {
	.name = "scst_srpt",
	.add = client_add,
	.remove = client_remove,
};

static int client_add(struct ib_device *dev)
{
	void *data = NULL;
	int ret = scst_rs_ib_add(handler, dev, &data);

	if (ret)
		return ret;
	ops->ib_set_client_data(dev, &client, data);
	return 0;
}

static void client_remove(struct ib_device *dev, void *data)
{
	scst_rs_ib_remove(handler, dev, data);
}

/* One handler at a time: set at scst.ko's load, withdrawn at its unload. */
int scst_rs_rdma_set_handler(void *h)
{
	int ret = 0;

	mutex_lock(&rdma_lock);
	if (h && handler)
		ret = -EBUSY;
	else if (!h && WARN_ON(ops))
		/* scst_srpt.ko depends on scst.ko: it cannot be attached. */
		ret = -EBUSY;
	else
		handler = h;
	mutex_unlock(&rdma_lock);
	return ret;
}

/*
 * Before the table goes: the client unregistered and every object gone,
 * whatever the handler did. A handler that left an object waits here, and
 * says so every 10 s.
 */
static void quiesce(void)
{
	if (WARN_ON(client_registered)) {
		ops->ib_unregister_client(&client);
		client_registered = false;
	}
	while (!wait_event_timeout(live_objects_wait,
				   !atomic_read(&live_objects), 10 * HZ))
		pr_warn("scst: scst_srpt unload waits for %d RDMA objects\n",
			atomic_read(&live_objects));
}

int scst_rdma_attach(const struct scst_rdma_ops *o,
		     const struct scst_srpt_params *p)
{
	int ret;

	if (o->version != SCST_RDMA_OPS_VERSION) {
		pr_err("scst: scst_srpt.ko was built for another scst.ko\n");
		return -EINVAL;
	}
	mutex_lock(&rdma_lock);
	if (!handler) {
		ret = -ENODEV;
	} else if (ops) {
		ret = -EBUSY;
	} else {
		ops = o;
		params = *p;
		ret = scst_rs_rdma_attach(handler);
		if (ret) {
			quiesce();
			ops = NULL;
		}
	}
	mutex_unlock(&rdma_lock);
	return ret;
}
EXPORT_SYMBOL_GPL(scst_rdma_attach);

void scst_rdma_detach(const struct scst_rdma_ops *o)
{
	mutex_lock(&rdma_lock);
	if (ops == o) {
		scst_rs_rdma_detach(handler);
		quiesce();
		ops = NULL;
	}
	mutex_unlock(&rdma_lock);
}
EXPORT_SYMBOL_GPL(scst_rdma_detach);

const struct scst_srpt_params *scst_rs_srpt_params(void)
{
	return &params;
}

/* Called by the handler's attach and detach only, under rdma_lock. */
int scst_rs_ib_register_client(void)
{
	int ret;

	if (client_registered)
		return -EBUSY;
	ret = ops->ib_register_client(&client);
	client_registered = !ret;
	return ret;
}

void scst_rs_ib_unregister_client(void)
{
	if (!client_registered)
		return;
	ops->ib_unregister_client(&client);
	client_registered = false;
}

/* The name array, which a rename rewrites in place (dev_name() is freed). */
const char *scst_rs_ib_device_name(struct ib_device *dev)
{
	return dev->name;
}

u32 scst_rs_ib_first_port(struct ib_device *dev)
{
	return rdma_start_port(dev);
}

u32 scst_rs_ib_last_port(struct ib_device *dev)
{
	return rdma_end_port(dev);
}

int scst_rs_ib_port_gid(struct ib_device *dev, u32 port, u8 *gid)
{
	union ib_gid g;
	int ret = ops->rdma_query_gid(dev, port, 0, &g);

	if (!ret)
		memcpy(gid, g.raw, sizeof(g.raw));
	return ret;
}

u64 scst_rs_ib_node_guid(struct ib_device *dev)
{
	return be64_to_cpu(dev->node_guid);
}

/*
 * The RDMA/CM listener. Its handler runs in the CM's process context; a
 * connect request's new id is the request's, destroyed by the CM when the
 * handler returns non-zero (an id is never destroyed inside its own
 * handler).
 */
static int cm_handler(struct rdma_cm_id *id, struct rdma_cm_event *event)
{
	if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST)
		return 0;
	return scst_rs_cm_connect_request(id->context, id,
					  event->param.conn.private_data,
					  event->param.conn.private_data_len);
}

static struct rdma_cm_id *cm_listen_on(struct sockaddr *addr, void *ctx,
				       bool any_family)
{
	struct rdma_cm_id *id;
	int ret;

	id = ops->create_kernel_id(&init_net, cm_handler, ctx, RDMA_PS_TCP,
				 IB_QPT_RC, "scst_srpt");
	if (IS_ERR(id))
		return id;
	/* The IPv6 wildcard takes IPv4 connections too. */
	ret = any_family ? ops->rdma_set_afonly(id, 0) : 0;
	if (!ret)
		ret = ops->rdma_bind_addr(id, addr);
	if (!ret)
		ret = ops->rdma_listen(id, 128);
	if (ret) {
		ops->rdma_destroy_id(id);
		return ERR_PTR(ret);
	}
	return id;
}

/* Listens on `port` of every address, IPv6 and IPv4, else IPv4 only. */
struct rdma_cm_id *scst_rs_cm_listen(u16 port, void *ctx, int *err)
{
	struct sockaddr_in6 any6 = {
		.sin6_family = AF_INET6,
		.sin6_port = cpu_to_be16(port),
	};
	struct sockaddr_in any4 = {
		.sin_family = AF_INET,
		.sin_port = cpu_to_be16(port),
	};
	struct rdma_cm_id *id;

	id = cm_listen_on((struct sockaddr *)&any6, ctx, true);
	if (IS_ERR(id))
		id = cm_listen_on((struct sockaddr *)&any4, ctx, false);
	if (IS_ERR(id)) {
		*err = PTR_ERR(id);
		return NULL;
	}
	atomic_inc(&live_objects);
	return id;
}

/* Waits for the id's handlers to return: never call it from one of them. */
void scst_rs_cm_destroy(struct rdma_cm_id *id)
{
	ops->rdma_destroy_id(id);
	object_put();
}

int scst_rs_cm_reject(struct rdma_cm_id *id, const void *data, u8 len)
{
	return ops->rdma_reject(id, data, len, IB_CM_REJ_CONSUMER_DEFINED);
}

struct ib_device *scst_rs_cm_device(struct rdma_cm_id *id)
{
	return id->device;
}

u32 scst_rs_cm_port(struct rdma_cm_id *id)
{
	return id->port_num;
}
