/*
 * test_auth: tests server/auth.c through auth.h: users file parsing, login names,
 * asynchronous checks on a real uv loop (callbacks counted), APOP and hashing.
 * Never touches files outside its own mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/auth.h"

/* ---- fixtures ----------------------------------------------------------- */

#define MAX_FILES 64

static char tmpdir[64];
static char *files[MAX_FILES];
static size_t nfiles;

/* Real hashes of "hunter2", made once per run with libxcrypt. */
static char h_y[CRYPT_OUTPUT_SIZE], h_6[CRYPT_OUTPUT_SIZE];
static char h_5[CRYPT_OUTPUT_SIZE], h_2b[CRYPT_OUTPUT_SIZE];

static void make_hash(char *dst, const char *prefix, const char *pw)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *out;

	assert_non_null(cd);
	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, (int)sizeof(salt)));
	out = crypt_rn(pw, salt, cd, (int)sizeof(*cd));
	assert_non_null(out);
	assert_true(strlen(out) < CRYPT_OUTPUT_SIZE);
	memcpy(dst, out, strlen(out) + 1);
	free(cd);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_auth.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	make_hash(h_y, "$y$", "hunter2");
	make_hash(h_6, "$6$", "hunter2");
	make_hash(h_5, "$5$", "hunter2");
	make_hash(h_2b, "$2b$", "hunter2");
	return 0;
}

static int group_teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nfiles; i++) {
		unlink(files[i]);
		free(files[i]);
	}
	rmdir(tmpdir);
	return 0;
}

/* Write n bytes to a fresh file in tmpdir; returns its path (owned by the fixture). */
static const char *write_file(const char *data, size_t n)
{
	char path[128];
	FILE *f;

	assert_true(nfiles < MAX_FILES);
	snprintf(path, sizeof(path), "%s/users.%zu", tmpdir, nfiles);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	files[nfiles] = strdup(path);
	assert_non_null(files[nfiles]);
	return files[nfiles++];
}

static const char *write_str(const char *s)
{
	return write_file(s, strlen(s));
}

/* 1 when d holds a problem for path:line containing text. */
static int diag_has(const struct diag *d, const char *path, int line, const char *text)
{
	char pfx[256];
	size_t i, pn;

	snprintf(pfx, sizeof(pfx), "%s:%d: ", path, line);
	pn = strlen(pfx);
	for (i = 0; i < d->n; i++)
		if (strncmp(d->msg[i], pfx, pn) == 0 && strstr(d->msg[i] + pn, text) != NULL)
			return 1;
	return 0;
}

static void dump_diag(const struct diag *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		print_message("diag: %s\n", d->msg[i]);
}

static struct users *load_ok(const char *path, struct diag *d)
{
	struct users *u = NULL;

	assert_int_equal(users_load(path, &u, d), 0);
	assert_non_null(u);
	assert_int_equal(u->refs, 1);
	return u;
}

static const struct user *find(const struct users *u, const char *name)
{
	return users_find(u, name, strlen(name));
}

/* ---- users file --------------------------------------------------------- */

