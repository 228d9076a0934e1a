/*
 * A whole vici message in memory: built on the pull parser (so it inherits
 * its checks and depth limit), walked by path or by iteration, printed as
 * JSON and encoded back through the builder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici.h"
#include "vici-client/vici_int.h"

#define LIST_INITIAL_ITEMS 4

struct vici_blob {
	char *data; /* len bytes + NUL */
	size_t len;
};

struct vici_node {
	enum vici_node_kind kind;
	struct vici_node *next;
	struct vici_node *first, *last; /* section children */
	struct vici_blob value;		/* key/value */
	struct vici_blob *items;	/* list */
	size_t n_items, cap_items;
	char name[]; /* NUL-terminated, "" for the root */
};

struct vici_tree {
	struct vici_node *root;
};

/* The parse state: the open sections (root at 0) and the open list. */
struct tree_ctx {
	struct vici_node *stack[VICI_DEPTH_MAX + 1];
	unsigned depth;
	struct vici_node *list;
};

static void node_free(struct vici_node *n)
{
	struct vici_node *c, *next;

	for (c = n->first; c; c = next) {
		next = c->next;
		node_free(c); /* recursion bounded by VICI_DEPTH_MAX */
	}
	for (size_t i = 0; i < n->n_items; i++)
		free(n->items[i].data);
	free(n->items);
	free(n->value.data);
	free(n);
}

void vici_tree_free(struct vici_tree *t)
{
	if (!t)
		return;
	node_free(t->root);
	t->root = NULL;
	free(t);
}

/* Appends a new empty node to parent (NULL for the root); NULL when out of memory. */
static struct vici_node *node_add(struct vici_node *parent, enum vici_node_kind kind,
				  const char *name)
{
	size_t nlen = strlen(name);
	struct vici_node *n = calloc(1, sizeof(*n) + nlen + 1);

	if (!n)
		return NULL;
	n->kind = kind;
	memcpy(n->name, name, nlen + 1);
	if (parent) {
		if (parent->last)
			parent->last->next = n;
		else
			parent->first = n;
		parent->last = n;
	}
	return n;
}

static int blob_set(struct vici_blob *b, const uint8_t *data, size_t len)
{
	b->data = malloc(len + 1);
	if (!b->data)
		return -ENOMEM;
	if (len)
		memcpy(b->data, data, len);
	b->data[len] = '\0';
	b->len = len;
	return 0;
}

