# mllp-edge build. `make` builds every program into build/bin/.
# `make check` installs missing Debian packages, builds, and runs every test.
# `make check-asan` runs the same tests with AddressSanitizer and UBSan.

BUILD   ?= build
CC      ?= cc
PKGS    := libevent libevent_openssl libcurl sqlite3 yaml-0.1 openssl jansson libssh
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wvla -Wpointer-arith -Wundef
CFLAGS  ?= -O2 -g
# One version for every program and the package: the file VERSION.
VERSION := $(shell cat VERSION)
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -I. -MMD -MP -DMLLP_EDGE_VERSION='"$(VERSION)"'
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -levent -levent_openssl -lcurl -lsqlite3 -lyaml -lssl -lcrypto -ljansson -lssh) -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

ifeq ($(SAN),1)
CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined $(filter-out -O2 -g,$(CFLAGS))
LDFLAGS += -fsanitize=address,undefined
endif

BRIDGE_SRC  := $(filter-out mllp-bridge/main.c,$(wildcard mllp-bridge/*.c))
BRIDGE_OBJ  := $(BRIDGE_SRC:%.c=$(BUILD)/obj/%.o)
BRIDGE_LIB  := $(BUILD)/lib/libbridge.a
VICI_TOOL   := $(wildcard vici-client/vici-tool*.c)
VICI_SRC    := $(filter-out $(VICI_TOOL),$(wildcard vici-client/*.c))
VICI_OBJ    := $(VICI_SRC:%.c=$(BUILD)/obj/%.o)
VICI_LIB    := $(if $(VICI_SRC),$(BUILD)/lib/libvici.a)
IPC_SRC     := $(wildcard ipc/*.c)
IPC_LIB     := $(if $(IPC_SRC),$(BUILD)/lib/libipc.a)
APP_MAIN    := appliance/main.c appliance/appliancectl.c
APP_SRC     := $(filter-out $(APP_MAIN),$(wildcard appliance/*.c))
APP_LIB     := $(if $(APP_SRC),$(BUILD)/lib/libappliance.a)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOLS       := $(BUILD)/bin/mllp-load $(BUILD)/bin/delay-proxy $(BUILD)/bin/https-sink \
               $(BUILD)/bin/mllp-send $(BUILD)/bin/ipc-send $(BUILD)/bin/mllp-recv $(BUILD)/bin/https-load \
               $(BUILD)/bin/translate-cli $(BUILD)/bin/translate-bench $(BUILD)/bin/sftpc-cli \
               $(if $(VICI_LIB),$(BUILD)/bin/vici-bench)
PROGRAMS    := $(BUILD)/bin/mllp-bridge $(TOOLS) $(if $(VICI_TOOL),$(BUILD)/bin/vici) \
               $(if $(wildcard appliance/main.c),$(BUILD)/bin/appliance) \
               $(if $(wildcard appliance/appliancectl.c),$(BUILD)/bin/appliancectl)

.PHONY: all deps check check-asan unit integration e2e bench bench-e2e demo fuzz fuzz-build lint format format-check clean install image image-test deb deb-chroot

all: $(PROGRAMS) $(UNIT_BIN)

deps:
	@sh scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# -V prints VERSION: a new number rebuilds what prints it.
$(BUILD)/obj/appliance/main.o $(BUILD)/obj/mllp-bridge/main.o: VERSION

# Rebuilt from scratch: `ar r` would keep members of deleted sources.
$(BRIDGE_LIB): $(BRIDGE_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/lib/libipc.a: $(IPC_SRC:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/lib/libappliance.a: $(APP_SRC:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

# The supervisor reads appliance.yaml with the bridge's config module.
$(BUILD)/bin/appliance: $(BUILD)/obj/appliance/main.o $(APP_LIB) $(BRIDGE_LIB) $(VICI_LIB) $(IPC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/appliancectl: $(BUILD)/obj/appliance/appliancectl.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/lib/libvici.a: $(VICI_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/bin/vici: $(VICI_TOOL:%.c=$(BUILD)/obj/%.o) $(VICI_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/mllp-bridge: $(BUILD)/obj/mllp-bridge/main.o $(BRIDGE_LIB) $(IPC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/%: $(BUILD)/obj/tests/tools/%.o $(BRIDGE_LIB) $(IPC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/mllp-load: $(BUILD)/obj/tests/bench/mllp-load.o $(BRIDGE_LIB) $(IPC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/delay-proxy: $(BUILD)/obj/tests/bench/delay-proxy.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/https-load: $(BUILD)/obj/tests/bench/https-load.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/translate-bench: $(BUILD)/obj/tests/bench/translate-bench.o $(BRIDGE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/vici-bench: $(BUILD)/obj/tests/bench/vici-bench.o $(VICI_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(APP_LIB) $(BRIDGE_LIB) $(VICI_LIB) $(IPC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

# Unit suites (Check) and integration scenarios, one summary line at the end.
check: deps
	@$(MAKE) --no-print-directory all
	@if command -v clang >/dev/null 2>&1; then $(MAKE) --no-print-directory fuzz-build; fi
	@BUILD=$(BUILD) sh tests/run.sh

check-asan: deps
	@$(MAKE) --no-print-directory SAN=1 BUILD=build/asan check

unit: all
	@BUILD=$(BUILD) ONLY=unit sh tests/run.sh

integration: all
	@BUILD=$(BUILD) ONLY=integration sh tests/run.sh

# The whole appliance in three namespaces (tests/e2e/, docs/demo.md); also
# part of check, after the integration scenarios.
e2e: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) ONLY=e2e sh tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tests/bench/run.sh
	@BUILD=$(BUILD) bash tests/bench/vici.sh
	@BUILD=$(BUILD) bash tests/bench/outbound.sh
	@BUILD=$(BUILD) bash tests/bench/translate.sh

# Through the real tunnel, next to the same load over loopback (issue 11).
bench-e2e: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash tests/bench/e2e.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) KEEP=$(KEEP) bash scripts/demo.sh

# libFuzzer targets (clang). FUZZ_SECONDS per target; corpora stay in build/.
FUZZ_SECONDS ?= 30
FUZZERS := $(BUILD)/fuzz/fuzz_mllp $(BUILD)/fuzz/fuzz_hl7 $(BUILD)/fuzz/fuzz_conn \
           $(BUILD)/fuzz/fuzz_translate $(BUILD)/fuzz/fuzz_batch \
           $(if $(VICI_SRC),$(BUILD)/fuzz/fuzz_vici) $(if $(IPC_SRC),$(BUILD)/fuzz/fuzz_ipc)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c mllp-bridge/%.c mllp-bridge/%.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -o $@ $< mllp-bridge/$*.c
# One connection's path: deframer, header, kept header, answer.
$(BUILD)/fuzz/fuzz_conn: tests/fuzz/fuzz_conn.c mllp-bridge/mllp.c mllp-bridge/hl7.c \
		mllp-bridge/mllp.h mllp-bridge/hl7.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -o $@ $< mllp-bridge/mllp.c mllp-bridge/hl7.c
# JSON in, a refusal or a well-formed HL7 message out; the golden inputs seed it.
$(BUILD)/fuzz/fuzz_translate: tests/fuzz/fuzz_translate.c mllp-bridge/translate.c \
		mllp-bridge/translate.h
	@mkdir -p $(dir $@) $@.corpus
	cp tests/translate/*.json $@.corpus/
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -o $@ $< mllp-bridge/translate.c -ljansson
$(BUILD)/fuzz/fuzz_vici: tests/fuzz/fuzz_vici.c $(VICI_SRC) vici-client/vici.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -o $@ $< $(VICI_SRC)
$(BUILD)/fuzz/fuzz_ipc: tests/fuzz/fuzz_ipc.c $(IPC_SRC) ipc/ipc.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -o $@ $< $(IPC_SRC)
fuzz-build: $(FUZZERS)
fuzz: deps fuzz-build
	@for f in $(FUZZERS); do mkdir -p $$f.corpus; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$f.corpus 2>&1 | tail -n 3 || exit 1; done

QUEUE_H := $(firstword $(wildcard /usr/include/*/sys/queue.h /usr/include/sys/queue.h))
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c11 \
		-I. --include=$(QUEUE_H) mllp-bridge/ tests/tools/ $(wildcard vici-client appliance ipc)

