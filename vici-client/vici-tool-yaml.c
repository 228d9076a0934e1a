/*
 * The vici tool's YAML reader: load-conn and load-shared files into vici
 * messages, every error reported as FILE:LINE: message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "vici-client/vici-tool.h"

/*
 * Converts a YAML document generically: mapping → section, scalar → key/value,
 * sequence of scalars → list. Reports every error it can as FILE:LINE: message
 * and skips the offending node; a syntax error ends the parse.
 */
struct yaml_conv {
	const char *file;
	yaml_parser_t parser;
	struct vici_builder *b;
	int errors;
	int syntax; /* libyaml gave up, or the stream ended: no more events */
};

static void conv_error(struct yaml_conv *c, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conv_error(struct yaml_conv *c, size_t line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%zu: ", c->file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	c->errors++;
}

/* The next event, or 0 after reporting a syntax error. */
static int conv_next(struct yaml_conv *c, yaml_event_t *ev)
{
	if (c->syntax)
		return 0;
	if (!yaml_parser_parse(&c->parser, ev)) {
		conv_error(c, c->parser.problem_mark.line + 1, "%s%s%s",
			   c->parser.context ? c->parser.context : "",
			   c->parser.context ? ": " : "",
			   c->parser.problem ? c->parser.problem : "YAML syntax error");
		c->syntax = 1;
		return 0;
	}
	if (ev->type == YAML_STREAM_END_EVENT || ev->type == YAML_NO_EVENT)
		c->syntax = 1;
	return 1;
}

static size_t ev_line(const yaml_event_t *ev)
{
	return ev->start_mark.line + 1;
}

/* Skips the rest of a node whose start event was ev. */
static void conv_skip(struct yaml_conv *c, const yaml_event_t *start)
{
	int depth =
	    start->type == YAML_MAPPING_START_EVENT || start->type == YAML_SEQUENCE_START_EVENT;
	yaml_event_t ev;

	while (depth > 0 && conv_next(c, &ev)) {
		if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
			depth++;
		else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
			depth--;
		yaml_event_delete(&ev);
	}
}

static int scalar_ok(struct yaml_conv *c, const yaml_event_t *ev, const char *what)
{
	if (ev->data.scalar.length > VICI_VALUE_MAX) {
		conv_error(c, ev_line(ev), "%s longer than %d bytes", what, VICI_VALUE_MAX);
		return 0;
	}
	return 1;
}

static void conv_list(struct yaml_conv *c, const char *name)
{
	yaml_event_t ev;

	vici_builder_list_start(c->b, name);
	while (conv_next(c, &ev)) {
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			conv_error(c, ev_line(&ev), "%s: list items must be scalars", name);
			conv_skip(c, &ev);
		} else if (scalar_ok(c, &ev, "list item")) {
			vici_builder_list_item(c->b, ev.data.scalar.value, ev.data.scalar.length);
		}
		yaml_event_delete(&ev);
	}
	vici_builder_list_end(c->b);
}

static void conv_mapping(struct yaml_conv *c, unsigned depth);

/* One value of a mapping, named name, starting with ev. */
static void conv_value(struct yaml_conv *c, const char *name, const yaml_event_t *ev,
		       unsigned depth)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (scalar_ok(c, ev, "value"))
			vici_builder_key_value(c->b, name, ev->data.scalar.value,
					       ev->data.scalar.length);
		break;
	case YAML_SEQUENCE_START_EVENT:
		conv_list(c, name);
		break;
	case YAML_MAPPING_START_EVENT:
		if (depth >= VICI_DEPTH_MAX) {
			conv_error(c, ev_line(ev), "sections nested deeper than %d",
				   VICI_DEPTH_MAX);
			conv_skip(c, ev);
			break;
		}
		vici_builder_section_start(c->b, name);
		conv_mapping(c, depth + 1);
		vici_builder_section_end(c->b);
		break;
	default:
		conv_error(c, ev_line(ev), "%s: aliases are not supported", name);
		break;
	}
}

/*
 * One key and its value, the key's event already read. sections_only: the
 * value must be a mapping (connections at load-conn's top level).
 */
static void conv_pair(struct yaml_conv *c, const yaml_event_t *key, unsigned depth,
		      int sections_only)
{
	const char *name = (const char *)key->data.scalar.value;
	yaml_event_t val;

	if (key->type != YAML_SCALAR_EVENT) {
		conv_error(c, ev_line(key), "keys must be scalars");
		conv_skip(c, key);
		name = NULL;
	} else if (key->data.scalar.length == 0 || key->data.scalar.length > VICI_NAME_MAX ||
		   memchr(name, 0, key->data.scalar.length)) {
		conv_error(c, ev_line(key), "a key must have 1 to %d bytes, no NUL", VICI_NAME_MAX);
		name = NULL;
	}
	if (!conv_next(c, &val))
		return;
	if (name && sections_only && val.type != YAML_MAPPING_START_EVENT) {
		conv_error(c, ev_line(&val), "%s: a connection must be a mapping", name);
		name = NULL;
	}
	if (name)
		conv_value(c, name, &val, depth);
	else
		conv_skip(c, &val);
	yaml_event_delete(&val);
}

/* The pairs of a mapping whose start was consumed, up to its end. */
static void conv_pairs(struct yaml_conv *c, unsigned depth, int sections_only)
{
	yaml_event_t key;

	while (conv_next(c, &key)) {
		int end = key.type == YAML_MAPPING_END_EVENT;

		if (!end)
			conv_pair(c, &key, depth, sections_only);
		yaml_event_delete(&key);
		if (end)
			return;
	}
}

static void conv_mapping(struct yaml_conv *c, unsigned depth)
{
	conv_pairs(c, depth, 0);
}

/* Expects an event of type want; reports what instead. */
static int conv_expect(struct yaml_conv *c, yaml_event_type_t want, const char *what)
{
	yaml_event_t ev;
	int ok;

	if (!conv_next(c, &ev))
		return 0;
	ok = ev.type == want;
	if (!ok)
		conv_error(c, ev_line(&ev), "%s", what);
	yaml_event_delete(&ev);
	return ok;
}

/* The top level: one mapping, of sections only for load-conn. */
static void conv_document(struct yaml_conv *c, int sections_only)
{
	if (!conv_expect(c, YAML_STREAM_START_EVENT, "not a YAML stream") ||
	    !conv_expect(c, YAML_DOCUMENT_START_EVENT, "empty file") ||
	    !conv_expect(c, YAML_MAPPING_START_EVENT, "the top level must be a mapping"))
		return;
	conv_pairs(c, 0, sections_only);
	if (conv_expect(c, YAML_DOCUMENT_END_EVENT, "trailing content"))
		(void)conv_expect(c, YAML_STREAM_END_EVENT, "one document only, please");
}

int tool_yaml_message(const char *file, int sections_only, struct vici_builder **out)
{
	struct yaml_conv c = {.file = file};
	FILE *f = fopen(file, "rb");

	*out = NULL;
	if (!f) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return EXIT_FAILED;
	}
	if (!yaml_parser_initialize(&c.parser)) {
		fclose(f);
		fprintf(stderr, "%s: %s\n", file, strerror(ENOMEM));
		return EXIT_FAILED;
	}
	yaml_parser_set_input_file(&c.parser, f);
	c.b = vici_builder_new();
	conv_document(&c, sections_only);
	yaml_parser_delete(&c.parser);
	fclose(f);
	if (c.errors) {
		vici_builder_free(c.b);
		return EXIT_FAILED;
	}
	*out = c.b;
	return EXIT_OK;
}
