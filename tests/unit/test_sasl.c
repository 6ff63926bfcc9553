/*
 * test_sasl: tests server/sasl.c through sasl.h: PLAIN, LOGIN and SCRAM-SHA-256
 * exchanges (RFC 7677 §3 replayed, and a client written here with OpenSSL), the
 * hostile inputs each must refuse, and utf8_valid. Never touches files outside its
 * own mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/sasl.h"

/* ---- fixtures ----------------------------------------------------------- */

static char tmpdir[64];
static char users_path[128];
static struct users *users;

/* RFC 7677 §3. */
#define RFC_USER     "user"
#define RFC_PASS     "pencil"
#define RFC_CNONCE   "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE   "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT     "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SFIRST   "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CFINAL   "c=biws,r=" RFC_CNONCE RFC_SNONCE \
                     ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SFINAL   "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

#define GEN_PASS     "correct horse battery"
#define ODD_NAME     "we,ird=name"
#define ODD_ESCAPED  "we=2Cird=3Dname"

/* Base64 with OpenSSL (independent of the codec under test). */
static size_t enc(char *dst, const void *src, size_t n)
{
	return (size_t)EVP_EncodeBlock((unsigned char *)dst, src, (int)n);
}

/* Decode well-formed base64 with OpenSSL, dropping the zeros it adds for padding. */
static size_t dec(unsigned char *dst, const char *src, size_t n)
{
	int k = EVP_DecodeBlock(dst, (const unsigned char *)src, (int)n);

	assert_true(k >= 0);
	if (n >= 1 && src[n - 1] == '=')
		k--;
	if (n >= 2 && src[n - 2] == '=')
		k--;
	return (size_t)k;
}

/* "{SCRAM-SHA-256}iter,salt,StoredKey,ServerKey" computed here with OpenSSL. */
static void scram_line(char *dst, size_t cap, const char *pass, const unsigned char *salt,
                       size_t slen, int iter)
{
	unsigned char salted[32], ck[32], sk[32], vk[32];
	unsigned int l = 0;
	char s64[200], k64[64], v64[64];

	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, (int)slen, iter,
	                                   EVP_sha256(), 32, salted), 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10,
	                     ck, &l));
	SHA256(ck, 32, sk);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10,
	                     vk, &l));
	enc(s64, salt, slen);
	enc(k64, sk, 32);
	enc(v64, vk, 32);
	assert_true((size_t)snprintf(dst, cap, "{SCRAM-SHA-256}%d,%s,%s,%s", iter, s64, k64, v64) <
	            cap);
}

