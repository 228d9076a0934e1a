/* appliance/sas.c and the load-conn message of appliance/reconcile.c. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "appliance/reconcile.h"
#include "appliance/sas.h"

/* A list-sa event as charon 5.9 sends it: one IKE_SA, two CHILD_SAs (a
 * rekey in progress), names "name-uniqueid" with a "name" key. */
static struct vici_tree *list_sa_event(void)
{
	struct vici_builder *b = vici_builder_new();
	struct vici_tree *t = NULL;
	uint8_t *msg;
	size_t len;

	vici_builder_section_start(b, "hospital-a");
	vici_builder_key_str(b, "uniqueid", "7");
	vici_builder_key_str(b, "state", "ESTABLISHED");
	vici_builder_key_str(b, "version", "2");
	vici_builder_key_str(b, "initiator", "yes");
	vici_builder_key_str(b, "encr-alg", "AES_GCM_16");
	vici_builder_key_str(b, "encr-keysize", "256");
	vici_builder_key_str(b, "prf-alg", "PRF_HMAC_SHA2_384");
	vici_builder_key_str(b, "dh-group", "ECP_521");
	vici_builder_key_str(b, "established", "12");
	vici_builder_section_start(b, "child-sas");
	vici_builder_section_start(b, "mllp-8");
	vici_builder_key_str(b, "name", "mllp");
	vici_builder_key_str(b, "uniqueid", "8");
	vici_builder_key_str(b, "state", "REKEYED");
	vici_builder_key_str(b, "encr-alg", "AES_GCM_16");
	vici_builder_key_str(b, "encr-keysize", "256");
	vici_builder_section_end(b);
	vici_builder_section_start(b, "mllp-9");
	vici_builder_key_str(b, "name", "mllp");
	vici_builder_key_str(b, "uniqueid", "9");
	vici_builder_key_str(b, "state", "INSTALLED");
	vici_builder_key_str(b, "encr-alg", "AES_GCM_16");
	vici_builder_key_str(b, "encr-keysize", "256");
	vici_builder_key_str(b, "dh-group", "MODP_2048");
	vici_builder_list_start(b, "local-ts");
	vici_builder_list_item_str(b, "203.0.113.1/32");
	vici_builder_list_end(b);
	vici_builder_list_start(b, "remote-ts");
	vici_builder_list_item_str(b, "203.0.113.64/26");
	vici_builder_list_item_str(b, "2001:db8::/32[tcp/2575]");
	vici_builder_list_end(b);
	vici_builder_section_end(b);
	vici_builder_section_end(b);
	vici_builder_section_end(b);
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	vici_builder_free(b);
	ck_assert_int_eq(vici_tree_parse(msg, len, &t), 0);
	free(msg);
	return t;
}

START_TEST(reads_ike_and_children)
{
	struct vici_tree *t = list_sa_event();
	struct sas_ike *ike = calloc(1, sizeof *ike);

	sas_read_ike(vici_node_first(vici_tree_root(t)), ike);
	ck_assert_str_eq(ike->name, "hospital-a");
	ck_assert_uint_eq(ike->uniqueid, 7);
	ck_assert_str_eq(ike->state, "ESTABLISHED");
	ck_assert_int_eq(ike->initiator, 1);
	ck_assert_uint_eq(ike->version, 2);
	ck_assert_str_eq(ike->encr, "AES_GCM_16-256");
	ck_assert_str_eq(ike->prf, "PRF_HMAC_SHA2_384");
	ck_assert_uint_eq(ike->dh_group, 21);
	ck_assert_int_eq(ike->established_s, 12);
	ck_assert_uint_eq(ike->nchildren, 2);
	ck_assert_str_eq(ike->child[0].name, "mllp");
	ck_assert_str_eq(ike->child[0].dh, "");
	ck_assert_uint_eq(ike->child[0].dh_group, 0);
	ck_assert_str_eq(ike->child[1].state, "INSTALLED");
	ck_assert_uint_eq(ike->child[1].dh_group, 14);
	ck_assert_uint_eq(ike->child[1].nremote_ts, 2);
	ck_assert_str_eq(ike->child[1].remote_ts[1], "2001:db8::/32[tcp/2575]");
	free(ike);
	vici_tree_free(t);
}
END_TEST

