/*
 * fuzz_config: libFuzzer harness for server/config.c (and the libconfig 1.5
 * parser under it): the input is written to pop3d.conf in a private folder,
 * beside inc.conf (a valid limits group, for @include), and loaded with
 * config_load. Inputs containing ".." are skipped, so an @include can only
 * name files in that folder (libconfig puts the include folder in front of
 * absolute names too).
 *
 * Properties: failure always comes with at least one problem, each naming a
 * file in the folder; success gives values inside the documented ranges: at
 * least one listener, ports 1..65535, TLS listeners only with a tls group,
 * PROXY listeners with trusted peers, absolute users_file, address blocks with
 * no bits beyond their prefix, limits and policy values in range.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/config.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char conf[PATH_MAX], dir_real[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char inc[] = "idle_timeout = 600;\nmax_connections = 100;\n";
	const char *dir = fz_tmpdir("config");
	char path[PATH_MAX];

	(void)argc;
	(void)argv;
	snprintf(path, sizeof path, "%s/inc.conf", dir);
	fz_write_file(path, inc, sizeof inc - 1);
	snprintf(conf, sizeof conf, "%s/pop3d.conf", dir);
	FZ_CHECK(realpath(dir, dir_real) != NULL, "realpath %s", dir);
	return 0;
}

static void check_cidrs(const struct cidr *c, size_t n, const char *what)
{
	size_t i, b;

	for (i = 0; i < n; i++) {
		size_t bits = c[i].family == AF_INET ? 32 : 128;

		FZ_CHECK(c[i].family == AF_INET || c[i].family == AF_INET6, "%s: family %d", what,
		    c[i].family);
		FZ_CHECK(c[i].prefix <= bits, "%s: prefix %u", what, c[i].prefix);
		for (b = c[i].prefix; b < bits; b++)
			FZ_CHECK(!(c[i].addr[b / 8] & (0x80 >> (b % 8))), "%s: bit %zu set beyond /%u",
			    what, b, c[i].prefix);
	}
}

static void check_rule(const struct policy_rule_cfg *r)
{
	FZ_CHECK(r->retention == RET_UNSET || r->retention == RET_DELETE || r->retention == RET_KEEP,
	    "retention %d", (int)r->retention);
	FZ_CHECK(r->keep_days == POLICY_UNSET || (r->keep_days >= 0 && r->keep_days <= 36500),
	    "keep_days %d", r->keep_days);
	FZ_CHECK(r->unread_days == POLICY_UNSET || (r->unread_days >= 0 && r->unread_days <= 36500),
	    "unread_days %d", r->unread_days);
	FZ_CHECK(r->login_delay == POLICY_UNSET || (r->login_delay >= 0 && r->login_delay <= 86400),
	    "login_delay %d", r->login_delay);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	struct diag d = { 0 };
	size_t i;
	int r, tls_needed = 0;

	for (i = 0; i + 1 < size; i++)
		if (data[i] == '.' && data[i + 1] == '.')
			return 0;    /* could @include outside the folder */
	fz_write_file(conf, data, size);
	r = config_load(conf, &c, &d);
	if (r != 0) {
		FZ_CHECK(c == NULL, "failure with a config");
		FZ_CHECK(d.n > 0 || d.oom, "failure without a problem");
		for (i = 0; i < d.n; i++)
			FZ_CHECK(strstr(d.msg[i], "pop3d.conf") != NULL || strstr(d.msg[i], "inc.conf") != NULL ||
			    strstr(d.msg[i], dir_real) != NULL, "problem names no file: %s", d.msg[i]);
		diag_free(&d);
		return 0;
	}
	FZ_CHECK(c != NULL && c->nlisten >= 1, "success without a listener");
	for (i = 0; i < c->nlisten; i++) {
		const struct listen_cfg *l = &c->listen[i];

		FZ_CHECK(l->address != NULL && l->port >= 1, "listener %zu", i);
		FZ_CHECK(l->tls == TLS_NONE || l->tls == TLS_STARTTLS || l->tls == TLS_IMPLICIT,
		    "tls %d", l->tls);
		tls_needed |= l->tls != TLS_NONE;
		if (l->proxy_protocol)
			FZ_CHECK(l->nproxy_trusted > 0, "PROXY listener without trusted peers");
		check_cidrs(l->proxy_trusted, l->nproxy_trusted, "proxy_trusted");
	}
	FZ_CHECK(!tls_needed || c->tls.present, "TLS listener without a tls group");
	if (c->tls.present) {
		FZ_CHECK(c->tls.certificate != NULL && c->tls.key != NULL, "tls without certificate or key");
		FZ_CHECK(c->tls.handshake_timeout >= 1 && c->tls.handshake_timeout <= 600,
		    "handshake_timeout %u", c->tls.handshake_timeout);
	}
	FZ_CHECK(c->users_file != NULL && c->users_file[0] == '/', "users_file not absolute");
	FZ_CHECK(c->maildrop_path != NULL && c->maildrop_path[0] != '\0', "no maildrop path");
	FZ_CHECK(c->failure_delay_ms <= 60000, "failure_delay %u ms", c->failure_delay_ms);
	FZ_CHECK(c->idle_timeout >= 1 && c->idle_timeout <= 86400, "idle_timeout %u", c->idle_timeout);
	FZ_CHECK(c->max_connections >= 1 && c->max_connections <= 1000000 &&
	    c->max_connections_per_ip >= 1 && c->max_connections_per_ip <= c->max_connections,
	    "connection limits %u/%u", c->max_connections, c->max_connections_per_ip);
	check_cidrs(c->plaintext_trusted, c->nplaintext_trusted, "plaintext_trusted");
	check_cidrs(c->backoff.trusted, c->backoff.ntrusted, "limits.trusted");
	FZ_CHECK(c->policy.expire_interval >= 1 && c->policy.expire_interval <= 604800,
	    "expire_interval %u", c->policy.expire_interval);
	check_rule(&c->policy.def);
	for (i = 0; i < c->policy.ndomains; i++) {
		check_rule(&c->policy.domains[i]);
		FZ_CHECK(c->policy.domains[i].match != NULL, "domain rule without a domain");
	}
	for (i = 0; i < c->policy.nusers; i++) {
		check_rule(&c->policy.users[i]);
		FZ_CHECK(c->policy.users[i].match != NULL, "user rule without a user");
	}
	config_free(c);
	diag_free(&d);
	return 0;
}