static int group_setup(void **state)
{
	unsigned char salt[32];
	char rfc[256], odd[256], err[128], *gen;
	struct diag d = { 0 };
	FILE *f;
	size_t n;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_sasl.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(users_path, sizeof(users_path), "%s/users", tmpdir);
	n = dec(salt, RFC_SALT, strlen(RFC_SALT));
	scram_line(rfc, sizeof(rfc), RFC_PASS, salt, n, 4096);
	scram_line(odd, sizeof(odd), "odd pass", (const unsigned char *)"0123456789abcdef", 16, 4096);
	gen = auth_hash_password_scheme(GEN_PASS, strlen(GEN_PASS), "SCRAM-SHA-256", err,
	                                sizeof(err));
	if (gen == NULL)
		return -1;
	f = fopen(users_path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s:%s\n", RFC_USER, rfc);
	fprintf(f, "gen:%s\n", gen);
	fprintf(f, "%s:%s\n", ODD_NAME, odd);
	fprintf(f, "pete:{PLAIN}plainpw\n");
	fprintf(f, "alice:$y$j9T$9s7uYCJ8bsz16deNAJNwr1$CL9mZMWFL0CyIXOYwWLD2qBe7B/igyE8PY.7Gq9v9n7\n");
	fclose(f);
	free(gen);
	if (users_load(users_path, &users, &d) != 0 || d.n != 0) {
		diag_free(&d);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	users_unref(users);
	unlink(users_path);
	rmdir(tmpdir);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

struct ex {
	struct sasl *s;
	char         out[SASL_LINE_MAX + 1];
	size_t       outlen;
};

static void ex_new(struct ex *e, enum sasl_mech m)
{
	memset(e, 0, sizeof(*e));
	e->s = sasl_new(m, users);
	assert_non_null(e->s);
}

/* Feed an already-encoded line. */
static enum sasl_result feed_b64(struct ex *e, const char *line)
{
	return sasl_step(e->s, line, strlen(line), e->out, sizeof(e->out), &e->outlen);
}

/* Feed raw octets, base64-encoded here ("=" for none). */
static enum sasl_result feed(struct ex *e, const void *raw, size_t n)
{
	char line[SASL_LINE_MAX + 8];

	if (n == 0)
		return feed_b64(e, "=");
	assert_true((n + 2) / 3 * 4 < sizeof(line));
	enc(line, raw, n);
	return feed_b64(e, line);
}

static enum sasl_result feeds(struct ex *e, const char *raw)
{
	return feed(e, raw, strlen(raw));
}

/* The last challenge, decoded and NUL-terminated. */
static const char *said(struct ex *e)
{
	static char buf[SASL_LINE_MAX];
	size_t n = dec((unsigned char *)buf, e->out, e->outlen);

	assert_int_equal(strlen(e->out), e->outlen);
	buf[n] = '\0';
	return buf;
}

static void assert_user(struct ex *e, const char *name)
{
	size_t n;
	const char *u = sasl_user(e->s, &n);

	assert_non_null(u);
	assert_int_equal(n, strlen(name));
	assert_memory_equal(u, name, n);
}

static void assert_pass(struct ex *e, const void *pw, size_t n)
{
	size_t got;
	const char *p = sasl_password(e->s, &got);

	assert_non_null(p);
	assert_int_equal(got, n);
	assert_memory_equal(p, pw, n);
}

/* ---- mechanisms --------------------------------------------------------- */

static struct slice S(const char *s)
{
	struct slice sl = { s, strlen(s) };

	return sl;
}

static void test_mech_names(void **state)
{
	enum sasl_mech m = SASL_LOGIN;

	(void)state;
	assert_int_equal(sasl_mech_parse(S("PLAIN"), &m), 0);
	assert_int_equal(m, SASL_PLAIN);
	assert_int_equal(sasl_mech_parse(S("login"), &m), 0);
	assert_int_equal(m, SASL_LOGIN);
	assert_int_equal(sasl_mech_parse(S("Scram-Sha-256"), &m), 0);
	assert_int_equal(m, SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_mech_parse(S("SCRAM-SHA-1"), &m), -1);
	assert_int_equal(sasl_mech_parse(S("SCRAM-SHA-256-PLUS"), &m), -1);
	assert_int_equal(sasl_mech_parse(S("PLAI"), &m), -1);
	assert_int_equal(sasl_mech_parse(S(""), &m), -1);
	assert_int_equal(m, SASL_SCRAM_SHA_256);   /* untouched on failure */
	assert_string_equal(sasl_mech_name(SASL_PLAIN), "PLAIN");
	assert_string_equal(sasl_mech_name(SASL_LOGIN), "LOGIN");
	assert_string_equal(sasl_mech_name(SASL_SCRAM_SHA_256), "SCRAM-SHA-256");
	sasl_free(NULL);
}

/* ---- PLAIN -------------------------------------------------------------- */

#define PLAIN_OK(e, raw) (ex_new(e, SASL_PLAIN), feed(e, raw, sizeof(raw) - 1))

static void test_plain_ok(void **state)
{
	struct ex e;

	(void)state;
	/* No authzid. */
	assert_int_equal(PLAIN_OK(&e, "\0tim\0tanstaaftanstaaf"), SASL_CHECK_PASSWORD);
	assert_int_equal(e.outlen, 0);
	assert_user(&e, "tim");
	assert_pass(&e, "tanstaaftanstaaf", 16);
	/* Any further line is refused. */
	assert_int_equal(feeds(&e, "\0tim\0x"), SASL_BAD);
	sasl_free(e.s);

	/* authzid equal to authcid. */
	assert_int_equal(PLAIN_OK(&e, "tim\0tim\0pw"), SASL_CHECK_PASSWORD);
	assert_user(&e, "tim");
	assert_pass(&e, "pw", 2);
	sasl_free(e.s);

	/* Password bytes are opaque (not required to be UTF-8), spaces kept. */
	assert_int_equal(PLAIN_OK(&e, "\0bob@example.org\0 p\xe9 "), SASL_CHECK_PASSWORD);
	assert_user(&e, "bob@example.org");
	assert_pass(&e, " p\xe9 ", 4);
	sasl_free(e.s);

	/* UTF-8 name. */
	assert_int_equal(PLAIN_OK(&e, "\0j\xc3\xbcrgen\0pw"), SASL_CHECK_PASSWORD);
	assert_user(&e, "j\xc3\xbcrgen");
	sasl_free(e.s);

	/* Without an initial response: an empty challenge first. */
	ex_new(&e, SASL_PLAIN);
	assert_true(sasl_wants_initial(e.s));
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_CHALLENGE);
	assert_int_equal(e.outlen, 0);
	assert_string_equal(e.out, "");
	assert_int_equal(feed(&e, "\0tim\0pw", 7), SASL_CHECK_PASSWORD);
	assert_pass(&e, "pw", 2);
	sasl_free(e.s);

	/* A second NULL start is a protocol error. */
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_CHALLENGE);
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_BAD);
	sasl_free(e.s);
}

