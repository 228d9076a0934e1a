/*
 * libFuzzer target for the supervisor ↔ bridge codec (ipc/ipc.h).
 *
 *   make fuzz-build && build/fuzz/fuzz_ipc -max_total_time=60 build/fuzz/fuzz_ipc.corpus
 *
 * Invariants: decode never crashes and answers 0, -EBADMSG or -EMSGSIZE;
 * a datagram it accepts re-encodes byte for byte (one meaning per bytes),
 * and decode -> encode -> decode gives the same message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static union ipc_msg first, second; /* large: off the stack */
static uint8_t out[IPC_MSG_MAX];

static size_t msg_size(enum ipc_type t)
{
	return t == IPC_GATE	  ? sizeof(first.gate)
	       : t == IPC_TUNNELS ? sizeof(first.tunnels)
				  : sizeof(first.status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum ipc_type t1, t2;
	size_t len = 0;
	int rc = ipc_decode(data, size, &t1, &first);

	CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
	CHECK(rc != -EMSGSIZE || size > IPC_MSG_MAX);
	if (rc < 0)
		return 0;
	CHECK(ipc_encode(t1, &first, out, sizeof(out), &len) == 0);
	CHECK(len == size && memcmp(out, data, size) == 0);
	CHECK(ipc_decode(out, len, &t2, &second) == 0);
	CHECK(t1 == t2 && memcmp(&first, &second, msg_size(t1)) == 0);
	return 0;
}
