// SPDX-License-Identifier: GPL-2.0
/*
 * srp-raw: an SRP initiator that sends what the test tells it, byte for
 * byte, for the units no real initiator sends (malformed logins and IUs).
 *
 * Usage: srp-raw SRC_ADDR DST_ADDR PORT LOGIN_HEX
 *
 * Connects over RDMA/CM with LOGIN_HEX as the private data (the RDMA/CM
 * layout of SRP_LOGIN_REQ) and prints one of
 *   ESTABLISHED <hex>       the target accepted; its SRP_LOGIN_RSP
 *   REJECTED <status> <hex> the target rejected; its SRP_LOGIN_REJ
 *   EVENT <name>            anything else (unreachable, ...)
 * then, when established, "MR <addr> <rkey>": a 1 MiB buffer the target
 * may read and write. Then reads commands from stdin, one per line, and
 * answers each with one line:
 *   send HEX [MS]   sends the unit; prints "RECV <hex>" for the first unit
 *                   received, "DISCONNECTED", "SEND_ERROR <status>" or
 *                   "TIMEOUT" after MS milliseconds (default 5000)
 *   recv [MS]       waits for a unit without sending one, as above
 *   data OFF LEN    prints "DATA <hex>" of the buffer
 *   fill OFF HEX    writes HEX into the buffer; prints "OK"
 *   quit            disconnects and exits
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define UNIT_SIZE (64 * 1024)
#define RECV_UNITS 16
#define DATA_SIZE (1024 * 1024)

static struct rdma_event_channel *events;
static struct rdma_cm_id *id;
static struct ibv_cq *cq;
static struct ibv_mr *recv_mr, *send_mr, *data_mr;
static uint8_t *recv_buf, *send_buf, *data_buf;

static void die(const char *what)
{
	printf("ERROR %s: %s\n", what, strerror(errno));
	exit(2);
}

static void print_hex(const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		printf("%02x", b[i]);
}

static size_t parse_hex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	unsigned int byte;

	while (s[0] && s[1] && n < max && sscanf(s, "%2x", &byte) == 1) {
		out[n++] = byte;
		s += 2;
	}
	return n;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next CM event, or NULL after `ms` milliseconds. */
static struct rdma_cm_event *cm_event(long ms)
{
	struct rdma_cm_event *ev;
	long deadline = now_ms() + ms;

	for (;;) {
		if (rdma_get_cm_event(events, &ev) == 0)
			return ev;
		if (errno != EAGAIN)
			die("rdma_get_cm_event");
		if (now_ms() >= deadline)
			return NULL;
		usleep(1000);
	}
}

static void expect_event(enum rdma_cm_event_type type)
{
	struct rdma_cm_event *ev = cm_event(20000);

	if (!ev) {
		printf("EVENT timeout\n");
		exit(1);
	}
	if (ev->event != type) {
		printf("EVENT %s %d\n", rdma_event_str(ev->event), ev->status);
		exit(1);
	}
	rdma_ack_cm_event(ev);
}

static void post_recv(int unit)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(recv_buf + (size_t)unit * UNIT_SIZE),
		.length = UNIT_SIZE,
		.lkey = recv_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = unit, .sg_list = &sge, .num_sge = 1 }, *bad;

	if (ibv_post_recv(id->qp, &wr, &bad))
		die("ibv_post_recv");
}

/* Waits for a received unit, a disconnect or an error: one line. */
static void wait_unit(long ms)
{
	long deadline = now_ms() + ms;
	struct ibv_wc wc;
	struct rdma_cm_event *ev;

	for (;;) {
		int n = ibv_poll_cq(cq, 1, &wc);

		if (n < 0)
			die("ibv_poll_cq");
		if (n == 1 && wc.status != IBV_WC_SUCCESS) {
			printf("%s_ERROR %s\n", wc.opcode & IBV_WC_RECV ? "RECV" : "SEND",
			       ibv_wc_status_str(wc.status));
			return;
		}
		if (n == 1 && (wc.opcode & IBV_WC_RECV)) {
			printf("RECV ");
			print_hex(recv_buf + wc.wr_id * UNIT_SIZE, wc.byte_len);
			printf("\n");
			post_recv(wc.wr_id);
			return;
		}
		if (n == 1)
			continue; /* a send completed */
		ev = cm_event(0);
		if (ev) {
			enum rdma_cm_event_type type = ev->event;

			rdma_ack_cm_event(ev);
			if (type == RDMA_CM_EVENT_DISCONNECTED) {
				printf("DISCONNECTED\n");
				return;
			}
			printf("EVENT %s\n", rdma_event_str(type));
			return;
		}
		if (now_ms() >= deadline) {
			printf("TIMEOUT\n");
			return;
		}
		usleep(1000);
	}
}

