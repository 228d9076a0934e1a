#include "mllp-bridge/gate.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ::ffff:0:0/96, under which an IPv6 CIDR really names IPv4 peers. */
static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct watcher {
	gate_watch_cb cb;
	void *arg;
};

struct gate {
	int open, linked;
	struct cfg_cidr *cidrs; /* the current set */
	size_t n;
	uint64_t changes;
	struct watcher w[GATE_WATCHERS_MAX];
	size_t nw;
	int notifying; /* inside the watchers: no gate_set() from there */
};

int gate_new(int open, struct gate **out)
{
	struct gate *g = calloc(1, sizeof(*g));

	*out = NULL;
	if (!g)
		return -ENOMEM;
	g->open = !!open;
	*out = g;
	return 0;
}

void gate_free(struct gate *g)
{
	if (!g)
		return;
	free(g->cidrs);
	free(g);
}

int gate_allows(const struct gate *g, const struct sockaddr *peer)
{
	if (g->open)
		return 1;
	for (size_t i = 0; i < g->n; i++)
		if (cfg_cidr_contains(&g->cidrs[i], peer))
			return 1;
	return 0;
}

static int cidr_valid(const struct cfg_cidr *c)
{
	return (c->family == AF_INET && c->prefix <= 32) ||
	       (c->family == AF_INET6 && c->prefix <= 128);
}

/* Peers arrive as IPv4 when they are IPv4-mapped (cfg_cidr_contains), so
 * a CIDR inside ::ffff:0:0/96 is kept as the IPv4 CIDR it means, the way
 * cfg_parse_cidr() reads one from the file; else it would match nobody. */
static void normalise(struct cfg_cidr *c)
{
	if (c->family != AF_INET6 || c->prefix < 96 || memcmp(c->addr, v4mapped, 12) != 0)
		return;
	c->family = AF_INET;
	c->prefix -= 96;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
}

static int same_set(const struct gate *g, const struct cfg_cidr *c, size_t n)
{
	if (n != g->n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (c[i].family != g->cidrs[i].family || c[i].prefix != g->cidrs[i].prefix ||
		    memcmp(c[i].addr, g->cidrs[i].addr, sizeof(c[i].addr)) != 0)
			return 0;
	return 1;
}

static void notify(struct gate *g)
{
	g->changes++;
	g->notifying = 1;
	for (size_t i = 0; i < g->nw; i++)
		g->w[i].cb(g->w[i].arg, g);
	g->notifying = 0;
}

/* Takes ownership of next (n entries, may be NULL when n is 0). */
static void replace(struct gate *g, struct cfg_cidr *next, size_t n)
{
	int changed = !same_set(g, next, n);

	free(g->cidrs);
	g->cidrs = next;
	g->n = n;
	if (changed)
		notify(g);
}

int gate_set(struct gate *g, const struct cfg_cidr *cidrs, size_t n)
{
	struct cfg_cidr *next = NULL;

	assert(!g->notifying); /* a watcher re-entering would see a half-told change */
	if (n > GATE_CIDRS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!cidr_valid(&cidrs[i]))
			return -EINVAL;
	if (n && !(next = malloc(n * sizeof(*next)))) {
		/* Unsure what is installed: nobody passes until the next set. */
		replace(g, NULL, 0);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		next[i] = cidrs[i];
		normalise(&next[i]);
	}
	replace(g, next, n);
	return 0;
}

void gate_close(struct gate *g)
{
	assert(!g->notifying);
	replace(g, NULL, 0);
}

void gate_set_linked(struct gate *g, int linked)
{
	g->linked = !!linked;
}

int gate_watch(struct gate *g, gate_watch_cb cb, void *arg)
{
	assert(!g->notifying);
	if (g->nw == GATE_WATCHERS_MAX)
		return -ENOSPC;
	g->w[g->nw++] = (struct watcher){.cb = cb, .arg = arg};
	return 0;
}

void gate_unwatch(struct gate *g, gate_watch_cb cb, void *arg)
{
	assert(!g->notifying);
	for (size_t i = 0; i < g->nw; i++) {
		if (g->w[i].cb == cb && g->w[i].arg == arg) {
			memmove(&g->w[i], &g->w[i + 1], (g->nw - i - 1) * sizeof(g->w[0]));
			g->nw--;
			return;
		}
	}
}

void gate_stats(const struct gate *g, struct gate_stats *st)
{
	*st = (struct gate_stats){
	    .open = g->open, .linked = g->linked, .ncidrs = g->n, .changes = g->changes};
}

void gate_cidr(const struct gate *g, size_t i, struct cfg_cidr *out)
{
	assert(i < g->n);
	*out = g->cidrs[i];
}
