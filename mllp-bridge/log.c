#include "mllp-bridge/log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static int phi_enabled;
static char program[32]; /* " proc=NAME", or "" */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(enum log_level lvl, int phi)
{
	min_level = lvl;
	phi_enabled = phi;
}

void log_set_program(const char *name)
{
	snprintf(program, sizeof program, " proc=%s", name);
}

int log_phi_enabled(void)
{
	return phi_enabled;
}

static void vlog(enum log_level lvl, const char *event, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	int n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s event=%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (long)(tv.tv_usec / 1000), level_names[lvl], program, event);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	/* One write per line, so lines from one process never interleave. */
	fprintf(stderr, "%s\n", line);
}

void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
{
	va_list ap;

	if (lvl > min_level)
		return;
	va_start(ap, fmt);
	vlog(lvl, event, fmt, ap);
	va_end(ap);
}

/* --- rate limit -------------------------------------------------------- */

/* One token bucket per (event, peer) in a small table; a key that loses
 * its slot to another reports what it suppressed first. The kernel's
 * printk_ratelimit and rsyslog's imuxsock limit work the same way. */
struct bucket {
	uint64_t hash; /* 0: free */
	const char *event;
	char peer[LOG_PEER_MAX];
	double tokens, last;
	uint64_t suppressed;
};

static struct bucket buckets[LOG_RATE_SLOTS];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t key_hash(const char *event, const char *peer)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = event; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = peer; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h ? h : 1;
}

static void report(enum log_level lvl, struct bucket *b)
{
	if (b->suppressed)
		log_event(lvl, "log_suppressed", " kind=%s peer=%s suppressed=%llu", b->event,
			  b->peer, (unsigned long long)b->suppressed);
	b->suppressed = 0;
}

static struct bucket *bucket_for(enum log_level lvl, const char *event, const char *peer,
				 double now)
{
	uint64_t h = key_hash(event, peer);
	struct bucket *b = &buckets[h % LOG_RATE_SLOTS];

	if (b->hash != h || b->event != event || strcmp(b->peer, peer) != 0) {
		if (b->hash)
			report(lvl, b);
		b->hash = h;
		b->event = event;
		snprintf(b->peer, sizeof(b->peer), "%s", peer);
		b->tokens = LOG_RATE_BURST;
		b->last = now;
	}
	return b;
}

void log_event_peer(enum log_level lvl, const char *event, const char *peer, const char *fmt, ...)
{
	double now;
	struct bucket *b;
	va_list ap;

	if (lvl > min_level)
		return;
	now = now_s();
	b = bucket_for(lvl, event, peer, now);
	b->tokens += (now - b->last) * LOG_RATE_PER_S;
	if (b->tokens > LOG_RATE_BURST)
		b->tokens = LOG_RATE_BURST;
	b->last = now;
	if (b->tokens < 1) {
		b->suppressed++;
		return;
	}
	b->tokens -= 1;
	report(lvl, b);
	va_start(ap, fmt);
	vlog(lvl, event, fmt, ap);
	va_end(ap);
}

const char *log_safe(char *buf, unsigned cap, const char *s, unsigned len)
{
	unsigned i, o = 0;

	if (cap == 0)
		return buf;
	for (i = 0; i < len && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		int esc = c == ' ' || c == '"' || c == '=' || c == '\\';

		if (o + (esc ? 2u : 1u) + 4 > cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (esc)
			buf[o++] = '\\';
		buf[o++] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
	}
	buf[o] = '\0';
	return buf;
}
