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
#include <linux/slab.h>
#include <linux/wait.h>
#include <net/net_namespace.h>
#include <rdma/ib_cm.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>

#include "helpers.h"
#include "rdma_internal.h"

/* Rust (rust/rdma.rs). */
int scst_rs_rdma_attach(void *handler);
void scst_rs_rdma_detach(void *handler);
int scst_rs_ib_add(void *handler, struct ib_device *dev, void **data);
void scst_rs_ib_remove(void *handler, struct ib_device *dev, void *data);
int scst_rs_cm_connect_request(void *ctx, struct rdma_cm_id *id,
			       const void *data, u8 len);

/*
 * Serializes attach, detach and the handler's coming and going. Under it,
 * `scst_rs_rdma` is set only while `handler` is, and the IB client registered only
 * while `scst_rs_rdma` is set.
 */
static DEFINE_MUTEX(rdma_lock);
static void *handler;
const struct scst_rdma_ops *scst_rs_rdma;
struct workqueue_struct *scst_rs_rdma_wq;
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

void scst_rs_rdma_object_get(void)
{
	atomic_inc(&live_objects);
}

void scst_rs_rdma_object_put(void)
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
	scst_rs_rdma->ib_set_client_data(dev, &client, data);
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
	else if (!h && WARN_ON(scst_rs_rdma))
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
		scst_rs_rdma->ib_unregister_client(&client);
		client_registered = false;
	}
	while (!wait_event_timeout(live_objects_wait,
				   !atomic_read(&live_objects), 10 * HZ))
		pr_warn("scst: scst_srpt unload waits for %d RDMA objects\n",
			atomic_read(&live_objects));
	/* The last object's work may still be returning. */
	destroy_workqueue(scst_rs_rdma_wq);
	scst_rs_rdma_wq = NULL;
}

int scst_rdma_attach(const struct scst_rdma_ops *o,
		     const struct scst_srpt_params *p)
{
	int ret;

	if (o->version != SCST_RDMA_OPS_VERSION ||
	    o->size != sizeof(*o)) {
		pr_err("scst: scst_srpt.ko was built for another scst.ko\n");
		return -EINVAL;
	}
	mutex_lock(&rdma_lock);
	if (!handler) {
		ret = -ENODEV;
		goto out;
	}
	if (scst_rs_rdma) {
		ret = -EBUSY;
		goto out;
	}
	scst_rs_rdma_wq = alloc_workqueue("scst_rdma",
					  WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!scst_rs_rdma_wq) {
		ret = -ENOMEM;
	} else {
		scst_rs_rdma = o;
		params = *p;
		ret = scst_rs_rdma_attach(handler);
		if (ret) {
			quiesce();
			scst_rs_rdma = NULL;
		}
	}
out:
	mutex_unlock(&rdma_lock);
	return ret;
}
EXPORT_SYMBOL_GPL(scst_rdma_attach);

void scst_rdma_detach(const struct scst_rdma_ops *o)
{
	mutex_lock(&rdma_lock);
	if (scst_rs_rdma == o) {
		scst_rs_rdma_detach(handler);
		quiesce();
		scst_rs_rdma = NULL;
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
	ret = scst_rs_rdma->ib_register_client(&client);
	client_registered = !ret;
	return ret;
}

void scst_rs_ib_unregister_client(void)
{
	if (!client_registered)
		return;
	scst_rs_rdma->ib_unregister_client(&client);
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
	int ret = scst_rs_rdma->rdma_query_gid(dev, port, 0, &g);

	if (!ret)
		memcpy(gid, g.raw, sizeof(g.raw));
	return ret;
}

u64 scst_rs_ib_node_guid(struct ib_device *dev)
{
	return be64_to_cpu(dev->node_guid);
}

/* The port's link layer, named as ib_core's sysfs names it. */
const char *scst_rs_ib_link_layer(struct ib_device *dev, u32 port)
{
	switch (scst_rs_rdma->rdma_port_get_link_layer(dev, port)) {
	case IB_LINK_LAYER_INFINIBAND:
		return "InfiniBand";
	case IB_LINK_LAYER_ETHERNET:
		return "Ethernet";
	default:
		return "Unknown";
	}
}

/* The completion vectors a CQ of the device may take. */
u32 scst_rs_ib_comp_vectors(struct ib_device *dev)
{
	return dev->num_comp_vectors;
}

/*
 * The RDMA/CM handler of the listener and of the channels accepted
 * through it (rdma_channel.c), told apart by what id->context points to.
 * It runs in the CM's process context. A connect request's new id is the
 * request's, destroyed by the CM when the handler returns non-zero (an id
 * is never destroyed inside its own handler); it stays when the request
 * is accepted, with the channel as its context from then on.
 */
struct scst_rs_listener {
	int kind;
	void *ctx;
	/*
	 * One id per address family: an IPv6 wildcard taking IPv4 too works
	 * for RoCE, but not for iWARP (siw refuses the mapped addresses).
	 */
	struct rdma_cm_id *v4;
	struct rdma_cm_id *v6;
};

static int cm_handler(struct rdma_cm_id *id, struct rdma_cm_event *event)
{
	const int *kind = id->context;
	struct scst_rs_listener *l;

	if (*kind == SCST_RS_CM_CHANNEL)
		return scst_rs_ch_cm_event(id, event);
	if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST)
		return 0;
	l = id->context;
	return scst_rs_cm_connect_request(l->ctx, id,
					  event->param.conn.private_data,
					  event->param.conn.private_data_len);
}

