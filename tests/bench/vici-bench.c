/*
 * vici-bench: how fast the vici client is, for `make bench` (tests/bench/vici.sh).
 *
 *   vici-bench codec N          encode, decode and look up a list-sa event N times
 *   vici-bench queue URI N CMD  N commands CMD queued on one connection
 *   vici-bench call URI N CMD   N blocking vici_call()s, one after the other
 *   vici-bench stream URI N     N streamed list-sas (list-sa events + reply)
 *
 * Prints one line of key=value: ops, secs, per_sec, cpu_ms (this process's
 * user+system time), and for codec the bytes per message. Exits 1 on the
 * first failed operation: a benchmark of failures measures nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vici-client/vici.h"

#define IN_FLIGHT 512 /* queued at once: below VICI_QUEUE_MAX */

struct clock {
	int64_t start_ms;
	double start_cpu;
};

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static struct clock clock_start(void)
{
	return (struct clock){vici_now_ms(), cpu_ms()};
}

static void report(const char *what, const struct clock *c, long ops, const char *extra)
{
	double secs = (double)(vici_now_ms() - c->start_ms) / 1e3;

	printf("bench=%s ops=%ld secs=%.3f per_sec=%.0f cpu_ms=%.0f%s\n", what, ops, secs,
	       secs > 0 ? (double)ops / secs : 0.0, cpu_ms() - c->start_cpu, extra ? extra : "");
}

static void die(const char *what, int err)
{
	fprintf(stderr, "vici-bench: %s: %s\n", what, strerror(-err));
	exit(1);
}

/* ---- codec ---- */

/* A list-sa event as charon 5.9 sends it for one IKE_SA with one CHILD_SA. */
static struct vici_builder *list_sa_event(void)
{
	static const char *const ike[][2] = {
	    {"uniqueid", "1"},
	    {"version", "2"},
	    {"state", "ESTABLISHED"},
	    {"local-host", "198.51.100.1"},
	    {"local-port", "4500"},
	    {"local-id", "gw-dh21.mllp.test"},
	    {"remote-host", "198.51.100.2"},
	    {"remote-port", "4500"},
	    {"remote-id", "peer-dh21.mllp.test"},
	    {"initiator", "yes"},
	    {"initiator-spi", "5db9f06a25bf8189"},
	    {"responder-spi", "637de6f8aa0fea1c"},
	    {"encr-alg", "AES_GCM_16"},
	    {"encr-keysize", "256"},
	    {"prf-alg", "PRF_HMAC_SHA2_384"},
	    {"dh-group", "ECP_521"},
	    {"established", "120"},
	    {"rekey-time", "14241"},
	};
	static const char *const child[][2] = {
	    {"name", "dh21-net"},	{"uniqueid", "1"},	 {"reqid", "1"},
	    {"state", "INSTALLED"},	{"mode", "TUNNEL"},	 {"protocol", "ESP"},
	    {"encap", "yes"},		{"spi-in", "be56194c"},	 {"spi-out", "e38f9f3f"},
	    {"encr-alg", "AES_GCM_16"}, {"encr-keysize", "256"}, {"dh-group", "ECP_521"},
	    {"bytes-in", "123456"},	{"packets-in", "321"},	 {"bytes-out", "654321"},
	    {"packets-out", "123"},	{"rekey-time", "3302"},	 {"life-time", "3960"},
	    {"install-time", "120"},
	};
	struct vici_builder *b = vici_builder_new();

	vici_builder_section_start(b, "dh21");
	for (size_t i = 0; i < sizeof(ike) / sizeof(ike[0]); i++)
		vici_builder_key_str(b, ike[i][0], ike[i][1]);
	vici_builder_section_start(b, "child-sas");
	vici_builder_section_start(b, "dh21-net-1");
	for (size_t i = 0; i < sizeof(child) / sizeof(child[0]); i++)
		vici_builder_key_str(b, child[i][0], child[i][1]);
	vici_builder_list_start(b, "local-ts");
	vici_builder_list_item_str(b, "203.0.113.1/32");
	vici_builder_list_end(b);
	vici_builder_list_start(b, "remote-ts");
	vici_builder_list_item_str(b, "203.0.113.64/26");
	vici_builder_list_end(b);
	vici_builder_section_end(b);
	vici_builder_section_end(b);
	vici_builder_section_end(b);
	return b;
}

