#include "mllp-bridge/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static int phi_enabled;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(enum log_level lvl, int phi)
{
	min_level = lvl;
	phi_enabled = phi;
}

int log_phi_enabled(void)
{
	return phi_enabled;
}

void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if (lvl > min_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (long)(tv.tv_usec / 1000), level_names[lvl], event);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line, so lines from one process never interleave. */
	fprintf(stderr, "%s\n", line);
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
