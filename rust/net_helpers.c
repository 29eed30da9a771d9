// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel TCP sockets for the iSCSI target (rust/net.rs), page buffers that
 * commands own as scatterlists (rust/pages.rs), and a workqueue the module
 * owns, so that unloading waits for its long-running works.
 */
#include <crypto/hash.h>
#include <linux/crc32c.h>
#include <linux/highmem.h>
#include <linux/bvec.h>
#include <linux/random.h>
#include <linux/err.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/mm.h>
#include <linux/net.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "helpers.h"
#include "sg_iter.h"

int scst_rs_tcp_listen(bool ipv6, const u8 *addr, u16 port, int backlog,
		       struct socket **out)
{
	struct sockaddr_storage ss = {};
	struct socket *sock;
	int len, err;

	if (ipv6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, addr, 16);
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, 4);
		len = sizeof(*sin);
	}
	err = sock_create_kern(&init_net, ss.ss_family, SOCK_STREAM,
			       IPPROTO_TCP, &sock);
	if (err)
		return err;
	sock_set_reuseaddr(sock->sk);
	/* [::] and 0.0.0.0 are separate portals, as SCST has them. */
	if (ipv6)
		ip6_sock_set_v6only(sock->sk);
	err = kernel_bind(sock, (struct sockaddr *)&ss, len);
	if (!err)
		err = kernel_listen(sock, backlog);
	if (err) {
		sock_release(sock);
		return err;
	}
	*out = sock;
	return 0;
}

int scst_rs_sock_accept(struct socket *listener, struct socket **out)
{
	int err = kernel_accept(listener, out, 0);

	if (!err)
		tcp_sock_set_nodelay((*out)->sk);
	return err;
}

void scst_rs_sock_shutdown(struct socket *sock)
{
	kernel_sock_shutdown(sock, SHUT_RDWR);
}

void scst_rs_sock_release(struct socket *sock)
{
	sock_release(sock);
}

/* Formats the local or peer address as "a.b.c.d:port" or "[v6]:port". */
int scst_rs_sock_addr(struct socket *sock, bool peer, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	int err;

	err = peer ? kernel_getpeername(sock, (struct sockaddr *)&ss) :
		     kernel_getsockname(sock, (struct sockaddr *)&ss);
	if (err < 0)
		return err;
	return snprintf(buf, len, "%pISpc", &ss);
}

/* The local address alone (no port), for SendTargets' TargetAddress. */
int scst_rs_sock_local_ip(struct socket *sock, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	int err;

	err = kernel_getsockname(sock, (struct sockaddr *)&ss);
	if (err < 0)
		return err;
	if (ss.ss_family == AF_INET6)
		return snprintf(buf, len, "[%pI6c]", &((struct sockaddr_in6 *)&ss)->sin6_addr);
	return snprintf(buf, len, "%pI4", &((struct sockaddr_in *)&ss)->sin_addr);
}

/*
 * Receives until @iter is full. With @idle, waits for the first byte at
 * most @idle_ms (0: for ever) and then gives up with -EAGAIN (the caller
 * pings). With @stall_ms, gives up with -ETIMEDOUT if nothing arrives for
 * that long once the first byte is in (from the start without @idle): a
 * peer that stops in the middle of a PDU does not hold its connection for
 * ever. 0: no limit.
 */
static int recv_iter_timed(struct socket *sock, struct iov_iter *iter,
			   bool idle, unsigned int idle_ms,
			   unsigned int stall_ms)
{
	struct msghdr msg = { .msg_flags = MSG_NOSIGNAL };
	size_t want = iov_iter_count(iter);
	long stall = stall_ms ? msecs_to_jiffies(stall_ms) : MAX_SCHEDULE_TIMEOUT;
	long first = idle_ms ? msecs_to_jiffies(idle_ms) : MAX_SCHEDULE_TIMEOUT;
	/*
	 * Under a limit, each receive returns what has arrived, so that its
	 * timeout measures a silence; MSG_WAITALL would time the whole rest.
	 */
	int flags = MSG_NOSIGNAL | (stall_ms || idle ? 0 : MSG_WAITALL);
	int err = 0;

	WRITE_ONCE(sock->sk->sk_rcvtimeo, idle ? first : stall);
	msg.msg_iter = *iter;
	while (msg_data_left(&msg)) {
		bool started = msg_data_left(&msg) != want;
		int n = sock_recvmsg(sock, &msg, flags);

		if (n == 0) {
			err = -ECONNRESET;
			break;
		}
		if (n > 0) {
			if (!started && idle)
				WRITE_ONCE(sock->sk->sk_rcvtimeo, stall);
			continue;
		}
		if (n == -EAGAIN) {
			if (!started && idle) {
				err = -EAGAIN;
				break;
			}
			if (stall_ms) {
				err = -ETIMEDOUT;
				break;
			}
			continue;
		}
		if (n == -EINTR || n == -ERESTARTSYS)
			continue;
		err = n;
		break;
	}
	WRITE_ONCE(sock->sk->sk_rcvtimeo, MAX_SCHEDULE_TIMEOUT);
	return err;
}