static void test_plain_bad(void **state)
{
	static const struct {
		const char *raw;
		size_t      n;
	} bad[] = {
#define B(s) { s, sizeof(s) - 1 }
		B("admin\0tim\0pw"),        /* authzid names someone else */
		B("Tim\0tim\0pw"),          /* ... even by case */
		B("tim\0tim\0"),            /* empty password */
		B("\0tim\0"),
		B("\0\0pw"),                /* empty authcid */
		B("timpw"),                 /* no NUL */
		B("\0timpw"),               /* one NUL */
		B("tim\0pw"),
		B("\0tim\0p\0w"),           /* a third NUL */
		B("\0tim\0pw\0"),
		B("\0t\xffm\0pw"),          /* authcid not UTF-8 */
		B("\0t\xc0\xafm\0pw"),      /* overlong */
		B(""),
#undef B
	};
	char name[300], msg[400];
	struct ex e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ex_new(&e, SASL_PLAIN);
		if (feed(&e, bad[i].raw, bad[i].n) != SASL_BAD)
			fail_msg("case %zu accepted", i);
		assert_int_equal(e.outlen, 0);
		sasl_free(e.s);
	}

	/* Names: 255 octets fit, 256 do not. */
	memset(name, 'n', sizeof(name));
	msg[0] = '\0';
	memcpy(msg + 1, name, 255);
	memcpy(msg + 256, "\0pw", 3);
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(feed(&e, msg, 259), SASL_CHECK_PASSWORD);
	sasl_free(e.s);
	memcpy(msg + 1, name, 256);
	memcpy(msg + 257, "\0pw", 3);
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(feed(&e, msg, 260), SASL_BAD);
	sasl_free(e.s);
}

static void test_plain_bad_base64(void **state)
{
	static const char *const bad[] = {
		"AHRpbQBwdw",          /* "\0tim\0pw" without its padding */
		"AHRpbQBwdw=",         /* half the padding */
		"AHRpbQBwdw===",
		"AHRp bQBwdw==",       /* embedded space */
		"AHRpbQBwdw==\r",
		"AHRpbQBwdw==\n",
		"\tAHRpbQBwdw==",
		"AHRpbQ-wdw==",        /* base64url alphabet */
		"AHRpbQ_wdw==",
		"AHRpbQBwdx==",        /* unused bits set: not canonical */
		"AHRpbQBwdw==AAAA",    /* data after padding */
		"AH=pbQBwdw==",        /* padding inside */
		"====",
		"=AAA",
		"*",                   /* cancel is the caller's business */
		"A",
		"",                    /* empty initial response is "=" */
	};
	struct ex e;
	size_t i;

	(void)state;
	/* The good form first, to be sure the cases differ only in the fault. */
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(feed_b64(&e, "AHRpbQBwdw=="), SASL_CHECK_PASSWORD);
	assert_pass(&e, "pw", 2);
	sasl_free(e.s);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ex_new(&e, SASL_PLAIN);
		if (feed_b64(&e, bad[i]) != SASL_BAD)
			fail_msg("\"%s\" accepted", bad[i]);
		sasl_free(e.s);
	}
	/* A NUL inside the line. */
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(sasl_step(e.s, "AHRpbQBw\0w==", 12, e.out, sizeof(e.out), &e.outlen),
	                 SASL_BAD);
	sasl_free(e.s);
	/* "=" is an empty response: empty PLAIN is malformed. */
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(feed_b64(&e, "="), SASL_BAD);
	sasl_free(e.s);
}