static void test_load_every_scheme(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	const struct user *e;
	char buf[4096];
	const char *path;

	(void)state;
	snprintf(buf, sizeof(buf),
	         "# every accepted form\n"                                 /* 1 */
	         "yes:%s:1000:1000:Yes User:/home/yes:/bin/sh\n"           /* 2 */
	         "sha512:{SHA512-CRYPT}%s\n"                               /* 3 */
	         "sha256:{sha256-crypt}%s::\n"                             /* 4 */
	         "blf:{BLF-CRYPT}%s\n"                                     /* 5 */
	         "crypt:{Crypt}%s\n"                                       /* 6 */
	         "bare6:%s\n"                                              /* 7 */
	         "bare2b:%s\n"                                             /* 8 */
	         "plain:{PLAIN}tanstaaf\n"                                 /* 9 */
	         "clear:{cleartext}open sesame\n"                          /* 10 */
	         "bob@example.org:{PLAIN}x:1:2:gecos:/srv/bob:/bin/false:extra:more\n", /* 11 */
	         h_y, h_6, h_5, h_2b, h_y, h_6, h_2b);
	path = write_str(buf);
	u = load_ok(path, &d);
	dump_diag(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(u->n, 10);
	assert_string_equal(u->path, path);

	e = find(u, "yes");
	assert_non_null(e);
	assert_int_equal(e->scheme, PW_CRYPT);
	assert_string_equal(e->secret, h_y);
	assert_string_equal(e->home, "/home/yes");
	assert_int_equal(e->line, 2);

	e = find(u, "sha512");
	assert_non_null(e);
	assert_string_equal(e->secret, h_6);
	assert_string_equal(e->home, "");
	e = find(u, "sha256");
	assert_non_null(e);
	assert_string_equal(e->secret, h_5);
	e = find(u, "blf");
	assert_non_null(e);
	assert_string_equal(e->secret, h_2b);
	e = find(u, "crypt");
	assert_non_null(e);
	assert_string_equal(e->secret, h_y);
	assert_non_null(find(u, "bare6"));
	assert_non_null(find(u, "bare2b"));

	e = find(u, "plain");
	assert_non_null(e);
	assert_int_equal(e->scheme, PW_PLAIN);
	assert_string_equal(e->secret, "tanstaaf");
	e = find(u, "clear");
	assert_non_null(e);
	assert_int_equal(e->scheme, PW_PLAIN);
	assert_string_equal(e->secret, "open sesame");

	e = find(u, "bob@example.org");
	assert_non_null(e);
	assert_string_equal(e->home, "/srv/bob");
	assert_int_equal(e->line, 11);

	assert_true(users_any_plain(u));
	users_unref(u);
	diag_free(&d);
}

static void test_load_rejects_and_keeps_good_lines(void **state)
{
	static const char head[] =
		"# comment\n"                        /* 1 */
		"\n"                                 /* 2 */
		"good1:{PLAIN}a\n"                   /* 3 */
		"nocolon\n"                          /* 4 */
		"empty:\n"                           /* 5 */
		"unk:{MD5}abc\n"                     /* 6 */
		".dot:{PLAIN}x\n"                    /* 7 */
		"a/b:{PLAIN}x\n"                     /* 8 */
		"a..b:{PLAIN}x\n"                    /* 9 */
		"sp ace:{PLAIN}x\n"                  /* 10 */
		"two@x@y:{PLAIN}x\n"                 /* 11 */
		"@dom:{PLAIN}x\n"                    /* 12 */
		"des:abcdefghijklm\n"                /* 13 */
		"md5:$1$saltsalt$abcdefghijklmnopqrstuv\n" /* 14 */
		"inc:$6$saltonly\n"                  /* 15 */
		"emptyplain:{PLAIN}\n"               /* 16 */
		"unterminated:{PLAIN\n"              /* 17 */
		"nul:{PLAIN}a\0b\n"                  /* 18 */
		"ctl\x01:{PLAIN}x\n"                 /* 19 */
		"good1:{PLAIN}dup\n"                 /* 20 */
		"good2:{PLAIN}b\n"                   /* 21 */
		"locked:!\n"                         /* 22 */
		":{PLAIN}noname\n"                   /* 23 */
		"good1:{PLAIN}dup again\n";          /* 24 */
	char buf[8192], name256[300];
	struct diag d = { 0 };
	struct users *u;
	const char *path;
	size_t n = sizeof(head) - 1;
	int len;

	(void)state;
	memcpy(buf, head, n);
	len = snprintf(buf + n, sizeof(buf) - n,
	               "mis:{SHA512-CRYPT}%s\n"           /* 25 */
	               "bcrypt:{BCRYPT}%s\n"              /* 26 */
	               "blfmis:{BLF-CRYPT}%s\n",          /* 27 */
	               h_5, h_2b, h_y);
	n += (size_t)len;
	memset(name256, 'n', 256);
	memcpy(name256 + 256, ":{PLAIN}x\n", 11);  /* 28 */
	memcpy(buf + n, name256, strlen(name256));
	n += strlen(name256);
	memcpy(name256 + 255, ":{PLAIN}x\n", 11);  /* 29: 255 octets is fine */
	memcpy(buf + n, name256, strlen(name256));
	n += strlen(name256);

	path = write_file(buf, n);
	u = load_ok(path, &d);

	assert_true(diag_has(&d, path, 4, "no ':'"));
	assert_true(diag_has(&d, path, 5, "empty password"));
	assert_true(diag_has(&d, path, 6, "unknown password scheme {MD5}"));
	assert_true(diag_has(&d, path, 7, "starts with '.'"));
	assert_true(diag_has(&d, path, 8, "'/'"));
	assert_true(diag_has(&d, path, 9, "\"..\""));
	assert_true(diag_has(&d, path, 10, "space"));
	assert_true(diag_has(&d, path, 11, "more than one '@'"));
	assert_true(diag_has(&d, path, 12, "empty local part"));
	assert_true(diag_has(&d, path, 13, "legacy"));
	assert_true(diag_has(&d, path, 14, "legacy"));
	assert_true(diag_has(&d, path, 15, "incomplete"));
	assert_true(diag_has(&d, path, 16, "empty password"));
	assert_true(diag_has(&d, path, 17, "no '}'"));
	assert_true(diag_has(&d, path, 18, "NUL"));
	assert_true(diag_has(&d, path, 19, "control character"));
	assert_true(diag_has(&d, path, 20, "duplicate user \"good1\" (kept line 3)"));
	assert_true(diag_has(&d, path, 22, "not a valid crypt hash"));
	assert_true(diag_has(&d, path, 23, "empty user name"));
	assert_true(diag_has(&d, path, 24, "duplicate user \"good1\" (kept line 3)"));
	assert_true(diag_has(&d, path, 25, "does not start with $6$"));
	assert_true(diag_has(&d, path, 26, "unknown password scheme {BCRYPT}"));
	assert_true(diag_has(&d, path, 27, "does not start with $2b$"));
	assert_true(diag_has(&d, path, 28, "longer than 255"));
	/* Exactly one problem per bad line, nothing else. */
	assert_int_equal(d.n, 24);
	assert_int_equal(d.oom, 0);

	assert_int_equal(u->n, 3);
	assert_string_equal(find(u, "good1")->secret, "a");   /* the first one wins */
	assert_int_equal(find(u, "good1")->line, 3);
	assert_string_equal(find(u, "good2")->secret, "b");
	name256[255] = '\0';
	assert_non_null(find(u, name256));
	assert_null(find(u, "mis"));
	users_unref(u);
	diag_free(&d);
}

/* "name:{PLAIN}xxx..." padded to exactly len octets, then eol. */
static size_t padded_line(char *dst, const char *name, size_t len, const char *eol)
{
	size_t n = (size_t)snprintf(dst, len + 1, "%s:{PLAIN}", name);

	memset(dst + n, 'x', len - n);
	memcpy(dst + len, eol, strlen(eol));
	return len + strlen(eol);
}

static void test_line_length_boundary(void **state)
{
	size_t cap = 4 * USERS_LINE_MAX + 64, n = 0;
	char *buf = malloc(cap);
	struct diag d = { 0 };
	struct users *u;
	const char *path;

	(void)state;
	assert_non_null(buf);
	n += padded_line(buf + n, "fits", USERS_LINE_MAX, "\n");          /* 1 */
	n += padded_line(buf + n, "over", USERS_LINE_MAX + 1, "\n");      /* 2 */
	n += padded_line(buf + n, "fitscr", USERS_LINE_MAX, "\r\n");      /* 3: CR not counted */
	n += padded_line(buf + n, "last", USERS_LINE_MAX + 1, "");        /* 4: no final LF */
	path = write_file(buf, n);
	u = load_ok(path, &d);
	assert_int_equal(d.n, 2);
	assert_true(diag_has(&d, path, 2, "line longer than 4096 octets"));
	assert_true(diag_has(&d, path, 4, "line longer than 4096 octets"));
	assert_int_equal(u->n, 2);
	assert_non_null(find(u, "fits"));
	assert_non_null(find(u, "fitscr"));
	assert_int_equal(strlen(find(u, "fits")->secret), USERS_LINE_MAX - strlen("fits:{PLAIN}"));
	users_unref(u);
	diag_free(&d);
	free(buf);
}

static void test_huge_lines(void **state)
{
	size_t big = 300 * 1024, n;
	char *buf = malloc(big + 64);
	struct diag d = { 0 };
	struct users *u;
	const char *path;

	(void)state;
	assert_non_null(buf);
	/* A 300 KiB line (longer than any read chunk), then a good one. */
	memset(buf, 'a', big);
	n = big;
	memcpy(buf + n, "\nok:{PLAIN}y\n", 13);
	n += 13;
	path = write_file(buf, n);
	u = load_ok(path, &d);
	assert_int_equal(d.n, 1);
	assert_true(diag_has(&d, path, 1, "line longer"));
	assert_int_equal(u->n, 1);
	assert_non_null(find(u, "ok"));
	assert_int_equal(find(u, "ok")->line, 2);
	users_unref(u);
	diag_free(&d);

	/* No newline at all. */
	path = write_file(buf, big);
	u = load_ok(path, &d);
	assert_int_equal(d.n, 1);
	assert_true(diag_has(&d, path, 1, "line longer"));
	assert_int_equal(u->n, 0);
	assert_false(users_any_plain(u));
	assert_null(find(u, "a"));
	users_unref(u);
	diag_free(&d);
	free(buf);
}

static void test_crlf_and_no_final_newline(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	const char *path;

	(void)state;
	path = write_str("a:{PLAIN}x\r\n#c\r\n\r\nb:{PLAIN}y:1:1::/home/b\r\nc:{PLAIN}z");
	u = load_ok(path, &d);
	dump_diag(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(u->n, 3);
	assert_string_equal(find(u, "a")->secret, "x");
	assert_string_equal(find(u, "b")->home, "/home/b");
	assert_string_equal(find(u, "c")->secret, "z");
	assert_int_equal(find(u, "c")->line, 5);
	users_unref(u);

	/* Empty file: no users, no problems. */
	path = write_str("");
	u = load_ok(path, &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(u->n, 0);
	users_unref(u);
	diag_free(&d);
}

static void test_load_unreadable(void **state)
{
	struct diag d = { 0 };
	struct users *u = (struct users *)&d;   /* must be reset to NULL */
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
	assert_int_equal(users_load(path, &u, &d), -1);
	assert_null(u);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msg[0], "cannot open"));
	diag_free(&d);

	u = (struct users *)&d;
	assert_int_equal(users_load(tmpdir, &u, &d), -1);
	assert_null(u);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msg[0], "not a regular file"));
	diag_free(&d);
}

