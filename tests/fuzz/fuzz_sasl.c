/*
 * fuzz_sasl: libFuzzer harness for server/sasl.c (AUTH PLAIN, LOGIN and
 * SCRAM-SHA-256 as the client's base64 lines), with a users file loaded once
 * by users_load: alice {PLAIN}, bob {SCRAM-SHA-256}, carol (yescrypt).
 *
 * Input: one octet (mechanism = o % 3; 0x10: no initial response, so NULL is
 * sent first; 0x20: random SCRAM server nonce instead of the fixed test one),
 * then lines separated by LF, each one client response:
 *   "!rest"  rest is sent as it is (to reach the base64 decoder)
 *   "@rest"  SCRAM client-final built here: the right c= and r=, rest as the
 *            extensions, and a proof computed from the user's password
 *   "#rest"  the same with one bit of the proof flipped
 *   other    the line's octets, base64-encoded here (so they reach the parsers)
 * Properties: challenges are canonical base64 and fit the buffer; once a
 * result other than SASL_CHALLENGE is returned, every later step is SASL_BAD;
 * PLAIN's user and password are exactly authcid and passwd; a correct SCRAM
 * proof for alice or bob gets the right server signature (then SUCCESS on an
 * empty line), and no other proof or user ever does.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/sasl.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define TEST_NONCE "fuzzSNONCE"
#define RAW_MAX    (SASL_LINE_MAX / 4 * 3)

struct known {
	const char   *name;
	const char   *pass;
	int           scram;                        /* SCRAM can succeed */
	unsigned char client_key[SCRAM_KEY_LEN];    /* HMAC(SaltedPassword, "Client Key") */
	unsigned char server_key[SCRAM_KEY_LEN];
};

static struct known people[] = {
	{ "alice", "secret", 1, { 0 }, { 0 } },
	{ "bob", "hunter2", 1, { 0 }, { 0 } },
	{ "carol", "crypt pass", 0, { 0 }, { 0 } },
};
#define NPEOPLE (sizeof people / sizeof people[0])

static struct users *users;

static void hmac(const unsigned char *key, size_t klen, const void *msg, size_t n,
                 unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int len = SCRAM_KEY_LEN;

	FZ_CHECK(HMAC(EVP_sha256(), key, (int)klen, msg, n, out, &len) != NULL, "HMAC");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fz_tmpdir("sasl");
	char path[4200], line[1024], err[256];
	char *scram, *crypt_hash;
	struct scram_cred cred;
	unsigned char salted[SCRAM_KEY_LEN];
	struct diag d = { 0 };
	size_t i;
	int k;

	(void)argc;
	(void)argv;
	scram = auth_hash_password_scheme(people[1].pass, strlen(people[1].pass), "SCRAM-SHA-256",
	    err, sizeof err);
	crypt_hash = auth_hash_password(people[2].pass, strlen(people[2].pass), err, sizeof err);
	FZ_CHECK(scram != NULL && crypt_hash != NULL, "hashing: %s", err);
	k = snprintf(line, sizeof line, "alice:{PLAIN}%s\nbob:%s\ncarol:%s\n", people[0].pass,
	    scram, crypt_hash);
	FZ_CHECK(k > 0 && (size_t)k < sizeof line, "users line");
	snprintf(path, sizeof path, "%s/users", dir);
	fz_write_file(path, line, (size_t)k);
	FZ_CHECK(users_load(path, &users, &d) == 0 && d.n == 0, "users_load: %s",
	    d.n ? d.msg[0] : "failed");
	free(scram);
	free(crypt_hash);
	/* The keys a client derives from the password, with the salt the server gives. */
	for (i = 0; i < NPEOPLE; i++) {
		FZ_CHECK(users_scram(users, people[i].name, strlen(people[i].name), &cred) ==
		    people[i].scram, "users_scram(%s)", people[i].name);
		FZ_CHECK(PKCS5_PBKDF2_HMAC(people[i].pass, (int)strlen(people[i].pass), cred.salt,
		    (int)cred.salt_len, (int)cred.iter, EVP_sha256(), sizeof salted, salted) == 1,
		    "PBKDF2");
		hmac(salted, sizeof salted, "Client Key", 10, people[i].client_key);
		hmac(salted, sizeof salted, "Server Key", 10, people[i].server_key);
	}
	return 0;
}