/* Builds and frames the event, as charon does. */
static void encode_one(uint8_t **seg, size_t *seg_len)
{
	struct vici_builder *b = list_sa_event();
	uint8_t *msg;
	size_t len;
	int rc = vici_builder_finish(b, &msg, &len);

	vici_builder_free(b);
	if (rc < 0)
		die("builder", rc);
	rc = vici_packet_encode(VICI_EVENT, "list-sa", msg, len, seg, seg_len);
	free(msg);
	if (rc < 0)
		die("encode", rc);
}

/* Decodes the segment and reads the CHILD_SA state, as the supervisor would. */
static void decode_one(const uint8_t *seg, size_t seg_len)
{
	struct vici_packet pk;
	struct vici_tree *t;
	const char *state;
	int rc = vici_packet_decode(seg, seg_len, &pk);

	if (rc < 0)
		die("decode", rc);
	rc = vici_tree_parse(pk.msg, pk.msg_len, &t);
	if (rc < 0)
		die("parse", rc);
	state = vici_tree_get(t, "dh21.child-sas.dh21-net-1.state");
	if (!state || strcmp(state, "INSTALLED"))
		die("lookup", -EBADMSG);
	vici_tree_free(t);
}

static void bench_codec(long n)
{
	uint8_t *seg;
	size_t seg_len;
	char extra[64];
	struct clock c = clock_start();

	for (long i = 0; i < n; i++) {
		encode_one(&seg, &seg_len);
		free(seg);
	}
	encode_one(&seg, &seg_len);
	snprintf(extra, sizeof(extra), " bytes=%zu", seg_len);
	report("encode", &c, n, extra);
	c = clock_start();
	for (long i = 0; i < n; i++)
		decode_one(seg, seg_len);
	report("decode", &c, n, extra);
	free(seg);
}

/* ---- against charon ---- */

struct progress {
	long sent, done, want;
	int reached; /* done >= want: what vici_conn_wait() waits for */
};

static void on_reply(void *arg, int err, const struct vici_tree *reply)
{
	struct progress *p = arg;

	if (err)
		die("reply", err);
	if (vici_reply_error(reply))
		die("charon said success=no", -EPROTO);
	p->done++;
	p->reached = p->done >= p->want;
}

static void on_list_sa(void *arg, const char *event, const struct vici_tree *msg)
{
	(void)arg;
	(void)event;
	(void)msg;
}

static struct vici_conn *open_conn(const char *uri)
{
	struct vici_conn *c;
	int rc = vici_conn_new(uri, &c);

	if (rc < 0)
		die(uri, rc);
	rc = vici_conn_connect(c);
	if (rc < 0)
		die(uri, rc);
	return c;
}

/* Keeps up to IN_FLIGHT requests queued until n are answered. */
static void bench_queue(const char *uri, long n, const char *cmd, int stream)
{
	struct vici_conn *c = open_conn(uri);
	struct progress p = {0};
	struct clock clk = clock_start();

	while (p.done < n) {
		while (p.sent < n && p.sent - p.done < IN_FLIGHT) {
			int rc = stream ? vici_conn_stream(c, "list-sas", "list-sa", NULL, 0, 10000,
							   on_list_sa, on_reply, &p)
					: vici_conn_command(c, cmd, NULL, 0, 10000, on_reply, &p);

			if (rc < 0)
				die("queue", rc);
			p.sent++;
		}
		p.want = p.done + 1;
		p.reached = 0;
		vici_conn_wait(c, &p.reached);
	}
	report(stream ? "stream" : "queue", &clk, n, NULL);
	vici_conn_free(c);
}

static void bench_call(const char *uri, long n, const char *cmd)
{
	struct vici_conn *c = open_conn(uri);
	struct clock clk = clock_start();

	for (long i = 0; i < n; i++) {
		struct vici_tree *reply;
		int rc = vici_call(c, cmd, NULL, 0, 10000, &reply);

		if (rc < 0)
			die("call", rc);
		vici_tree_free(reply);
	}
	report("call", &clk, n, NULL);
	vici_conn_free(c);
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[argc > 3 ? 3 : 2], NULL, 10) : 0;

	if (argc == 3 && !strcmp(argv[1], "codec") && n > 0)
		bench_codec(n);
	else if (argc == 5 && !strcmp(argv[1], "queue") && n > 0)
		bench_queue(argv[2], n, argv[4], 0);
	else if (argc == 5 && !strcmp(argv[1], "call") && n > 0)
		bench_call(argv[2], n, argv[4]);
	else if (argc == 4 && !strcmp(argv[1], "stream") && n > 0)
		bench_queue(argv[2], n, NULL, 1);
	else {
		fprintf(stderr, "usage: vici-bench codec N | queue URI N CMD | call URI N CMD | "
				"stream URI N\n");
		return 2;
	}
	return 0;
}
