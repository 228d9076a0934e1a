/*
 * Pull parser for vici messages: one element per call, structure checked as
 * it goes so that a tree builder on top never sees an unbalanced message.
 */
#include <errno.h>
#include <string.h>

#include "vici-client/vici.h"
#include "vici-client/vici_int.h"

void vici_parser_init(struct vici_parser *p, const uint8_t *msg, size_t len)
{
	memset(p, 0, sizeof(*p));
	p->msg = msg;
	p->len = len;
}

/* Reads the element's name and/or value after the type byte. */
static int read_body(struct vici_parser *p, int type, struct vici_element *e)
{
	size_t left = p->len - p->pos;
	const uint8_t *c = p->msg + p->pos;

	if (vici_element_named(type)) {
		size_t n = left ? c[0] : 0;

		if (left < 1 || left - 1 < n || !vici_name_ok(c + 1, n))
			return -EBADMSG;
		memcpy(e->name, c + 1, n);
		e->name[n] = '\0';
		c += 1 + n;
		left -= 1 + n;
	}
	if (vici_element_valued(type)) {
		if (left < 2 || left - 2 < vici_get16(c))
			return -EBADMSG;
		e->value = c + 2;
		e->value_len = vici_get16(c);
		c += 2 + e->value_len;
	}
	p->pos = (size_t)(c - p->msg);
	return 0;
}

/* Applies the element to the nesting state; 0 or -EBADMSG. */
static int check_structure(struct vici_parser *p, int type)
{
	switch (type) {
	case VICI_SECTION_START:
		if (p->in_list || p->depth >= VICI_DEPTH_MAX)
			return -EBADMSG;
		p->depth++;
		return 0;
	case VICI_SECTION_END:
		if (p->in_list || p->depth == 0)
			return -EBADMSG;
		p->depth--;
		return 0;
	case VICI_KEY_VALUE:
		return p->in_list ? -EBADMSG : 0;
	case VICI_LIST_START:
		if (p->in_list)
			return -EBADMSG;
		p->in_list = 1;
		return 0;
	case VICI_LIST_ITEM:
		return p->in_list ? 0 : -EBADMSG;
	case VICI_LIST_END:
		if (!p->in_list)
			return -EBADMSG;
		p->in_list = 0;
		return 0;
	default:
		return -EBADMSG;
	}
}

int vici_parser_next(struct vici_parser *p, struct vici_element *e)
{
	int type, rc;

	memset(e, 0, sizeof(*e));
	if (p->err)
		return p->err;
	if (p->pos == p->len)
		return (p->depth || p->in_list) ? (p->err = -EBADMSG) : 0;
	type = p->msg[p->pos++];
	rc = check_structure(p, type);
	if (rc == 0)
		rc = read_body(p, type, e);
	if (rc < 0)
		return p->err = rc;
	e->type = (enum vici_element_type)type;
	return type;
}
