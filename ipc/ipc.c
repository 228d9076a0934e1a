/*
 * The supervisor ↔ bridge codec (ipc.h). A writer and a reader over one
 * buffer, each with a sticky error (STYLE 3): the message functions stay
 * flat and the verdict is read once at the end.
 */
#include "ipc/ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* Bytes of each record on the wire, for the exact-size checks. */
#define IPC_CIDR_WIRE	      18 /* u8 family | u8 prefix | 16 bytes addr */
#define IPC_GATE_HEAD	      6	 /* u32 generation | u16 n */
#define IPC_TUNNELS_HEAD      6	 /* u32 bridge_restarts | u16 n */
#define IPC_STATUS_HEAD	      2	 /* u16 n */
#define IPC_TUNNEL_FIXED      13 /* u8 up | u16 ike_dh | u16 esp_dh | i64 changed */
#define IPC_INTEGRATION_FIXED 24 /* u64 depth | u64 oldest_age_ms | u64 dead */
#define IPC_DESTINATION_FIXED                                                                      \
	26 /* u64 queued | u64 oldest | u8 gate | u8 connected | u64 failed                        \
	    */

struct writer {
	uint8_t *buf;
	size_t cap, len;
	int err; /* the first failure; later puts do nothing */
};

struct reader {
	const uint8_t *p;
	size_t len, off;
	int err; /* -EBADMSG once anything did not fit */
};

/* ---- names and CIDRs: the rules both directions share ---- */

