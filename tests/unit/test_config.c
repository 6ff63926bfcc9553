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
#include <sys/stat.h>
#include <unistd.h>

#include "server/config.h"

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
	assert_int_equal(f->cfg->nlisten, 2);
	assert_string_equal(f->cfg->listen[0].address, "0.0.0.0");
	assert_string_equal(f->cfg->listen[1].address, "::");
	assert_int_equal(f->cfg->listen[1].port, 110);
	assert_int_equal(f->cfg->plaintext, PLAINTEXT_TLS_ONLY);
	assert_int_equal(f->cfg->failure_delay_ms, 2000);
	assert_int_equal(f->cfg->idle_timeout, 600);
	assert_int_equal(f->cfg->max_connections, 10000);
	assert_int_equal(f->cfg->max_connections_per_ip, 50);
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
	    "listen = ( { address = \"127.0.0.1\"; port = 1110; tls = 1; } );\n"
	    "auth = { users_file = \"users\"; password = \"x\"; };\n"
	    MAILDROP
	    "limits = { idle = 5; };\n"
	    "verbose = true;\n");
	assert_int_equal(f->d.n, 4);
	expect(f, "%s:1: listen[0].tls: unknown setting", f->path);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
