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
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/auth.h"
#include "server/limits.h"

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
	memcpy(buf + n, "bare:notahash\n", 14);  /* 30: a password without {PLAIN} */
	n += 14;

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
	assert_true(diag_has(&d, path, 30, "not a crypt hash"));
	assert_false(diag_has(&d, path, 30, "legacy"));
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
	assert_int_equal(d.n, 25);
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
	struct auth_queue q;
	struct cbrec c = { 0 };
	struct auth_req *r;

	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, AUTH_HASH_CONCURRENCY);
	r = auth_check(&q, NULL, 0, u, name, strlen(name), pass, plen, on_auth, &c);
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
	struct auth_queue q;
	struct cbrec c[8];
	size_t i;

	(void)state;
	memset(c, 0, sizeof(c));
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, AUTH_HASH_CONCURRENCY);
	for (i = 0; i < 8; i++)
		assert_non_null(auth_check(&q, NULL, 0, u, "alice", 5, i % 2 ? "nope" : "hunter2",
		                           i % 2 ? 4 : 7, on_auth, &c[i]));
	assert_int_equal(u->refs, 9);
	/* No more hashes at once than the cap (16 MiB each); the rest wait in order. */
	assert_int_equal(q.hashing, AUTH_HASH_CONCURRENCY);
	assert_non_null(q.wait_head);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < 8; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_int_equal(c[i].last, i % 2 ? AUTH_FAIL : AUTH_OK);
	}
	assert_int_equal(q.hashing, 0);
	assert_null(q.wait_head);
	assert_int_equal(u->refs, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

struct orderrec {
	int order[16];
	int n;
};

struct ordercb {
	struct orderrec *rec;
	int              id;
};

static void on_auth_order(void *arg, enum auth_result r)
{
	struct ordercb *c = arg;

	(void)r;
	c->rec->order[c->rec->n++] = c->id;
}

/*
 * One address with eight logins waiting must not hold another address's
 * login behind all of them: with two turns, B (queued last) gets the first
 * turn that frees up, because A already has a check running.
 */
static void test_check_fair_per_address(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct auth_queue q;
	struct orderrec rec = { { 0 }, 0 };
	struct ordercb c[9];
	struct ipkey a = { 4, { 192, 0, 2, 1 } }, b = { 4, { 198, 51, 100, 7 } };
	int i, pos = -1;

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, 2);
	for (i = 0; i < 9; i++) {
		c[i].rec = &rec;
		c[i].id = i;
		assert_non_null(auth_check(&q, i < 8 ? &a : &b, 0, u, "alice", 5, "nope", 4,
		                           on_auth_order, &c[i]));
	}
	assert_int_equal(q.hashing, 2);
	assert_int_equal(q.waiting, 7);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(rec.n, 9);
	for (i = 0; i < 9; i++)
		if (rec.order[i] == 8)
			pos = i;
	/* Two of A's were running when B came; B starts when the first ends, so at
	 * most those two and the one started beside B can finish before it. */
	assert_true(pos >= 0 && pos <= 3);
	assert_int_equal(q.hashing, 0);
	assert_int_equal(q.waiting, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

/* With one turn: of two waiters whose addresses have nothing running, the one
 * whose address has not been failing goes first, though it came later. */
static void test_check_failing_address_waits(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct auth_queue q;
	struct orderrec rec = { { 0 }, 0 };
	struct ordercb c[3];
	struct ipkey x = { 4, { 192, 0, 2, 9 } }, a = { 4, { 192, 0, 2, 1 } },
	             b = { 4, { 198, 51, 100, 7 } };
	int i;

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, 1);
	for (i = 0; i < 3; i++) {
		c[i].rec = &rec;
		c[i].id = i;
	}
	assert_non_null(auth_check(&q, &x, 0, u, "alice", 5, "nope", 4, on_auth_order, &c[0]));
	assert_non_null(auth_check(&q, &a, 3, u, "alice", 5, "nope", 4, on_auth_order, &c[1]));
	assert_non_null(auth_check(&q, &b, 0, u, "alice", 5, "nope", 4, on_auth_order, &c[2]));
	assert_int_equal(q.hashing, 1);
	assert_int_equal(q.waiting, 2);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(rec.n, 3);
	assert_int_equal(rec.order[0], 0);
	assert_int_equal(rec.order[1], 2);
	assert_int_equal(rec.order[2], 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	users_unref(u);
	diag_free(&d);
}

static void test_cancel(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	uv_loop_t loop;
	struct auth_queue q;
	struct cbrec c = { 0 };
	struct auth_req *r[12];
	size_t i;

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, AUTH_HASH_CONCURRENCY);

	/* One request, cancelled at once (most likely still queued). */
	r[0] = auth_check(&q, NULL, 0, u, "alice", 5, "hunter2", 7, on_auth, &c);
	assert_non_null(r[0]);
	auth_cancel(r[0]);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.calls, 0);
	assert_int_equal(u->refs, 1);

	/* More than the pool has threads: some are running when cancelled, some queued;
	 * both kinds must be freed by the pool's after-work callback, silently. */
	for (i = 0; i < 12; i++) {
		r[i] = auth_check(&q, NULL, 0, u, i % 3 ? "alice" : "ghost", 5, "hunter2", 7, on_auth, &c);
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
	struct auth_queue q;
	struct cbrec c = { 0 };

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, AUTH_HASH_CONCURRENCY);
	c.self = auth_check(&q, NULL, 0, u, "pete", 4, "plainpw", 7, on_auth, &c);
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
	struct auth_queue q;
	struct cbrec c = { 0 };

	(void)state;
	u = check_users(&d);
	assert_int_equal(uv_loop_init(&loop), 0);
	auth_queue_init(&q, &loop, AUTH_HASH_CONCURRENCY);
	assert_non_null(auth_check(&q, NULL, 0, u, "alice", 5, "hunter2", 7, on_auth, &c));
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

/* ---- SCRAM-SHA-256 ------------------------------------------------------ */

/* Base64 with OpenSSL, to check the codec in auth.c against another one. */
static size_t ossl_b64(char *dst, const void *src, size_t n)
{
	return (size_t)EVP_EncodeBlock((unsigned char *)dst, src, (int)n);
}

/* StoredKey and ServerKey computed with OpenSSL. */
static void ossl_scram(const void *pass, size_t plen, const unsigned char *salt, size_t slen,
                       int iter, unsigned char sk[32], unsigned char vk[32])
{
	unsigned char salted[32], ck[32];
	unsigned int l;

	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)plen, salt, (int)slen, iter, EVP_sha256(),
	                                   32, salted), 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10,
	                     ck, &l));
	SHA256(ck, 32, sk);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10,
	                     vk, &l));
}