/* Sparse files: exactly USERS_FILE_MAX is read (one long line of NULs), one more is refused. */
static void test_file_size_limit(void **state)
{
	struct diag d = { 0 };
	struct users *u = NULL;
	const char *path;

	(void)state;
	path = write_str("");
	assert_int_equal(truncate(path, USERS_FILE_MAX), 0);
	u = load_ok(path, &d);
	assert_int_equal(u->n, 0);
	assert_int_equal(d.n, 1);
	assert_true(diag_has(&d, path, 1, "line longer"));
	users_unref(u);
	diag_free(&d);

	assert_int_equal(truncate(path, (off_t)USERS_FILE_MAX + 1), 0);
	assert_int_equal(users_load(path, &u, &d), -1);
	assert_null(u);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msg[0], "larger than 64 MiB"));
	diag_free(&d);
	assert_int_equal(truncate(path, 0), 0);
}

static void test_find_exact(void **state)
{
	struct diag d = { 0 };
	struct users *u;

	(void)state;
	u = load_ok(write_str("bob:{PLAIN}1\nbo:{PLAIN}2\nbobby:{PLAIN}3\nBob:{PLAIN}4\n"), &d);
	assert_int_equal(u->n, 4);
	assert_string_equal(find(u, "bob")->secret, "1");
	assert_string_equal(find(u, "bo")->secret, "2");
	assert_string_equal(find(u, "bobby")->secret, "3");
	assert_string_equal(find(u, "Bob")->secret, "4");
	assert_null(find(u, "b"));
	assert_null(find(u, "bobb"));
	assert_null(find(u, "BOB"));
	assert_null(users_find(u, "bob\0", 4));
	assert_string_equal(users_find(u, "bobby", 3)->secret, "1");
	assert_null(users_find(u, "", 0));
	assert_ptr_equal(users_ref(u), u);
	assert_int_equal(u->refs, 2);
	users_unref(u);
	assert_int_equal(u->refs, 1);
	users_unref(u);
	users_unref(NULL);
	diag_free(&d);
}

