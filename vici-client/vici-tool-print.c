/*
 * The vici tool's output: the indented tree of a message, the one-line form
 * of monitor, JSON, and the list-sas summary that swanctl users know.
 */
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici-tool.h"

void tool_put_text(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\x%02x", ch);
		else
			fputc(ch, out);
	}
}

static void put_str(FILE *out, const char *s)
{
	tool_put_text(out, s, strlen(s));
}

static void put_value(FILE *out, const struct vici_node *n)
{
	size_t len;
	const char *v = vici_node_value(n, &len);

	tool_put_text(out, v, len);
}

static void put_list(FILE *out, const struct vici_node *n, const char *sep)
{
	fputc('[', out);
	for (size_t i = 0; i < vici_node_item_count(n); i++) {
		size_t len;
		const char *item = vici_node_item(n, i, &len);

		if (i)
			fputs(sep, out);
		tool_put_text(out, item, len);
	}
	fputc(']', out);
}

/* The indented form: `name = value`, `name {` ... `}`, `name = [a, b]`. */
static void print_section(FILE *out, const struct vici_node *sec, int depth)
{
	for (const struct vici_node *n = vici_node_first(sec); n; n = vici_node_next(n)) {
		fprintf(out, "%*s", depth * 2, "");
		put_str(out, vici_node_name(n));
		switch (vici_node_kind(n)) {
		case VICI_NODE_SECTION:
			fputs(" {\n", out);
			print_section(out, n, depth + 1);
			fprintf(out, "%*s}\n", depth * 2, "");
			break;
		case VICI_NODE_VALUE:
			fputs(" = ", out);
			put_value(out, n);
			fputc('\n', out);
			break;
		case VICI_NODE_LIST:
			fputs(" = ", out);
			put_list(out, n, ", ");
			fputc('\n', out);
			break;
		}
	}
}

/* The one-line form of monitor: ` k=v sect={ k=v } list=[a,b]`. */
static void print_section_line(FILE *out, const struct vici_node *sec)
{
	for (const struct vici_node *n = vici_node_first(sec); n; n = vici_node_next(n)) {
		fputc(' ', out);
		put_str(out, vici_node_name(n));
		fputc('=', out);
		switch (vici_node_kind(n)) {
		case VICI_NODE_SECTION:
			fputc('{', out);
			print_section_line(out, n);
			fputs(" }", out);
			break;
		case VICI_NODE_VALUE:
			put_value(out, n);
			break;
		case VICI_NODE_LIST:
			put_list(out, n, ",");
			break;
		}
	}
}

void tool_print_tree(const struct vici_tree *tree, int json)
{
	if (json) {
		if (vici_tree_to_json(tree, stdout) < 0)
			fprintf(stderr, "vici: cannot write output\n");
	} else {
		print_section(stdout, vici_tree_root(tree), 0);
	}
	fflush(stdout);
}

/* JSON, with the tree's line end moved after the closing brace. */
static void print_event_json(const char *event, const struct vici_tree *msg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	/* Our own subscription names need no escaping. */
	printf("{\"event\":\"%s\",\"data\":", event);
	if (!mem || vici_tree_to_json(msg, mem) < 0 || fclose(mem) != 0) {
		fprintf(stderr, "vici: cannot format an event\n");
		printf("null}\n");
	} else {
		if (len && buf[len - 1] == '\n')
			len--;
		printf("%.*s}\n", (int)len, buf);
	}
	free(buf);
}

void tool_print_event(const char *event, const struct vici_tree *msg, int json)
{
	if (json) {
		print_event_json(event, msg);
	} else {
		fputs(event, stdout);
		print_section_line(stdout, vici_tree_root(msg));
		fputc('\n', stdout);
	}
	fflush(stdout);
}

void tool_print_lines(FILE *out, const char *lines)
{
	while (*lines) {
		const char *nl = strchr(lines, '\n');
		size_t n = nl ? (size_t)(nl - lines) : strlen(lines);

		fputs("  ", out);
		tool_put_text(out, lines, n);
		fputc('\n', out);
		lines += nl ? n + 1 : n;
	}
}

/* ---- list-sas summary ---- */

/* The value of key in sec, or "?" when charon did not send it. */
static const char *val(const struct vici_node *sec, const char *key)
{
	const char *v = vici_node_get(sec, key);

	return v ? v : "?";
}

/* Prints " label value" when key is present: optional fields stay silent. */
static void put_opt(FILE *out, const char *label, const struct vici_node *sec, const char *key,
		    const char *unit)
{
	const char *v = vici_node_get(sec, key);

	if (!v)
		return;
	fputs(label, out);
	put_str(out, v);
	fputs(unit, out);
}

/* A time charon reports in seconds, e.g. {"rekey-time", "rekeying in ", "s"}. */
struct timing {
	const char *key, *before, *after;
};

static const struct timing ike_times[] = {
    {"established", "established ", "s ago"},
    {"rekey-time", "rekeying in ", "s"},
    {"reauth-time", "reauth in ", "s"},
};

static const struct timing child_times[] = {
    {"install-time", "installed ", "s ago"},
    {"rekey-time", "rekeying in ", "s"},
    {"life-time", "expires in ", "s"},
};