/* A Dovecot {SCRAM-SHA-256} field for pass, made with OpenSSL. */
static void scram_field(char *dst, size_t cap, const char *pass, const unsigned char *salt,
                        size_t slen, int iter)
{
	unsigned char sk[32], vk[32];
	char s64[256], k64[64], v64[64];

	ossl_scram(pass, strlen(pass), salt, slen, iter, sk, vk);
	ossl_b64(s64, salt, slen);
	ossl_b64(k64, sk, 32);
	ossl_b64(v64, vk, 32);
	snprintf(dst, cap, "{SCRAM-SHA-256}%d,%s,%s,%s", iter, s64, k64, v64);
}

static const unsigned char SALT16[16] = "0123456789abcdef";

static void test_sha256_hmac_vs_openssl(void **state)
{
	unsigned char buf[300], key[200], a[32], b[32];
	unsigned int l;
	size_t n;

	(void)state;
	/* FIPS 180-2 "abc". */
	auth_sha256("abc", 3, a);
	assert_memory_equal(a, "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23"
	                       "\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad", 32);
	/* RFC 4231 test case 2. */
	auth_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, a);
	assert_memory_equal(a, "\x5b\xdc\xc1\x46\xbf\x60\x75\x4e\x6a\x04\x24\x26\x08\x95\x75\xc7"
	                       "\x5a\x00\x3f\x08\x9d\x27\x39\x83\x9d\xec\x58\xb9\x64\xec\x38\x43", 32);
	assert_int_equal(RAND_bytes(buf, sizeof(buf)), 1);
	assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
	/* Every length around the 55/56/64-octet padding boundaries, and keys longer
	 * than a block (hashed first). */
	for (n = 0; n < sizeof(buf); n++) {
		auth_sha256(buf, n, a);
		SHA256(buf, n, b);
		assert_memory_equal(a, b, 32);
	}
	for (n = 0; n < sizeof(key); n += 7) {
		auth_hmac_sha256(key, n, buf, n + 50, a);
		assert_non_null(HMAC(EVP_sha256(), key, (int)n, buf, n + 50, b, &l));
		assert_memory_equal(a, b, 32);
	}
}