static int list_add(struct vici_node *list, const uint8_t *data, size_t len)
{
	if (list->n_items == list->cap_items) {
		size_t cap = list->cap_items ? 2 * list->cap_items : LIST_INITIAL_ITEMS;
		struct vici_blob *items = realloc(list->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		list->items = items;
		list->cap_items = cap;
	}
	if (blob_set(&list->items[list->n_items], data, len) < 0)
		return -ENOMEM;
	list->n_items++;
	return 0;
}

/* Applies one element the parser has already checked for structure. */
static int tree_add(struct tree_ctx *c, const struct vici_element *e)
{
	struct vici_node *top = c->stack[c->depth], *n;

	switch (e->type) {
	case VICI_SECTION_START:
		n = node_add(top, VICI_NODE_SECTION, e->name);
		if (!n)
			return -ENOMEM;
		c->stack[++c->depth] = n;
		return 0;
	case VICI_SECTION_END:
		c->depth--;
		return 0;
	case VICI_KEY_VALUE:
		n = node_add(top, VICI_NODE_VALUE, e->name);
		return n ? blob_set(&n->value, e->value, e->value_len) : -ENOMEM;
	case VICI_LIST_START:
		c->list = node_add(top, VICI_NODE_LIST, e->name);
		return c->list ? 0 : -ENOMEM;
	case VICI_LIST_ITEM:
		return list_add(c->list, e->value, e->value_len);
	case VICI_LIST_END:
		c->list = NULL;
		return 0;
	}
	return -EBADMSG;
}

int vici_tree_parse(const uint8_t *msg, size_t len, struct vici_tree **out)
{
	struct tree_ctx ctx = {.depth = 0};
	struct vici_parser p;
	struct vici_element e;
	struct vici_tree *t;
	int rc;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->root = node_add(NULL, VICI_NODE_SECTION, "");
	if (!t->root) {
		free(t);
		return -ENOMEM;
	}
	ctx.stack[0] = t->root;
	vici_parser_init(&p, msg, len);
	while ((rc = vici_parser_next(&p, &e)) > 0) {
		rc = tree_add(&ctx, &e);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		vici_tree_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

const struct vici_node *vici_tree_root(const struct vici_tree *t)
{
	return t->root;
}

/* The child of section named by the first len bytes of name, or NULL. */
static const struct vici_node *child(const struct vici_node *section, const char *name, size_t len)
{
	const struct vici_node *c;

	if (section->kind != VICI_NODE_SECTION)
		return NULL;
	for (c = section->first; c; c = c->next)
		if (strncmp(c->name, name, len) == 0 && c->name[len] == '\0')
			return c;
	return NULL;
}

const struct vici_node *vici_node_find(const struct vici_node *n, const char *path)
{
	if (!n || n->kind != VICI_NODE_SECTION)
		return NULL;
	if (*path == '\0')
		return n;
	for (;;) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);

		if (len == 0 || len > VICI_NAME_MAX)
			return NULL;
		n = child(n, path, len);
		if (!n || !dot)
			return n;
		path = dot + 1;
	}
}

const char *vici_node_get(const struct vici_node *section, const char *path)
{
	return vici_node_value(vici_node_find(section, path), NULL);
}

const struct vici_node *vici_tree_find(const struct vici_tree *t, const char *path)
{
	return vici_node_find(t->root, path);
}

const char *vici_tree_get(const struct vici_tree *t, const char *path)
{
	return vici_node_value(vici_tree_find(t, path), NULL);
}

const struct vici_node *vici_node_first(const struct vici_node *section)
{
	return section && section->kind == VICI_NODE_SECTION ? section->first : NULL;
}

const struct vici_node *vici_node_next(const struct vici_node *n)
{
	return n ? n->next : NULL;
}

const char *vici_node_name(const struct vici_node *n)
{
	return n->name;
}

enum vici_node_kind vici_node_kind(const struct vici_node *n)
{
	return n->kind;
}

const char *vici_node_value(const struct vici_node *n, size_t *len)
{
	if (!n || n->kind != VICI_NODE_VALUE)
		return NULL;
	if (len)
		*len = n->value.len;
	return n->value.data;
}

size_t vici_node_item_count(const struct vici_node *n)
{
	return n && n->kind == VICI_NODE_LIST ? n->n_items : 0;
}

const char *vici_node_item(const struct vici_node *n, size_t i, size_t *len)
{
	if (i >= vici_node_item_count(n))
		return NULL;
	if (len)
		*len = n->items[i].len;
	return n->items[i].data;
}

/* Length of the valid UTF-8 multibyte sequence at s, or 0 (overlong,
 * surrogate, beyond U+10FFFF, truncated or a stray byte). */
static size_t utf8_len(const uint8_t *s, size_t left)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static void json_string(FILE *out, const char *str, size_t len)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0, n;

	fputc('"', out);
	while (i < len) {
		uint8_t c = s[i];

		if (c == '"' || c == '\\') {
			fputc('\\', out);
			fputc(c, out);
		} else if (c == '\n') {
			fputs("\\n", out);
		} else if (c == '\t') {
			fputs("\\t", out);
		} else if (c == '\r') {
			fputs("\\r", out);
		} else if (c >= 0x20 && c < 0x80) {
			fputc(c, out);
		} else if (c >= 0x80 && (n = utf8_len(s + i, len - i)) > 0) {
			fwrite(s + i, 1, n, out);
			i += n;
			continue;
		} else {
			fprintf(out, "\\u%04x", c);
		}
		i++;
	}
	fputc('"', out);
}

static void json_section(FILE *out, const struct vici_node *section)
{
	const struct vici_node *c;

	fputc('{', out);
	for (c = section->first; c; c = c->next) {
		if (c != section->first)
			fputc(',', out);
		json_string(out, c->name, strlen(c->name));
		fputc(':', out);
		if (c->kind == VICI_NODE_SECTION) {
			json_section(out, c); /* recursion bounded by VICI_DEPTH_MAX */
		} else if (c->kind == VICI_NODE_VALUE) {
			json_string(out, c->value.data, c->value.len);
		} else {
			fputc('[', out);
			for (size_t i = 0; i < c->n_items; i++) {
				if (i)
					fputc(',', out);
				json_string(out, c->items[i].data, c->items[i].len);
			}
			fputc(']', out);
		}
	}
	fputc('}', out);
}

int vici_tree_to_json(const struct vici_tree *t, FILE *out)
{
	json_section(out, t->root);
	fputc('\n', out);
	return ferror(out) ? -EIO : 0;
}

static void encode_section(struct vici_builder *b, const struct vici_node *section)
{
	const struct vici_node *c;

	for (c = section->first; c; c = c->next) {
		switch (c->kind) {
		case VICI_NODE_SECTION:
			vici_builder_section_start(b, c->name);
			encode_section(b, c);
			vici_builder_section_end(b);
			break;
		case VICI_NODE_VALUE:
			vici_builder_key_value(b, c->name, c->value.data, c->value.len);
			break;
		case VICI_NODE_LIST:
			vici_builder_list_start(b, c->name);
			for (size_t i = 0; i < c->n_items; i++)
				vici_builder_list_item(b, c->items[i].data, c->items[i].len);
			vici_builder_list_end(b);
			break;
		}
	}
}

int vici_tree_encode(const struct vici_tree *t, uint8_t **msg, size_t *len)
{
	struct vici_builder *b = vici_builder_new();
	int rc;

	if (b)
		encode_section(b, t->root);
	rc = vici_builder_finish(b, msg, len);
	vici_builder_free(b);
	return rc;
}