static void test_plain_line_limit(void **state)
{
	/* SASL_LINE_MAX base64 characters decode to 3072 octets: fits exactly. */
	size_t raw_n = SASL_LINE_MAX / 4 * 3, pwn = raw_n - 5;
	char *raw = malloc(raw_n + 3), *line = malloc(SASL_LINE_MAX + 8);
	struct ex e;

	(void)state;
	assert_non_null(raw);
	assert_non_null(line);
	memcpy(raw, "\0tim\0", 5);
	memset(raw + 5, 'p', pwn);
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(enc(line, raw, raw_n), SASL_LINE_MAX);
	assert_int_equal(feed_b64(&e, line), SASL_CHECK_PASSWORD);
	assert_pass(&e, raw + 5, pwn);
	sasl_free(e.s);

	/* One quantum more is over the limit. */
	memset(raw + 5 + pwn, 'p', 3);
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(enc(line, raw, raw_n + 3), SASL_LINE_MAX + 4);
	assert_int_equal(feed_b64(&e, line), SASL_BAD);
	sasl_free(e.s);
	free(raw);
	free(line);
}

/* ---- LOGIN -------------------------------------------------------------- */

static void test_login(void **state)
{
	struct ex e;

	(void)state;
	ex_new(&e, SASL_LOGIN);
	assert_false(sasl_wants_initial(e.s));
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_CHALLENGE);
	assert_string_equal(e.out, "VXNlcm5hbWU6");
	assert_int_equal(e.outlen, 12);
	assert_string_equal(said(&e), "Username:");
	assert_int_equal(feed_b64(&e, "dGlt"), SASL_CHALLENGE);   /* "tim" */
	assert_string_equal(e.out, "UGFzc3dvcmQ6");
	assert_string_equal(said(&e), "Password:");
	assert_int_equal(feeds(&e, "tanstaaf"), SASL_CHECK_PASSWORD);
	assert_int_equal(e.outlen, 0);
	assert_user(&e, "tim");
	assert_pass(&e, "tanstaaf", 8);
	assert_int_equal(feeds(&e, "again"), SASL_BAD);
	sasl_free(e.s);

	/* The user name as initial response ("AUTH LOGIN dGlt"). */
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(feed_b64(&e, "dGlt"), SASL_CHALLENGE);
	assert_string_equal(e.out, "UGFzc3dvcmQ6");
	assert_int_equal(feeds(&e, "pw"), SASL_CHECK_PASSWORD);
	assert_pass(&e, "pw", 2);
	sasl_free(e.s);

	/* An empty password is passed on (auth_check refuses it), not malformed. */
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(feeds(&e, "tim"), SASL_CHALLENGE);
	assert_int_equal(feed_b64(&e, ""), SASL_CHECK_PASSWORD);
	assert_pass(&e, "", 0);
	sasl_free(e.s);

	/* Bad user names and bad base64. */
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_CHALLENGE);
	assert_int_equal(feed_b64(&e, ""), SASL_BAD);
	sasl_free(e.s);
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(feed(&e, "t\0m", 3), SASL_BAD);
	sasl_free(e.s);
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(feeds(&e, "t\xffm"), SASL_BAD);
	sasl_free(e.s);
	ex_new(&e, SASL_LOGIN);
	assert_int_equal(feeds(&e, "tim"), SASL_CHALLENGE);
	assert_int_equal(feed_b64(&e, "cHc"), SASL_BAD);
	sasl_free(e.s);
}

/* ---- SCRAM-SHA-256 ------------------------------------------------------ */