static void test_scram_keys_vs_openssl(void **state)
{
	static const uint32_t iters[] = { 1, 2, 3, 4096 };
	unsigned char pass[150], salt[SCRAM_SALT_MAX], a[32], b[32], c[32], d[32];
	size_t i, plen, slen;

	(void)state;
	assert_int_equal(RAND_bytes(pass, sizeof(pass)), 1);
	assert_int_equal(RAND_bytes(salt, sizeof(salt)), 1);
	for (i = 0; i < sizeof(iters) / sizeof(iters[0]); i++) {
		for (plen = 0; plen < sizeof(pass); plen += 37) {
			slen = (plen * 3 + i) % sizeof(salt) + 1;
			auth_scram_keys((const char *)pass, plen, salt, slen, iters[i], a, b);
			ossl_scram(pass, plen, salt, slen, (int)iters[i], c, d);
			assert_memory_equal(a, c, 32);
			assert_memory_equal(b, d, 32);
		}
	}
}

static void test_base64(void **state)
{
	static const struct {
		const char *s;
		size_t      n;
	} bad[] = {
#define B(x) { x, sizeof(x) - 1 }
		B("A"), B("AA"), B("AAA"), B("AAAAA"), B("AA=A"), B("A==="), B("===="),
		B("AA==AAAA"), B("AB=="), B("AAB="), B("AA ="), B(" AAA"), B("AAA\n"), B("AA-A"),
		B("AA_A"), B("AA.A"), B("AAA\0"), B("AA\0="),
#undef B
	};
	unsigned char raw[100], back[100];
	char mine[200], theirs[200];
	size_t n, k, m;

	(void)state;
	assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
	for (n = 0; n < sizeof(raw); n++) {
		assert_int_equal(b64_encode(mine, sizeof(mine), raw, n, &k), 0);
		assert_int_equal(k, ossl_b64(theirs, raw, n));
		assert_string_equal(mine, theirs);
		assert_int_equal(b64_decode(back, sizeof(back), mine, k, &m), 0);
		assert_int_equal(m, n);
		assert_memory_equal(back, raw, n);
		/* Exactly enough room, and one octet short. */
		assert_int_equal(b64_encode(mine, k + 1, raw, n, &k), 0);
		assert_int_equal(b64_encode(mine, k, raw, n, &k), -1);
		if (n > 0) {
			assert_int_equal(b64_decode(back, n, mine, k, &m), 0);
			assert_int_equal(b64_decode(back, n - 1, mine, k, &m), -1);
		}
	}
	assert_int_equal(b64_decode(back, 0, "", 0, &m), 0);
	assert_int_equal(m, 0);
	for (n = 0; n < sizeof(bad) / sizeof(bad[0]); n++)
		if (b64_decode(back, sizeof(back), bad[n].s, bad[n].n, &m) == 0)
			fail_msg("bad case %zu decoded", n);
	assert_int_equal(b64_decode(back, sizeof(back), "AA==", 4, &m), 0);
	assert_int_equal(m, 1);
	assert_int_equal(b64_decode(back, sizeof(back), "AAA=", 4, &m), 0);
	assert_int_equal(m, 2);
}