static struct rdma_cm_id *cm_listen_on(struct sockaddr *addr,
				       struct scst_rs_listener *l)
{
	struct rdma_cm_id *id;
	int ret;

	id = scst_rs_rdma->create_kernel_id(&init_net, cm_handler, l,
					    RDMA_PS_TCP, IB_QPT_RC, "scst_srpt");
	if (IS_ERR(id))
		return id;
	ret = addr->sa_family == AF_INET6 ?
		scst_rs_rdma->rdma_set_afonly(id, 1) : 0;
	if (!ret)
		ret = scst_rs_rdma->rdma_bind_addr(id, addr);
	if (!ret)
		ret = scst_rs_rdma->rdma_listen(id, 128);
	if (ret) {
		scst_rs_rdma->rdma_destroy_id(id);
		return ERR_PTR(ret);
	}
	return id;
}

/*
 * Listens on `port` of every IPv4 and IPv6 address (of either alone where
 * the other cannot be had, such as IPv6 turned off).
 */
struct scst_rs_listener *scst_rs_cm_listen(u16 port, void *ctx, int *err)
{
	struct sockaddr_in6 any6 = {
		.sin6_family = AF_INET6,
		.sin6_port = cpu_to_be16(port),
	};
	struct sockaddr_in any4 = {
		.sin_family = AF_INET,
		.sin_port = cpu_to_be16(port),
	};
	struct scst_rs_listener *l = kzalloc(sizeof(*l), GFP_KERNEL);
	struct rdma_cm_id *id;

	if (!l) {
		*err = -ENOMEM;
		return NULL;
	}
	l->kind = SCST_RS_CM_LISTENER;
	l->ctx = ctx;
	id = cm_listen_on((struct sockaddr *)&any4, l);
	if (!IS_ERR(id))
		l->v4 = id;
	else
		*err = PTR_ERR(id);
	id = cm_listen_on((struct sockaddr *)&any6, l);
	if (!IS_ERR(id))
		l->v6 = id;
	else if (!l->v4)
		*err = PTR_ERR(id);
	if (!l->v4 && !l->v6) {
		kfree(l);
		return NULL;
	}
	scst_rs_rdma_object_get();
	return l;
}

/*
 * Destroys a listener. Waits for its ids' handlers to return: never call
 * it from one of them.
 */
void scst_rs_cm_destroy(struct scst_rs_listener *l)
{
	if (l->v4)
		scst_rs_rdma->rdma_destroy_id(l->v4);
	if (l->v6)
		scst_rs_rdma->rdma_destroy_id(l->v6);
	kfree(l);
	scst_rs_rdma_object_put();
}

int scst_rs_cm_reject(struct rdma_cm_id *id, const void *data, u8 len)
{
	return scst_rs_rdma->rdma_reject(id, data, len, IB_CM_REJ_CONSUMER_DEFINED);
}

struct ib_device *scst_rs_cm_device(struct rdma_cm_id *id)
{
	return id->device;
}

u32 scst_rs_cm_port(struct rdma_cm_id *id)
{
	return id->port_num;
}

/* The peer's address of a connect request's id, as text; its length. */
size_t scst_rs_cm_peer_name(struct rdma_cm_id *id, char *buf, size_t len)
{
	const struct sockaddr *sa = (struct sockaddr *)&id->route.addr.dst_addr;
	int n;

	switch (sa->sa_family) {
	case AF_INET:
		n = snprintf(buf, len, "%pI4",
			     &((const struct sockaddr_in *)sa)->sin_addr);
		break;
	case AF_INET6:
		n = snprintf(buf, len, "%pI6",
			     &((const struct sockaddr_in6 *)sa)->sin6_addr);
		break;
	default:
		n = snprintf(buf, len, "unknown");
		break;
	}
	return min_t(size_t, n, len ? len - 1 : 0);
}