static void send_unit(const char *hex)
{
	size_t len = parse_hex(hex, send_buf, UNIT_SIZE);
	struct ibv_sge sge = {
		.addr = (uintptr_t)send_buf, .length = len, .lkey = send_mr->lkey,
	};
	struct ibv_send_wr wr = {
		.sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;

	if (ibv_post_send(id->qp, &wr, &bad))
		die("ibv_post_send");
}

static struct ibv_mr *region(uint8_t **buf, size_t size, struct ibv_pd *pd, int access)
{
	struct ibv_mr *mr;

	*buf = calloc(1, size);
	if (!*buf)
		die("calloc");
	mr = ibv_reg_mr(pd, *buf, size, access);
	if (!mr)
		die("ibv_reg_mr");
	return mr;
}

static void resolve(const char *host, const char *port, struct addrinfo **ai)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };

	if (getaddrinfo(host, port, &hints, ai)) {
		printf("ERROR bad address %s\n", host);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	uint8_t login[256];
	size_t login_len;
	struct addrinfo *src, *dst;
	struct ibv_pd *pd;
	struct ibv_qp_init_attr qp_attr = { 0 };
	struct rdma_conn_param param = { 0 };
	struct rdma_cm_event *ev;
	char line[2 * UNIT_SIZE + 64];

	if (argc != 5) {
		fprintf(stderr, "usage: srp-raw SRC_ADDR DST_ADDR PORT LOGIN_HEX\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	login_len = parse_hex(argv[4], login, sizeof(login));
	resolve(argv[1], "0", &src);
	resolve(argv[2], argv[3], &dst);

	events = rdma_create_event_channel();
	if (!events)
		die("rdma_create_event_channel");
	if (fcntl(events->fd, F_SETFL, fcntl(events->fd, F_GETFL) | O_NONBLOCK))
		die("fcntl");
	if (rdma_create_id(events, &id, NULL, RDMA_PS_TCP))
		die("rdma_create_id");
	if (rdma_resolve_addr(id, src->ai_addr, dst->ai_addr, 5000))
		die("rdma_resolve_addr");
	expect_event(RDMA_CM_EVENT_ADDR_RESOLVED);
	if (rdma_resolve_route(id, 5000))
		die("rdma_resolve_route");
	expect_event(RDMA_CM_EVENT_ROUTE_RESOLVED);

	pd = ibv_alloc_pd(id->verbs);
	if (!pd)
		die("ibv_alloc_pd");
	cq = ibv_create_cq(id->verbs, 2 * RECV_UNITS + 8, NULL, NULL, 0);
	if (!cq)
		die("ibv_create_cq");
	qp_attr.send_cq = cq;
	qp_attr.recv_cq = cq;
	qp_attr.qp_type = IBV_QPT_RC;
	qp_attr.cap.max_send_wr = RECV_UNITS;
	qp_attr.cap.max_recv_wr = RECV_UNITS;
	qp_attr.cap.max_send_sge = 1;
	qp_attr.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, pd, &qp_attr))
		die("rdma_create_qp");
	recv_mr = region(&recv_buf, (size_t)RECV_UNITS * UNIT_SIZE, pd, IBV_ACCESS_LOCAL_WRITE);
	send_mr = region(&send_buf, UNIT_SIZE, pd, 0);
	data_mr = region(&data_buf, DATA_SIZE, pd, IBV_ACCESS_LOCAL_WRITE |
			 IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
	for (int i = 0; i < RECV_UNITS; i++)
		post_recv(i);

	/* The target reads the data-out: it needs read resources here. */
	param.private_data = login;
	param.private_data_len = login_len;
	param.responder_resources = 4;
	param.initiator_depth = 4;
	param.retry_count = 7;
	param.rnr_retry_count = 7;
	if (rdma_connect(id, &param))
		die("rdma_connect");
	ev = cm_event(20000);
	if (!ev) {
		printf("EVENT timeout\n");
		return 1;
	}
	if (ev->event == RDMA_CM_EVENT_REJECTED) {
		printf("REJECTED %d ", ev->status);
		print_hex(ev->param.conn.private_data, ev->param.conn.private_data_len);
		printf("\n");
		return 0;
	}
	if (ev->event != RDMA_CM_EVENT_ESTABLISHED) {
		printf("EVENT %s %d\n", rdma_event_str(ev->event), ev->status);
		return 0;
	}
	printf("ESTABLISHED ");
	print_hex(ev->param.conn.private_data, ev->param.conn.private_data_len);
	printf("\n");
	rdma_ack_cm_event(ev);
	printf("MR %llu %u\n", (unsigned long long)(uintptr_t)data_buf, data_mr->rkey);

	while (fgets(line, sizeof(line), stdin)) {
		char verb[16] = "", arg[2 * UNIT_SIZE + 1];
		long a = 0, b = 0;

		arg[0] = 0;
		if (sscanf(line, "%15s", verb) != 1)
			continue;
		if (!strcmp(verb, "send")) {
			long ms = 5000;

			if (sscanf(line, "%*s %131072s %ld", arg, &ms) < 1) {
				printf("ERROR send needs a unit\n");
				continue;
			}
			send_unit(arg);
			wait_unit(ms);
		} else if (!strcmp(verb, "recv")) {
			long ms = 5000;

			if (sscanf(line, "%*s %ld", &ms) < 1)
				ms = 5000;
			wait_unit(ms);
		} else if (!strcmp(verb, "data") && sscanf(line, "%*s %ld %ld", &a, &b) == 2 &&
			   a >= 0 && b >= 0 && a + b <= DATA_SIZE) {
			printf("DATA ");
			print_hex(data_buf + a, b);
			printf("\n");
		} else if (!strcmp(verb, "fill") && sscanf(line, "%*s %ld %131072s", &a, arg) == 2 &&
			   a >= 0 && a < DATA_SIZE) {
			parse_hex(arg, data_buf + a, DATA_SIZE - a);
			printf("OK\n");
		} else if (strcmp(verb, "quit")) {
			printf("ERROR unknown command\n");
		} else {
			break;
		}
	}
	rdma_disconnect(id);
	return 0;
}