static void test_scram_rfc7677(void **state)
{
	struct ex e;
	size_t n;

	(void)state;
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_true(sasl_wants_initial(e.s));
	assert_int_equal(sasl_set_nonce_for_test(e.s, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
	assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
	assert_string_equal(said(&e), RFC_SFIRST);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "x", 1), -1);   /* too late */
	assert_int_equal(feeds(&e, RFC_CFINAL), SASL_CHALLENGE);
	assert_string_equal(said(&e), RFC_SFINAL);
	assert_int_equal(feed_b64(&e, ""), SASL_SUCCESS);
	assert_int_equal(e.outlen, 0);
	assert_user(&e, RFC_USER);
	assert_null(sasl_password(e.s, &n));
	assert_int_equal(feed_b64(&e, ""), SASL_BAD);
	sasl_free(e.s);

	/* The same after an empty first challenge, and "=" as the empty last answer. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_step(e.s, NULL, 0, e.out, sizeof(e.out), &e.outlen), SASL_CHALLENGE);
	assert_int_equal(e.outlen, 0);
	assert_int_equal(sasl_set_nonce_for_test(e.s, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
	assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
	assert_string_equal(said(&e), RFC_SFIRST);
	assert_int_equal(feeds(&e, RFC_CFINAL), SASL_CHALLENGE);
	assert_int_equal(feed_b64(&e, "="), SASL_SUCCESS);
	sasl_free(e.s);

	/* Anything but an empty answer to server-final is malformed. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_set_nonce_for_test(e.s, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
	assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
	assert_int_equal(feeds(&e, RFC_CFINAL), SASL_CHALLENGE);
	assert_int_equal(feeds(&e, "x"), SASL_BAD);
	sasl_free(e.s);
}

static void test_scram_nonce_hook(void **state)
{
	struct ex e;

	(void)state;
	ex_new(&e, SASL_PLAIN);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "abc", 3), -1);
	sasl_free(e.s);
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "", 0), -1);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "a,b", 3), -1);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "a b", 3), -1);
	assert_int_equal(sasl_set_nonce_for_test(e.s, "a\x7f", 2), -1);
	assert_int_equal(sasl_set_nonce_for_test(e.s,
	    "0123456789012345678901234567890123456789012345678901234567890123", 64), 0);
	assert_int_equal(sasl_set_nonce_for_test(e.s,
	    "01234567890123456789012345678901234567890123456789012345678901234", 65), -1);
	sasl_free(e.s);
}

/* What the client side of one SCRAM exchange saw. */
struct scram_run {
	enum sasl_result first;      /* result of client-first */
	enum sasl_result final;      /* result of client-final */
	enum sasl_result ack;        /* result of the empty line (SUCCESS expected) */
	char             sfirst[512];
	unsigned char    salt[SCRAM_SALT_MAX];
	size_t           salt_len;
	unsigned         iter;
	int              sig_ok;     /* server-final carried the right signature */
};

/* Parse "r=...,s=...,i=..." (as a client would, strictly enough for tests). */
static void parse_sfirst(struct scram_run *run, const char *cnonce)
{
	const char *r = run->sfirst, *s = strstr(r, ",s="), *i = strstr(r, ",i=");

	assert_memory_equal(r, "r=", 2);
	assert_non_null(s);
	assert_non_null(i);
	assert_memory_equal(r + 2, cnonce, strlen(cnonce));
	assert_true(s - r > (ptrdiff_t)(2 + strlen(cnonce)));   /* a server part follows */
	run->salt_len = dec(run->salt, s + 3, (size_t)(i - s - 3));
	run->iter = (unsigned)strtoul(i + 3, NULL, 10);
}

/*
 * A client written here with OpenSSL: gs2 header gs2, name as sent (escaped),
 * password pass. Runs until the server stops the exchange.
 */
static struct scram_run scram_client(const char *gs2, const char *name, const char *pass)
{
	static const char cnonce[] = "fyko+d2lbbFgONRv9qkxdawL";
	struct scram_run run;
	struct ex e;
	char cfirst[512], cbare[512], cfinal_wp[700], cfinal[800], am[2048], cb64[64], p64[64];
	unsigned char salted[32], ck[32], sk[32], csig[32], proof[32], vk[32], ssig[32];
	unsigned int l;
	size_t i;

	memset(&run, 0, sizeof(run));
	ex_new(&e, SASL_SCRAM_SHA_256);
	snprintf(cbare, sizeof(cbare), "n=%s,r=%s", name, cnonce);
	snprintf(cfirst, sizeof(cfirst), "%s%s", gs2, cbare);
	run.first = feeds(&e, cfirst);
	if (run.first != SASL_CHALLENGE)
		goto out;
	assert_true((size_t)snprintf(run.sfirst, sizeof(run.sfirst), "%s", said(&e)) <
	            sizeof(run.sfirst));
	parse_sfirst(&run, cnonce);

	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), run.salt, (int)run.salt_len,
	                                   (int)run.iter, EVP_sha256(), 32, salted), 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10,
	                     ck, &l));
	SHA256(ck, 32, sk);
	enc(cb64, gs2, strlen(gs2));
	snprintf(cfinal_wp, sizeof(cfinal_wp), "c=%s,r=%s", cb64,
	         strchr(run.sfirst, '=') + 1);
	*strstr(cfinal_wp, ",s=") = '\0';
	snprintf(am, sizeof(am), "%s,%s,%s", cbare, run.sfirst, cfinal_wp);
	assert_non_null(HMAC(EVP_sha256(), sk, 32, (const unsigned char *)am, strlen(am), csig, &l));
	for (i = 0; i < 32; i++)
		proof[i] = ck[i] ^ csig[i];
	enc(p64, proof, 32);
	snprintf(cfinal, sizeof(cfinal), "%s,p=%s", cfinal_wp, p64);
	run.final = feeds(&e, cfinal);
	if (run.final != SASL_CHALLENGE)
		goto out;
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10,
	                     vk, &l));
	assert_non_null(HMAC(EVP_sha256(), vk, 32, (const unsigned char *)am, strlen(am), ssig, &l));
	enc(p64, ssig, 32);
	snprintf(cfinal, sizeof(cfinal), "v=%s", p64);
	run.sig_ok = strcmp(said(&e), cfinal) == 0;
	run.ack = feed_b64(&e, "");
