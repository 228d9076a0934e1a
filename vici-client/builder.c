/*
 * Message builder with a sticky error: the adders record the first failure
 * and vici_builder_finish() reports it, so call sites stay flat.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici.h"
#include "vici-client/vici_int.h"

#define BUILDER_INITIAL_CAP 256

struct vici_builder {
	uint8_t *buf;
	size_t len;
	size_t cap;
	int err;
	unsigned depth;
	int in_list;
	int spent;
};

struct vici_builder *vici_builder_new(void)
{
	return calloc(1, sizeof(struct vici_builder));
}

void vici_builder_free(struct vici_builder *b)
{
	if (!b)
		return;
	free(b->buf);
	b->buf = NULL;
	free(b);
}

static void fail(struct vici_builder *b, int err)
{
	if (!b->err)
		b->err = err;
}

/* Makes room for n more bytes; the limit is checked before growing. */
static int reserve(struct vici_builder *b, size_t n)
{
	size_t cap = b->cap ? b->cap : BUILDER_INITIAL_CAP;
	uint8_t *nb;

	if (n > VICI_MSG_MAX - b->len) {
		fail(b, -EMSGSIZE);
		return -1;
	}
	if (b->len + n <= b->cap)
		return 0;
	while (cap < b->len + n)
		cap *= 2;
	if (cap > VICI_MSG_MAX)
		cap = VICI_MSG_MAX;
	nb = realloc(b->buf, cap);
	if (!nb) {
		fail(b, -ENOMEM);
		return -1;
	}
	b->buf = nb;
	b->cap = cap;
	return 0;
}

/* False when the builder cannot take another element (NULL, failed, spent). */
static int usable(struct vici_builder *b)
{
	if (!b)
		return 0;
	if (b->spent)
		fail(b, -EINVAL);
	return b->err == 0;
}

/* Appends one element; name may be NULL for unnamed types, value for valueless. */
static void put_element(struct vici_builder *b, int type, const char *name, const void *value,
			size_t vlen)
{
	size_t nlen = name ? strlen(name) : 0;
	size_t need = 1;

	if (vici_element_named(type)) {
		if (!name || nlen == 0 || nlen > VICI_NAME_MAX) {
			fail(b, -EINVAL);
			return;
		}
		need += 1 + nlen;
	}
	if (vici_element_valued(type)) {
		if (vlen > VICI_VALUE_MAX) {
			fail(b, -EMSGSIZE);
			return;
		}
		if (vlen && !value) {
			fail(b, -EINVAL);
			return;
		}
		need += 2 + vlen;
	}
	if (reserve(b, need) < 0)
		return;
	b->buf[b->len++] = (uint8_t)type;
	if (vici_element_named(type)) {
		b->buf[b->len++] = (uint8_t)nlen;
		memcpy(b->buf + b->len, name, nlen);
		b->len += nlen;
	}
	if (vici_element_valued(type)) {
		vici_put16(b->buf + b->len, (uint16_t)vlen);
		if (vlen)
			memcpy(b->buf + b->len + 2, value, vlen);
		b->len += 2 + vlen;
	}
}

void vici_builder_section_start(struct vici_builder *b, const char *name)
{
	if (!usable(b))
		return;
	if (b->in_list || b->depth >= VICI_DEPTH_MAX) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_SECTION_START, name, NULL, 0);
	b->depth++;
}

void vici_builder_section_end(struct vici_builder *b)
{
	if (!usable(b))
		return;
	if (b->in_list || b->depth == 0) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_SECTION_END, NULL, NULL, 0);
	b->depth--;
}

void vici_builder_key_value(struct vici_builder *b, const char *name, const void *value, size_t len)
{
	if (!usable(b))
		return;
	if (b->in_list) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_KEY_VALUE, name, value, len);
}

void vici_builder_key_str(struct vici_builder *b, const char *name, const char *value)
{
	if (b && !value) {
		fail(b, -EINVAL);
		return;
	}
	vici_builder_key_value(b, name, value, value ? strlen(value) : 0);
}

void vici_builder_list_start(struct vici_builder *b, const char *name)
{
	if (!usable(b))
		return;
	if (b->in_list) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_LIST_START, name, NULL, 0);
	b->in_list = 1;
}

void vici_builder_list_item(struct vici_builder *b, const void *value, size_t len)
{
	if (!usable(b))
		return;
	if (!b->in_list) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_LIST_ITEM, NULL, value, len);
}

void vici_builder_list_item_str(struct vici_builder *b, const char *value)
{
	if (b && !value) {
		fail(b, -EINVAL);
		return;
	}
	vici_builder_list_item(b, value, value ? strlen(value) : 0);
}

void vici_builder_list_end(struct vici_builder *b)
{
	if (!usable(b))
		return;
	if (!b->in_list) {
		fail(b, -EINVAL);
		return;
	}
	put_element(b, VICI_LIST_END, NULL, NULL, 0);
	b->in_list = 0;
}

int vici_builder_finish(struct vici_builder *b, uint8_t **msg, size_t *len)
{
	*msg = NULL;
	*len = 0;
	if (!b)
		return -ENOMEM;
	if (!usable(b))
		return b->err;
	b->spent = 1;
	if (b->depth || b->in_list)
		return b->err = -EINVAL;
	/* An empty message still gets a buffer, so success always means non-NULL. */
	if (reserve(b, 1) < 0)
		return b->err;
	*msg = b->buf;
	*len = b->len;
	b->buf = NULL;
	b->len = b->cap = 0;
	return 0;
}