static void test_load_scram(void **state)
{
	unsigned char salt128[SCRAM_SALT_MAX + 1], sk[32], vk[32];
	char f1[256], f2[256], f3[512], f4[512], buf[8192];
	struct scram_cred c;
	struct diag d = { 0 };
	struct users *u;
	const struct user *e;
	const char *path;
	char *good;

	(void)state;
	memset(salt128, 's', sizeof(salt128));
	scram_field(f1, sizeof(f1), "hunter2", SALT16, 16, 4096);
	scram_field(f2, sizeof(f2), "hunter2", SALT16, 8, 5000);
	scram_field(f3, sizeof(f3), "hunter2", salt128, SCRAM_SALT_MAX, 5000);
	scram_field(f4, sizeof(f4), "hunter2", salt128, SCRAM_SALT_MAX + 1, 4096);
	good = f1 + strlen("{SCRAM-SHA-256}");   /* "4096,salt,sk,vk" */
	snprintf(buf, sizeof(buf),
	         "s1:%s:1:1::/home/s1\n"                                  /* 1 */
	         "s2:{scram-sha-256}%s\n"                                 /* 2: 5000 */
	         "s3:%s\n"                                                /* 3: 128-octet salt */
	         "s4:%s\n"                                                /* 4: 129-octet salt */
	         "b5:{SCRAM-SHA-256}4095,%s\n"                            /* 5 */
	         "b6:{SCRAM-SHA-256}10000001,%s\n"                        /* 6 */
	         "b7:{SCRAM-SHA-256}4096\n"                               /* 7 */
	         "b8:{SCRAM-SHA-256}4096,MDEyMw==,AAAA\n"                 /* 8 */
	         "b9:{SCRAM-SHA-256}%s,extra\n"                           /* 9 */
	         "b10:{SCRAM-SHA-256}\n"                                  /* 10 */
	         "b11:{SCRAM-SHA-256}+4096,%s\n"                          /* 11 */
	         "b12:{SCRAM-SHA-1}%s\n"                                  /* 12 */
	         "b13:{SCRAM-SHA-256}4096,,%s\n"                          /* 13: empty salt */
	         "b14:{SCRAM-SHA-256}4096,MDEyMw,%s\n",                   /* 14: unpadded salt */
	         f1, f2 + strlen("{SCRAM-SHA-256}"), f3, f4,
	         strchr(good, ',') + 1, strchr(good, ',') + 1, good, strchr(good, ',') + 1, good,
	         strchr(strchr(good, ',') + 1, ',') + 1, strchr(strchr(good, ',') + 1, ',') + 1);
	path = write_str(buf);
	u = load_ok(path, &d);
	dump_diag(&d);
	assert_true(diag_has(&d, path, 4, "salt is not base64 of 1..128 octets"));
	assert_true(diag_has(&d, path, 5, "iteration count is not a number in 4096..10000000"));
	assert_true(diag_has(&d, path, 6, "iteration count"));
	assert_true(diag_has(&d, path, 7, "not iterations,salt,StoredKey,ServerKey"));
	assert_true(diag_has(&d, path, 8, "not iterations,salt,StoredKey,ServerKey"));
	assert_true(diag_has(&d, path, 9, "not iterations,salt,StoredKey,ServerKey"));
	assert_true(diag_has(&d, path, 10, "empty password"));
	assert_true(diag_has(&d, path, 11, "iteration count"));
	assert_true(diag_has(&d, path, 12, "unknown password scheme {SCRAM-SHA-1}"));
	assert_true(diag_has(&d, path, 13, "salt is not base64"));
	assert_true(diag_has(&d, path, 14, "salt is not base64"));
	assert_int_equal(d.n, 11);
	assert_int_equal(u->n, 3);
	assert_int_equal(u->nscram, 3);
	assert_int_equal(u->scram_iter, 5000);   /* two of three use 5000 */
	assert_false(users_any_plain(u));

	e = find(u, "s1");
	assert_non_null(e);
	assert_int_equal(e->scheme, PW_SCRAM);
	assert_string_equal(e->secret, good);
	assert_string_equal(e->home, "/home/s1");
	assert_non_null(e->scram);
	assert_int_equal(e->scram->iter, 4096);
	assert_int_equal(e->scram->salt_len, 16);
	assert_memory_equal(e->scram->salt, SALT16, 16);
	ossl_scram("hunter2", 7, SALT16, 16, 4096, sk, vk);
	assert_memory_equal(e->scram->stored_key, sk, 32);
	assert_memory_equal(e->scram->server_key, vk, 32);
	assert_int_equal(find(u, "s2")->scram->iter, 5000);
	assert_int_equal(find(u, "s2")->scram->salt_len, 8);
	assert_int_equal(find(u, "s3")->scram->salt_len, SCRAM_SALT_MAX);

	/* users_scram: a SCRAM user's own values. */
	assert_int_equal(users_scram(u, "s1", 2, &c), 1);
	assert_int_equal(c.iter, 4096);
	assert_memory_equal(c.stored_key, sk, 32);
	users_unref(u);
	diag_free(&d);

	/* Line 2 as a duplicate: its parsed keys are freed with it (ASan counts). */
	snprintf(buf, sizeof(buf), "s1:%s\ns1:%s\n", f1, f2);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(u->n, 1);
	assert_int_equal(u->nscram, 1);
	assert_int_equal(u->scram_iter, 4096);
	users_unref(u);
	diag_free(&d);
}

