# pop3d: one plain GNU Makefile.
#   make            build build/pop3d
#   make run        install what is missing, build, run the daemon on a demo setup
#   make test       install what is missing, build, run every test, then again under ASan+UBSan
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
LIB_SRCS += server/proxy.c
LIB_SRCS += server/privdrop.c
LIB_SRCS += server/sdnotify.c
LIB_SRCS += maildrop/maildir.c
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

deps:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test

run: deps
	$(MAKE) all
	sh scripts/demo.sh $(BUILD)/pop3d

test: deps-test
	$(MAKE) check
	$(MAKE) check-san

check: all $(UNIT_BINS)
	$(PYTHON) tests/run.py --build $(BUILD) $(UNIT_BINS)

check-san:
	$(MAKE) BUILD=build/san OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" check

# No network and no root needed: DESTDIR=/tmp/stage make install stages a package.
DOCDIR  := $(DESTDIR)$(PREFIX)/share/doc/pop3d/examples
EXAMPLES := etc/pop3d.conf etc/users.example etc/pop3d.service etc/pop3d.socket

install: $(BUILD)/pop3d
	$(INSTALL) -d -m 0755 $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DOCDIR)
	$(INSTALL) -m 0755 $(BUILD)/pop3d $(DESTDIR)$(PREFIX)/sbin/pop3d
	$(INSTALL) -m 0644 etc/pop3d.8 $(DESTDIR)$(PREFIX)/share/man/man8/pop3d.8
	$(INSTALL) -m 0644 etc/pop3d.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/pop3d.conf.5
	$(INSTALL) -m 0644 $(EXAMPLES) $(DOCDIR)/
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
