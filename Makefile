# pop3d: one plain GNU Makefile.
#   make            build build/pop3d
#   make run        install what is missing, build, run the daemon on a demo setup
#   make test       install what is missing, build, run every test, replay the fuzz corpora,
#                   then run every test again under ASan+UBSan
#   make check      the tests only (no dependency step), for the build in $(BUILD)
#   make install    copy the binary, man pages and examples under $(DESTDIR)$(PREFIX)

PKG_CONFIG ?= pkg-config
PKGS       := libuv openssl libconfig libxcrypt libsystemd
BUILD      ?= build
OPT        ?= -O2 -g
SAN        ?=
PYTHON     ?= python3
PREFIX     ?= /usr/local
DESTDIR    ?=
INSTALL    ?= install

WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -Wformat=2 -Wno-format-nonliteral -Wcast-qual
CPPFLAGS += -I. -D_GNU_SOURCE -MMD -MP
CFLAGS   += -std=c11 $(OPT) $(WARN) $(SAN) $(shell $(PKG_CONFIG) --cflags $(PKGS))
LDFLAGS  += $(SAN)
LDLIBS   += $(shell $(PKG_CONFIG) --libs $(PKGS)) -lpthread

# Everything but main.c goes into a library the unit tests link against.
LIB_SRCS := server/strutil.c
LIB_SRCS += server/diag.c
LIB_SRCS += server/linein.c
LIB_SRCS += server/multiline.c
LIB_SRCS += server/config.c
LIB_SRCS += server/confset.c
LIB_SRCS += server/auth.c
LIB_SRCS += server/tlsio.c
LIB_SRCS += server/sasl.c
LIB_SRCS += server/log.c
LIB_SRCS += server/ipcount.c
LIB_SRCS += server/session.c
LIB_SRCS += server/pop3.c
LIB_SRCS += server/pop3_auth.c
LIB_SRCS += server/pop3_trans.c
LIB_SRCS += server/listen.c
LIB_SRCS += server/worker.c
LIB_SRCS += server/proxy.c
LIB_SRCS += server/privdrop.c
LIB_SRCS += server/sdnotify.c
LIB_SRCS += maildrop/maildir.c
LIB_SRCS += maildrop/afile.c
LIB_SRCS += maildrop/cache.c
LIB_SRCS += maildrop/update.c
LIB_SRCS += maildrop/state.c
LIB_SRCS += policy/policy.c
LIB_SRCS += policy/rules.c
LIB_SRCS += policy/retention.c
LIB_SRCS += policy/expire.c

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/server/main.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps deps-test run test check check-unit check-integration check-san clean install

all: $(BUILD)/pop3d

$(BUILD)/pop3d: $(MAIN_OBJ) $(BUILD)/libpop3d.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libpop3d.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpop3d.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libpop3d.a \
		$(shell $(PKG_CONFIG) --libs cmocka) $(LDLIBS)

# test_linein checks that input buffers are wiped before they are freed: it sees linein's free().
$(BUILD)/tests/test_linein: LDFLAGS += -Wl,--wrap=free

deps:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test

run: deps
	$(MAKE) all
	sh scripts/demo.sh $(BUILD)/pop3d

# POP3D_REQUIRE_ALL=1: deps-test installed every tool the tests use, so tests/run.py counts a
# skipped test (no fail2ban-regex, no haproxy, not root) as failed instead of passing quietly.
test: deps-test
	POP3D_REQUIRE_ALL=1 $(MAKE) check
	$(MAKE) fuzz-replay
	POP3D_REQUIRE_ALL=1 $(MAKE) check-san

check: all $(UNIT_BINS)
	$(PYTHON) tests/run.py --build $(BUILD) $(UNIT_BINS)

check-san:
	$(MAKE) BUILD=build/san OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" check

# No network and no root needed: DESTDIR=/tmp/stage make install stages a package.
DOCDIR  := $(DESTDIR)$(PREFIX)/share/doc/pop3d/examples
EXAMPLES := etc/pop3d.conf etc/users.example etc/pop3d.service etc/pop3d.socket etc/haproxy.cfg