/* An unknown name costs what the file's most common kind of user costs. */
static void test_dummy_profile(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	char buf[1024];

	(void)state;
	snprintf(buf, sizeof(buf), "a:{PLAIN}1\nb:{PLAIN}2\nc:%s\n", h_6);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(u->dummy_scheme, PW_PLAIN);
	users_unref(u);
	snprintf(buf, sizeof(buf), "a:{PLAIN}1\nb:%s\nc:%s\n", h_6, h_y);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(u->dummy_scheme, PW_CRYPT);
	assert_string_equal(u->dummy_setting, h_6);   /* a real user's setting: same cost */
	users_unref(u);
	u = load_ok(write_str("# nobody\n"), &d);
	assert_int_equal(u->dummy_scheme, PW_CRYPT);
	assert_true(strncmp(u->dummy_setting, "$y$", 3) == 0);
	users_unref(u);
	assert_int_equal(d.n, 0);
	diag_free(&d);
}

static void test_users_scram_fake_and_plain(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	struct scram_cred a, b, c;
	unsigned char sk[32], vk[32], zero[32] = { 0 }, mac[32];
	char buf[1024];
	unsigned int l;

	char f1[512];

	(void)state;
	/* Without any {SCRAM-SHA-256} user SCRAM is not offered: no keys are derived. */
	snprintf(buf, sizeof(buf), "pete:{PLAIN}plainpw\nalice:%s\n", h_y);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(users_any_scram(u), 0);
	assert_null(find(u, "pete")->scram);
	users_unref(u);

	/* With one, {PLAIN} users get keys derived at load. */
	scram_field(f1, sizeof(f1), "hunter2", SALT16, 16, SCRAM_ITER_DEFAULT);
	snprintf(buf, sizeof(buf), "pete:{PLAIN}plainpw\nalice:%s\nfrank:%s\n", h_y, f1);
	u = load_ok(write_str(buf), &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(u->nscram, 1);
	assert_int_equal(users_any_scram(u), 1);
	assert_int_equal(u->scram_iter, SCRAM_ITER_DEFAULT);

	/* Unknown: a fake salt that is HMAC(scram_key, name), stable; keys match nothing. */
	assert_int_equal(users_scram(u, "ghost", 5, &a), 0);
	assert_int_equal(a.iter, SCRAM_ITER_DEFAULT);
	assert_int_equal(a.salt_len, SCRAM_SALT_LEN);
	assert_non_null(HMAC(EVP_sha256(), u->scram_key, 32, (const unsigned char *)"ghost", 5,
	                     mac, &l));
	assert_memory_equal(a.salt, mac, SCRAM_SALT_LEN);
	assert_memory_equal(a.stored_key, zero, 32);
	assert_memory_equal(a.server_key, zero, 32);
	assert_int_equal(users_scram(u, "ghost", 5, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(users_scram(u, "ghosT", 5, &b), 0);
	assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);

	/* A crypt user: the same kind of fake. */
	assert_int_equal(users_scram(u, "alice", 5, &c), 0);
	assert_non_null(HMAC(EVP_sha256(), u->scram_key, 32, (const unsigned char *)"alice", 5,
	                     mac, &l));
	assert_memory_equal(c.salt, mac, SCRAM_SALT_LEN);
	assert_null(find(u, "alice")->scram);

	/* A {PLAIN} user: the same salt formula, but real keys from the secret. */
	assert_int_equal(users_scram(u, "pete", 4, &c), 1);
	assert_int_equal(c.iter, SCRAM_ITER_DEFAULT);
	assert_int_equal(c.salt_len, SCRAM_SALT_LEN);
	assert_non_null(HMAC(EVP_sha256(), u->scram_key, 32, (const unsigned char *)"pete", 4,
	                     mac, &l));
	assert_memory_equal(c.salt, mac, SCRAM_SALT_LEN);
	ossl_scram("plainpw", 7, c.salt, c.salt_len, (int)c.iter, sk, vk);
	assert_memory_equal(c.stored_key, sk, 32);
	assert_memory_equal(c.server_key, vk, 32);
	assert_int_equal(users_scram(NULL, "x", 1, &c), 0);
	users_unref(u);
	diag_free(&d);
}

static void test_check_scram(void **state)
{
	char f1[256], buf[2048], longpw[700], *longline, err[128];
	struct diag d = { 0 };
	struct users *u;

	(void)state;
	memset(longpw, 'q', sizeof(longpw));
	longpw[sizeof(longpw) - 1] = '\0';
	longline = auth_hash_password_scheme(longpw, strlen(longpw), "SCRAM-SHA-256", err,
	                                     sizeof(err));
	assert_non_null(longline);
	scram_field(f1, sizeof(f1), "hunter2", SALT16, 16, 4096);
	snprintf(buf, sizeof(buf), "sc:%s\nlong:%s\nalice:%s\npete:{PLAIN}plainpw\n", f1, longline,
	         h_y);
	u = load_ok(write_str(buf), &d);
	dump_diag(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(CHECK(u, "sc", "hunter2"), AUTH_OK);
	assert_int_equal(CHECK(u, "sc", "hunter3"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "sc", "hunter"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "sc", ""), AUTH_FAIL);
	assert_int_equal(run_check(u, "sc", "hunter2\0x", 9), AUTH_FAIL);
	assert_int_equal(CHECK(u, "Sc", "hunter2"), AUTH_FAIL);
	/* SCRAM has no crypt length limit: the whole password counts. */
	assert_int_equal(CHECK(u, "long", longpw), AUTH_OK);
	longpw[sizeof(longpw) - 2] = 'r';
	assert_int_equal(CHECK(u, "long", longpw), AUTH_FAIL);
	/* The others are unchanged next to SCRAM users. */
	assert_int_equal(CHECK(u, "alice", "hunter2"), AUTH_OK);
	assert_int_equal(CHECK(u, "alice", "hunter3"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "pete", "plainpw"), AUTH_OK);
	assert_int_equal(CHECK(u, "nobody", "hunter2"), AUTH_FAIL);
	/* APOP stays {PLAIN}-only. */
	assert_false(auth_apop(u, "sc", 2, "<1.2@x>", "00000000000000000000000000000000", 32));
	users_unref(u);
	free(longline);
	diag_free(&d);
}

static void test_hash_password_scheme(void **state)
{
	struct diag d = { 0 };
	struct users *u;
	char err[128], buf[512], *h, *h2;
	const char *p;
	unsigned char raw[64];
	size_t i, commas = 0, m;

	(void)state;
	h = auth_hash_password_scheme("s3cret pass", 11, "SCRAM-SHA-256", err, sizeof(err));
	assert_non_null(h);
	/* {SCRAM-SHA-256}4096,<24 chars: 16 octets>,<44: 32>,<44: 32> */
	assert_memory_equal(h, "{SCRAM-SHA-256}4096,", 20);
	for (p = h; *p != '\0'; p++)
		commas += *p == ',';
	assert_int_equal(commas, 3);
	assert_int_equal(strlen(h), 20 + 24 + 1 + 44 + 1 + 44);
	assert_int_equal(b64_decode(raw, sizeof(raw), h + 20, 24, &m), 0);
	assert_int_equal(m, 16);
	assert_int_equal(b64_decode(raw, sizeof(raw), h + 45, 44, &m), 0);
	assert_int_equal(m, 32);
	assert_int_equal(b64_decode(raw, sizeof(raw), h + 90, 44, &m), 0);
	assert_int_equal(m, 32);

	/* Fresh salt every time. */
	h2 = auth_hash_password_scheme("s3cret pass", 11, "scram-sha-256", err, sizeof(err));
	assert_non_null(h2);
	assert_string_not_equal(h, h2);

	snprintf(buf, sizeof(buf), "carol:%s\ndan:%s:1:1::/home/dan\n", h, h2);
	u = load_ok(write_str(buf), &d);
	dump_diag(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(find(u, "carol")->scheme, PW_SCRAM);
	assert_int_equal(CHECK(u, "carol", "s3cret pass"), AUTH_OK);
	assert_int_equal(CHECK(u, "carol", "s3cret pas"), AUTH_FAIL);
	assert_int_equal(CHECK(u, "dan", "s3cret pass"), AUTH_OK);
	users_unref(u);
	free(h);
	free(h2);

	/* yescrypt: the default and by name. */
	for (i = 0; i < 2; i++) {
		h = auth_hash_password_scheme("pw", 2, i == 0 ? NULL : "YesCrypt", err, sizeof(err));
		assert_non_null(h);
		assert_memory_equal(h, "$y$", 3);
		free(h);
	}

	err[0] = '\0';
	assert_null(auth_hash_password_scheme("pw", 2, "MD5", err, sizeof(err)));
	assert_string_equal(err, "unknown scheme \"MD5\" (use yescrypt or SCRAM-SHA-256)");
	assert_null(auth_hash_password_scheme("pw", 2, "", err, sizeof(err)));
	assert_null(auth_hash_password_scheme("", 0, "SCRAM-SHA-256", err, sizeof(err)));
	assert_string_equal(err, "empty password");
	assert_null(auth_hash_password_scheme("a\0b", 3, "SCRAM-SHA-256", err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
	assert_null(auth_hash_password_scheme("a\0b", 3, "SCRAM-SHA-256", NULL, 0));
	assert_null(auth_hash_password_scheme("", 0, "yescrypt", err, sizeof(err)));
	assert_string_equal(err, "empty password");
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
		cmocka_unit_test(test_check_fair_per_address),
		cmocka_unit_test(test_check_failing_address_waits),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_inside_callback),
		cmocka_unit_test(test_users_outlive_owner),
		cmocka_unit_test(test_apop_rfc1939),
		cmocka_unit_test(test_hash_password_round_trip),
		cmocka_unit_test(test_sha256_hmac_vs_openssl),
		cmocka_unit_test(test_scram_keys_vs_openssl),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_load_scram),
		cmocka_unit_test(test_dummy_profile),
		cmocka_unit_test(test_users_scram_fake_and_plain),
		cmocka_unit_test(test_check_scram),
		cmocka_unit_test(test_hash_password_scheme),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