static void test_login_name_valid(void **state)
{
	char name[300];

	(void)state;
	memset(name, 'a', sizeof(name));
	assert_true(login_name_valid(name, 255));
	assert_false(login_name_valid(name, 256));
	assert_true(login_name_valid("a", 1));
	assert_false(login_name_valid("", 0));
	assert_false(login_name_valid("..", 2));
	assert_false(login_name_valid("a..b", 4));
	assert_true(login_name_valid("a.b", 3));
	assert_true(login_name_valid("a@b.c", 5));
	assert_true(login_name_valid("a.", 2));
	assert_false(login_name_valid(".a", 2));
	assert_false(login_name_valid("a/b", 3));
	assert_false(login_name_valid("/", 1));
	assert_false(login_name_valid("\x01", 1));
	assert_false(login_name_valid("a\x1f", 2));
	assert_false(login_name_valid("a\x7f", 2));
	assert_false(login_name_valid("a\0b", 3));
	assert_false(login_name_valid("a\r", 2));
	assert_true(login_name_valid("a b", 3));           /* spaces: allowed by the contract */
	assert_true(login_name_valid("j\xc3\xbcrgen", 7)); /* UTF-8 octets pass */
}

/* ---- asynchronous checks ------------------------------------------------ */

struct cbrec {
	int               calls;
	enum auth_result  last;
	struct auth_req  *self;       /* for the cancel-from-callback test */
};