static int name_ok(const char *s, size_t len)
{
	if (len < 1 || len > IPC_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* A network address: a known family, a prefix that fits it, no host bits
 * and, for IPv4, nothing in the 12 unused bytes (so the bytes on the wire
 * have one meaning only). */
static int cidr_ok(const struct ipc_cidr *c)
{
	unsigned bits = c->family == AF_INET ? 32 : c->family == AF_INET6 ? 128 : 0;

	if (!bits || c->prefix > bits)
		return 0;
	for (unsigned i = 0; i < 16; i++) {
		unsigned from = i * 8; /* the first bit of byte i */
		uint8_t host = from + 8 <= c->prefix ? 0
			       : from >= c->prefix   ? 0xff
						     : (uint8_t)(0xff >> (c->prefix - from));

		if (c->addr[i] & host)
			return 0;
	}
	return 1;
}

/* ---- writer ---- */

static void put(struct writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (n > w->cap - w->len) {
		w->err = -EMSGSIZE;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_be(struct writer *w, uint64_t v, unsigned bytes)
{
	uint8_t b[8];

	for (unsigned i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	put(w, b, bytes);
}

static void put_name(struct writer *w, const char *name)
{
	size_t len = strnlen(name, IPC_NAME_MAX + 1);

	if (!w->err && !name_ok(name, len))
		w->err = -EINVAL;
	put_be(w, len, 1);
	put(w, name, len);
}

static void put_gate(struct writer *w, const struct ipc_gate *g)
{
	if (g->n > IPC_GATE_MAX) {
		w->err = -EINVAL;
		return;
	}
	put_be(w, g->generation, 4);
	put_be(w, g->n, 2);
	for (size_t i = 0; i < g->n; i++) {
		const struct ipc_cidr *c = &g->cidr[i];

		if (!w->err && !cidr_ok(c))
			w->err = -EINVAL;
		put_be(w, c->family, 1);
		put_be(w, c->prefix, 1);
		put(w, c->addr, sizeof(c->addr));
	}
}

static void put_tunnels(struct writer *w, const struct ipc_tunnels *t)
{
	if (t->n > IPC_TUNNELS_MAX) {
		w->err = -EINVAL;
		return;
	}
	put_be(w, t->bridge_restarts, 4);
	put_be(w, t->n, 2);
	for (size_t i = 0; i < t->n; i++) {
		const struct ipc_tunnel *x = &t->t[i];

		if (!w->err && x->up > 1)
			w->err = -EINVAL;
		put_name(w, x->name);
		put_be(w, x->up, 1);
		put_be(w, x->ike_dh, 2);
		put_be(w, x->esp_dh, 2);
		put_be(w, (uint64_t)x->changed_unix, 8);
	}
}

static void put_status(struct writer *w, const struct ipc_status *s)
{
	if (s->n > IPC_INTEGRATIONS_MAX) {
		w->err = -EINVAL;
		return;
	}
	put_be(w, s->n, 2);
	for (size_t i = 0; i < s->n; i++) {
		const struct ipc_integration *x = &s->in[i];

		put_name(w, x->name);
		put_be(w, x->depth, 8);
		put_be(w, x->oldest_age_ms, 8);
		put_be(w, x->dead, 8);
	}
}

static void put_outbox(struct writer *w, const struct ipc_outbox *o)
{
	if (o->n > IPC_DESTINATIONS_MAX) {
		w->err = -EINVAL;
		return;
	}
	put_be(w, o->n, 2);
	for (size_t i = 0; i < o->n; i++) {
		const struct ipc_destination *x = &o->d[i];

		if (!w->err && (x->waiting_gate > 1 || x->connected > 1))
			w->err = -EINVAL;
		put_name(w, x->name);
		put_be(w, x->queued, 8);
		put_be(w, x->oldest_age_ms, 8);
		put_be(w, x->waiting_gate, 1);
		put_be(w, x->connected, 1);
		put_be(w, x->failed, 8);
	}
}

int ipc_encode(enum ipc_type type, const union ipc_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
	struct writer w = {.buf = buf, .cap = cap < IPC_MSG_MAX ? cap : IPC_MSG_MAX};
	size_t payload;

	*len = 0;
	/* The header first, its length patched in once the payload is known. */
	put_be(&w, IPC_VERSION, 1);
	put_be(&w, (uint64_t)type, 1);
	put_be(&w, 0, 2);
	if (type == IPC_GATE)
		put_gate(&w, &m->gate);
	else if (type == IPC_TUNNELS)
		put_tunnels(&w, &m->tunnels);
	else if (type == IPC_STATUS)
		put_status(&w, &m->status);
	else if (type == IPC_OUTBOX)
		put_outbox(&w, &m->outbox);
	else if (!w.err)
		w.err = -EINVAL;
	if (w.err)
		return w.err;
	payload = w.len - IPC_HEADER_SIZE;
	buf[2] = (uint8_t)(payload >> 8);
	buf[3] = (uint8_t)payload;
	*len = w.len;
	return 0;
}

/* ---- reader ---- */

static const uint8_t *take(struct reader *r, size_t n)
{
	const uint8_t *p;

	if (r->err || n > r->len - r->off) {
		r->err = -EBADMSG;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static uint64_t get_be(struct reader *r, unsigned bytes)
{
	const uint8_t *p = take(r, bytes);
	uint64_t v = 0;

	for (unsigned i = 0; p && i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

static void get_name(struct reader *r, char out[IPC_NAME_MAX + 1])
{
	size_t len = (size_t)get_be(r, 1);
	const uint8_t *p = take(r, len);

	if (!p || !name_ok((const char *)p, len)) {
		r->err = -EBADMSG;
		return;
	}
	memcpy(out, p, len);
	out[len] = '\0';
}

/* A count announced by the peer, checked against its limit before a single
 * record is read, and against the bytes that are really there. */
static size_t get_count(struct reader *r, size_t max, size_t record_min)
{
	size_t n = (size_t)get_be(r, 2);

	if (r->err || n > max || n * record_min > r->len - r->off) {
		r->err = -EBADMSG;
		return 0;
	}
	return n;
}

static void get_gate(struct reader *r, struct ipc_gate *g)
{
	g->generation = (uint32_t)get_be(r, 4);
	g->n = (uint16_t)get_count(r, IPC_GATE_MAX, IPC_CIDR_WIRE);
	for (size_t i = 0; !r->err && i < g->n; i++) {
		struct ipc_cidr *c = &g->cidr[i];
		const uint8_t *a;

		c->family = (uint8_t)get_be(r, 1);
		c->prefix = (uint8_t)get_be(r, 1);
		if ((a = take(r, sizeof(c->addr))))
			memcpy(c->addr, a, sizeof(c->addr));
		if (!r->err && !cidr_ok(c))
			r->err = -EBADMSG;
	}
}

static void get_tunnels(struct reader *r, struct ipc_tunnels *t)
{
	t->bridge_restarts = (uint32_t)get_be(r, 4);
	t->n = (uint16_t)get_count(r, IPC_TUNNELS_MAX, 2 + IPC_TUNNEL_FIXED);
	for (size_t i = 0; !r->err && i < t->n; i++) {
		struct ipc_tunnel *x = &t->t[i];

		get_name(r, x->name);
		x->up = (uint8_t)get_be(r, 1);
		x->ike_dh = (uint16_t)get_be(r, 2);
		x->esp_dh = (uint16_t)get_be(r, 2);
		x->changed_unix = (int64_t)get_be(r, 8);
		if (!r->err && x->up > 1)
			r->err = -EBADMSG;
	}
}

static void get_status(struct reader *r, struct ipc_status *s)
{
	s->n = (uint16_t)get_count(r, IPC_INTEGRATIONS_MAX, 2 + IPC_INTEGRATION_FIXED);
	for (size_t i = 0; !r->err && i < s->n; i++) {
		struct ipc_integration *x = &s->in[i];

		get_name(r, x->name);
		x->depth = get_be(r, 8);
		x->oldest_age_ms = get_be(r, 8);
		x->dead = get_be(r, 8);
	}
}

static void get_outbox(struct reader *r, struct ipc_outbox *o)
{
	o->n = (uint16_t)get_count(r, IPC_DESTINATIONS_MAX, 2 + IPC_DESTINATION_FIXED);
	for (size_t i = 0; !r->err && i < o->n; i++) {
		struct ipc_destination *x = &o->d[i];

		get_name(r, x->name);
		x->queued = get_be(r, 8);
		x->oldest_age_ms = get_be(r, 8);
		x->waiting_gate = (uint8_t)get_be(r, 1);
		x->connected = (uint8_t)get_be(r, 1);
		x->failed = get_be(r, 8);
		if (!r->err && (x->waiting_gate > 1 || x->connected > 1))
			r->err = -EBADMSG;
	}
}

/* The header: version, a known type and a length that is exactly what
 * follows. Returns the type, or 0 with r->err set. */
static enum ipc_type get_header(struct reader *r)
{
	unsigned version = (unsigned)get_be(r, 1), type = (unsigned)get_be(r, 1);
	size_t payload = (size_t)get_be(r, 2);

	if (r->err || version != IPC_VERSION || payload != r->len - r->off ||
	    (type != IPC_GATE && type != IPC_TUNNELS && type != IPC_STATUS && type != IPC_OUTBOX)) {
		r->err = -EBADMSG;
		return 0;
	}
	return (enum ipc_type)type;
}

int ipc_decode(const uint8_t *buf, size_t len, enum ipc_type *type, union ipc_msg *m)
{
	struct reader r = {.p = buf, .len = len};
	enum ipc_type t;

	if (len > IPC_MSG_MAX)
		return -EMSGSIZE;
	t = get_header(&r);
	if (t == IPC_GATE) {
		memset(&m->gate, 0, sizeof(m->gate));
		get_gate(&r, &m->gate);
	} else if (t == IPC_TUNNELS) {
		memset(&m->tunnels, 0, sizeof(m->tunnels));
		get_tunnels(&r, &m->tunnels);
	} else if (t == IPC_STATUS) {
		memset(&m->status, 0, sizeof(m->status));
		get_status(&r, &m->status);
	} else if (t == IPC_OUTBOX) {
		memset(&m->outbox, 0, sizeof(m->outbox));
		get_outbox(&r, &m->outbox);
	}
	/* Every byte must have been read: trailing bytes are a length that
	 * does not match the counts. */
	if (!r.err && r.off != r.len)
		r.err = -EBADMSG;
	if (r.err)
		return r.err;
	*type = t;
	return 0;
}