SOURCES := $(shell find appliance ipc vici-client mllp-bridge tests -name '*.[ch]' 2>/dev/null)
format:
	clang-format -i $(SOURCES)
format-check:
	@clang-format --dry-run --Werror $(SOURCES)

# `make install DESTDIR=DIR`: what the appliance image and the Debian package
# lay down: the programs, rootfs/ as it is (units, example configuration),
# and the user documentation that the units point to.
DESTDIR ?=
install: $(PROGRAMS)
	install -d $(DESTDIR)/usr/sbin $(DESTDIR)/usr/bin $(DESTDIR)/usr/share/doc/mllp-edge
	install -m 0755 $(BUILD)/bin/appliance $(BUILD)/bin/mllp-bridge $(DESTDIR)/usr/sbin/
	install -m 0755 $(BUILD)/bin/appliancectl $(BUILD)/bin/vici $(DESTDIR)/usr/bin/
	cp -R --no-preserve=ownership rootfs/. $(DESTDIR)/
	install -m 0644 README.md docs/*.md $(DESTDIR)/usr/share/doc/mllp-edge/

# The VM image (docs/image.md): Debian 12 with the kernel's ESP, this
# `install`, rootfs/, as $(BUILD)/image/mllp-edge.qcow2. Root; downloads from
# Debian's mirror (the root file system is cached by package list).
# Not part of check: it takes minutes, image-test longer (docs/image.md).
# deps: the build's packages (a fresh clone); image.sh's `make install`
# builds the programs.
image: deps
	@bash scripts/image.sh $(BUILD)

# Boots the image twice under qemu (TCG): the appliance and a hospital peer,
# a tunnel with DH 21 in the kernel's ESP, one HL7 message to an HTTPS sink.
# The image is rebuilt first (from the cached root file system), so that it
# holds this tree; `bash tests/vm/image-test.sh` tests the image as it is.
image-test: image
	@$(MAKE) --no-print-directory $(BUILD)/bin/https-sink $(BUILD)/bin/mllp-send
	@BUILD=$(BUILD) bash tests/vm/image-test.sh

# `make deb`: $(BUILD)/mllp-edge_VERSION_ARCH.deb from `make install` (dpkg-deb,
# no debhelper); packaging/build-deb.sh says how, tests/integration/t_package.sh
# checks it and installs it into a throwaway Debian chroot.
deb: $(PROGRAMS)
	@BUILD=$(BUILD) MAKE="$(MAKE)" sh packaging/build-deb.sh

# t_package (part of check) plus the Dockerfile's build stage emulated and an
# install into a minimal Debian 12 that has only the package's Depends
# (mmdebstrap): 1-3 minutes and a download from the Debian mirror, too slow
# for check.
deb-chroot: deps
	@$(MAKE) --no-print-directory all
	@command -v mmdebstrap >/dev/null || { echo "deb-chroot: apt-get install mmdebstrap" >&2; exit 1; }
	@BUILD=$(BUILD) PKG_CHROOT=1 bash tests/integration/t_package.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