install: $(BUILD)/pop3d
	$(INSTALL) -d -m 0755 $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DOCDIR)
	$(INSTALL) -m 0755 $(BUILD)/pop3d $(DESTDIR)$(PREFIX)/sbin/pop3d
	$(INSTALL) -m 0644 etc/pop3d.8 $(DESTDIR)$(PREFIX)/share/man/man8/pop3d.8
	$(INSTALL) -m 0644 etc/pop3d.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/pop3d.conf.5
	$(INSTALL) -m 0644 $(EXAMPLES) $(DOCDIR)/
	# The unit names the binary: point it at this PREFIX (etc/ says /usr/local).
	sed 's|/usr/local/sbin/pop3d|$(PREFIX)/sbin/pop3d|g' etc/pop3d.service > $(DOCDIR)/pop3d.service
	chmod 0644 $(DOCDIR)/pop3d.service
	if [ -d etc/fail2ban ]; then \
		for f in $$(cd etc && find fail2ban -type f); do \
			$(INSTALL) -d -m 0755 "$(DOCDIR)/$$(dirname "$$f")" && \
			$(INSTALL) -m 0644 "etc/$$f" "$(DOCDIR)/$$f" || exit 1; \
		done; \
	fi

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(UNIT_BINS:=.d)

# `make bench`: pop3d beside Dovecot on the same data (tests/bench/README.md).
# BENCH_QUICK=1 for a smoke run of every scenario in under a minute.
.PHONY: bench
bench: all
	@mkdir -p $(BUILD)/bench
	$(CC) -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(shell $(PKG_CONFIG) --cflags openssl) \
		-o $(BUILD)/bench/loadgen tests/bench/loadgen.c $(shell $(PKG_CONFIG) --libs openssl) -lpthread
	$(PYTHON) tests/bench/bench.py --loadgen $(BUILD)/bench/loadgen --pop3d $(BUILD)/pop3d --out $(BUILD)/bench

# ---- Fuzzing and fault injection (tests/fuzz/README.md, tests/fault/README.md) ----
#   make fuzz          install clang's libFuzzer if missing, build every harness, run each
#                      for FUZZ_SECONDS (default 60) with ASan+UBSan
#   make fuzz-replay   build the harnesses and run each once over its corpus (a fixed crash
#                      stays fixed)
#   make fault         build the LD_PRELOAD fault-injection shim $(BUILD)/fault/libfault.so
# The sources are compiled again with the fuzzer's instrumentation into an archive of their
# own; each harness links what it needs from it (never $(BUILD)/libpop3d.a).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                $(shell $(PKG_CONFIG) --cflags $(PKGS))
FUZZ_LIBS    := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lpthread
FUZZ_NAMES   := linein multiline sasl maildir users state cache config proxy

FUZZ_LIB  := $(FUZZ_BUILD)/libpop3d-fuzz.a
FUZZ_LOBJ := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_HOBJ := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o) $(FUZZ_BUILD)/obj/tests/fuzz/fuzzutil.o
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-replay fuzz-deps fuzz-build fault

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	sh tests/fuzz/run.sh fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-replay: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	sh tests/fuzz/run.sh replay $(FUZZ_BUILD) $(FUZZ_NAMES)

fuzz-deps:
	@sh scripts/deps.sh build
	@FUZZ_CC=$(FUZZ_CC) sh tests/fuzz/deps.sh

fuzz-build: $(FUZZ_BINS)

# pop3d's sources: its warnings without -Werror (clang warns where gcc does not).
$(FUZZ_LOBJ): $(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) $(filter-out -Werror,$(WARN)) -c -o $@ $<

$(FUZZ_HOBJ): $(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) $(WARN) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LOBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/obj/tests/fuzz/fuzzutil.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

fault: $(BUILD)/fault/libfault.so

$(BUILD)/fault/libfault.so: tests/fault/fault.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -shared -MMD -MP -o $@ $< -ldl

-include $(FUZZ_LOBJ:.o=.d) $(FUZZ_HOBJ:.o=.d) $(BUILD)/fault/libfault.d

# ---- Crash test (tests/crash/README.md) ----
#   make crash         SIGKILL pop3d during UPDATE and expiry sweeps, restart, check that no mail
#                      is lost: at most CRASH_TRIALS trials (default 1000), no trial started after
#                      CRASH_SECONDS (default 300); CRASH_SEED=N repeats a run. `make test` runs a
#                      short version (tests/integration/test_crash.py).
CRASH_TRIALS  ?= 1000
CRASH_SECONDS ?= 300
CRASH_SEED    ?=
.PHONY: crash
crash: all
	$(PYTHON) tests/crash/crash.py --pop3d $(BUILD)/pop3d --trials $(CRASH_TRIALS) \
		--seconds $(CRASH_SECONDS) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

