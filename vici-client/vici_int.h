/*
 * Internal to the vici-client sources: byte-order helpers and the protocol's shape
 * tables. Never include from another directory.
 */
#ifndef VICI_INT_H
#define VICI_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vici-client/vici.h"

static inline uint16_t vici_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t vici_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void vici_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void vici_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline int vici_element_named(int type)
{
	return type == VICI_SECTION_START || type == VICI_KEY_VALUE || type == VICI_LIST_START;
}

static inline int vici_element_valued(int type)
{
	return type == VICI_KEY_VALUE || type == VICI_LIST_ITEM;
}

/* A wire name: 1..VICI_NAME_MAX bytes, no NUL, so the C-string copy is faithful. */
static inline int vici_name_ok(const uint8_t *name, size_t len)
{
	return len > 0 && len <= VICI_NAME_MAX && !memchr(name, '\0', len);
}

#endif /* VICI_INT_H */