static const struct {
	const char *name;
	unsigned group;
} dh_cases[] = {
    {"MODP_2048", 14}, {"ECP_521", 21}, {"MODP_1024", 2}, {"CURVE_25519", 31}, {"", 0}, {"NOPE", 0},
};

START_TEST(dh_numbers)
{
	ck_assert_uint_eq(sas_dh_number(dh_cases[_i].name), dh_cases[_i].group);
}
END_TEST

static const struct {
	const char *ts;
	int rc, family;
	unsigned prefix;
	const char *addr;
} ts_cases[] = {
    {"203.0.113.64/26", 0, AF_INET, 26, "203.0.113.64"},
    {"2001:db8::/32[tcp/2575]", 0, AF_INET6, 32, "2001:db8::"},
    {"10.0.0.1/32[udp]", 0, AF_INET, 32, "10.0.0.1"},
    {"203.0.113.70/26", 0, AF_INET, 26, "203.0.113.64"}, /* host bits: the network */
    {"203.0.113.1", -EINVAL, 0, 0, NULL},
    {"10.0.0.1..10.0.0.9", -EINVAL, 0, 0, NULL},
    {"10.0.0.0/33", -EINVAL, 0, 0, NULL},
    {"10.0.0.0/", -EINVAL, 0, 0, NULL},
    {"host/24", -EINVAL, 0, 0, NULL},
};

START_TEST(ts_to_cidr)
{
	uint8_t want[16] = {0};
	struct cfg_cidr c;

	ck_assert_int_eq(sas_ts_cidr(ts_cases[_i].ts, &c), ts_cases[_i].rc);
	if (ts_cases[_i].rc)
		return;
	ck_assert_int_eq(c.family, ts_cases[_i].family);
	ck_assert_uint_eq(c.prefix, ts_cases[_i].prefix);
	ck_assert_int_eq(inet_pton(c.family, ts_cases[_i].addr, want), 1);
	ck_assert_mem_eq(c.addr, want, c.family == AF_INET ? 4 : 16);
}
END_TEST

/* The load-conn message carries what the file says, and the settings that
 * leave (re-)initiation to the supervisor. */
START_TEST(load_conn_message)
{
	char *la[] = {"198.51.100.1"}, *ra[] = {"198.51.100.2"};
	char *ike[] = {"aes256gcm16-prfsha384-ecp521"}, *esp[] = {"aes256gcm16-ecp521"};
	struct cfg_child ch = {.name = "mllp", .esp_proposals = esp, .nesp_proposals = 1};
	struct cfg_tunnel t = {.name = "hospital-a",
			       .local_addrs = la,
			       .nlocal_addrs = 1,
			       .remote_addrs = ra,
			       .nremote_addrs = 1,
			       .remote_id = "peer.test",
			       .psk_file = "/nonexistent",
			       .ike_proposals = ike,
			       .nike_proposals = 1,
			       .dpd_delay_ms = 2000,
			       .children = &ch,
			       .nchildren = 1};
	struct cfg_cidr lts, rts;
	struct vici_builder *b = vici_builder_new();
	struct vici_tree *tree = NULL;
	const struct vici_node *n;
	uint8_t *msg;
	size_t len;

	ck_assert_int_eq(cfg_parse_cidr("203.0.113.1/32", &lts), 0);
	ck_assert_int_eq(cfg_parse_cidr("203.0.113.64/26", &rts), 0);
	ch.local_ts = &lts, ch.nlocal_ts = 1, ch.remote_ts = &rts, ch.nremote_ts = 1;
	reconcile_conn_msg(&t, NULL, b);
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	vici_builder_free(b);
	ck_assert_int_eq(vici_tree_parse(msg, len, &tree), 0);
	free(msg);
	ck_assert_str_eq(vici_tree_get(tree, "hospital-a.version"), "2");
	ck_assert_str_eq(vici_tree_get(tree, "hospital-a.dpd_delay"), "2s");
	ck_assert_str_eq(vici_tree_get(tree, "hospital-a.local.auth"), "psk");
	ck_assert_ptr_null(vici_tree_get(tree, "hospital-a.local.id"));
	ck_assert_str_eq(vici_tree_get(tree, "hospital-a.remote.id"), "peer.test");
	ck_assert_str_eq(vici_tree_get(tree, "hospital-a.children.mllp.start_action"), "none");
	n = vici_tree_find(tree, "hospital-a.children.mllp.remote_ts");
	ck_assert_ptr_nonnull(n);
	ck_assert_str_eq(vici_node_item(n, 0, NULL), "203.0.113.64/26");
	n = vici_tree_find(tree, "hospital-a.proposals");
	ck_assert_str_eq(vici_node_item(n, 0, NULL), "aes256gcm16-prfsha384-ecp521");
	vici_tree_free(tree);
}
END_TEST