out:
	sasl_free(e.s);
	return run;
}

static void test_scram_generated_user(void **state)
{
	struct scram_run run;

	(void)state;
	/* A line made by auth_hash_password_scheme: Dovecot's 4096 and 16-octet salt. */
	run = scram_client("n,,", "gen", GEN_PASS);
	assert_int_equal(run.first, SASL_CHALLENGE);
	assert_int_equal(run.iter, 4096);
	assert_int_equal(run.salt_len, 16);
	assert_int_equal(run.final, SASL_CHALLENGE);
	assert_true(run.sig_ok);
	assert_int_equal(run.ack, SASL_SUCCESS);

	/* "y,,": the client could bind but thinks we cannot; c= carries "y,,". */
	run = scram_client("y,,", "gen", GEN_PASS);
	assert_int_equal(run.ack, SASL_SUCCESS);

	/* An authzid equal to the user. */
	run = scram_client("n,a=gen,", "gen", GEN_PASS);
	assert_int_equal(run.ack, SASL_SUCCESS);

	/* ',' and '=' in a name travel as =2C and =3D. */
	run = scram_client("n,,", ODD_ESCAPED, "odd pass");
	assert_int_equal(run.ack, SASL_SUCCESS);
	run = scram_client("n,a=" ODD_ESCAPED ",", ODD_ESCAPED, "odd pass");
	assert_int_equal(run.ack, SASL_SUCCESS);
}

static void test_scram_wrong_password(void **state)
{
	struct scram_run run;

	(void)state;
	run = scram_client("n,,", "gen", GEN_PASS "!");
	assert_int_equal(run.first, SASL_CHALLENGE);
	assert_int_equal(run.final, SASL_FAIL);
	run = scram_client("n,,", RFC_USER, "pencil ");
	assert_int_equal(run.final, SASL_FAIL);
	run = scram_client("n,,", ODD_NAME, "odd pass");   /* unescaped: another name */
	assert_int_equal(run.first, SASL_BAD);
}

/* {PLAIN} users get keys derived at load: SCRAM works and looks like a fake salt. */
static void test_scram_plain_user(void **state)
{
	struct scram_run run;

	(void)state;
	run = scram_client("n,,", "pete", "plainpw");
	assert_int_equal(run.iter, users->scram_iter);
	assert_int_equal(run.salt_len, 16);
	assert_true(run.sig_ok);
	assert_int_equal(run.ack, SASL_SUCCESS);
	run = scram_client("n,,", "pete", "plainpW");
	assert_int_equal(run.final, SASL_FAIL);
}

static void test_scram_unknown_user(void **state)
{
	struct scram_run a, b, c, crypt_user;

	(void)state;
	a = scram_client("n,,", "ghost", "whatever");
	assert_int_equal(a.first, SASL_CHALLENGE);       /* nothing tells it apart ... */
	assert_int_equal(a.salt_len, 16);
	assert_int_equal(a.iter, 4096);
	assert_int_equal(a.final, SASL_FAIL);            /* ... until the end */
	assert_false(a.sig_ok);

	/* The fake salt is stable for a name and differs between names. */
	b = scram_client("n,,", "ghost", "other");
	assert_int_equal(b.salt_len, 16);
	assert_memory_equal(a.salt, b.salt, 16);
	c = scram_client("n,,", "ghost2", "whatever");
	assert_memory_not_equal(a.salt, c.salt, 16);
	assert_int_equal(c.final, SASL_FAIL);

	/* A crypt user has no SCRAM keys: the same fake flow. */
	crypt_user = scram_client("n,,", "alice", "pop3d-example");
	assert_int_equal(crypt_user.first, SASL_CHALLENGE);
	assert_int_equal(crypt_user.salt_len, 16);
	assert_int_equal(crypt_user.iter, 4096);
	assert_int_equal(crypt_user.final, SASL_FAIL);
}

