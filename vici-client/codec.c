/*
 * vici segments and packets: the length prefix, the type byte and the
 * optional name. Messages are only passed through (borrowed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici.h"
#include "vici-client/vici_int.h"

static int packet_named(int type)
{
	return type == VICI_CMD_REQUEST || type == VICI_EVENT_REGISTER ||
	       type == VICI_EVENT_UNREGISTER || type == VICI_EVENT;
}

static int packet_has_msg(int type)
{
	return type == VICI_CMD_REQUEST || type == VICI_CMD_RESPONSE || type == VICI_EVENT;
}

int vici_packet_encode(enum vici_packet_type type, const char *name, const uint8_t *msg,
		       size_t msg_len, uint8_t **out, size_t *out_len)
{
	size_t nlen = name ? strlen(name) : 0;
	size_t body, off = VICI_LEN_SIZE;
	uint8_t *buf;

	*out = NULL;
	*out_len = 0;
	if ((int)type < 0 || type > VICI_PACKET_TYPE_MAX)
		return -EINVAL;
	if (packet_named(type) ? nlen == 0 || nlen > VICI_NAME_MAX : name != NULL)
		return -EINVAL;
	if ((msg_len && !msg) || (msg_len && !packet_has_msg(type)))
		return -EINVAL;
	if (msg_len > VICI_SEGMENT_MAX)
		return -EMSGSIZE;
	body = 1 + (packet_named(type) ? 1 + nlen : 0) + msg_len;
	if (body > VICI_SEGMENT_MAX)
		return -EMSGSIZE;
	buf = malloc(VICI_LEN_SIZE + body);
	if (!buf)
		return -ENOMEM;
	vici_put32(buf, (uint32_t)body);
	buf[off++] = (uint8_t)type;
	if (packet_named(type)) {
		buf[off++] = (uint8_t)nlen;
		memcpy(buf + off, name, nlen);
		off += nlen;
	}
	if (msg_len)
		memcpy(buf + off, msg, msg_len);
	*out = buf;
	*out_len = VICI_LEN_SIZE + body;
	return 0;
}

int vici_segment_length(const uint8_t *buf, size_t len, size_t *seg_len)
{
	uint32_t announced;

	if (len < VICI_LEN_SIZE)
		return 0;
	announced = vici_get32(buf);
	if (announced > VICI_SEGMENT_MAX)
		return -EMSGSIZE;
	if (len - VICI_LEN_SIZE < announced)
		return 0;
	*seg_len = VICI_LEN_SIZE + (size_t)announced;
	return 1;
}

/* Reads the 1-byte-length name at p[0..len) into out; returns bytes used or -EBADMSG. */
static int packet_name(const uint8_t *p, size_t len, char out[VICI_NAME_MAX + 1])
{
	size_t nlen;

	if (len < 1)
		return -EBADMSG;
	nlen = p[0];
	if (len - 1 < nlen || !vici_name_ok(p + 1, nlen))
		return -EBADMSG;
	memcpy(out, p + 1, nlen);
	out[nlen] = '\0';
	return (int)(1 + nlen);
}

int vici_packet_decode(const uint8_t *seg, size_t len, struct vici_packet *out)
{
	const uint8_t *p;
	size_t left;

	memset(out, 0, sizeof(*out));
	if (len < VICI_LEN_SIZE)
		return -EBADMSG;
	if (vici_get32(seg) > VICI_SEGMENT_MAX)
		return -EMSGSIZE;
	p = seg + VICI_LEN_SIZE;
	left = len - VICI_LEN_SIZE;
	if (vici_get32(seg) != left || left < 1 || p[0] > VICI_PACKET_TYPE_MAX)
		return -EBADMSG;
	out->type = (enum vici_packet_type)p[0];
	p++;
	left--;
	if (packet_named(out->type)) {
		int used = packet_name(p, left, out->name);

		if (used < 0)
			return used;
		p += used;
		left -= (size_t)used;
	}
	if (packet_has_msg(out->type)) {
		out->msg = p;
		out->msg_len = left;
	} else if (left) {
		return -EBADMSG;
	}
	return 0;
}