static const struct known *who(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < NPEOPLE; i++)
		if (strlen(people[i].name) == n && memcmp(people[i].name, name, n) == 0)
			return &people[i];
	return NULL;
}

/* What one exchange has seen, to build a SCRAM client-final. */
struct conv {
	unsigned char first[RAW_MAX];   /* client-first as decoded */
	size_t        first_len;
	int           have_first;
	char          sfirst[SASL_LINE_MAX + 1];   /* last challenge, decoded */
	size_t        sfirst_len;
	size_t        final_step;   /* the step that must carry client-final */
};

/* Build "c=..,r=..[,ext],p=.." for the exchange; flip one proof bit when bad. */
static size_t scram_final(const struct conv *cv, const struct sasl *s, const char *ext,
                          size_t extlen, int bad, char *out, size_t cap, int *expect_ok)
{
	const struct known *k;
	const char *user, *r, *comma;
	unsigned char sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char *am, b64[64];
	size_t gs2 = 0, ulen, w = 0, amlen, rlen, b, i;
	int commas = 0;

	*expect_ok = 0;
	for (i = 0; i < cv->first_len && commas < 2; i++)
		commas += cv->first[i] == ',';
	gs2 = i;
	/* The nonce the server sent: "r=...," at the start of server-first. */
	r = cv->sfirst;
	if (cv->sfirst_len < 2 || memcmp(r, "r=", 2) != 0)
		return 0;
	comma = memchr(r, ',', cv->sfirst_len);
	rlen = comma != NULL ? (size_t)(comma - r) : cv->sfirst_len;
	if (b64_encode(b64, sizeof b64, cv->first, gs2, &b) < 0 || cap < b + rlen + extlen + 60)
		return 0;
	w += (size_t)snprintf(out + w, cap - w, "c=%s,%.*s", b64, (int)rlen, r);
	if (extlen > 0) {
		out[w++] = ',';
		memcpy(out + w, ext, extlen);
		w += extlen;
	}
	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	amlen = (cv->first_len - gs2) + 1 + cv->sfirst_len + 1 + w;
	am = malloc(amlen);
	FZ_CHECK(am != NULL, "out of memory");
	memcpy(am, cv->first + gs2, cv->first_len - gs2);
	am[cv->first_len - gs2] = ',';
	memcpy(am + cv->first_len - gs2 + 1, cv->sfirst, cv->sfirst_len);
	am[cv->first_len - gs2 + 1 + cv->sfirst_len] = ',';
	memcpy(am + amlen - w, out, w);
	user = sasl_user(s, &ulen);
	k = user != NULL ? who(user, ulen) : NULL;
	if (k != NULL) {
		unsigned char stored[SCRAM_KEY_LEN];

		auth_sha256(k->client_key, SCRAM_KEY_LEN, stored);
		hmac(stored, SCRAM_KEY_LEN, am, amlen, sig);
		for (i = 0; i < SCRAM_KEY_LEN; i++)
			proof[i] = k->client_key[i] ^ sig[i];
		*expect_ok = k->scram && !bad;
	} else {
		memset(proof, 0x5a, sizeof proof);
	}
	if (bad)
		proof[(unsigned char)cv->sfirst_len % SCRAM_KEY_LEN] ^= 1;
	free(am);
	b64_encode(b64, sizeof b64, proof, sizeof proof, &b);
	w += (size_t)snprintf(out + w, cap - w, ",p=%s", b64);
	return w;
}