static void test_scram_bad_first(void **state)
{
	static const char *const bad[] = {
		"p=tls-unique,,n=user,r=abc",        /* channel binding */
		"p=tls-server-end-point,,n=user,r=abc",
		"n=user,r=abc",                      /* no gs2 header */
		"x,,n=user,r=abc",
		"n,n=user,r=abc",
		"N,,n=user,r=abc",
		"n,a=other,n=user,r=abc",            /* authzid for someone else */
		"n,a=,n=user,r=abc",
		"n,b=user,n=user,r=abc",
		"n,,m=ext,n=user,r=abc",             /* mandatory extension */
		"n,,r=abc",                          /* no user */
		"n,,n=,r=abc",
		"n,,n=user",                         /* no nonce */
		"n,,n=user,",
		"n,,n=user,r=",
		"n,,n=user,r=a\x7f" "b",             /* nonce not printable */
		"n,,n=user,r=a b",
		"n,,n=user,x=abc",
		"n,,n=us=2Xer,r=abc",                /* bad escapes */
		"n,,n=user=,r=abc",
		"n,,n=user=2,r=abc",
		"n,,n=us=2cer,r=abc",
		"n,,n=u\xffser,r=abc",               /* not UTF-8 */
		"n,,n=user,r=abc,1=x",               /* bad extension */
		"n,,n=user,r=abc,",
		"n,,n=user,r=abc,x",
		"n,,n=user,r=abc,x=",
		"",
		"n,,",
	};
	char big[400];
	struct ex e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ex_new(&e, SASL_SCRAM_SHA_256);
		if (feeds(&e, bad[i]) != SASL_BAD)
			fail_msg("client-first \"%s\" accepted", bad[i]);
		assert_int_equal(e.outlen, 0);
		assert_int_equal(feeds(&e, "n,,n=user,r=abc"), SASL_BAD);   /* over */
		sasl_free(e.s);
	}
	/* Accepted forms: "y,,", an extension after the nonce. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(feeds(&e, "y,,n=user,r=abc,x=ext"), SASL_CHALLENGE);
	sasl_free(e.s);
	/* NUL inside. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(feed(&e, "n,,n=us\0er,r=abc", 16), SASL_BAD);
	sasl_free(e.s);
	/* Client nonce: 256 octets fit, 257 do not. */
	memcpy(big, "n,,n=user,r=", 12);
	memset(big + 12, 'x', 257);
	big[12 + 256] = '\0';
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(feeds(&e, big), SASL_CHALLENGE);
	sasl_free(e.s);
	big[12 + 256] = 'x';
	big[12 + 257] = '\0';
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(feeds(&e, big), SASL_BAD);
	sasl_free(e.s);
}

