#include "appliance/sas.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dh_name {
	const char *name;
	unsigned group;
};

/* strongSwan's key_exchange_method_names, the groups an IKE_SA can carry. */
static const struct dh_name dh_names[] = {
    {"MODP_768", 1},	   {"MODP_1024", 2},	  {"MODP_1536", 5},   {"MODP_2048", 14},
    {"MODP_3072", 15},	   {"MODP_4096", 16},	  {"MODP_6144", 17},  {"MODP_8192", 18},
    {"ECP_256", 19},	   {"ECP_384", 20},	  {"ECP_521", 21},    {"MODP_1024_160", 22},
    {"MODP_2048_224", 23}, {"MODP_2048_256", 24}, {"ECP_192", 25},    {"ECP_224", 26},
    {"ECP_224_BP", 27},	   {"ECP_256_BP", 28},	  {"ECP_384_BP", 29}, {"ECP_512_BP", 30},
    {"CURVE_25519", 31},   {"CURVE_448", 32},
};

unsigned sas_dh_number(const char *name)
{
	for (size_t i = 0; i < sizeof dh_names / sizeof *dh_names; i++)
		if (strcmp(name, dh_names[i].name) == 0)
			return dh_names[i].group;
	return 0;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static uint32_t get_u32(const struct vici_node *sec, const char *key)
{
	const char *v = vici_node_get(sec, key);

	return v ? (uint32_t)strtoul(v, NULL, 10) : 0;
}

static int64_t get_secs(const struct vici_node *sec, const char *key)
{
	const char *v = vici_node_get(sec, key);

	return v ? strtoll(v, NULL, 10) : -1;
}

/* "AES_GCM_16" + "256" → "AES_GCM_16-256", as swanctl prints it. */
static void algorithm(const struct vici_node *sec, const char *alg, const char *size, char *dst,
		      size_t cap)
{
	const char *a = vici_node_get(sec, alg), *k = vici_node_get(sec, size);

	if (a && k)
		snprintf(dst, cap, "%s-%s", a, k);
	else
		copy(dst, cap, a);
}

static size_t read_ts(const struct vici_node *sec, const char *key, char (*dst)[SAS_TS_TEXT_MAX])
{
	const struct vici_node *list = vici_node_find(sec, key);
	size_t n = 0;

	if (!list || vici_node_kind(list) != VICI_NODE_LIST)
		return 0;
	for (size_t i = 0; i < vici_node_item_count(list) && n < SAS_TS_MAX; i++)
		copy(dst[n++], SAS_TS_TEXT_MAX, vici_node_item(list, i, NULL));
	return n;
}

static void read_child(const struct vici_node *sec, struct sas_child *c)
{
	memset(c, 0, sizeof *c);
	/* list-sa names the section "name-uniqueid" in newer releases: the
	 * "name" key is the config name either way. */
	copy(c->name, sizeof c->name,
	     vici_node_get(sec, "name") ? vici_node_get(sec, "name") : vici_node_name(sec));
	c->uniqueid = get_u32(sec, "uniqueid");
	copy(c->state, sizeof c->state, vici_node_get(sec, "state"));
	algorithm(sec, "encr-alg", "encr-keysize", c->esp, sizeof c->esp);
	copy(c->dh, sizeof c->dh, vici_node_get(sec, "dh-group"));
	c->dh_group = sas_dh_number(c->dh);
	c->nlocal_ts = read_ts(sec, "local-ts", c->local_ts);
	c->nremote_ts = read_ts(sec, "remote-ts", c->remote_ts);
	c->installed_s = get_secs(sec, "install-time");
}

void sas_read_ike(const struct vici_node *sec, struct sas_ike *out)
{
	const struct vici_node *children = vici_node_find(sec, "child-sas"), *n;

	memset(out, 0, sizeof *out);
	copy(out->name, sizeof out->name, vici_node_name(sec));
	out->uniqueid = get_u32(sec, "uniqueid");
	out->version = get_u32(sec, "version");
	copy(out->state, sizeof out->state, vici_node_get(sec, "state"));
	out->initiator =
	    vici_node_get(sec, "initiator") && strcmp(vici_node_get(sec, "initiator"), "yes") == 0;
	algorithm(sec, "encr-alg", "encr-keysize", out->encr, sizeof out->encr);
	copy(out->integ, sizeof out->integ, vici_node_get(sec, "integ-alg"));
	copy(out->prf, sizeof out->prf, vici_node_get(sec, "prf-alg"));
	copy(out->dh, sizeof out->dh, vici_node_get(sec, "dh-group"));
	out->dh_group = sas_dh_number(out->dh);
	out->established_s = get_secs(sec, "established");
	for (n = vici_node_first(children); n && out->nchildren < SAS_CHILDREN_MAX;
	     n = vici_node_next(n))
		if (vici_node_kind(n) == VICI_NODE_SECTION)
			read_child(n, &out->child[out->nchildren++]);
}

int sas_ts_cidr(const char *ts, struct cfg_cidr *out)
{
	char cidr[INET6_ADDRSTRLEN + 8];
	size_t len = strcspn(ts, "[");
	int err;

	/* charon always prints the prefix; a bare address is not a selector. */
	if (len >= sizeof cidr || !memchr(ts, '/', len))
		return -EINVAL;
	memcpy(cidr, ts, len);
	cidr[len] = '\0';
	err = cfg_parse_cidr(cidr, out);
	return err == -EDOM ? 0 : err; /* host bits set: out holds the network */
}
