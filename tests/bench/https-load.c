/*
 * https-load: posts HL7 messages to the outbound API at a fixed rate, with
 * libcurl multi (HTTP/1.1, keep-alive connections, a bearer token).
 *
 *   https-load -u https://HOST:PORT --cacert CA.pem --token-file FILE
 *              [-D DESTS] [--dest-prefix P] [-r REQ_PER_S] [-d SECS | -n TOTAL]
 *              [-c CONNS] [-s SIZE] [--id-prefix P] [--json FILE]
 *
 * --json FILE posts FILE's bytes as application/json on every request (a
 * data model the bridge translates into HL7 v2), instead of generated HL7.
 *
 * Request i is due at start + i / RATE (wall clock) and goes to destination
 * P<i mod DESTS> ("d0", "d1", ...). Its latency runs from that due time, not
 * from when it was handed to libcurl, to the end of the answer: a request
 * that waited for a free connection, or behind a slow one, counts that wait
 * (no coordinated omission). At most CONNS connections are open; requests
 * beyond them wait in libcurl's queue and are timed from their due time too.
 *
 * Prints one line: sent, ok (2xx), errors, achieved rate (answered requests
 * / seconds from start to the last due time), p50, p99, max; exits 1 when
 * nothing was answered with a 2xx.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define NS_PER_S     1000000000ull
#define MAX_REQUESTS 10000000ull
#define MAX_INFLIGHT 65536u
#define TOKEN_MAX    512
#define ID_MAX	     64

struct req {
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t len;
	uint64_t index;
	uint64_t due_ns;
	char url[256];
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * nmemb;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: https-load -u https://HOST:PORT --cacert CA.pem --token-file FILE\n"
	    "                  [-D DESTS] [--dest-prefix P] [-r REQ_PER_S] [-d SECS | -n TOTAL]\n"
	    "                  [-c CONNS] [-s SIZE] [--id-prefix P] [--json FILE]\n");
	exit(2);
}

/* An ORM^O01 of about `size` bytes with MSH-10 = <prefix><i>. */
static char *make_body(const char *prefix, uint64_t i, size_t size, size_t *len)
{
	char *b = malloc(size + 512);
	int n;

	if (!b)
		return NULL;
	n = snprintf(b, 512,
		     "MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01^ORM_O01|%s%" PRIu64
		     "|P|2.5.1\rPID|1||P%" PRIu64 "^^^HOSP^MR||DOE^JANE\rORC|NW|%s%" PRIu64
		     "\rNTE|1||",
		     prefix, i, i % 1000, prefix, i);
	if (n < 0)
		n = 0;
	while ((size_t)n + 1 < size)
		b[n++] = 'x';
	b[n++] = '\r';
	*len = (size_t)n;
	return b;
}