static void test_scram_bad_final(void **state)
{
	static const char *const bad[] = {
		/* c= must carry exactly "n,,". */
		"c=eSws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biwsAAAA,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biw,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		/* the nonce must be ours, whole */
		"c=biws,r=" RFC_CNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE "x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		/* the proof: last, 32 octets, canonical base64 */
		"c=biws,r=" RFC_CNONCE RFC_SNONCE,
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=y",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=AAAA",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=AAAA",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",1=x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,p=x",
		"",
	};
	struct ex e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ex_new(&e, SASL_SCRAM_SHA_256);
		assert_int_equal(sasl_set_nonce_for_test(e.s, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
		assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
		if (feeds(&e, bad[i]) != SASL_BAD)
			fail_msg("client-final %zu \"%s\" accepted", i, bad[i]);
		assert_int_equal(e.outlen, 0);
		sasl_free(e.s);
	}
	/* A wrong proof is a failure, not malformed; an extension before it is allowed. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_set_nonce_for_test(e.s, RFC_SNONCE, strlen(RFC_SNONCE)), 0);
	assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
	assert_int_equal(feeds(&e, "c=biws,r=" RFC_CNONCE RFC_SNONCE
	                           ",x=ext,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
	                 SASL_FAIL);
	assert_int_equal(e.outlen, 0);
	assert_int_equal(feeds(&e, RFC_CFINAL), SASL_BAD);   /* no second try */
	sasl_free(e.s);
	/* Bad base64 of the whole line. */
	ex_new(&e, SASL_SCRAM_SHA_256);
	assert_int_equal(feeds(&e, "n,,n=" RFC_USER ",r=" RFC_CNONCE), SASL_CHALLENGE);
	assert_int_equal(feed_b64(&e, "Yz1iaXdz LHI9"), SASL_BAD);
	sasl_free(e.s);
}

/* Real nonces: 24 base64 characters of fresh randomness each time. */
static void test_scram_random_nonce(void **state)
{
	struct ex a, b;
	const char *p;
	char first[512];

	(void)state;
	ex_new(&a, SASL_SCRAM_SHA_256);
	ex_new(&b, SASL_SCRAM_SHA_256);
	assert_int_equal(feeds(&a, "n,,n=gen,r=abc"), SASL_CHALLENGE);
	assert_int_equal(feeds(&b, "n,,n=gen,r=abc"), SASL_CHALLENGE);
	assert_true((size_t)snprintf(first, sizeof(first), "%s", said(&a)) < sizeof(first));
	p = strstr(first, ",s=");
	assert_non_null(p);
	assert_int_equal(p - first, 2 + 3 + 24);
	assert_string_not_equal(first, said(&b));
	sasl_free(a.s);
	sasl_free(b.s);
}

/* ---- UTF-8 -------------------------------------------------------------- */

#define U8(s) utf8_valid(s, sizeof(s) - 1)

static void test_utf8_valid(void **state)
{
	(void)state;
	assert_true(utf8_valid("", 0));
	assert_true(U8("plain ascii"));
	assert_true(U8("\x00"));                     /* U+0000 is UTF-8 (callers refuse NUL) */
	assert_true(U8("\x7f"));
	assert_true(U8("\xc2\x80"));                 /* U+0080, smallest 2-octet */
	assert_true(U8("\xdf\xbf"));                 /* U+07FF */
	assert_true(U8("\xe0\xa0\x80"));             /* U+0800, smallest 3-octet */
	assert_true(U8("\xed\x9f\xbf"));             /* U+D7FF, below the surrogates */
	assert_true(U8("\xee\x80\x80"));             /* U+E000, above them */
	assert_true(U8("\xef\xbf\xbf"));             /* U+FFFF */
	assert_true(U8("\xf0\x90\x80\x80"));         /* U+10000, smallest 4-octet */
	assert_true(U8("\xf4\x8f\xbf\xbf"));         /* U+10FFFF, the last */
	assert_true(U8("j\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80"));

	assert_false(U8("\x80"));                    /* lone continuation */
	assert_false(U8("\xbf"));
	assert_false(U8("\xc0\x80"));                /* overlong NUL */
	assert_false(U8("\xc0\xaf"));                /* overlong '/' */
	assert_false(U8("\xc1\xbf"));
	assert_false(U8("\xe0\x80\x80"));            /* overlong 3-octet */
	assert_false(U8("\xe0\x9f\xbf"));            /* U+07FF in 3 octets */
	assert_false(U8("\xf0\x80\x80\x80"));        /* overlong 4-octet */
	assert_false(U8("\xf0\x8f\xbf\xbf"));        /* U+FFFF in 4 octets */
	assert_false(U8("\xed\xa0\x80"));            /* U+D800 */
	assert_false(U8("\xed\xbf\xbf"));            /* U+DFFF */
	assert_false(U8("\xed\xa0\xbd\xed\xb8\x80"));/* CESU-8 surrogate pair */
	assert_false(U8("\xf4\x90\x80\x80"));        /* U+110000 */
	assert_false(U8("\xf5\x80\x80\x80"));
	assert_false(U8("\xf8\x88\x80\x80\x80"));    /* 5-octet form */
	assert_false(U8("\xfe"));
	assert_false(U8("\xff"));
	assert_false(U8("\xc3"));                    /* truncated */
	assert_false(U8("\xe2\x82"));
	assert_false(U8("\xf0\x9f\x98"));
	assert_false(U8("ok\xf0\x9f\x98"));
	assert_false(U8("\xc3\x28"));                /* bad continuation */
	assert_false(U8("\xe2\x28\xac"));
	assert_false(U8("\xf0\x9f\x28\x80"));
	/* Only p[0..n) counts. */
	assert_true(utf8_valid("a\xc3\xbc", 1));
	assert_false(utf8_valid("a\xc3\xbc", 2));
	assert_true(utf8_valid("a\xc3\xbc", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_plain_ok),
		cmocka_unit_test(test_plain_bad),
		cmocka_unit_test(test_plain_bad_base64),
		cmocka_unit_test(test_plain_line_limit),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_scram_rfc7677),
		cmocka_unit_test(test_scram_nonce_hook),
		cmocka_unit_test(test_scram_generated_user),
		cmocka_unit_test(test_scram_wrong_password),
		cmocka_unit_test(test_scram_plain_user),
		cmocka_unit_test(test_scram_unknown_user),
		cmocka_unit_test(test_scram_bad_first),
		cmocka_unit_test(test_scram_bad_final),
		cmocka_unit_test(test_scram_random_nonce),
		cmocka_unit_test(test_utf8_valid),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