static void on_auth(void *arg, enum auth_result r)
{
	struct cbrec *c = arg;

	c->calls++;
	c->last = r;
	if (c->self != NULL)
		auth_cancel(c->self);   /* documented as harmless inside cb */
}

static struct users *check_users(struct diag *d)
{
	char buf[2048];

	snprintf(buf, sizeof(buf),
	         "alice:%s\nsix:{SHA512-CRYPT}%s\nblf:%s\npete:{PLAIN}plainpw\n", h_y, h_6, h_2b);
	return load_ok(write_str(buf), d);
}

/* One check on a fresh loop: returns the result; the callback must run once. */
static enum auth_result run_check(struct users *u, const char *name, const char *pass, size_t plen)
{
	uv_loop_t loop;
	struct cbrec c = { 0 };
	struct auth_req *r;

	assert_int_equal(uv_loop_init(&loop), 0);
	r = auth_check(&loop, u, name, strlen(name), pass, plen, on_auth, &c);
	assert_non_null(r);
	assert_int_equal(u->refs, 2);   /* the request holds a reference */
	assert_int_equal(c.calls, 0);   /* never synchronously */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(u->refs, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	return c.last;
}

#define CHECK(u, name, pass) run_check(u, name, pass, strlen(pass))

static void test_check_results(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	char longpw[700];

	(void)state;
	u = check_users(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(CHECK(u, "alice", "hunter2"), AUTH_OK);
	assert_int_equal(CHECK(u, "alice", "hunter3"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "alice", "hunter"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "alice", ""), AUTH_FAIL);
	assert_int_equal(CHECK(u, "six", "hunter2"), AUTH_OK);
	assert_int_equal(CHECK(u, "blf", "hunter2"), AUTH_OK);
	assert_int_equal(CHECK(u, "blf", "Hunter2"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "nobody", "hunter2"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "Alice", "hunter2"), AUTH_FAIL);
	/* A NUL would end the crypt phrase early: never "hunter2". */
	assert_int_equal(run_check(u, "alice", "hunter2\0x", 9), AUTH_FAIL);
	/* Longer than libxcrypt takes: cannot match, costs a hash anyway. */
	memset(longpw, 'p', sizeof(longpw));
	assert_int_equal(run_check(u, "alice", longpw, sizeof(longpw)), AUTH_FAIL);
	/* {PLAIN}: exact bytes only. */
	assert_int_equal(CHECK(u, "pete", "plainpw"), AUTH_OK);
	assert_int_equal(CHECK(u, "pete", "plainp"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "pete", "plainpw "), AUTH_FAIL);
	assert_int_equal(run_check(u, "pete", "plainpw\0", 8), AUTH_FAIL);
	assert_int_equal(run_check(u, "pete", longpw, sizeof(longpw)), AUTH_FAIL);
	users_unref(u);
	diag_free(&d);
}

static void test_check_many_in_flight(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct cbrec c[8];
	size_t i;

	(void)state;
	memset(c, 0, sizeof(c));
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	for (i = 0; i < 8; i++)
		assert_non_null(auth_check(&loop, u, "alice", 5, i % 2 ? "nope" : "hunter2",
		                           i % 2 ? 4 : 7, on_auth, &c[i]));
	assert_int_equal(u->refs, 9);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < 8; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_int_equal(c[i].last, i % 2 ? AUTH_FAIL : AUTH_OK);
	}
	assert_int_equal(u->refs, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

static void test_cancel(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct cbrec c = { 0 };
	struct auth_req *r[12];
	size_t i;

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);

	/* One request, cancelled at once (most likely still queued). */
	r[0] = auth_check(&loop, u, "alice", 5, "hunter2", 7, on_auth, &c);
	assert_non_null(r[0]);
	auth_cancel(r[0]);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 0);
	assert_int_equal(u->refs, 1);

	/* More than the pool has threads: some are running when cancelled, some queued;
	 * both kinds must be freed by the pool's after-work callback, silently. */
	for (i = 0; i < 12; i++) {
		r[i] = auth_check(&loop, u, i % 3 ? "alice" : "ghost", 5, "hunter2", 7, on_auth, &c);
		assert_non_null(r[i]);
	}
	usleep(20 * 1000);   /* let the pool pick some up; the outcome must not depend on it */
	for (i = 0; i < 12; i++)
		auth_cancel(r[i]);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 0);
	assert_int_equal(u->refs, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

static void test_cancel_inside_callback(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct cbrec c = { 0 };

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	c.self = auth_check(&loop, u, "pete", 4, "plainpw", 7, on_auth, &c);
	assert_non_null(c.self);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.last, AUTH_OK);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

static void test_users_outlive_owner(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct cbrec c = { 0 };

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_non_null(auth_check(&loop, u, "alice", 5, "hunter2", 7, on_auth, &c));
	users_unref(u);   /* e.g. a reload replaced it: the request keeps it alive */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.last, AUTH_OK);
	assert_int_equal(uv_loop_close(&loop), 0);
	diag_free(&d);
}

/* ---- APOP and hashing --------------------------------------------------- */

static void test_apop_rfc1939(void **state)
{
	static const char ts[] = "<1896.697170952@dbc.mtview.ca.us>";
	static const char dig[] = "c4c9334bac560ecc979e58001b3e22fb";
	struct diag d = { 0 };
	struct users *u;
	char buf[1024];

	(void)state;
	snprintf(buf, sizeof(buf), "mrose:{PLAIN}tanstaaf\nalice:%s\n", h_y);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(d.n, 0);
	assert_true(auth_apop(u, "mrose", 5, ts, dig, 32));
	assert_true(auth_apop(u, "mrose", 5, ts, "C4C9334BAC560ECC979E58001B3E22FB", 32));
	assert_true(auth_apop(u, "mrose", 5, ts, "c4C9334bac560ecc979e58001b3e22Fb", 32));
	assert_false(auth_apop(u, "mrose", 5, ts, "c4c9334bac560ecc979e58001b3e22fc", 32));
	assert_false(auth_apop(u, "mrose", 5, ts, dig, 31));
	assert_false(auth_apop(u, "mrose", 5, ts, "c4c9334bac560ecc979e58001b3e22fb0", 33));
	assert_false(auth_apop(u, "mrose", 5, ts, "g4c9334bac560ecc979e58001b3e22fb", 32));
	assert_false(auth_apop(u, "mrose", 5, "<1896.697170953@dbc.mtview.ca.us>", dig, 32));
	assert_false(auth_apop(u, "mros", 4, ts, dig, 32));
	assert_false(auth_apop(u, "alice", 5, ts, dig, 32));   /* crypt user: no APOP */
	users_unref(u);
	diag_free(&d);
}

static void test_hash_password_round_trip(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	char err[128], buf[512], *h;
	struct crypt_data *cd = calloc(1, sizeof(*cd));

	(void)state;
	assert_non_null(cd);
	h = auth_hash_password("s3cret pass", 11, err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "$y$", 3);
	assert_string_equal(crypt_rn("s3cret pass", h, cd, (int)sizeof(*cd)), h);
	assert_int_equal(crypt_checksalt(h), CRYPT_SALT_OK);

	snprintf(buf, sizeof(buf), "carol:%s\n", h);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(CHECK(u, "carol", "s3cret pass"), AUTH_OK);
	assert_int_equal(CHECK(u, "carol", "s3cret pas"), AUTH_FAIL);
	users_unref(u);
	free(h);

	err[0] = '\0';
	assert_null(auth_hash_password("", 0, err, sizeof(err)));
	assert_string_equal(err, "empty password");
	assert_null(auth_hash_password("a\0b", 3, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
	memset(buf, 'p', sizeof(buf));
	assert_null(auth_hash_password(buf, sizeof(buf), err, sizeof(err)));
	assert_non_null(strstr(err, "longer than 511"));
	assert_null(auth_hash_password(buf, sizeof(buf), NULL, 0));
	free(cd);
	diag_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_every_scheme),
		cmocka_unit_test(test_load_rejects_and_keeps_good_lines),
		cmocka_unit_test(test_line_length_boundary),
		cmocka_unit_test(test_huge_lines),
		cmocka_unit_test(test_crlf_and_no_final_newline),
		cmocka_unit_test(test_load_unreadable),
		cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_find_exact),
		cmocka_unit_test(test_login_name_valid),
		cmocka_unit_test(test_check_results),
		cmocka_unit_test(test_check_many_in_flight),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_inside_callback),
		cmocka_unit_test(test_users_outlive_owner),
		cmocka_unit_test(test_apop_rfc1939),
		cmocka_unit_test(test_hash_password_round_trip),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