/* A certificate tunnel: pubkey both ways, the local certificate in certs,
 * each certificate of the CA bundle its own cacerts item, junk between
 * blocks ignored. */
START_TEST(load_conn_message_certs)
{
	char *la[] = {"198.51.100.1"}, *ra[] = {"198.51.100.2"}, *p[] = {"aes256-sha384-ecp521"};
	char cert[] = "-----BEGIN CERTIFICATE-----\nEE\n-----END CERTIFICATE-----\n";
	char ca[] = "root\n-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
		    "junk\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
	struct reconcile_pems pems = {
	    .cert = cert, .cert_len = sizeof cert - 1, .ca = ca, .ca_len = sizeof ca - 1};
	struct cfg_child ch = {.name = "mllp"};
	struct cfg_tunnel t = {.name = "x",
			       .local_addrs = la,
			       .nlocal_addrs = 1,
			       .remote_addrs = ra,
			       .nremote_addrs = 1,
			       .local_id = "edge.test",
			       .ike_proposals = p,
			       .nike_proposals = 1,
			       .children = &ch,
			       .nchildren = 1};
	struct vici_builder *b = vici_builder_new();
	struct vici_tree *tree = NULL;
	const struct vici_node *n;
	uint8_t *msg;
	size_t len;

	reconcile_conn_msg(&t, &pems, b);
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	vici_builder_free(b);
	ck_assert_int_eq(vici_tree_parse(msg, len, &tree), 0);
	free(msg);
	ck_assert_str_eq(vici_tree_get(tree, "x.local.auth"), "pubkey");
	ck_assert_str_eq(vici_tree_get(tree, "x.remote.auth"), "pubkey");
	n = vici_tree_find(tree, "x.local.certs");
	ck_assert_uint_eq(vici_node_item_count(n), 1);
	ck_assert_str_eq(vici_node_item(n, 0, NULL),
			 "-----BEGIN CERTIFICATE-----\nEE\n-----END CERTIFICATE-----");
	n = vici_tree_find(tree, "x.remote.cacerts");
	ck_assert_uint_eq(vici_node_item_count(n), 2);
	ck_assert_str_eq(vici_node_item(n, 0, NULL),
			 "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----");
	ck_assert_str_eq(vici_node_item(n, 1, NULL),
			 "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----");
	ck_assert_ptr_null(vici_tree_find(tree, "x.local.cacerts"));
	vici_tree_free(tree);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("appliance_sas");
	TCase *tc = tcase_create("sas");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, reads_ike_and_children);
	tcase_add_loop_test(tc, dh_numbers, 0, sizeof dh_cases / sizeof *dh_cases);
	tcase_add_loop_test(tc, ts_to_cidr, 0, sizeof ts_cases / sizeof *ts_cases);
	tcase_add_test(tc, load_conn_message);
	tcase_add_test(tc, load_conn_message_certs);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
