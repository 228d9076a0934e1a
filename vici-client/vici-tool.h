/*
 * Internal to the vici tool (vici-client/vici-tool*.c), not part of the
 * library: exit codes, the YAML reader and the output formats.
 */
#ifndef VICI_TOOL_H
#define VICI_TOOL_H

#include <stdio.h>

#include "vici-client/vici.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

/*
 * Reads a YAML file into a new vici message (*out, caller frees): mapping →
 * section, scalar → key/value, sequence of scalars → list. sections_only: every
 * top-level value must be a mapping (load-conn). Returns EXIT_OK, or
 * EXIT_FAILED after reporting every error as FILE:LINE: message on stderr.
 */
int tool_yaml_message(const char *file, int sections_only, struct vici_builder **out);

/* Writes s escaping control bytes as \xNN: values may hold anything. */
void tool_put_text(FILE *out, const char *s, size_t len);

/* A reply or event: the indented tree, or one line of JSON. */
void tool_print_tree(const struct vici_tree *tree, int json);

/* A monitor line: "EVENT k=v sect={ ... } list=[a,b]", or in JSON
 * {"event":EVENT,"data":{...}}. */
void tool_print_event(const char *event, const struct vici_tree *msg, int json);

/* A list-sa event as a summary, one IKE_SA and its CHILD_SAs per block. */
void tool_print_sa_summary(const struct vici_tree *msg);

/* '\n'-separated lines to out, each indented by two spaces. */
void tool_print_lines(FILE *out, const char *lines);

#endif /* VICI_TOOL_H */