/* One line of the timings present, ", "-separated; nothing when none is. */
static void put_timings(FILE *out, const char *indent, const struct vici_node *sec,
			const struct timing *t, size_t n)
{
	int first = 1;

	for (size_t i = 0; i < n; i++) {
		const char *v = vici_node_get(sec, t[i].key);

		if (!v)
			continue;
		fputs(first ? indent : ", ", out);
		fputs(t[i].before, out);
		put_str(out, v);
		fputs(t[i].after, out);
		first = 0;
	}
	if (!first)
		fputc('\n', out);
}

/* "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_521": the algorithms present, in order. */
static void put_algorithms(FILE *out, const struct vici_node *sa)
{
	static const char *const algs[][2] = {
	    {"encr-alg", "encr-keysize"},
	    {"integ-alg", "integ-keysize"},
	    {"prf-alg", NULL},
	    {"dh-group", NULL},
	};
	int first = 1;

	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		const char *alg = vici_node_get(sa, algs[i][0]);

		if (!alg)
			continue;
		if (!first)
			fputc('/', out);
		put_str(out, alg);
		if (algs[i][1])
			put_opt(out, "-", sa, algs[i][1], "");
		first = 0;
	}
}

/* "local  'id' @ host[port]" for side "local" or "remote". */
static void put_endpoint(FILE *out, const struct vici_node *ike, const char *side)
{
	char key[16];

	fprintf(out, "  %-6s '", side);
	snprintf(key, sizeof(key), "%s-id", side);
	put_str(out, val(ike, key));
	fputs("' @ ", out);
	snprintf(key, sizeof(key), "%s-host", side);
	put_str(out, val(ike, key));
	snprintf(key, sizeof(key), "%s-port", side);
	put_opt(out, "[", ike, key, "]");
	fputc('\n', out);
}

static void put_ts(FILE *out, const char *label, const struct vici_node *child, const char *key)
{
	const struct vici_node *ts = vici_node_find(child, key);

	fprintf(out, "    %-6s ", label);
	if (ts && vici_node_kind(ts) == VICI_NODE_LIST) {
		for (size_t i = 0; i < vici_node_item_count(ts); i++) {
			size_t len;
			const char *item = vici_node_item(ts, i, &len);

			fputs(i ? ", " : "", out);
			tool_put_text(out, item, len);
		}
	}
	fputc('\n', out);
}

/* "in  c0ffee01, 452 bytes, 4 packets, last 2s ago" for dir "in" or "out". */
static void put_traffic(FILE *out, const struct vici_node *child, const char *dir)
{
	char key[16];

	fprintf(out, "    %-3s ", dir);
	snprintf(key, sizeof(key), "spi-%s", dir);
	put_str(out, val(child, key));
	snprintf(key, sizeof(key), "bytes-%s", dir);
	put_opt(out, ", ", child, key, " bytes");
	snprintf(key, sizeof(key), "packets-%s", dir);
	put_opt(out, ", ", child, key, " packets");
	snprintf(key, sizeof(key), "use-%s", dir);
	put_opt(out, ", last ", child, key, "s ago");
	fputc('\n', out);
}

static void print_child(FILE *out, const struct vici_node *child)
{
	const char *encap = vici_node_get(child, "encap");

	fputs("  ", out);
	put_str(out, val(child, "name"));
	fputs(": #", out);
	put_str(out, val(child, "uniqueid"));
	put_opt(out, ", reqid ", child, "reqid", "");
	fputs(", ", out);
	put_str(out, val(child, "state"));
	fputs(", ", out);
	put_str(out, val(child, "mode"));
	fputs(encap && !strcmp(encap, "yes") ? "-in-UDP, " : ", ", out);
	put_str(out, val(child, "protocol"));
	fputc(':', out);
	put_algorithms(out, child);
	fputc('\n', out);
	put_timings(out, "    ", child, child_times, sizeof(child_times) / sizeof(child_times[0]));
	put_traffic(out, child, "in");
	put_traffic(out, child, "out");
	put_ts(out, "local", child, "local-ts");
	put_ts(out, "remote", child, "remote-ts");
}

/* "dh21: #1, ESTABLISHED, IKEv2, 5db9f06a25bf8189_i* 637de6f8aa0fea1c_r" */
static void print_ike(FILE *out, const struct vici_node *ike)
{
	int initiator = !strcmp(val(ike, "initiator"), "yes");

	put_str(out, vici_node_name(ike));
	fputs(": #", out);
	put_str(out, val(ike, "uniqueid"));
	fputs(", ", out);
	put_str(out, val(ike, "state"));
	fputs(", IKEv", out);
	put_str(out, val(ike, "version"));
	fputs(", ", out);
	put_str(out, val(ike, "initiator-spi"));
	fputs(initiator ? "_i* " : "_i ", out);
	put_str(out, val(ike, "responder-spi"));
	fputs(initiator ? "_r\n" : "_r*\n", out);
	put_endpoint(out, ike, "local");
	put_endpoint(out, ike, "remote");
	fputs("  ", out);
	put_algorithms(out, ike);
	fputc('\n', out);
	put_timings(out, "  ", ike, ike_times, sizeof(ike_times) / sizeof(ike_times[0]));
	for (const struct vici_node *c = vici_node_first(vici_node_find(ike, "child-sas")); c;
	     c = vici_node_next(c))
		print_child(out, c);
}

void tool_print_sa_summary(const struct vici_tree *msg)
{
	for (const struct vici_node *n = vici_node_first(vici_tree_root(msg)); n;
	     n = vici_node_next(n))
		if (vici_node_kind(n) == VICI_NODE_SECTION)
			print_ike(stdout, n);
	fflush(stdout);
}