/* The whole of a --json FILE; exits on error. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = malloc(16u << 20);

	if (!f || !b) {
		fprintf(stderr, "https-load: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	*len = fread(b, 1, 16u << 20, f);
	fclose(f);
	if (*len == 0) {
		fprintf(stderr, "https-load: %s: empty\n", path);
		exit(2);
	}
	return b;
}

static char *read_token(const char *path)
{
	static char tok[TOKEN_MAX];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		fprintf(stderr, "https-load: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	if (!fgets(tok, sizeof tok, f)) {
		fprintf(stderr, "https-load: %s: empty\n", path);
		exit(2);
	}
	fclose(f);
	tok[strcspn(tok, " \t\r\n")] = '\0';
	n = strlen(tok);
	if (n == 0) {
		fprintf(stderr, "https-load: %s: no token on the first line\n", path);
		exit(2);
	}
	return tok;
}

int main(int argc, char **argv)
{
	const char *base = NULL, *cacert = NULL, *token_file = NULL;
	const char *dest_prefix = "d", *id_prefix = "HL";
	char *json = NULL;
	size_t json_len = 0;
	unsigned dests = 1, conns = 64;
	double rate = 1000, secs = 10;
	uint64_t total = 0;
	size_t size = 1024;
	static const struct option lo[] = {
	    {"cacert", required_argument, NULL, 'C'},
	    {"token-file", required_argument, NULL, 'T'},
	    {"dest-prefix", required_argument, NULL, 'P'},
	    {"id-prefix", required_argument, NULL, 'I'},
	    {"json", required_argument, NULL, 'J'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "u:D:r:d:n:c:s:h", lo, NULL)) != -1) {
		switch (c) {
		case 'u':
			base = optarg;
			break;
		case 'C':
			cacert = optarg;
			break;
		case 'T':
			token_file = optarg;
			break;
		case 'P':
			dest_prefix = optarg;
			break;
		case 'I':
			id_prefix = optarg;
			break;
		case 'J':
			json = read_file(optarg, &json_len);
			break;
		case 'D':
			dests = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rate = strtod(optarg, NULL);
			break;
		case 'd':
			secs = strtod(optarg, NULL);
			break;
		case 'n':
			total = strtoull(optarg, NULL, 10);
			break;
		case 'c':
			conns = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			size = strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (!base || !cacert || !token_file || dests == 0 || dests > 10000 || rate <= 0 ||
	    conns == 0 || conns > 10000 || size < 200 || size > (16u << 20) ||
	    strlen(id_prefix) > ID_MAX || strlen(dest_prefix) > ID_MAX || strlen(base) > 128)
		usage();
	if (total == 0)
		total = (uint64_t)(rate * secs + 0.5);
	if (total == 0 || total > MAX_REQUESTS)
		usage();

	char auth[TOKEN_MAX + 32];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", read_token(token_file));

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "https-load: curl_global_init failed\n");
		return 2;
	}
	CURLM *multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conns);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conns);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

	uint64_t *lat = calloc(total, sizeof *lat);
	struct req **pool = calloc(MAX_INFLIGHT, sizeof *pool);
	unsigned npool = 0; /* free handles in pool[] */
	if (!lat || !pool) {
		fprintf(stderr, "https-load: out of memory\n");
		return 2;
	}
	uint64_t interval = (uint64_t)((double)NS_PER_S / rate);
	uint64_t start = now_ns(), next = 0, done = 0, ok = 0, errs = 0, nlat = 0;
	unsigned inflight = 0;
	uint64_t status_other = 0, last_due = start, last_done = start;
	long first_bad = 0;
	char first_err[CURL_ERROR_SIZE] = "";

	while (!stopping && (next < total || inflight > 0)) {
		uint64_t t = now_ns();
		/* Hand every request that is due to libcurl. */
		while (next < total && start + next * interval <= t && inflight < MAX_INFLIGHT) {
			struct req *r = npool ? pool[--npool] : calloc(1, sizeof *r);
			if (!r) {
				fprintf(stderr, "https-load: out of memory\n");
				return 2;
			}
			if (!r->easy) {
				r->easy = curl_easy_init();
				r->hdrs = curl_slist_append(NULL, auth);
				r->hdrs = curl_slist_append(
				    r->hdrs, json ? "Content-Type: application/json"
						  : "Content-Type: x-application/hl7-v2+er7");
				r->hdrs = curl_slist_append(r->hdrs, "Expect:");
			}
			free(r->body);
			r->index = next;
			r->due_ns = start + next * interval;
			if (json) {
				r->len = json_len;
				r->body = malloc(json_len);
				if (r->body)
					memcpy(r->body, json, json_len);
			} else {
				r->body = make_body(id_prefix, next, size, &r->len);
			}
			if (!r->body) {
				fprintf(stderr, "https-load: out of memory\n");
				return 2;
			}
			snprintf(r->url, sizeof r->url, "%s/v1/destinations/%s%u/messages", base,
				 dest_prefix, (unsigned)(next % dests));
			CURL *e = r->easy;
			curl_easy_setopt(e, CURLOPT_URL, r->url);
			curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
			curl_easy_setopt(e, CURLOPT_CAINFO, cacert);
			curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
			curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
			curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
			curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
			curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
			curl_easy_setopt(e, CURLOPT_PRIVATE, r);
			curl_multi_add_handle(multi, e);
			last_due = r->due_ns;
			inflight++;
			next++;
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct req *r = NULL;
			long code = 0;
			uint64_t end = now_ns();
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (m->data.result == CURLE_OK && code >= 200 && code < 300) {
				ok++;
				lat[nlat++] = end - r->due_ns;
				last_done = end;
			} else {
				errs++;
				if (m->data.result == CURLE_OK)
					status_other++;
				if (!first_bad) {
					first_bad = code ? code : -1;
					snprintf(first_err, sizeof first_err, "%s",
						 m->data.result == CURLE_OK
						     ? "HTTP status"
						     : curl_easy_strerror(m->data.result));
				}
			}
			done++;
			curl_multi_remove_handle(multi, m->easy_handle);
			inflight--;
			pool[npool++] = r;
		}
		/* Wait for traffic or the next due time, whichever is first. */
		int wait_ms = 100;
		if (next < total) {
			uint64_t due = start + next * interval, t2 = now_ns();
			wait_ms = due <= t2 ? 0 : (int)((due - t2) / 1000000ull);
		}
		if (wait_ms > 0)
			curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
	}

	double span = (double)(last_due - start) / NS_PER_S + (double)interval / NS_PER_S;
	double all = (double)(last_done - start) / NS_PER_S;
	qsort(lat, nlat, sizeof *lat, cmp_u64);
	double p50 = nlat ? (double)lat[(nlat - 1) * 50 / 100] / 1e6 : 0;
	double p99 = nlat ? (double)lat[(nlat - 1) * 99 / 100] / 1e6 : 0;
	double mx = nlat ? (double)lat[nlat - 1] / 1e6 : 0;
	printf("sent=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64 " target=%.0f/s rate=%.0f/s "
	       "answered_in=%.2fs p50=%.2fms p99=%.2fms max=%.2fms conns=%u dests=%u\n",
	       next, ok, errs, rate, span > 0 ? (double)next / span : 0, all, p50, p99, mx, conns,
	       dests);
	if (errs)
		fprintf(stderr,
			"https-load: %" PRIu64 " errors (%" PRIu64 " non-2xx); first: %ld %s\n",
			errs, status_other, first_bad, first_err);
	for (unsigned i = 0; i < npool; i++) {
		curl_easy_cleanup(pool[i]->easy);
		curl_slist_free_all(pool[i]->hdrs);
		free(pool[i]->body);
		free(pool[i]);
	}
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	free(lat);
	free(pool);
	return ok ? 0 : 1;
}