/* The server signature the client expects for the exchange just done. */
static void expect_signature(const struct conv *cv, const char *final, size_t flen,
                             const struct known *k, unsigned char sig[SCRAM_KEY_LEN])
{
	const char *p = final + flen;
	size_t gs2 = 0, i, amlen, commas = 0;
	char *am;

	while (p > final && p[-1] != ',')
		p--;                      /* strip ",p=..." */
	flen = (size_t)(p - final) - 1;
	for (i = 0; i < cv->first_len && commas < 2; i++)
		commas += cv->first[i] == ',';
	gs2 = i;
	amlen = (cv->first_len - gs2) + 1 + cv->sfirst_len + 1 + flen;
	am = malloc(amlen);
	FZ_CHECK(am != NULL, "out of memory");
	memcpy(am, cv->first + gs2, cv->first_len - gs2);
	am[cv->first_len - gs2] = ',';
	memcpy(am + cv->first_len - gs2 + 1, cv->sfirst, cv->sfirst_len);
	am[cv->first_len - gs2 + 1 + cv->sfirst_len] = ',';
	memcpy(am + amlen - flen, final, flen);
	hmac(k->server_key, SCRAM_KEY_LEN, am, amlen, sig);
	free(am);
}

/* PLAIN's "authzid NUL authcid NUL passwd": check what sasl.c took from it. */
static void check_plain(const struct sasl *s, const unsigned char *m, size_t n)
{
	const unsigned char *a = memchr(m, '\0', n), *b;
	const char *user, *pass;
	size_t ulen, plen;

	FZ_CHECK(a != NULL, "PLAIN accepted without NUL");
	b = memchr(a + 1, '\0', n - (size_t)(a + 1 - m));
	FZ_CHECK(b != NULL, "PLAIN accepted with one NUL");
	user = sasl_user(s, &ulen);
	pass = sasl_password(s, &plen);
	FZ_CHECK(user != NULL && ulen == (size_t)(b - a - 1) && memcmp(user, a + 1, ulen) == 0,
	    "PLAIN user is not authcid");
	FZ_CHECK(pass != NULL && plen == n - (size_t)(b + 1 - m) && plen > 0 &&
	    memcmp(pass, b + 1, plen) == 0 && pass[plen] == '\0', "PLAIN password is not passwd");
	FZ_CHECK(a == m || ((size_t)(a - m) == ulen && memcmp(m, user, ulen) == 0),
	    "PLAIN authzid differs from authcid");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[2 * SASL_LINE_MAX + 64], out[SASL_LINE_MAX + 1];
	static unsigned char raw[RAW_MAX + 8];
	static struct conv cv;
	static char chal[SASL_LINE_MAX + 1];   /* the last challenge, decoded */
	size_t chal_len = 0;
	enum sasl_mech mech;
	enum sasl_result r = SASL_CHALLENGE;
	struct sasl *s;
	const uint8_t *p, *end, *nl;
	size_t outlen, len, rawlen, extlen = 0, step = 0;
	int done = 0, expect_ok = -1, scram_ok = 0;
	const struct known *k = NULL;

	if (size < 1)
		return 0;
	mech = (enum sasl_mech)(data[0] % 3);
	s = sasl_new(mech, users);
	FZ_CHECK(s != NULL, "sasl_new");
	memset(&cv, 0, sizeof cv);
	if (mech == SASL_SCRAM_SHA_256 && !(data[0] & 0x20))
		FZ_CHECK(sasl_set_nonce_for_test(s, TEST_NONCE, strlen(TEST_NONCE)) == 0, "nonce");
	if (data[0] & 0x10) {
		r = sasl_step(s, NULL, 0, out, sizeof out, &outlen);
		FZ_CHECK(r == SASL_CHALLENGE, "first empty step gave %d", (int)r);
		FZ_CHECK(outlen == (mech == SASL_LOGIN ? 12u : 0u), "first challenge of %zu", outlen);
	}
	for (p = data + 1, end = data + size; p < end && step < 8; p = nl + 1, step++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		len = (size_t)(nl - p);
		rawlen = 0;
		expect_ok = -1;
		if (len > 0 && p[0] == '!') {
			len = len - 1 < sizeof line ? len - 1 : sizeof line;
			memcpy(line, p + 1, len);
			if (len == 1 && line[0] == '=')
				rawlen = 0;          /* RFC 5034: "=" is an empty response */
			else if (len > SASL_LINE_MAX || b64_decode(raw, RAW_MAX, line, len, &rawlen) < 0)
				rawlen = (size_t)-1;
		} else if (len > 0 && (p[0] == '@' || p[0] == '#') && cv.have_first &&
		    mech == SASL_SCRAM_SHA_256) {
			char fin[SASL_LINE_MAX];
			size_t flen;

			extlen = len - 1 > 512 ? 512 : len - 1;
			flen = scram_final(&cv, s, (const char *)p + 1, extlen, p[0] == '#', fin,
			    sizeof fin, &expect_ok);

			if (step != cv.final_step)
				expect_ok = -1;   /* not where a client-final is expected */
			memcpy(raw, fin, flen);
			rawlen = flen;
			FZ_CHECK(b64_encode(line, sizeof line, raw, rawlen, &len) == 0, "encode");
		} else {
			rawlen = len > RAW_MAX ? RAW_MAX : len;
			memcpy(raw, p, rawlen);
			FZ_CHECK(b64_encode(line, sizeof line, raw, rawlen, &len) == 0, "encode");
		}
		r = sasl_step(s, line, len, out, sizeof out, &outlen);
		if (done) {
			FZ_CHECK(r == SASL_BAD, "step after the end gave %d", (int)r);
			continue;
		}
		if (r != SASL_CHALLENGE)
			done = 1;
		if (r == SASL_CHALLENGE) {
			FZ_CHECK(outlen < sizeof out && out[outlen] == '\0', "challenge not terminated");
			FZ_CHECK(b64_decode((unsigned char *)chal, sizeof chal - 1, out, outlen,
			    &chal_len) == 0, "challenge is not canonical base64");
			if (mech == SASL_SCRAM_SHA_256 && !cv.have_first) {
				FZ_CHECK(rawlen != (size_t)-1, "accepted a line this harness cannot decode");
				memcpy(cv.sfirst, chal, chal_len);
				cv.final_step = step + 1;
				cv.sfirst_len = chal_len;
				memcpy(cv.first, raw, rawlen);
				cv.first_len = rawlen;
				cv.have_first = 1;
			}
		}
		if (r == SASL_CHECK_PASSWORD) {
			const char *pass;
			size_t plen;

			FZ_CHECK(mech != SASL_SCRAM_SHA_256, "SCRAM asked for a password check");
			FZ_CHECK(rawlen != (size_t)-1, "accepted a line this harness cannot decode");
			if (mech == SASL_PLAIN) {
				check_plain(s, raw, rawlen);
			} else {
				pass = sasl_password(s, &plen);
				FZ_CHECK(pass != NULL && plen == rawlen && memcmp(pass, raw, plen) == 0,
				    "LOGIN password is not the last response");
			}
		}
		if (r == SASL_SUCCESS)
			FZ_CHECK(mech == SASL_SCRAM_SHA_256 && scram_ok, "SUCCESS without a verified proof");
		if (expect_ok >= 0) {
			/* A client-final built here. */
			if (r == SASL_CHALLENGE) {
				const char *user;
				size_t ulen;
				unsigned char sig[SCRAM_KEY_LEN], got[SCRAM_KEY_LEN + 2];
				size_t glen;

				user = sasl_user(s, &ulen);
				k = user != NULL ? who(user, ulen) : NULL;
				FZ_CHECK(expect_ok == 1 && k != NULL && k->scram,
				    "server-final for a proof that must fail");
				expect_signature(&cv, (const char *)raw, rawlen, k, sig);
				FZ_CHECK(chal_len > 2 && memcmp(chal, "v=", 2) == 0 &&
				    b64_decode(got, sizeof got, chal + 2, chal_len - 2, &glen) == 0 &&
				    glen == SCRAM_KEY_LEN && memcmp(got, sig, SCRAM_KEY_LEN) == 0,
				    "wrong server signature");
				scram_ok = 1;
			} else {
				FZ_CHECK(!(expect_ok == 1 && extlen == 0),
				    "a correct proof without extensions was refused (%d)", (int)r);
				FZ_CHECK(r == SASL_FAIL || r == SASL_BAD, "bad proof gave %d", (int)r);
			}
		}
	}
	sasl_free(s);
	return 0;
}