# ---- Valgrind (tests/SECURITY.md) ----
#   make valgrind      run VALGRIND_MODULES of the integration tests with every pop3d they start
#                      (daemons, --expire, -t) under valgrind memcheck, VALGRIND_JOBS modules at a
#                      time; fails on any failed test and on any memcheck report (invalid access,
#                      uninitialised value, bad free, definite leak), one log per process in
#                      $(BUILD)/valgrind/logs. 6-7 minutes on 2 cores, so not part of `make test`.
# --freelist-vol: memcheck holds 20 MB of freed blocks back from reuse by default (to catch use
# after free), which test_tls's bounded-memory check counts as growth; 2 MB still spans pop3d's
# largest buffers many times over.
VALGRIND         ?= valgrind
VALGRIND_MODULES ?= protocol corpus maildrop tls sasl policy
VALGRIND_JOBS    ?= 2
VALGRIND_TIMEOUT ?= 900
VALGRIND_FLAGS   ?= -q --tool=memcheck --error-exitcode=99 --leak-check=full \
                    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
                    --freelist-vol=2000000 --num-callers=30
VG_DIR := $(abspath $(BUILD))/valgrind

.PHONY: valgrind
valgrind: all
	@command -v $(VALGRIND) >/dev/null 2>&1 || { \
		[ "$$(id -u)" = 0 ] || { echo "valgrind: not root; install valgrind and run again" >&2; exit 1; }; \
		echo "valgrind: installing valgrind"; export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends valgrind || \
		{ apt-get update -q && apt-get install -y -q --no-install-recommends valgrind; }; }
	@rm -rf $(VG_DIR) && mkdir -p $(VG_DIR)/logs
	@printf '#!/bin/sh\n# make valgrind: pop3d under memcheck, one log per process\nexec %s %s --log-file=%s/logs/vg.%%p.log %s "$$@"\n' \
		'$(VALGRIND)' '$(strip $(VALGRIND_FLAGS))' '$(VG_DIR)' '$(abspath $(BUILD))/pop3d' >$(VG_DIR)/pop3d
	@chmod +x $(VG_DIR)/pop3d
	@$(VG_DIR)/pop3d --version >/dev/null && ls $(VG_DIR)/logs/vg.*.log >/dev/null 2>&1 || \
		{ echo "valgrind: $(VG_DIR)/pop3d does not run under $(VALGRIND)" >&2; exit 1; }
	@rm -f $(VG_DIR)/logs/*
	@echo "valgrind: $(VALGRIND_MODULES) with POP3D=$(VG_DIR)/pop3d, $(VALGRIND_JOBS) at a time"
	@t0=$$(date +%s); \
	printf '%s\n' $(VALGRIND_MODULES) | xargs -P $(VALGRIND_JOBS) -I{} sh -c \
		'cd tests/integration && t=$$(date +%s); \
		 POP3D=$(VG_DIR)/pop3d PYTHONDONTWRITEBYTECODE=1 timeout $(VALGRIND_TIMEOUT) \
			$(PYTHON) -m unittest -v test_{} >$(VG_DIR)/test_{}.out 2>&1; \
		 echo "valgrind: test_{} exit $$? in $$(( $$(date +%s) - t )) s: $$(tail -n 1 $(VG_DIR)/test_{}.out)"'; \
	passed=0; failed=0; \
	for m in $(VALGRIND_MODULES); do \
		out=$(VG_DIR)/test_$$m.out; \
		ran=$$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' $$out | tail -n 1); \
		res=$$(tail -n 1 $$out); \
		bad=$$(echo "$$res" | grep -o '\(failures\|errors\|unexpected successes\)=[0-9]*' | \
			sed 's/.*=//' | awk '{s += $$1} END {print s + 0}'); \
		skip=$$(echo "$$res" | sed -n 's/.*skipped=\([0-9]*\).*/\1/p'); \
		case "$$res" in OK*|FAILED*) ;; *) bad=1; ran=1; skip=0 ;; esac; \
		if [ "$$bad" -gt 0 ]; then echo "=== $$out"; cat $$out; echo; fi; \
		passed=$$((passed + $${ran:-0} - bad - $${skip:-0})); failed=$$((failed + bad)); \
	done; \
	procs=$$(ls $(VG_DIR)/logs | wc -l); reports=0; \
	for f in $(VG_DIR)/logs/vg.*.log; do \
		[ -s "$$f" ] || continue; reports=$$((reports + 1)); echo "=== memcheck report $$f"; cat "$$f"; \
	done; \
	[ "$$procs" -gt 0 ] || { echo "valgrind: no pop3d process ran under valgrind"; failed=$$((failed + 1)); }; \
	echo "valgrind: $$procs pop3d processes under memcheck, $$reports with a report, $$(( $$(date +%s) - t0 )) s"; \
	echo "$$passed passed, $$((failed + reports)) failed"; \
	[ $$((failed + reports)) -eq 0 ]