/*
 * Receives exactly @len bytes into @buf, or -EAGAIN if none arrives within
 * @idle_ms (0: wait for ever), or -ETIMEDOUT if the rest stalls for
 * @stall_ms (see recv_iter_timed()).
 */
int scst_rs_sock_recv_idle(struct socket *sock, void *buf, size_t len,
			   unsigned int idle_ms, unsigned int stall_ms)
{
	struct kvec vec = { .iov_base = buf, .iov_len = len };
	struct iov_iter iter;

	iov_iter_kvec(&iter, ITER_DEST, &vec, 1, len);
	return recv_iter_timed(sock, &iter, true, idle_ms, stall_ms);
}

/* CRC32C (no inversion) of a buffer, with the kernel's implementation. */
u32 scst_rs_crc32c(u32 crc, const void *buf, size_t len)
{
	return crc32c(crc, buf, len);
}

/* CRC32C (no inversion) of @len bytes of a scatterlist from @skip. */
u32 scst_rs_crc32c_sg(u32 crc, struct scatterlist *sgl, unsigned int nents,
		      size_t skip, size_t len)
{
	struct sg_mapping_iter miter;

	sg_miter_start(&miter, sgl, nents, SG_MITER_FROM_SG);
	if (!sg_miter_skip(&miter, skip)) {
		sg_miter_stop(&miter);
		return crc;
	}
	while (len && sg_miter_next(&miter)) {
		size_t n = min(len, miter.length);

		crc = crc32c(crc, miter.addr, n);
		len -= n;
	}
	sg_miter_stop(&miter);
	return crc;
}

/*
 * Receives exactly @len bytes into @buf; -ECONNRESET when the peer closed,
 * -ETIMEDOUT when nothing arrives for @stall_ms (0: no limit).
 */
int scst_rs_sock_recv(struct socket *sock, void *buf, size_t len,
		      unsigned int stall_ms)
{
	struct kvec vec = { .iov_base = buf, .iov_len = len };
	struct iov_iter iter;

	iov_iter_kvec(&iter, ITER_DEST, &vec, 1, len);
	return recv_iter_timed(sock, &iter, false, 0, stall_ms);
}

/* Received bytes nobody has read yet: more requests are already waiting. */
bool scst_rs_sock_rx_pending(struct socket *sock)
{
	return !skb_queue_empty_lockless(&sock->sk->sk_receive_queue) ||
	       READ_ONCE(sock->sk->sk_backlog.tail);
}

/*
 * Corked, TCP holds partial segments back (for at most 200 ms) so that
 * responses sent in a row share segments; uncorking sends what it holds.
 */
void scst_rs_sock_set_cork(struct socket *sock, bool on)
{
	tcp_sock_set_cork(sock->sk, on);
}

#define SCST_RS_MAX_SEND_BUFS 6

/* Receives @len bytes into the scatterlist, @skip bytes in: no copy. */
int scst_rs_sock_recv_sg(struct socket *sock, struct scatterlist *sgl,
			 unsigned int nents, size_t skip, size_t len,
			 unsigned int stall_ms)
{
	struct scst_rs_bvecs b;
	struct iov_iter iter;
	int err;

	if (!len)
		return 0;
	err = scst_rs_sg_iter(&b, &iter, ITER_DEST, sgl, nents, skip, len);
	if (err)
		return err;
	err = recv_iter_timed(sock, &iter, false, 0, stall_ms);
	scst_rs_bvecs_release(&b);
	return err;
}

static int send_iter(struct socket *sock, struct msghdr *msg)
{
	while (msg_data_left(msg)) {
		int n = sock_sendmsg(sock, msg);

		if (n < 0) {
			if (n == -EINTR || n == -ERESTARTSYS || n == -EAGAIN)
				continue;
			return n;
		}
		if (n == 0)
			return -ECONNRESET;
	}
	return 0;
}

/* Sends the @nr buffers in one message; @more: more PDUs follow. */
int scst_rs_sock_send(struct socket *sock, const void *const *bufs,
		      const size_t *lens, size_t nr, bool more)
{
	struct msghdr msg = { .msg_flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0) };
	struct kvec vec[SCST_RS_MAX_SEND_BUFS];
	size_t len = 0, i;

	if (nr > ARRAY_SIZE(vec))
		return -EINVAL;
	for (i = 0; i < nr; i++) {
		vec[i].iov_base = (void *)bufs[i];
		vec[i].iov_len = lens[i];
		len += lens[i];
	}
	iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, vec, nr, len);
	return send_iter(sock, &msg);
}

