/*
 * test_config: drives server/config.c through config.h with real files in a
 * temporary folder. Never reaches into config.c's statics; removes its files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>        /* TLS1_2_VERSION, TLS1_3_VERSION */

#include "server/config.h"
#include "server/log.h"          /* enum log_level; LOG_MAIL etc. from <syslog.h> */

struct fx {
	char          dir[64];      /* mkdtemp result */
	char          path[128];    /* dir/pop3d.conf */
	char         *real;         /* realpath(dir) */
	struct diag   d;
	struct config *cfg;
	int           rc;
};

/* Three valid lines every test can start from: lines 1, 2 and 3. */
#define LISTEN   "listen = ( { address = \"127.0.0.1\"; port = 1110; } );\n"
#define AUTH     "auth = { users_file = \"users\"; };\n"
#define MAILDROP "maildrop = { path = \"/var/vmail/%d/%n/Maildir\"; };\n"
#define BASE     LISTEN AUTH MAILDROP

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_config.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/pop3d.conf", f->dir);
	f->real = realpath(f->dir, NULL);
	if (f->real == NULL)
		return -1;
	*state = f;
	return 0;
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	config_free(f->cfg);
	diag_free(&f->d);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f->real);
	free(f);
	return 0;
}

static void
write_file(struct fx *f, const char *name, const char *text)
{
	char p[256];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/%s", f->dir, name);
	fp = fopen(p, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static int
load(struct fx *f, const char *text)
{
	write_file(f, "pop3d.conf", text);
	f->rc = config_load(f->path, &f->cfg, &f->d);
	return f->rc;
}

static void
dump(const struct fx *f)
{
	size_t i;

	for (i = 0; i < f->d.n; i++)
		print_message("  diag[%zu] %s\n", i, f->d.msg[i]);
}

/* The load failed, nothing leaked out, and one entry is exactly fmt (with %s = path). */
static void __attribute__((format(printf, 2, 3)))
expect(struct fx *f, const char *fmt, ...)
{
	char want[512];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	assert_int_equal(f->rc, -1);
	assert_null(f->cfg);
	for (i = 0; i < f->d.n; i++)
		if (strcmp(f->d.msg[i], want) == 0)
			return;
	print_message("wanted: %s\n", want);
	dump(f);
	fail();
}

static void
expect_ok(struct fx *f)
{
	if (f->rc != 0)
		dump(f);
	assert_int_equal(f->rc, 0);
	assert_non_null(f->cfg);
	assert_int_equal(f->d.n, 0);
}

/* --- successful parses --------------------------------------------------- */

static void
test_defaults(void **state)
{
	struct fx *f = *state;
	char users[PATH_MAX];

	load(f, BASE);
	expect_ok(f);
	assert_string_equal(f->cfg->path, f->path);
	assert_string_equal(f->cfg->dir, f->real);
	assert_int_equal(f->cfg->nlisten, 1);
	assert_string_equal(f->cfg->listen[0].address, "127.0.0.1");
	assert_int_equal(f->cfg->listen[0].port, 1110);
	assert_int_equal(f->cfg->listen[0].line, 1);
	snprintf(users, sizeof(users), "%s/users", f->real);
	assert_string_equal(f->cfg->users_file, users);
	assert_int_equal(f->cfg->plaintext, PLAINTEXT_TLS_ONLY);
	assert_int_equal(f->cfg->failure_delay_ms, 2000);
	assert_string_equal(f->cfg->maildrop_path, "/var/vmail/%d/%n/Maildir");
	assert_int_equal(f->cfg->idle_timeout, 600);
	assert_int_equal(f->cfg->max_connections, 10000);
	assert_int_equal(f->cfg->max_connections_per_ip, 50);

	/* Settings added with TLS and the retention policy, all left out. */
	assert_int_equal(f->cfg->listen[0].tls, TLS_NONE);
	assert_int_equal(f->cfg->nplaintext_trusted, 0);
	assert_null(f->cfg->plaintext_trusted);
	assert_int_equal(f->cfg->tls.present, 0);
	assert_int_equal(f->cfg->tls.line, 0);
	assert_null(f->cfg->tls.certificate);
	assert_null(f->cfg->tls.key);
	assert_int_equal(f->cfg->tls.min_version, TLS1_2_VERSION);
	assert_null(f->cfg->tls.ciphers);
	assert_null(f->cfg->tls.ciphersuites);
	assert_int_equal(f->cfg->tls.handshake_timeout, 30);
	assert_int_equal(f->cfg->tls.nsni, 0);
	assert_null(f->cfg->policy.def.match);
	assert_int_equal(f->cfg->policy.def.line, 0);
	assert_int_equal(f->cfg->policy.def.retention, RET_KEEP);
	assert_int_equal(f->cfg->policy.def.keep_days, POLICY_UNSET);
	assert_int_equal(f->cfg->policy.def.unread_days, 0);
	assert_int_equal(f->cfg->policy.def.login_delay, 0);
	assert_int_equal(f->cfg->policy.expire_interval, 3600);
	assert_int_equal(f->cfg->policy.ndomains, 0);
	assert_null(f->cfg->policy.domains);
	assert_int_equal(f->cfg->policy.nusers, 0);
	assert_null(f->cfg->policy.users);

	/* Operations settings (proxy, log, process, backoff), all left out. */
	assert_int_equal(f->cfg->listen[0].proxy_protocol, 0);
	assert_null(f->cfg->listen[0].proxy_trusted);
	assert_int_equal(f->cfg->listen[0].nproxy_trusted, 0);
	assert_int_equal(f->cfg->log.target, LOGT_STDERR);
	assert_int_equal(f->cfg->log.facility, LOG_MAIL);
	assert_int_equal(f->cfg->log.level, LOG_INFO);
	assert_null(f->cfg->process.user);
	assert_null(f->cfg->process.group);
	assert_int_equal(f->cfg->process.allow_root, 0);
	assert_int_equal(f->cfg->process.shutdown_grace, 10);
	assert_int_equal(f->cfg->backoff.base_ms, 1000);
	assert_int_equal(f->cfg->backoff.max_ms, 60000);
	assert_int_equal(f->cfg->backoff.forget, 900);
	assert_null(f->cfg->backoff.trusted);
	assert_int_equal(f->cfg->backoff.ntrusted, 0);
}

static void
test_every_key(void **state)
{
	struct fx *f = *state;

	load(f,
	    "# every key set\n"
	    "listen = (\n"
	    "  { address = \"0.0.0.0\"; port = 110; },\n"
	    "  { address = \"::\"; port = 110; },\n"          /* same port, other family */
	    "  { address = \"2001:db8::1\"; port = 995L; }\n"  /* int64 accepted */
	    ");\n"
	    "auth = {\n"
	    "  users_file = \"/etc/pop3d/users\";\n"
	    "  plaintext = \"always\";\n"
	    "  failure_delay = 0.25;\n"
	    "};\n"
	    "maildrop = { path = \"%h/Maildir\"; };\n"
	    "limits = {\n"
	    "  idle_timeout = 86400;\n"
	    "  max_connections = 0x10;\n"
	    "  max_connections_per_ip = 16;\n"
	    "};\n");
	expect_ok(f);
	assert_int_equal(f->cfg->nlisten, 3);
	assert_string_equal(f->cfg->listen[1].address, "::");
	assert_int_equal(f->cfg->listen[1].line, 4);
	assert_string_equal(f->cfg->listen[2].address, "2001:db8::1");
	assert_int_equal(f->cfg->listen[2].port, 995);
	assert_string_equal(f->cfg->users_file, "/etc/pop3d/users");
	assert_int_equal(f->cfg->plaintext, PLAINTEXT_ALWAYS);
	assert_int_equal(f->cfg->failure_delay_ms, 250);
	assert_string_equal(f->cfg->maildrop_path, "%h/Maildir");
	assert_int_equal(f->cfg->idle_timeout, 86400);
	assert_int_equal(f->cfg->max_connections, 16);
	assert_int_equal(f->cfg->max_connections_per_ip, 16);  /* equal is fine */
}

static void
test_boundaries_fit(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = ( { address = \"::1\"; port = 1; }, { address = \"::1\"; port = 65535; } );\n"
	    "auth = { users_file = \"u\"; failure_delay = 60; };\n"
	    MAILDROP
	    "limits = { idle_timeout = 1; max_connections = 1000000; max_connections_per_ip = 1; };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->listen[0].port, 1);
	assert_int_equal(f->cfg->listen[1].port, 65535);
	assert_int_equal(f->cfg->failure_delay_ms, 60000);
	assert_int_equal(f->cfg->idle_timeout, 1);
	assert_int_equal(f->cfg->max_connections, 1000000);

	config_free(f->cfg);
	f->cfg = NULL;
	load(f, LISTEN "auth = { users_file = \"u\"; failure_delay = 0; };\n" MAILDROP);
	expect_ok(f);
	assert_int_equal(f->cfg->failure_delay_ms, 0);
}

static void
test_relative_paths(void **state)
{
	struct fx *f = *state;
	char want[PATH_MAX], cwd[PATH_MAX];

	snprintf(want, sizeof(want), "%s/etc", f->dir);
	assert_int_equal(mkdir(want, 0700), 0);
	write_file(f, "etc/pop3d.conf",
	    LISTEN "auth = { users_file = \"sub/users\"; };\n" MAILDROP);

	/* Loaded through a relative path: the folder still comes out absolute. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	f->rc = config_load("etc/pop3d.conf", &f->cfg, &f->d);
	assert_int_equal(chdir(cwd), 0);
	expect_ok(f);
	assert_string_equal(f->cfg->path, "etc/pop3d.conf");
	snprintf(want, sizeof(want), "%s/etc", f->real);
	assert_string_equal(f->cfg->dir, want);
	snprintf(want, sizeof(want), "%s/etc/sub/users", f->real);
	assert_string_equal(f->cfg->users_file, want);
}

static void
test_include_relative_to_folder(void **state)
{
	struct fx *f = *state;

	write_file(f, "limits.conf", "limits = { idle_timeout = 900; };\n");
	load(f, BASE "@include \"limits.conf\"\n");
	expect_ok(f);
	assert_int_equal(f->cfg->idle_timeout, 900);
}

/* The shipped example must stay loadable and say what the defaults are. */
static void
test_example_file(void **state)
{
	struct fx *f = *state;

	if (access("etc/pop3d.conf", R_OK) != 0)
		skip();         /* run from somewhere other than the source tree */
	f->rc = config_load("etc/pop3d.conf", &f->cfg, &f->d);
	expect_ok(f);
	assert_int_equal(f->cfg->nlisten, 4);
	assert_string_equal(f->cfg->listen[0].address, "0.0.0.0");
	assert_int_equal(f->cfg->listen[0].port, 110);
	assert_int_equal(f->cfg->listen[0].tls, TLS_STARTTLS);
	assert_string_equal(f->cfg->listen[1].address, "::");
	assert_int_equal(f->cfg->listen[1].port, 110);
	assert_int_equal(f->cfg->listen[1].tls, TLS_STARTTLS);
	assert_int_equal(f->cfg->listen[2].port, 995);
	assert_int_equal(f->cfg->listen[2].tls, TLS_IMPLICIT);
	assert_int_equal(f->cfg->listen[3].port, 995);
	assert_int_equal(f->cfg->listen[3].tls, TLS_IMPLICIT);
	assert_int_equal(f->cfg->plaintext, PLAINTEXT_TLS_ONLY);
	assert_int_equal(f->cfg->nplaintext_trusted, 0);
	assert_int_equal(f->cfg->tls.present, 1);
	assert_string_equal(f->cfg->tls.certificate, "/etc/pop3d/cert.pem");
	assert_string_equal(f->cfg->tls.key, "/etc/pop3d/key.pem");
	assert_int_equal(f->cfg->tls.min_version, TLS1_2_VERSION);
	assert_null(f->cfg->tls.ciphers);
	assert_null(f->cfg->tls.ciphersuites);
	assert_int_equal(f->cfg->tls.handshake_timeout, 30);
	assert_int_equal(f->cfg->tls.nsni, 0);
	assert_int_equal(f->cfg->policy.def.retention, RET_KEEP);
	assert_int_equal(f->cfg->policy.def.keep_days, POLICY_UNSET);
	assert_int_equal(f->cfg->policy.def.unread_days, 0);
	assert_int_equal(f->cfg->policy.def.login_delay, 0);
	assert_int_equal(f->cfg->policy.expire_interval, 3600);
	assert_int_equal(f->cfg->policy.ndomains, 0);
	assert_int_equal(f->cfg->policy.nusers, 0);
	assert_int_equal(f->cfg->failure_delay_ms, 2000);
	assert_int_equal(f->cfg->idle_timeout, 600);
	assert_int_equal(f->cfg->max_connections, 10000);
	assert_int_equal(f->cfg->max_connections_per_ip, 50);
	assert_int_equal(f->cfg->listen[0].proxy_protocol, 0);
	assert_int_equal(f->cfg->listen[3].nproxy_trusted, 0);
	assert_int_equal(f->cfg->backoff.base_ms, 1000);
	assert_int_equal(f->cfg->backoff.max_ms, 60000);
	assert_int_equal(f->cfg->backoff.forget, 900);
	assert_int_equal(f->cfg->backoff.ntrusted, 0);
	assert_int_equal(f->cfg->log.target, LOGT_STDERR);
	assert_int_equal(f->cfg->log.facility, LOG_MAIL);
	assert_int_equal(f->cfg->log.level, LOG_INFO);
	/* not the default: the README's steps create vmail and the service needs a user */
	assert_string_equal(f->cfg->process.user, "vmail");
	assert_null(f->cfg->process.group);
	assert_int_equal(f->cfg->process.allow_root, 0);
	assert_int_equal(f->cfg->process.shutdown_grace, 10);
}

static void
test_free_null(void **state)
{
	(void)state;
	config_free(NULL);
}

/* --- file and syntax errors ------------------------------------------------ */

static void
test_missing_file(void **state)
{
	struct fx *f = *state;
	char p[256];

	snprintf(p, sizeof(p), "%s/nope.conf", f->dir);
	f->rc = config_load(p, &f->cfg, &f->d);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s: cannot open: No such file or directory", p);

	diag_free(&f->d);
	f->rc = config_load(f->dir, &f->cfg, &f->d);
	expect(f, "%s: cannot open: Is a directory", f->dir);
}

static void
test_syntax_error(void **state)
{
	struct fx *f = *state;

	load(f, BASE "limits = {\n  idle_timeout 600;\n};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:5: syntax error: syntax error", f->path);

	diag_free(&f->d);
	load(f, BASE "auth = { };\n");
	expect(f, "%s:4: syntax error: duplicate setting name", f->path);
}

static void
test_error_in_include_names_that_file(void **state)
{
	struct fx *f = *state;

	write_file(f, "more.conf", "\nlimits = { idle_timeout = 0; };\n");
	load(f, BASE "@include \"more.conf\"\n");
	expect(f, "more.conf:2: limits.idle_timeout: must be between 1 and 86400");
}

/* --- unknown, missing, wrong type ----------------------------------------- */

static void
test_unknown_settings(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = ( { address = \"127.0.0.1\"; port = 1110; ssl = 1; } );\n"
	    "auth = { users_file = \"users\"; password = \"x\"; };\n"
	    MAILDROP
	    "limits = { idle = 5; };\n"
	    "verbose = true;\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:1: listen[0].ssl: unknown setting", f->path);
	expect(f, "%s:2: auth.password: unknown setting", f->path);
	expect(f, "%s:4: limits.idle: unknown setting", f->path);
	expect(f, "%s:5: verbose: unknown setting", f->path);
}

static void
test_missing_required(void **state)
{
	struct fx *f = *state;

	load(f, "# nothing at all\n");
	assert_int_equal(f->d.n, 3);
	expect(f, "%s: listen: required setting is missing", f->path);
	expect(f, "%s: auth: required setting is missing", f->path);
	expect(f, "%s: maildrop: required setting is missing", f->path);

	diag_free(&f->d);
	load(f,
	    "listen = (\n"
	    "  { address = \"127.0.0.1\"; },\n"
	    "  { port = 110; }\n"
	    ");\n"
	    "auth = {\n"
	    "  plaintext = \"always\";\n"
	    "};\n"
	    "maildrop = { };\n");
	assert_int_equal(f->d.n, 4);
	/* No line of their own: the enclosing setting's line is used. */
	expect(f, "%s:2: listen[0].port: required setting is missing", f->path);
	expect(f, "%s:3: listen[1].address: required setting is missing", f->path);
	expect(f, "%s:5: auth.users_file: required setting is missing", f->path);
	expect(f, "%s:8: maildrop.path: required setting is missing", f->path);
}

static void
test_wrong_types(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = ( { address = \"127.0.0.1\"; port = \"110\"; } );\n"
	    "auth = { users_file = 5; plaintext = 1; failure_delay = \"2\"; };\n"
	    "maildrop = { path = [\"a\"]; };\n"
	    "limits = {\n"
	    "  idle_timeout = 1.5;\n"
	    "  max_connections = true;\n"
	    "};\n");
	assert_int_equal(f->d.n, 7);
	expect(f, "%s:1: listen[0].port: must be an integer, not a string", f->path);
	expect(f, "%s:2: auth.users_file: must be a string, not an integer", f->path);
	expect(f, "%s:2: auth.plaintext: must be a string, not an integer", f->path);
	expect(f, "%s:2: auth.failure_delay: must be a number of seconds, not a string", f->path);
	expect(f, "%s:3: maildrop.path: must be a string, not an array", f->path);
	expect(f, "%s:5: limits.idle_timeout: must be an integer, not a float", f->path);
	expect(f, "%s:6: limits.max_connections: must be an integer, not a boolean", f->path);

	/* Reported with the rest, not stopped at the first. */
	diag_free(&f->d);
	load(f,
	    "listen = { address = \"127.0.0.1\"; port = 110; };\n"
	    "auth = \"users\";\n"
	    "maildrop = ( );\n"
	    "limits = 3;\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:1: listen: must be a list of groups ( { ... } ), not a group", f->path);
	expect(f, "%s:2: auth: must be a group { ... }, not a string", f->path);
	expect(f, "%s:3: maildrop: must be a group { ... }, not a list", f->path);
	expect(f, "%s:4: limits: must be a group { ... }, not an integer", f->path);
}

static void
test_listen_shape(void **state)
{
	struct fx *f = *state;

	load(f, "listen = ( );\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:1: listen: needs at least 1 entry", f->path);

	diag_free(&f->d);
	load(f, "listen = ( { address = \"::1\"; port = 1; },\n  \"127.0.0.1:110\" );\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:2: listen[1]: must be a group { ... }, not a string", f->path);
}

/* --- values ----------------------------------------------------------------- */

static void
test_out_of_range(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = ( { address = \"::1\"; port = 0; },\n"
	    "  { address = \"::1\"; port = 65536; } );\n"
	    "auth = { users_file = \"u\"; failure_delay = 60.001; };\n"
	    MAILDROP
	    "limits = {\n"
	    "  idle_timeout = 86401;\n"
	    "  max_connections = 1000001;\n"
	    "  max_connections_per_ip = 0;\n"
	    "};\n");
	assert_int_equal(f->d.n, 6);
	expect(f, "%s:1: listen[0].port: must be between 1 and 65535", f->path);
	expect(f, "%s:2: listen[1].port: must be between 1 and 65535", f->path);
	expect(f, "%s:3: auth.failure_delay: must be between 0 and 60 seconds", f->path);
	expect(f, "%s:6: limits.idle_timeout: must be between 1 and 86400", f->path);
	expect(f, "%s:7: limits.max_connections: must be between 1 and 1000000", f->path);
	expect(f, "%s:8: limits.max_connections_per_ip: must be between 1 and 1000000", f->path);

	diag_free(&f->d);
	load(f, LISTEN "auth = { users_file = \"u\"; failure_delay = -1; };\n" MAILDROP
	    "limits = { idle_timeout = 0; max_connections = 5000000000L; };\n");
	assert_int_equal(f->d.n, 3);
	expect(f, "%s:2: auth.failure_delay: must be between 0 and 60 seconds", f->path);
	expect(f, "%s:4: limits.idle_timeout: must be between 1 and 86400", f->path);
	expect(f, "%s:4: limits.max_connections: must be between 1 and 1000000", f->path);
}

static void
test_per_ip_above_total(void **state)
{
	struct fx *f = *state;

	load(f, BASE "limits = {\n  max_connections = 10;\n  max_connections_per_ip = 11;\n};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:6: limits.max_connections_per_ip: is 11, more than max_connections (10)",
	    f->path);

	/* The default per-IP cap (50) counts too. */
	diag_free(&f->d);
	load(f, BASE "limits = { max_connections = 10; };\n");
	expect(f, "%s:4: limits.max_connections_per_ip: is 50, more than max_connections (10)",
	    f->path);
}

static void
test_bad_addresses(void **state)
{
	struct fx *f = *state;
	static const char want[] = "must be a numeric IPv4 or IPv6 address (no brackets, no names)";

	load(f,
	    "listen = (\n"
	    "  { address = \"localhost\"; port = 1; },\n"
	    "  { address = \"[::1]\"; port = 1; },\n"
	    "  { address = \"1.2.3\"; port = 1; },\n"
	    "  { address = \"\"; port = 1; },\n"
	    "  { address = \"fe80::1%eth0\"; port = 1; },\n"
	    "  { address = \" 127.0.0.1\"; port = 1; }\n"
	    ");\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 6);
	expect(f, "%s:2: listen[0].address: %s", f->path, want);
	expect(f, "%s:3: listen[1].address: %s", f->path, want);
	expect(f, "%s:4: listen[2].address: %s", f->path, want);
	expect(f, "%s:5: listen[3].address: must not be empty", f->path);
	expect(f, "%s:6: listen[4].address: %s", f->path, want);
	expect(f, "%s:7: listen[5].address: %s", f->path, want);
}

static void
test_unknown_enum(void **state)
{
	struct fx *f = *state;

	load(f, LISTEN "auth = { users_file = \"u\"; plaintext = \"TLS-only\"; };\n" MAILDROP);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:2: auth.plaintext: must be \"tls-only\" or \"always\"", f->path);
}

static void
test_duplicate_listeners(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = (\n"
	    "  { address = \"::1\"; port = 110; },\n"
	    "  { address = \"127.0.0.1\"; port = 110; },\n"
	    "  { address = \"::1\"; port = 995; },\n"
	    "  { address = \"0:0::1\"; port = 110; },\n"      /* same address, other spelling */
	    "  { address = \"127.0.0.1\"; port = 110; }\n"
	    ");\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:5: listen[3]: 0:0::1 port 110 is already in listen[0] (line 2)", f->path);
	expect(f, "%s:6: listen[4]: 127.0.0.1 port 110 is already in listen[1] (line 3)", f->path);
}

static void
test_control_characters(void **state)
{
	struct fx *f = *state;

	load(f, LISTEN "auth = { users_file = \"us\\ters\"; };\n"
	    "maildrop = { path = \"/var/vmail/%u\\n\"; };\n");
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:2: auth.users_file: must not contain control characters", f->path);
	expect(f, "%s:3: maildrop.path: must not contain control characters", f->path);

	diag_free(&f->d);
	load(f, LISTEN "auth = { users_file = \"\"; };\nmaildrop = { path = \"\"; };\n");
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:2: auth.users_file: must not be empty", f->path);
	expect(f, "%s:3: maildrop.path: must not be empty", f->path);
}

static void
test_many_errors_together(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = (\n"
	    "  { address = \"10.0.0.256\"; port = 110; },\n"
	    "  { address = \"10.0.0.1\"; port = \"pop3\"; }\n"
	    ");\n"
	    "auth = {\n"
	    "  plaintext = \"never\";\n"
	    "  failure_delay = 61;\n"
	    "  colour = \"blue\";\n"
	    "};\n"
	    "limits = { idle_timeout = 1.5; };\n"
	    "extra = 1;\n");
	assert_int_equal(f->d.n, 9);
	/* In file order, then the missing ones, so an admin reads top to bottom. */
	assert_string_equal(f->d.msg[0] + strlen(f->path),
	    ":2: listen[0].address: must be a numeric IPv4 or IPv6 address (no brackets, no names)");
	expect(f, "%s:3: listen[1].port: must be an integer, not a string", f->path);
	expect(f, "%s:6: auth.plaintext: must be \"tls-only\" or \"always\"", f->path);
	expect(f, "%s:7: auth.failure_delay: must be between 0 and 60 seconds", f->path);
	expect(f, "%s:8: auth.colour: unknown setting", f->path);
	expect(f, "%s:5: auth.users_file: required setting is missing", f->path);
	expect(f, "%s:10: limits.idle_timeout: must be an integer, not a float", f->path);
	expect(f, "%s:11: extra: unknown setting", f->path);
	expect(f, "%s: maildrop: required setting is missing", f->path);
}

/* --- listen[].tls and the tls group ------------------------------------------ */

static void
test_tls_every_key(void **state)
{
	struct fx *f = *state;
	char want[PATH_MAX];

	load(f,
	    "listen = (\n"
	    "  { address = \"0.0.0.0\"; port = 110; tls = \"starttls\"; },\n"
	    "  { address = \"0.0.0.0\"; port = 995; tls = \"implicit\"; },\n"
	    "  { address = \"::1\"; port = 1110; tls = \"none\"; }\n"
	    ");\n"
	    AUTH MAILDROP
	    "tls = {\n"                                          /* line 8 */
	    "  certificate = \"certs/cert.pem\";\n"
	    "  key = \"/etc/pop3d/key.pem\";\n"
	    "  min_version = \"TLSv1.3\";\n"
	    "  ciphers = \"ECDHE+AESGCM:!aNULL\";\n"
	    "  ciphersuites = \"TLS_AES_256_GCM_SHA384\";\n"
	    "  handshake_timeout = 600;\n"
	    "  sni = (\n"
	    "    { name = \"Mail.Example.NET\"; certificate = \"a.pem\"; key = \"/k/a.key\"; },\n"
	    "    { name = \"*.example.org\"; certificate = \"/c/b.pem\"; key = \"b.key\"; }\n"
	    "  );\n"
	    "};\n");
	expect_ok(f);
	assert_int_equal(f->cfg->listen[0].tls, TLS_STARTTLS);
	assert_int_equal(f->cfg->listen[1].tls, TLS_IMPLICIT);
	assert_int_equal(f->cfg->listen[2].tls, TLS_NONE);
	assert_int_equal(f->cfg->tls.present, 1);
	assert_int_equal(f->cfg->tls.line, 8);
	snprintf(want, sizeof(want), "%s/certs/cert.pem", f->real);
	assert_string_equal(f->cfg->tls.certificate, want);
	assert_string_equal(f->cfg->tls.key, "/etc/pop3d/key.pem");
	assert_int_equal(f->cfg->tls.min_version, TLS1_3_VERSION);
	assert_string_equal(f->cfg->tls.ciphers, "ECDHE+AESGCM:!aNULL");
	assert_string_equal(f->cfg->tls.ciphersuites, "TLS_AES_256_GCM_SHA384");
	assert_int_equal(f->cfg->tls.handshake_timeout, 600);
	assert_int_equal(f->cfg->tls.nsni, 2);
	assert_string_equal(f->cfg->tls.sni[0].name, "mail.example.net");   /* folded */
	snprintf(want, sizeof(want), "%s/a.pem", f->real);
	assert_string_equal(f->cfg->tls.sni[0].certificate, want);
	assert_string_equal(f->cfg->tls.sni[0].key, "/k/a.key");
	assert_int_equal(f->cfg->tls.sni[0].line, 16);
	assert_string_equal(f->cfg->tls.sni[1].name, "*.example.org");
	assert_string_equal(f->cfg->tls.sni[1].certificate, "/c/b.pem");
	snprintf(want, sizeof(want), "%s/b.key", f->real);
	assert_string_equal(f->cfg->tls.sni[1].key, want);
	assert_int_equal(f->cfg->tls.sni[1].line, 17);
}

static void
test_tls_minimal(void **state)
{
	struct fx *f = *state;

	/* No TLS listener is fine: the group may be ready before the listeners. */
	load(f, BASE "tls = { certificate = \"c\"; key = \"k\"; handshake_timeout = 1; sni = ( ); };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->tls.present, 1);
	assert_int_equal(f->cfg->tls.line, 4);
	assert_int_equal(f->cfg->tls.min_version, TLS1_2_VERSION);
	assert_null(f->cfg->tls.ciphers);
	assert_null(f->cfg->tls.ciphersuites);
	assert_int_equal(f->cfg->tls.handshake_timeout, 1);
	assert_int_equal(f->cfg->tls.nsni, 0);
}

static void
test_tls_listener_needs_group(void **state)
{
	struct fx *f = *state;
	static const char listen[] =
	    "listen = (\n"
	    "  { address = \"::1\"; port = 110; tls = \"starttls\"; },\n"
	    "  { address = \"::1\"; port = 143; tls = \"none\"; },\n"
	    "  { address = \"::1\"; port = 995;\n"
	    "    tls = \"implicit\"; }\n"
	    ");\n";
	char text[1024];

	snprintf(text, sizeof(text), "%s%s%s", listen, AUTH, MAILDROP);
	load(f, text);
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:2: listen[0].tls: is \"starttls\", which needs the tls group "
	    "(certificate and key)", f->path);
	/* At the entry's line, not at the tls line inside it. */
	expect(f, "%s:4: listen[2].tls: is \"implicit\", which needs the tls group "
	    "(certificate and key)", f->path);

	/* A tls group that is there but wrong is reported once, on its own. */
	diag_free(&f->d);
	snprintf(text, sizeof(text), "%s%s%stls = {\n  certificate = \"c\";\n};\n",
	    listen, AUTH, MAILDROP);
	load(f, text);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:9: tls.key: required setting is missing", f->path);

	diag_free(&f->d);
	snprintf(text, sizeof(text), "%s%s%stls = \"yes\";\n", listen, AUTH, MAILDROP);
	load(f, text);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:9: tls: must be a group { ... }, not a string", f->path);

	diag_free(&f->d);
	load(f, "listen = ( { address = \"::1\"; port = 110; tls = \"STARTTLS\"; },\n"
	    "  { address = \"::1\"; port = 111; tls = true; } );\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 2);    /* and no "needs the tls group" */
	expect(f, "%s:1: listen[0].tls: must be \"none\", \"starttls\" or \"implicit\"", f->path);
	expect(f, "%s:2: listen[1].tls: must be a string, not a boolean", f->path);
}

static void
test_tls_bad_values(void **state)
{
	struct fx *f = *state;

	load(f, BASE
	    "tls = {\n"                                 /* line 4 */
	    "  min_version = \"TLSv1.1\";\n"
	    "  ciphers = \"\";\n"
	    "  ciphersuites = 13;\n"
	    "  handshake_timeout = 0;\n"
	    "  protocols = \"all\";\n"
	    "  sni = { name = \"a\"; };\n"
	    "};\n");
	assert_int_equal(f->d.n, 8);
	expect(f, "%s:5: tls.min_version: must be \"TLSv1.2\" or \"TLSv1.3\"", f->path);
	expect(f, "%s:6: tls.ciphers: must not be empty", f->path);
	expect(f, "%s:7: tls.ciphersuites: must be a string, not an integer", f->path);
	expect(f, "%s:8: tls.handshake_timeout: must be between 1 and 600", f->path);
	expect(f, "%s:9: tls.protocols: unknown setting", f->path);
	expect(f, "%s:10: tls.sni: must be a list of groups ( { ... } ), not a group", f->path);
	expect(f, "%s:4: tls.certificate: required setting is missing", f->path);
	expect(f, "%s:4: tls.key: required setting is missing", f->path);

	diag_free(&f->d);
	load(f, BASE "tls = { certificate = \"c\"; key = \"\\x01\"; min_version = \"tlsv1.2\";\n"
	    "  handshake_timeout = 601; };\n");
	assert_int_equal(f->d.n, 3);
	expect(f, "%s:4: tls.key: must not contain control characters", f->path);
	expect(f, "%s:4: tls.min_version: must be \"TLSv1.2\" or \"TLSv1.3\"", f->path);
	expect(f, "%s:5: tls.handshake_timeout: must be between 1 and 600", f->path);
}

static void
test_tls_sni_entries(void **state)
{
	struct fx *f = *state;
	static const char host[] =
	    "must be a host name: letters, digits, '-' and '.', optionally after a leading \"*.\"";
	static const char empty[] = "has an empty label (a leading, trailing or doubled '.')";

	load(f, BASE
	    "tls = {\n"
	    "  certificate = \"c\"; key = \"k\";\n"
	    "  sni = (\n"
	    "    { name = \"mail.example.net\"; certificate = \"a\"; key = \"a\"; },\n"       /* 7 */
	    "    { name = \"MAIL.example.net\"; certificate = \"b\"; key = \"b\"; },\n"
	    "    { name = \"pop.example.net\"; key = \"c\"; },\n"
	    "    { name = \"*.example.net\"; certificate = \"d\"; key = \"d\"; port = 1; },\n" /* 10 */
	    "    { name = \"a.*.example.net\"; certificate = \"e\"; key = \"e\"; },\n"
	    "    { name = \"-a.example.net\"; certificate = \"e\"; key = \"e\"; },\n"
	    "    { name = \"a..example.net\"; certificate = \"e\"; key = \"e\"; },\n"
	    "    { name = \"example.net.\"; certificate = \"e\"; key = \"e\"; },\n"
	    "    { name = \"mail_1.example.net\"; certificate = \"e\"; key = \"e\"; },\n"    /* 15 */
	    "    \"x\",\n"
	    "    { name = \"*.EXAMPLE.net\"; certificate = \"f\"; key = \"f\"; },\n"
	    "    { name = \"*\"; certificate = \"f\"; key = \"f\"; },\n"
	    "    { name = \"*.\"; certificate = \"f\"; key = \"f\"; }\n"
	    "  );\n"
	    "};\n");
	assert_int_equal(f->d.n, 12);
	expect(f, "%s:8: tls.sni[1].name: \"MAIL.example.net\" is already in tls.sni[0] (line 7)",
	    f->path);
	expect(f, "%s:9: tls.sni[2].certificate: required setting is missing", f->path);
	expect(f, "%s:10: tls.sni[3].port: unknown setting", f->path);
	expect(f, "%s:11: tls.sni[4].name: %s", f->path, host);
	expect(f, "%s:12: tls.sni[5].name: has a label that starts or ends with '-'", f->path);
	expect(f, "%s:13: tls.sni[6].name: %s", f->path, empty);
	expect(f, "%s:14: tls.sni[7].name: %s", f->path, empty);
	expect(f, "%s:15: tls.sni[8].name: %s", f->path, host);
	expect(f, "%s:16: tls.sni[9]: must be a group { ... }, not a string", f->path);
	/* Still compared although its first spelling had another problem. */
	expect(f, "%s:17: tls.sni[10].name: \"*.EXAMPLE.net\" is already in tls.sni[3] (line 10)",
	    f->path);
	expect(f, "%s:18: tls.sni[11].name: %s", f->path, host);
	expect(f, "%s:19: tls.sni[12].name: %s", f->path, empty);
}

/* --- auth.plaintext_trusted --------------------------------------------------- */

static void
test_trusted_good(void **state)
{
	struct fx *f = *state;
	const struct cidr *t;
	static const uint8_t v6one[16] = { [15] = 1 };
	static const uint8_t db8[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	static const uint8_t fe80[16] = { 0xfe, 0x80 };
	static const uint8_t zero[16];

	load(f, LISTEN
	    "auth = {\n"
	    "  users_file = \"users\";\n"
	    "  plaintext_trusted = ( \"127.0.0.0/8\", \"::1\", \"10.1.2.3\", \"2001:db8::/32\",\n"
	    "    \"0.0.0.0/0\", \"::/0\", \"192.0.2.1/32\", \"fe80::/10\", \"::ffff:10.0.0.0/104\" );\n"
	    "};\n" MAILDROP);
	expect_ok(f);
	assert_int_equal(f->cfg->nplaintext_trusted, 9);
	t = f->cfg->plaintext_trusted;
	assert_int_equal(t[0].family, AF_INET);
	assert_memory_equal(t[0].addr, "\x7f\0\0\0", 4);
	assert_int_equal(t[0].prefix, 8);
	assert_int_equal(t[1].family, AF_INET6);
	assert_memory_equal(t[1].addr, v6one, 16);
	assert_int_equal(t[1].prefix, 128);                 /* bare: one address */
	assert_int_equal(t[2].family, AF_INET);
	assert_memory_equal(t[2].addr, "\x0a\x01\x02\x03", 4);
	assert_int_equal(t[2].prefix, 32);
	assert_int_equal(t[3].family, AF_INET6);
	assert_memory_equal(t[3].addr, db8, 16);
	assert_int_equal(t[3].prefix, 32);
	assert_int_equal(t[4].family, AF_INET);
	assert_memory_equal(t[4].addr, zero, 4);
	assert_int_equal(t[4].prefix, 0);
	assert_int_equal(t[5].family, AF_INET6);
	assert_memory_equal(t[5].addr, zero, 16);
	assert_int_equal(t[5].prefix, 0);
	assert_int_equal(t[6].prefix, 32);
	assert_memory_equal(t[7].addr, fe80, 16);
	assert_int_equal(t[7].prefix, 10);
	assert_int_equal(t[8].family, AF_INET6);            /* kept as written */
	assert_int_equal(t[8].prefix, 104);

	/* A libconfig array is a list of strings too; an empty list is the default. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, LISTEN "auth = { users_file = \"u\"; plaintext_trusted = [ \"192.0.2.0/24\" ]; };\n"
	    MAILDROP);
	expect_ok(f);
	assert_int_equal(f->cfg->nplaintext_trusted, 1);
	assert_memory_equal(f->cfg->plaintext_trusted[0].addr, "\xc0\x00\x02\x00", 4);
	assert_int_equal(f->cfg->plaintext_trusted[0].prefix, 24);

	config_free(f->cfg);
	f->cfg = NULL;
	load(f, LISTEN "auth = { users_file = \"u\"; plaintext_trusted = ( ); };\n" MAILDROP);
	expect_ok(f);
	assert_int_equal(f->cfg->nplaintext_trusted, 0);
}

static void
test_trusted_bad(void **state)
{
	struct fx *f = *state;
	static const char addr[] =
	    "must be an IPv4 or IPv6 address, optionally with /prefix (no names)";
	static const char p32[] = "the prefix after / must be a number from 0 to 32";

	load(f, LISTEN
	    "auth = {\n"
	    "  users_file = \"users\";\n"
	    "  plaintext_trusted = (\n"
	    "    \"10.1.2.3/8\",\n"                     /* line 5 */
	    "    \"10.0.0.0/33\",\n"
	    "    \"::1/129\",\n"
	    "    \"2001:db8::1/32\",\n"
	    "    \"10.0.0.0/\",\n"
	    "    \"10.0.0.0/+8\",\n"                    /* line 10 */
	    "    \"10.0.0.0/8 \",\n"
	    "    \"localhost\",\n"
	    "    \"[::1]\",\n"
	    "    \"10.0.0.0/0008\",\n"
	    "    \"\",\n"                               /* line 15 */
	    "    127,\n"
	    "    \"10.0.0.0/8/8\",\n"
	    "    \"192.168.1.0/23\" );\n"
	    "};\n" MAILDROP);
	assert_int_equal(f->d.n, 14);
	expect(f, "%s:5: auth.plaintext_trusted[0]: has address bits set beyond the /8 prefix "
	    "(the block is 10.0.0.0/8)", f->path);
	expect(f, "%s:6: auth.plaintext_trusted[1]: %s", f->path, p32);
	expect(f, "%s:7: auth.plaintext_trusted[2]: the prefix after / must be a number "
	    "from 0 to 128", f->path);
	expect(f, "%s:8: auth.plaintext_trusted[3]: has address bits set beyond the /32 prefix "
	    "(the block is 2001:db8::/32)", f->path);
	expect(f, "%s:9: auth.plaintext_trusted[4]: %s", f->path, p32);
	expect(f, "%s:10: auth.plaintext_trusted[5]: %s", f->path, p32);
	expect(f, "%s:11: auth.plaintext_trusted[6]: %s", f->path, p32);
	expect(f, "%s:12: auth.plaintext_trusted[7]: %s", f->path, addr);
	expect(f, "%s:13: auth.plaintext_trusted[8]: %s", f->path, addr);
	expect(f, "%s:14: auth.plaintext_trusted[9]: %s", f->path, p32);
	expect(f, "%s:15: auth.plaintext_trusted[10]: must not be empty", f->path);
	expect(f, "%s:16: auth.plaintext_trusted[11]: must be a string, not an integer", f->path);
	expect(f, "%s:17: auth.plaintext_trusted[12]: %s", f->path, p32);
	expect(f, "%s:18: auth.plaintext_trusted[13]: has address bits set beyond the /23 prefix "
	    "(the block is 192.168.0.0/23)", f->path);

	diag_free(&f->d);
	load(f, LISTEN "auth = { users_file = \"u\"; plaintext_trusted = \"127.0.0.1\"; };\n"
	    MAILDROP);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:2: auth.plaintext_trusted: must be a list of strings ( \"...\", ... ), "
	    "not a string", f->path);

	diag_free(&f->d);
	load(f, LISTEN "auth = { users_file = \"u\";\n"
	    "  plaintext_trusted = ( \"::1\", { address = \"::1\"; } ); };\n" MAILDROP);
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:3: auth.plaintext_trusted[1]: must be a string, not a group", f->path);
}

/* --- policy -------------------------------------------------------------------- */

static void
test_policy_every_key(void **state)
{
	struct fx *f = *state;
	const struct policy_cfg *p;

	load(f, BASE
	    "policy = {\n"                                          /* line 4 */
	    "  retention = \"keep\";\n"
	    "  keep_days = 36500;\n"
	    "  unread_days = 36500;\n"
	    "  login_delay = 86400;\n"
	    "  expire_interval = 604800;\n"
	    "  domains = (\n"
	    "    { domain = \"Example.NET\"; retention = \"delete\"; },\n"      /* line 11 */
	    "    { domain = \"example.com\"; keep_days = 0; unread_days = 0; login_delay = 0; }\n"
	    "  );\n"
	    "  users = (\n"
	    "    { user = \"bob@example.org\"; retention = \"keep\"; keep_days = 7; login_delay = 300; },\n"
	    "    { user = \"Bob@example.org\"; },\n"                /* exact: not a duplicate */
	    "    { user = \"alice\";\n"                             /* line 17 */
	    "      retention = \"delete\"; unread_days = 14; }\n"
	    "  );\n"
	    "};\n");
	expect_ok(f);
	p = &f->cfg->policy;
	assert_null(p->def.match);
	assert_int_equal(p->def.line, 4);
	assert_int_equal(p->def.retention, RET_KEEP);
	assert_int_equal(p->def.keep_days, 36500);
	assert_int_equal(p->def.unread_days, 36500);
	assert_int_equal(p->def.login_delay, 86400);
	assert_int_equal(p->expire_interval, 604800);

	assert_int_equal(p->ndomains, 2);
	assert_string_equal(p->domains[0].match, "example.net");    /* folded */
	assert_int_equal(p->domains[0].line, 11);
	assert_int_equal(p->domains[0].retention, RET_DELETE);
	assert_int_equal(p->domains[0].keep_days, POLICY_UNSET);
	assert_int_equal(p->domains[0].unread_days, POLICY_UNSET);
	assert_int_equal(p->domains[0].login_delay, POLICY_UNSET);
	assert_string_equal(p->domains[1].match, "example.com");
	assert_int_equal(p->domains[1].line, 12);
	assert_int_equal(p->domains[1].retention, RET_UNSET);
	assert_int_equal(p->domains[1].keep_days, 0);
	assert_int_equal(p->domains[1].unread_days, 0);
	assert_int_equal(p->domains[1].login_delay, 0);

	assert_int_equal(p->nusers, 3);
	assert_string_equal(p->users[0].match, "bob@example.org");
	assert_int_equal(p->users[0].line, 15);
	assert_int_equal(p->users[0].retention, RET_KEEP);
	assert_int_equal(p->users[0].keep_days, 7);
	assert_int_equal(p->users[0].unread_days, POLICY_UNSET);
	assert_int_equal(p->users[0].login_delay, 300);
	assert_string_equal(p->users[1].match, "Bob@example.org");  /* as written */
	assert_int_equal(p->users[1].line, 16);
	assert_int_equal(p->users[1].retention, RET_UNSET);
	assert_int_equal(p->users[1].keep_days, POLICY_UNSET);
	assert_int_equal(p->users[1].unread_days, POLICY_UNSET);
	assert_int_equal(p->users[1].login_delay, POLICY_UNSET);
	assert_string_equal(p->users[2].match, "alice");
	assert_int_equal(p->users[2].line, 17);
	assert_int_equal(p->users[2].retention, RET_DELETE);
	assert_int_equal(p->users[2].keep_days, POLICY_UNSET);
	assert_int_equal(p->users[2].unread_days, 14);
	assert_int_equal(p->users[2].login_delay, POLICY_UNSET);
}

static void
test_policy_group_defaults(void **state)
{
	struct fx *f = *state;
	const struct policy_cfg *p;

	load(f, BASE "\npolicy = { };\n");
	expect_ok(f);
	p = &f->cfg->policy;
	assert_int_equal(p->def.line, 5);
	assert_null(p->def.match);
	assert_int_equal(p->def.retention, RET_KEEP);
	assert_int_equal(p->def.keep_days, POLICY_UNSET);
	assert_int_equal(p->def.unread_days, 0);
	assert_int_equal(p->def.login_delay, 0);
	assert_int_equal(p->expire_interval, 3600);
	assert_int_equal(p->ndomains, 0);
	assert_int_equal(p->nusers, 0);

	/* Lower boundaries; delete without keep_days; empty lists. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "policy = { retention = \"delete\"; unread_days = 0; login_delay = 0;\n"
	    "  expire_interval = 60; domains = ( ); users = ( ); };\n");
	expect_ok(f);
	p = &f->cfg->policy;
	assert_int_equal(p->def.retention, RET_DELETE);
	assert_int_equal(p->def.keep_days, POLICY_UNSET);
	assert_int_equal(p->expire_interval, 60);
	assert_int_equal(p->ndomains, 0);
	assert_int_equal(p->nusers, 0);
}

static void
test_policy_bad(void **state)
{
	struct fx *f = *state;

	load(f, BASE
	    "policy = {\n"
	    "  retention = \"remove\";\n"                                   /* line 5 */
	    "  keep_days = 36501;\n"
	    "  unread_days = -1;\n"
	    "  login_delay = 86401;\n"
	    "  expire_interval = 0;\n"
	    "  mode = 1;\n"                                                 /* line 10 */
	    "  domains = (\n"
	    "    { retention = \"keep\"; },\n"
	    "    { domain = \"*.example.net\"; },\n"
	    "    { domain = \"example.net\"; expire_interval = 60; },\n"
	    "    { domain = \"EXAMPLE.net\"; keep_days = \"7\"; },\n"        /* line 15 */
	    "    { domain = \"example.org\"; retention = \"delete\"; keep_days = 7; }\n"
	    "  );\n"
	    "  users = (\n"
	    "    { user = \"bob\"; unread_days = 36501; },\n"
	    "    { user = \"bob\"; login_delay = -5; },\n"                  /* line 20 */
	    "    { user = \"a\\tb\"; },\n"
	    "    { user = \"\"; },\n"
	    "    { name = \"carol\"; }\n"
	    "  );\n"
	    "};\n");
	assert_int_equal(f->d.n, 19);
	expect(f, "%s:5: policy.retention: must be \"keep\" or \"delete\"", f->path);
	expect(f, "%s:6: policy.keep_days: must be between 0 and 36500", f->path);
	expect(f, "%s:7: policy.unread_days: must be between 0 and 36500", f->path);
	expect(f, "%s:8: policy.login_delay: must be between 0 and 86400", f->path);
	expect(f, "%s:9: policy.expire_interval: must be between 1 and 604800", f->path);
	expect(f, "%s:10: policy.mode: unknown setting", f->path);
	expect(f, "%s:12: policy.domains[0].domain: required setting is missing", f->path);
	expect(f, "%s:13: policy.domains[1].domain: must be a domain name: letters, digits, "
	    "'-' and '.'", f->path);
	/* expire_interval belongs to the top level only. */
	expect(f, "%s:14: policy.domains[2].expire_interval: unknown setting", f->path);
	expect(f, "%s:15: policy.domains[3].keep_days: must be an integer, not a string", f->path);
	expect(f, "%s:15: policy.domains[3].domain: \"EXAMPLE.net\" is already in "
	    "policy.domains[2] (line 14)", f->path);
	expect(f, "%s:16: policy.domains[4]: keep_days has no effect with retention = \"delete\"",
	    f->path);
	expect(f, "%s:19: policy.users[0].unread_days: must be between 0 and 36500", f->path);
	expect(f, "%s:20: policy.users[1].login_delay: must be between 0 and 86400", f->path);
	expect(f, "%s:20: policy.users[1].user: \"bob\" is already in policy.users[0] (line 19)",
	    f->path);
	expect(f, "%s:21: policy.users[2].user: must not contain control characters", f->path);
	expect(f, "%s:22: policy.users[3].user: must not be empty", f->path);
	expect(f, "%s:23: policy.users[4].name: unknown setting", f->path);
	expect(f, "%s:23: policy.users[4].user: required setting is missing", f->path);

	diag_free(&f->d);
	load(f, BASE "policy = ( );\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:4: policy: must be a group { ... }, not a list", f->path);

	diag_free(&f->d);
	load(f, BASE "policy = { domains = { domain = \"a\"; }; users = [ \"bob\" ]; };\n");
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:4: policy.domains: must be a list of groups ( { ... } ), not a group",
	    f->path);
	expect(f, "%s:4: policy.users: must be a list of groups ( { ... } ), not an array",
	    f->path);
}

static void
test_policy_keep_days_with_delete(void **state)
{
	struct fx *f = *state;

	load(f, BASE
	    "policy = {\n"
	    "  retention = \"delete\";\n"
	    "  keep_days = 30;\n"                                           /* line 6 */
	    "  domains = ( { domain = \"example.net\"; retention = \"keep\"; keep_days = 3; } );\n"
	    /* Not in the same entry: retention comes from the defaults. */
	    "  users = ( { user = \"bob\"; keep_days = 3; } );\n"
	    "};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:6: policy: keep_days has no effect with retention = \"delete\"", f->path);

	diag_free(&f->d);
	load(f, BASE "policy = {\n  users = (\n    { user = \"bob\";\n      keep_days = 0;\n"
	    "      retention = \"delete\"; } ); };\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:7: policy.users[0]: keep_days has no effect with retention = \"delete\"",
	    f->path);
}

/* Boundary pairs: a label of 63 / 64 octets, a name of 253 / 254, a user of 255 / 256. */
static void
test_policy_name_lengths(void **state)
{
	struct fx *f = *state;
	char l63[64], l64[65], n253[254], n254[255], u255[256], u256[257];
	char *text;
	size_t len = 8192;

	memset(l63, 'a', 63);
	l63[63] = '\0';
	memset(l64, 'b', 64);
	l64[64] = '\0';
	snprintf(n253, sizeof(n253), "%s.%s.%s.%.61s", l63, l63, l63, l63);
	snprintf(n254, sizeof(n254), "%s.%s.%s.%.62s", l63, l63, l63, l63);
	assert_int_equal(strlen(n253), 253);
	assert_int_equal(strlen(n254), 254);
	memset(u255, 'u', 255);
	u255[255] = '\0';
	memset(u256, 'v', 256);
	u256[256] = '\0';

	text = malloc(len);
	assert_non_null(text);
	snprintf(text, len, "%s"          /* BASE holds '%' */
	    "policy = {\n"
	    "  domains = (\n"
	    "    { domain = \"%s.net\"; },\n"       /* line 6 */
	    "    { domain = \"%s\"; }\n"
	    "  );\n"
	    "  users = ( { user = \"%s\"; } );\n"
	    "};\n", BASE, l63, n253, u255);
	load(f, text);
	expect_ok(f);
	assert_int_equal(strlen(f->cfg->policy.domains[0].match), 67);
	assert_string_equal(f->cfg->policy.domains[1].match, n253);
	assert_string_equal(f->cfg->policy.users[0].match, u255);
	config_free(f->cfg);
	f->cfg = NULL;

	snprintf(text, len, "%s"          /* BASE holds '%' */
	    "policy = {\n"
	    "  domains = (\n"
	    "    { domain = \"%s.net\"; },\n"
	    "    { domain = \"%s\"; }\n"
	    "  );\n"
	    "  users = ( { user = \"%s\"; } );\n"
	    "};\n", BASE, l64, n254, u256);
	load(f, text);
	free(text);
	assert_int_equal(f->d.n, 3);
	expect(f, "%s:6: policy.domains[0].domain: has a label longer than 63 octets", f->path);
	expect(f, "%s:7: policy.domains[1].domain: is longer than 253 octets", f->path);
	expect(f, "%s:9: policy.users[0].user: must be at most 255 octets", f->path);
}

/* --- listen[].proxy_protocol and proxy_trusted ----------------------------------- */

static void
test_proxy_good(void **state)
{
	struct fx *f = *state;
	const struct listen_cfg *l;
	static const uint8_t db8[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	load(f,
	    "listen = (\n"
	    "  { address = \"0.0.0.0\"; port = 110; proxy_protocol = true;\n"
	    "    proxy_trusted = ( \"10.0.0.5\", \"10.0.1.0/24\" ); },\n"
	    "  { address = \"::\"; port = 110; proxy_protocol = true;\n"
	    "    proxy_trusted = [ \"2001:db8::/32\" ]; },\n"      /* an array is fine too */
	    "  { address = \"127.0.0.1\"; port = 111; proxy_protocol = false; },\n"
	    "  { address = \"127.0.0.1\"; port = 112; }\n"
	    ");\n" AUTH MAILDROP);
	expect_ok(f);
	assert_int_equal(f->cfg->nlisten, 4);
	l = f->cfg->listen;
	assert_int_equal(l[0].proxy_protocol, 1);
	assert_int_equal(l[0].nproxy_trusted, 2);
	assert_int_equal(l[0].proxy_trusted[0].family, AF_INET);
	assert_memory_equal(l[0].proxy_trusted[0].addr, "\x0a\x00\x00\x05", 4);
	assert_int_equal(l[0].proxy_trusted[0].prefix, 32);
	assert_memory_equal(l[0].proxy_trusted[1].addr, "\x0a\x00\x01\x00", 4);
	assert_int_equal(l[0].proxy_trusted[1].prefix, 24);
	assert_int_equal(l[1].proxy_protocol, 1);
	assert_int_equal(l[1].nproxy_trusted, 1);
	assert_int_equal(l[1].proxy_trusted[0].family, AF_INET6);
	assert_memory_equal(l[1].proxy_trusted[0].addr, db8, 16);
	assert_int_equal(l[1].proxy_trusted[0].prefix, 32);
	assert_int_equal(l[2].proxy_protocol, 0);
	assert_int_equal(l[2].nproxy_trusted, 0);
	assert_null(l[2].proxy_trusted);
	assert_int_equal(l[3].proxy_protocol, 0);
	assert_null(l[3].proxy_trusted);
}

static void
test_proxy_bad(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = (\n"
	    "  { address = \"127.0.0.1\"; port = 1; proxy_protocol = true; },\n"
	    "  { address = \"127.0.0.1\"; port = 2; proxy_protocol = true; proxy_trusted = ( ); },\n"
	    "  { address = \"127.0.0.1\"; port = 3; proxy_trusted = ( \"10.0.0.1\" ); },\n"
	    "  { address = \"127.0.0.1\"; port = 4; proxy_protocol = false;\n"     /* line 5 */
	    "    proxy_trusted = ( \"10.0.0.1\" ); },\n"
	    "  { address = \"127.0.0.1\"; port = 5; proxy_protocol = 1; },\n"
	    "  { address = \"127.0.0.1\"; port = 6; proxy_protocol = \"yes\";\n"
	    "    proxy_trusted = ( \"10.0.0.1\" ); },\n"    /* nothing more said about it */
	    "  { address = \"127.0.0.1\"; port = 7; proxy_protocol = true;\n"      /* line 10 */
	    "    proxy_trusted = ( \"10.0.0.1/8\", \"proxy.example\" ); },\n"
	    "  { address = \"127.0.0.1\"; port = 8; proxy_protocol = true;\n"
	    "    proxy_trusted = \"10.0.0.1\"; }\n"
	    ");\n" AUTH MAILDROP);
	assert_int_equal(f->d.n, 9);
	expect(f, "%s:2: listen[0].proxy_trusted: required setting is missing "
	    "(proxy_protocol is true)", f->path);
	expect(f, "%s:3: listen[1].proxy_trusted: needs at least 1 entry when proxy_protocol "
	    "is true", f->path);
	expect(f, "%s:4: listen[2].proxy_trusted: is only allowed with proxy_protocol = true",
	    f->path);
	expect(f, "%s:6: listen[3].proxy_trusted: is only allowed with proxy_protocol = true",
	    f->path);
	expect(f, "%s:7: listen[4].proxy_protocol: must be true or false, not an integer", f->path);
	expect(f, "%s:8: listen[5].proxy_protocol: must be true or false, not a string", f->path);
	expect(f, "%s:11: listen[6].proxy_trusted[0]: has address bits set beyond the /8 prefix "
	    "(the block is 10.0.0.0/8)", f->path);
	expect(f, "%s:11: listen[6].proxy_trusted[1]: must be an IPv4 or IPv6 address, "
	    "optionally with /prefix (no names)", f->path);
	expect(f, "%s:13: listen[7].proxy_trusted: must be a list of strings ( \"...\", ... ), "
	    "not a string", f->path);
}

/* --- log ------------------------------------------------------------------------ */

static void
test_log_good(void **state)
{
	struct fx *f = *state;
	static const struct { const char *name; int value; } fac[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	static const struct { const char *name; int value; } lvl[] = {
		{ "error", LOG_ERR }, { "warning", LOG_WARN }, { "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	};
	char text[512];
	size_t i;

	load(f, BASE "log = { target = \"syslog\"; facility = \"local7\"; level = \"debug\"; };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->log.target, LOGT_SYSLOG);
	assert_int_equal(f->cfg->log.facility, LOG_LOCAL7);
	assert_int_equal(f->cfg->log.level, LOG_DEBUG);

	for (i = 0; i < sizeof(fac) / sizeof(fac[0]); i++) {
		config_free(f->cfg);
		f->cfg = NULL;
		snprintf(text, sizeof(text), "%slog = { facility = \"%s\"; };\n", BASE,
		    fac[i].name);
		load(f, text);
		expect_ok(f);
		assert_int_equal(f->cfg->log.facility, fac[i].value);
		assert_int_equal(f->cfg->log.target, LOGT_STDERR);     /* kept, not refused */
	}
	for (i = 0; i < sizeof(lvl) / sizeof(lvl[0]); i++) {
		config_free(f->cfg);
		f->cfg = NULL;
		snprintf(text, sizeof(text), "%slog = { target = \"stderr\"; level = \"%s\"; };\n",
		    BASE, lvl[i].name);
		load(f, text);
		expect_ok(f);
		assert_int_equal(f->cfg->log.level, lvl[i].value);
	}

	/* An empty group is all defaults. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "log = { };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->log.target, LOGT_STDERR);
	assert_int_equal(f->cfg->log.facility, LOG_MAIL);
	assert_int_equal(f->cfg->log.level, LOG_INFO);
}

static void
test_log_bad(void **state)
{
	struct fx *f = *state;

	load(f, BASE
	    "log = {\n"                         /* line 4 */
	    "  target = \"journald\";\n"
	    "  facility = \"local8\";\n"
	    "  level = \"warn\";\n"
	    "  ident = \"pop3d\";\n"
	    "};\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:5: log.target: must be \"stderr\" or \"syslog\"", f->path);
	expect(f, "%s:6: log.facility: must be \"mail\", \"daemon\", \"user\", \"local0\", "
	    "\"local1\", \"local2\", \"local3\", \"local4\", \"local5\", \"local6\" or \"local7\"",
	    f->path);
	expect(f, "%s:7: log.level: must be \"error\", \"warning\", \"info\" or \"debug\"", f->path);
	expect(f, "%s:8: log.ident: unknown setting", f->path);

	/* Exactly so: no other case, no numbers (not even syslog's own). */
	diag_free(&f->d);
	load(f, BASE "log = { target = \"SYSLOG\";\n  facility = 16;\n  level = 6; };\n");
	assert_int_equal(f->d.n, 3);
	expect(f, "%s:4: log.target: must be \"stderr\" or \"syslog\"", f->path);
	expect(f, "%s:5: log.facility: must be a string, not an integer", f->path);
	expect(f, "%s:6: log.level: must be a string, not an integer", f->path);

	diag_free(&f->d);
	load(f, BASE "log = \"syslog\";\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:4: log: must be a group { ... }, not a string", f->path);
}

/* --- process --------------------------------------------------------------------- */

#define NAME64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._"

static void
test_process_good(void **state)
{
	struct fx *f = *state;

	assert_int_equal(strlen(NAME64), 64);
	load(f, BASE
	    "process = { user = \"pop3d\"; group = \"mail\"; allow_root = true;\n"
	    "  shutdown_grace = 3600; };\n");
	expect_ok(f);
	assert_string_equal(f->cfg->process.user, "pop3d");
	assert_string_equal(f->cfg->process.group, "mail");
	assert_int_equal(f->cfg->process.allow_root, 1);
	assert_int_equal(f->cfg->process.shutdown_grace, 3600);

	/* Boundaries that fit: 64 characters, one character, '_' '.' and digits first. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "process = { user = \"" NAME64 "\"; group = \"_\";\n"
	    "  allow_root = false; shutdown_grace = 0; };\n");
	expect_ok(f);
	assert_string_equal(f->cfg->process.user, NAME64);
	assert_string_equal(f->cfg->process.group, "_");
	assert_int_equal(f->cfg->process.allow_root, 0);
	assert_int_equal(f->cfg->process.shutdown_grace, 0);

	/* A user alone (group: the user's own) and names that only the system can refuse. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "process = { user = \"1000\"; };\n");
	expect_ok(f);
	assert_string_equal(f->cfg->process.user, "1000");
	assert_null(f->cfg->process.group);
	assert_int_equal(f->cfg->process.shutdown_grace, 10);

	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "process = { user = \".no-such_user.\"; group = \"x-\"; };\n");
	expect_ok(f);
	assert_string_equal(f->cfg->process.user, ".no-such_user.");
	assert_string_equal(f->cfg->process.group, "x-");
}

static void
test_process_bad(void **state)
{
	struct fx *f = *state;
	static const char chars[] = "must be a name of letters, digits, '.', '_' and '-'";

	load(f, BASE
	    "process = {\n"                     /* line 4 */
	    "  user = \"-pop3d\";\n"
	    "  group = \"pop 3d\";\n"
	    "  allow_root = \"no\";\n"
	    "  shutdown_grace = 3601;\n"
	    "  chroot = \"/var/empty\";\n"
	    "};\n");
	assert_int_equal(f->d.n, 5);
	expect(f, "%s:5: process.user: must not start with '-'", f->path);
	expect(f, "%s:6: process.group: %s", f->path, chars);
	expect(f, "%s:7: process.allow_root: must be true or false, not a string", f->path);
	expect(f, "%s:8: process.shutdown_grace: must be between 0 and 3600", f->path);
	expect(f, "%s:9: process.chroot: unknown setting", f->path);

	diag_free(&f->d);
	load(f, BASE
	    "process = {\n"
	    "  user = \"" NAME64 "x\";\n"           /* 65: one over */
	    "  group = \"\";\n"
	    "  allow_root = 0;\n"
	    "  shutdown_grace = -1;\n"
	    "};\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:5: process.user: must be at most 64 characters", f->path);
	expect(f, "%s:6: process.group: must not be empty", f->path);
	expect(f, "%s:7: process.allow_root: must be true or false, not an integer", f->path);
	expect(f, "%s:8: process.shutdown_grace: must be between 0 and 3600", f->path);

	/* UTF-8, a path, a colon (passwd separator), a number. */
	diag_free(&f->d);
	load(f, BASE
	    "process = {\n"
	    "  user = \"p\xc3\xb6p\";\n"
	    "  group = \"/etc/group\";\n"
	    "  shutdown_grace = 1.5;\n"
	    "};\n");
	assert_int_equal(f->d.n, 3);
	expect(f, "%s:5: process.user: %s", f->path, chars);
	expect(f, "%s:6: process.group: %s", f->path, chars);
	expect(f, "%s:7: process.shutdown_grace: must be an integer, not a float", f->path);

	diag_free(&f->d);
	load(f, BASE "process = { user = \"a:b\"; group = 100; };\n");
	assert_int_equal(f->d.n, 2);
	expect(f, "%s:4: process.user: %s", f->path, chars);
	expect(f, "%s:4: process.group: must be a string, not an integer", f->path);
}

static void
test_process_group_needs_user(void **state)
{
	struct fx *f = *state;

	load(f, BASE "process = {\n  shutdown_grace = 5;\n  group = \"mail\";\n};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:6: process.group: needs process.user as well", f->path);

	/* A user that is there but wrong is reported alone. */
	diag_free(&f->d);
	load(f, BASE "process = { user = \"\"; group = \"mail\"; };\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:4: process.user: must not be empty", f->path);
}

/* --- limits.auth_backoff_* and limits.trusted ---------------------------------- */

static void
test_backoff_good(void **state)
{
	struct fx *f = *state;
	const struct backoff_cfg *b;

	load(f, BASE
	    "limits = {\n"
	    "  auth_backoff_base = 0.25;\n"
	    "  auth_backoff_max = 3600;\n"
	    "  auth_backoff_forget = 86400;\n"
	    "  trusted = ( \"192.0.2.0/24\", \"::1\" );\n"
	    "};\n");
	expect_ok(f);
	b = &f->cfg->backoff;
	assert_int_equal(b->base_ms, 250);
	assert_int_equal(b->max_ms, 3600000);
	assert_int_equal(b->forget, 86400);
	assert_int_equal(b->ntrusted, 2);
	assert_int_equal(b->trusted[0].family, AF_INET);
	assert_memory_equal(b->trusted[0].addr, "\xc0\x00\x02\x00", 4);
	assert_int_equal(b->trusted[0].prefix, 24);
	assert_int_equal(b->trusted[1].family, AF_INET6);
	assert_int_equal(b->trusted[1].prefix, 128);
	assert_int_equal(f->cfg->nplaintext_trusted, 0);   /* a list of its own */

	/* Other edges: base = max = 60; integers; forget 1. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "limits = { auth_backoff_base = 60; auth_backoff_max = 60.0;\n"
	    "  auth_backoff_forget = 1; trusted = [ ]; };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->backoff.base_ms, 60000);
	assert_int_equal(f->cfg->backoff.max_ms, 60000);
	assert_int_equal(f->cfg->backoff.forget, 1);
	assert_int_equal(f->cfg->backoff.ntrusted, 0);

	/* Off: base 0, and then max may be anything, 0 included. */
	config_free(f->cfg);
	f->cfg = NULL;
	load(f, BASE "limits = { auth_backoff_base = 0; auth_backoff_max = 0; };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->backoff.base_ms, 0);
	assert_int_equal(f->cfg->backoff.max_ms, 0);
}

static void
test_backoff_bad(void **state)
{
	struct fx *f = *state;

	load(f, BASE
	    "limits = {\n"                          /* line 4 */
	    "  auth_backoff_base = 60.001;\n"
	    "  auth_backoff_max = 3600.5;\n"
	    "  auth_backoff_forget = 0;\n"
	    "  trusted = ( \"192.0.2.1/24\", \"gateway\" );\n"
	    "};\n");
	assert_int_equal(f->d.n, 5);
	expect(f, "%s:5: limits.auth_backoff_base: must be between 0 and 60 seconds", f->path);
	expect(f, "%s:6: limits.auth_backoff_max: must be between 0 and 3600 seconds", f->path);
	expect(f, "%s:7: limits.auth_backoff_forget: must be between 1 and 86400", f->path);
	expect(f, "%s:8: limits.trusted[0]: has address bits set beyond the /24 prefix "
	    "(the block is 192.0.2.0/24)", f->path);
	expect(f, "%s:8: limits.trusted[1]: must be an IPv4 or IPv6 address, optionally with "
	    "/prefix (no names)", f->path);

	diag_free(&f->d);
	load(f, BASE
	    "limits = {\n"
	    "  auth_backoff_base = -0.5;\n"
	    "  auth_backoff_max = \"60\";\n"
	    "  auth_backoff_forget = 86401;\n"
	    "  trusted = \"127.0.0.1\";\n"
	    "};\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:5: limits.auth_backoff_base: must be between 0 and 60 seconds", f->path);
	expect(f, "%s:6: limits.auth_backoff_max: must be a number of seconds, not a string",
	    f->path);
	expect(f, "%s:7: limits.auth_backoff_forget: must be between 1 and 86400", f->path);
	expect(f, "%s:8: limits.trusted: must be a list of strings ( \"...\", ... ), not a string",
	    f->path);

	diag_free(&f->d);
	load(f, BASE "limits = { auth_backoff_forget = 1.5; };\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:4: limits.auth_backoff_forget: must be an integer, not a float", f->path);
}

static void
test_backoff_max_below_base(void **state)
{
	struct fx *f = *state;

	load(f, BASE "limits = {\n  auth_backoff_base = 2;\n  auth_backoff_max = 1.5;\n};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:6: limits.auth_backoff_max: is 1.5 seconds, less than auth_backoff_base "
	    "(2 seconds); set auth_backoff_base = 0 to turn the backoff off", f->path);

	/* The default base (1 s) counts too. */
	diag_free(&f->d);
	load(f, BASE "limits = {\n  auth_backoff_max = 0;\n};\n");
	assert_int_equal(f->d.n, 1);
	expect(f, "%s:5: limits.auth_backoff_max: is 0 seconds, less than auth_backoff_base "
	    "(1 seconds); set auth_backoff_base = 0 to turn the backoff off", f->path);

	/* One millisecond under: still refused; equal: fine. */
	diag_free(&f->d);
	load(f, BASE "limits = { auth_backoff_base = 0.5; auth_backoff_max = 0.499; };\n");
	assert_int_equal(f->d.n, 1);
	diag_free(&f->d);
	load(f, BASE "limits = { auth_backoff_base = 0.5; auth_backoff_max = 0.5; };\n");
	expect_ok(f);
	assert_int_equal(f->cfg->backoff.max_ms, 500);
}

/* The new groups report with the rest, in file order, and free what they took. */
static void
test_ops_errors_together(void **state)
{
	struct fx *f = *state;

	load(f,
	    "listen = ( { address = \"127.0.0.1\"; port = 110; proxy_protocol = true; } );\n"
	    AUTH MAILDROP
	    "limits = { trusted = ( \"10.0.0.0/8\", \"10.0.0.1/8\" ); auth_backoff_max = 0.1; };\n"
	    "log = { level = \"verbose\"; };\n"
	    "process = { group = \"mail\"; shutdown_grace = 9999; };\n");
	assert_int_equal(f->d.n, 5);
	expect(f, "%s:1: listen[0].proxy_trusted: required setting is missing "
	    "(proxy_protocol is true)", f->path);
	expect(f, "%s:4: limits.trusted[1]: has address bits set beyond the /8 prefix "
	    "(the block is 10.0.0.0/8)", f->path);
	expect(f, "%s:5: log.level: must be \"error\", \"warning\", \"info\" or \"debug\"", f->path);
	expect(f, "%s:6: process.shutdown_grace: must be between 0 and 3600", f->path);
	expect(f, "%s:6: process.group: needs process.user as well", f->path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boundaries_fit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_relative_to_folder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_in_include_names_that_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_ip_above_total, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_enum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_characters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_errors_together, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_minimal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_listener_needs_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_sni_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trusted_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trusted_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_group_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_keep_days_with_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_name_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_proxy_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_proxy_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_group_needs_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_max_below_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ops_errors_together, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