/*
 * Sends @head, then @len bytes of the scatterlist from @skip, then @tail
 * (padding, digest). With @by_ref the pages go to TCP by reference
 * (MSG_SPLICE_PAGES): TCP holds them until acknowledged, so the caller may
 * drop its own references right after but must not change their content.
 * Without, TCP copies them.
 */
int scst_rs_sock_send_sg(struct socket *sock, const void *head, size_t head_len,
			 struct scatterlist *sgl, unsigned int nents,
			 size_t skip, size_t len, const void *tail,
			 size_t tail_len, bool more, bool by_ref)
{
	struct msghdr msg = { .msg_flags = MSG_NOSIGNAL | MSG_MORE };
	struct scst_rs_bvecs b;
	struct kvec kv;
	int err;

	kv.iov_base = (void *)head;
	kv.iov_len = head_len;
	iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, &kv, 1, head_len);
	err = send_iter(sock, &msg);
	if (!err && len) {
		err = scst_rs_sg_iter(&b, &msg.msg_iter, ITER_SOURCE, sgl,
				      nents, skip, len);
		if (err)
			return err;
		msg.msg_flags = MSG_NOSIGNAL | (by_ref ? MSG_SPLICE_PAGES : 0) |
				((tail_len || more) ? MSG_MORE : 0);
		err = send_iter(sock, &msg);
		scst_rs_bvecs_release(&b);
	}
	if (!err && tail_len) {
		msg.msg_flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0);
		kv.iov_base = (void *)tail;
		kv.iov_len = tail_len;
		iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, &kv, 1, tail_len);
		err = send_iter(sock, &msg);
	}
	return err;
}

/* Page buffers: @len bytes in order-0 pages, described by a scatterlist. */
struct scst_rs_pages {
	unsigned int nents;
	size_t len;
	struct scatterlist sgl[];
};

struct scst_rs_pages *scst_rs_pages_alloc(size_t len)
{
	unsigned int n = DIV_ROUND_UP(len, PAGE_SIZE), i;
	struct scst_rs_pages *p;

	p = kvmalloc(struct_size(p, sgl, max(n, 1u)), GFP_KERNEL);
	if (!p)
		return NULL;
	sg_init_table(p->sgl, max(n, 1u));
	p->nents = n;
	p->len = len;
	for (i = 0; i < n; i++) {
		struct page *page = alloc_page(GFP_KERNEL);
		size_t l = min_t(size_t, PAGE_SIZE, len - (size_t)i * PAGE_SIZE);

		if (!page) {
			p->nents = i;
			scst_rs_pages_free(p);
			return NULL;
		}
		sg_set_page(&p->sgl[i], page, l, 0);
	}
	return p;
}

void scst_rs_pages_free(struct scst_rs_pages *p)
{
	unsigned int i;

	for (i = 0; i < p->nents; i++)
		put_page(sg_page(&p->sgl[i]));
	kvfree(p);
}

struct scatterlist *scst_rs_pages_sg(struct scst_rs_pages *p,
				     unsigned int *nents)
{
	*nents = p->nents;
	return p->sgl;
}

struct workqueue_struct *scst_rs_alloc_workqueue(const char *name, bool wide)
{
	return alloc_workqueue("%s", WQ_UNBOUND,
			       wide ? WQ_UNBOUND_MAX_ACTIVE : 0, name);
}

void scst_rs_destroy_workqueue(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}

void scst_rs_drain_workqueue(struct workqueue_struct *wq)
{
	drain_workqueue(wq);
}

/*
 * One digest over @nr buffers with the kernel's @alg ("md5", "sha1",
 * "sha256"), for CHAP; returns the digest length or an error.
 */
int scst_rs_shash_digest(const char *alg, const void *const *bufs,
			 const size_t *lens, size_t nr, u8 *out, size_t out_len)
{
	struct crypto_shash *tfm;
	size_t i;
	int err, len;

	tfm = crypto_alloc_shash(alg, 0, 0);
	if (IS_ERR(tfm))
		return PTR_ERR(tfm);
	len = crypto_shash_digestsize(tfm);
	if (len > out_len) {
		err = -EINVAL;
		goto out;
	}
	{
		SHASH_DESC_ON_STACK(desc, tfm);

		desc->tfm = tfm;
		err = crypto_shash_init(desc);
		for (i = 0; !err && i < nr; i++)
			err = crypto_shash_update(desc, bufs[i], lens[i]);
		if (!err)
			err = crypto_shash_final(desc, out);
		shash_desc_zero(desc);
	}
out:
	crypto_free_shash(tfm);
	return err ? err : len;
}

void scst_rs_random_bytes(void *buf, size_t len)
{
	get_random_bytes(buf, len);
}

bool scst_rs_net_ratelimit(void)
{
	return net_ratelimit();
}
