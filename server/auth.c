/*
 * auth: owns the loaded users file, its SCRAM credentials and every password check
 * (crypt_rn and PBKDF2 on the libuv thread pool, {PLAIN} and APOP on the side). Never
 * logs or keeps a password past its check, and never lets a bad line stop the good ones loading.
 */
#include "server/auth.h"
#include "server/limits.h"
#include "server/strutil.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The setting an unknown name is checked against when the file has no crypt
 * user to borrow one from (see dummy_setup): yescrypt at auth_hash_password's
 * default cost. The password behind it was random and thrown away; the result
 * is never accepted anyway.
 */
static const char DUMMY_HASH[] =
	"$y$j9T$tAeWTxTKSzOidUoQWJO0D.$UaZvvlPsxkiaTvRUcnkfCEb0ZRhVDefAPObywyzP0AC";

/* Read size for the users file; must exceed USERS_LINE_MAX + 2 (line, CR, LF). */
#define READ_CHUNK (64 * 1024)

/* Room for a problem text built from pieces of the file (escaped, capped). */
#define WHY_MAX 512

/*
 * auth.h: a login name is 1..255 octets. Not limits.h's LOGIN_NAME_MAX: glibc's
 * <limits.h> (reached through uv.h) defines that name as 256.
 */
#define NAME_OCTETS_MAX 255

/* Longest piece of the file quoted in a problem. */
#define QUOTE_MAX 64

/* errno as text, thread-safe (GNU strerror_r). */
static const char *errstr(int e, char *buf, size_t n)
{
	return strerror_r(e, buf, n);
}

/* ---- login names ------------------------------------------------------- */

/* Why a login name is refused under the auth.h rules, or NULL when it is fine. */
static const char *login_name_problem(const char *p, size_t n)
{
	size_t i;

	if (n == 0)
		return "empty user name";
	if (n > NAME_OCTETS_MAX)
		return "user name longer than 255 octets";
	if (p[0] == '.')
		return "user name starts with '.'";
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\0')
			return "user name contains a NUL byte";
		if (c < 0x20 || c == 0x7f)
			return "user name contains a control character";
		if (c == '/')
			return "user name contains '/'";
		if (c == '.' && i + 1 < n && p[i + 1] == '.')
			return "user name contains \"..\"";
	}
	return NULL;
}

int login_name_valid(const char *p, size_t n)
{
	return p != NULL && login_name_problem(p, n) == NULL;
}

/*
 * The users file is stricter than login_name_valid: a name is "local" or
 * "local@domain" (one '@', both sides non-empty) and has no space, because
 * USER takes a single space-separated token.
 */
static const char *file_name_problem(const char *p, size_t n)
{
	const char *why = login_name_problem(p, n);
	const char *at;

	if (why != NULL)
		return why;
	if (memchr(p, ' ', n) != NULL)
		return "user name contains a space";
	at = memchr(p, '@', n);
	if (at == NULL)
		return NULL;
	if (at == p || at == p + n - 1)
		return "user name has an empty local part or domain";
	if (memchr(at + 1, '@', (size_t)(p + n - at - 1)) != NULL)
		return "user name has more than one '@'";
	return NULL;
}

/* ---- SHA-256, HMAC, PBKDF2 and base64 in plain C ------------------------ */

/*
 * FIPS 180-4 SHA-256, RFC 2104 HMAC and RFC 8018 PBKDF2 (one block), written
 * out because SCRAM checks run on pool threads, which never enter OpenSSL
 * (see plain_equal). Tested against OpenSSL and RFC 7677 in test_auth/test_sasl.
 */
struct sha256 {
	uint32_t      h[8];
	uint64_t      bytes;     /* message length so far */
	unsigned char buf[64];
	size_t        nbuf;
};

static const uint32_t SHA256_K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
	0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
	0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
	0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const unsigned char p[64])
{
	uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
	size_t i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
	for (i = 16; i < 64; i++) {
		uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0]; b = h[1]; c = h[2]; d = h[3];
	e = h[4]; f = h[5]; g = h[6]; k = h[7];
	for (i = 0; i < 64; i++) {
		t1 = k + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
		     SHA256_K[i] + w[i];
		t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		k = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += k;
	wipe(w, sizeof(w));
}

static void sha256_init(struct sha256 *c)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};

	memcpy(c->h, iv, sizeof(iv));
	c->bytes = 0;
	c->nbuf = 0;
}

static void sha256_update(struct sha256 *c, const void *data, size_t n)
{
	const unsigned char *p = data;

	c->bytes += n;
	if (c->nbuf > 0) {
		size_t take = 64 - c->nbuf < n ? 64 - c->nbuf : n;

		memcpy(c->buf + c->nbuf, p, take);
		c->nbuf += take;
		p += take;
		n -= take;
		if (c->nbuf < 64)
			return;
		sha256_block(c->h, c->buf);
		c->nbuf = 0;
	}
	for (; n >= 64; p += 64, n -= 64)
		sha256_block(c->h, p);
	if (n > 0)
		memcpy(c->buf, p, n);
	c->nbuf = n;
}

/* Pads, writes the digest and wipes the context. */
static void sha256_final(struct sha256 *c, unsigned char out[SCRAM_KEY_LEN])
{
	uint64_t bits = c->bytes * 8;
	size_t i;

	c->buf[c->nbuf++] = 0x80;
	if (c->nbuf > 56) {
		memset(c->buf + c->nbuf, 0, 64 - c->nbuf);
		sha256_block(c->h, c->buf);
		c->nbuf = 0;
	}
	memset(c->buf + c->nbuf, 0, 56 - c->nbuf);
	for (i = 0; i < 8; i++)
		c->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_block(c->h, c->buf);
	for (i = 0; i < 8; i++) {
		out[4 * i] = (unsigned char)(c->h[i] >> 24);
		out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
		out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
		out[4 * i + 3] = (unsigned char)c->h[i];
	}
	wipe(c, sizeof(*c));
}

void auth_sha256(const void *msg, size_t n, unsigned char out[SCRAM_KEY_LEN])
{
	struct sha256 c;

	sha256_init(&c);
	sha256_update(&c, msg, n);
	sha256_final(&c, out);
}

/* An HMAC key absorbed once: inner and outer states after their 64-octet pads. */
struct hmac_key {
	struct sha256 inner, outer;
};

static void hmac_key_init(struct hmac_key *k, const void *key, size_t klen)
{
	unsigned char pad[64];
	size_t i;

	memset(pad, 0, sizeof(pad));
	if (klen > sizeof(pad))
		auth_sha256(key, klen, pad);
	else if (klen > 0)
		memcpy(pad, key, klen);
	for (i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36;
	sha256_init(&k->inner);
	sha256_update(&k->inner, pad, sizeof(pad));
	for (i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	sha256_init(&k->outer);
	sha256_update(&k->outer, pad, sizeof(pad));
	wipe(pad, sizeof(pad));
}

/* HMAC of a message given in up to two pieces (b may be NULL). */
static void hmac_run(const struct hmac_key *k, const void *a, size_t an, const void *b, size_t bn,
                     unsigned char out[SCRAM_KEY_LEN])
{
	struct sha256 c = k->inner;
	unsigned char ih[SCRAM_KEY_LEN];

	sha256_update(&c, a, an);
	if (b != NULL)
		sha256_update(&c, b, bn);
	sha256_final(&c, ih);
	c = k->outer;
	sha256_update(&c, ih, sizeof(ih));
	sha256_final(&c, out);
	wipe(ih, sizeof(ih));
}

void auth_hmac_sha256(const void *key, size_t klen, const void *msg, size_t n,
                      unsigned char out[SCRAM_KEY_LEN])
{
	struct hmac_key k;

	hmac_key_init(&k, key, klen);
	hmac_run(&k, msg, n, NULL, 0, out);
	wipe(&k, sizeof(k));
}

void auth_scram_keys(const char *pass, size_t plen, const unsigned char *salt, size_t salt_len,
                     uint32_t iter, unsigned char stored_key[SCRAM_KEY_LEN],
                     unsigned char server_key[SCRAM_KEY_LEN])
{
	static const unsigned char block1[4] = { 0, 0, 0, 1 };
	unsigned char u[SCRAM_KEY_LEN], salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	struct hmac_key k;
	uint32_t i;
	size_t j;

	/* Hi(): U1 = HMAC(P, salt || INT(1)), Ui = HMAC(P, Ui-1), result U1 ^ ... ^ Ui. */
	hmac_key_init(&k, pass, plen);
	hmac_run(&k, salt, salt_len, block1, sizeof(block1), u);
	memcpy(salted, u, sizeof(u));
	for (i = 1; i < iter; i++) {
		hmac_run(&k, u, sizeof(u), NULL, 0, u);
		for (j = 0; j < sizeof(u); j++)
			salted[j] ^= u[j];
	}
	hmac_key_init(&k, salted, sizeof(salted));
	hmac_run(&k, "Client Key", 10, NULL, 0, client_key);
	hmac_run(&k, "Server Key", 10, NULL, 0, server_key);
	auth_sha256(client_key, sizeof(client_key), stored_key);
	wipe(&k, sizeof(k));
	wipe(u, sizeof(u));
	wipe(salted, sizeof(salted));
	wipe(client_key, sizeof(client_key));
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_encode(char *dst, size_t dstcap, const unsigned char *src, size_t n, size_t *outlen)
{
	size_t i, w = 0;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 2 || dstcap < (n + 2) / 3 * 4 + 1)
		return -1;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];

		dst[w++] = B64[v >> 18];
		dst[w++] = B64[(v >> 12) & 63];
		dst[w++] = B64[(v >> 6) & 63];
		dst[w++] = B64[v & 63];
	}
	if (n - i > 0) {
		uint32_t v = (uint32_t)src[i] << 16 | (n - i > 1 ? (uint32_t)src[i + 1] << 8 : 0);

		dst[w++] = B64[v >> 18];
		dst[w++] = B64[(v >> 12) & 63];
		dst[w++] = n - i > 1 ? B64[(v >> 6) & 63] : '=';
		dst[w++] = '=';
	}
	dst[w] = '\0';
	*outlen = w;
	return 0;
}

/* Value of a base64 symbol, or -1 (also for '='). */
static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int b64_decode(unsigned char *dst, size_t dstcap, const char *src, size_t n, size_t *outlen)
{
	size_t i, w = 0;

	if (n % 4 != 0)
		return -1;
	for (i = 0; i < n; i += 4) {
		int v[4], k, pad = 0;
		uint32_t x;

		for (k = 0; k < 4; k++)
			v[k] = b64_val((unsigned char)src[i + (size_t)k]);
		if (i + 4 == n) {
			/* Only the last quantum may end in "=" or "==". */
			if (src[i + 3] == '=')
				pad = src[i + 2] == '=' ? 2 : 1;
		}
		if (v[0] < 0 || v[1] < 0 || (pad < 2 && v[2] < 0) || (pad < 1 && v[3] < 0))
			return -1;
		x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
		    (uint32_t)(pad < 2 ? v[2] : 0) << 6 | (uint32_t)(pad < 1 ? v[3] : 0);
		/* Canonical: the bits a padded quantum does not carry must be zero. */
		if ((pad == 2 && (x & 0xffff) != 0) || (pad == 1 && (x & 0xff) != 0))
			return -1;
		if (dstcap - w < (size_t)(3 - pad))
			return -1;
		dst[w++] = (unsigned char)(x >> 16);
		if (pad < 2)
			dst[w++] = (unsigned char)(x >> 8);
		if (pad < 1)
			dst[w++] = (unsigned char)x;
	}
	*outlen = w;
	return 0;
}

/* ---- password schemes -------------------------------------------------- */

struct scheme_def;

/* 0 when secret is acceptable for the scheme; else -1 with a reason in why. */
typedef int (*scheme_check)(const struct scheme_def *s, struct slice secret,
                            char *why, size_t whylen);

/*
 * One row per {SCHEME} prefix we accept, named as Dovecot names them
 * (doc.dovecot.org "Password schemes"; src/auth/password-scheme-crypt.c).
 * A new scheme is one more row and one more check.
 */
struct scheme_def {
	const char          *name;    /* matched ignoring ASCII case */
	enum pw_scheme       kind;
	const char *const   *ids;     /* crypt $id$ the hash must start with; NULL: any */
	scheme_check         check;
};

static int check_crypt(const struct scheme_def *s, struct slice secret, char *why, size_t whylen);
static int check_plain(const struct scheme_def *s, struct slice secret, char *why, size_t whylen);
static int check_scram(const struct scheme_def *s, struct slice secret, char *why, size_t whylen);

static const char *const IDS_SHA512[] = { "$6$", NULL };
static const char *const IDS_SHA256[] = { "$5$", NULL };
static const char *const IDS_BLF[]    = { "$2b$", "$2y$", "$2a$", NULL };

/* Without a prefix a password is a crypt string, as Dovecot's default_pass_scheme CRYPT. */
static const struct scheme_def SCHEME_DEFAULT = { "CRYPT", PW_CRYPT, NULL, check_crypt };

static const struct scheme_def SCHEMES[] = {
	{ "CRYPT",        PW_CRYPT, NULL,       check_crypt },
	{ "SHA512-CRYPT", PW_CRYPT, IDS_SHA512, check_crypt },
	{ "SHA256-CRYPT", PW_CRYPT, IDS_SHA256, check_crypt },
	{ "BLF-CRYPT",    PW_CRYPT, IDS_BLF,    check_crypt },
	{ "PLAIN",        PW_PLAIN, NULL,       check_plain },
	{ "CLEARTEXT",    PW_PLAIN, NULL,       check_plain },
	{ "SCRAM-SHA-256", PW_SCRAM, NULL,      check_scram },
};

/* Traditional DES crypt: 13 characters of the ./0-9A-Za-z alphabet. */
static int looks_like_des(struct slice s)
{
	size_t i;

	if (s.n != 13)
		return 0;
	for (i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (!(c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z')))
			return 0;
	}
	return 1;
}

static int has_prefix(struct slice s, const char *pfx)
{
	size_t n = strlen(pfx);

	return s.n >= n && memcmp(s.p, pfx, n) == 0;
}

/*
 * libxcrypt calls sha256crypt "legacy" (CRYPT_SALT_METHOD_LEGACY) although it
 * is still sound with its default 5000 rounds; Dovecot's SHA256-CRYPT makes
 * it. The other legacy methods (DES, MD5-crypt, sha1crypt, NT, ...) are weak.
 */
static const char *const IDS_LEGACY_OK[] = { "$5$", NULL };

/*
 * A crypt string libxcrypt accepts (CRYPT_SALT_OK, or legacy but listed in
 * IDS_LEGACY_OK), with a hash after its setting.
 */
static int check_crypt(const struct scheme_def *s, struct slice secret, char *why, size_t whylen)
{
	char z[CRYPT_OUTPUT_SIZE];
	size_t i, dollars = 0;
	int ok = 0;

	if (secret.n == 0) {
		snprintf(why, whylen, "empty password");
		return -1;
	}
	if (s->ids != NULL) {
		for (i = 0; s->ids[i] != NULL && !ok; i++)
			ok = has_prefix(secret, s->ids[i]);
		if (!ok) {
			size_t used = (size_t)snprintf(why, whylen, "{%s} hash does not start with",
			                               s->name);

			for (i = 0; s->ids[i] != NULL && used < whylen; i++)
				used += (size_t)snprintf(why + used, whylen - used, "%s%s",
				                         i == 0 ? " " : " or ", s->ids[i]);
			return -1;
		}
	}
	if (secret.n >= sizeof(z)) {
		snprintf(why, whylen, "crypt hash longer than %d octets", CRYPT_OUTPUT_SIZE - 1);
		return -1;
	}
	memcpy(z, secret.p, secret.n);
	z[secret.n] = '\0';
	switch (crypt_checksalt(z)) {
	case CRYPT_SALT_OK:
		break;
	case CRYPT_SALT_METHOD_DISABLED:
		snprintf(why, whylen, "crypt method disabled in libxcrypt");
		return -1;
	case CRYPT_SALT_METHOD_LEGACY:
		for (i = 0; IDS_LEGACY_OK[i] != NULL && !has_prefix(secret, IDS_LEGACY_OK[i]); i++)
			;
		if (IDS_LEGACY_OK[i] != NULL)
			break;
		/* libxcrypt files anything without "$id$" under traditional DES. */
		if ((secret.n == 0 || secret.p[0] != '$') && !looks_like_des(secret))
			snprintf(why, whylen, "not a crypt hash (a hash starts with $id$; a clear-text "
			    "password needs the {PLAIN} prefix)");
		else
			snprintf(why, whylen, "legacy crypt method refused (use yescrypt, SHA-512, "
			    "SHA-256 or bcrypt)");
		return -1;
	case CRYPT_SALT_TOO_CHEAP:
		snprintf(why, whylen, "crypt hash too cheap");
		return -1;
	default:
		snprintf(why, whylen, "not a valid crypt hash");
		return -1;
	}
	/* "$id$setting...$hash": a bare setting such as "$6$salt" can never match. */
	for (i = 0; i < secret.n; i++)
		dollars += secret.p[i] == '$';
	if (z[0] != '$' || dollars < 3 || secret.p[secret.n - 1] == '$') {
		snprintf(why, whylen, "incomplete crypt hash (no hash after the salt)");
		return -1;
	}
	return 0;
}

static int check_plain(const struct scheme_def *s, struct slice secret, char *why, size_t whylen)
{
	(void)s;
	if (secret.n == 0) {
		snprintf(why, whylen, "empty password");
		return -1;
	}
	return 0;
}

/* Strict base64 of exactly want octets (want 0: 1..cap octets) into dst; 0 or -1. */
static int b64_field(struct slice f, unsigned char *dst, size_t cap, size_t want, size_t *got)
{
	if (b64_decode(dst, cap, f.p, f.n, got) < 0)
		return -1;
	return want != 0 ? (*got == want ? 0 : -1) : (*got > 0 ? 0 : -1);
}

/*
 * Dovecot's "iter,salt,StoredKey,ServerKey" (password-scheme-scram.c,
 * scram_scheme_parse) into *out; 0, or -1 with a reason in why. Stricter than
 * Dovecot on the salt, which it decodes leniently: ours must be canonical.
 */
static int scram_parse(struct slice secret, struct scram_cred *out, char *why, size_t whylen)
{
	struct slice f[4];
	const char *c;
	size_t i, nf = 0, got;

	for (c = secret.p; nf < 4; nf++) {
		const char *end = secret.p + secret.n;
		const char *comma = memchr(c, ',', (size_t)(end - c));

		f[nf].p = c;
		f[nf].n = comma != NULL ? (size_t)(comma - c) : (size_t)(end - c);
		if (comma == NULL) {
			nf++;
			break;
		}
		c = comma + 1;
	}
	if (nf != 4 || f[3].p + f[3].n != secret.p + secret.n) {
		snprintf(why, whylen,
		         "{SCRAM-SHA-256} secret is not iterations,salt,StoredKey,ServerKey");
		return -1;
	}
	if (parse_u32(f[0].p, f[0].n, &out->iter) < 0 || out->iter < SCRAM_ITER_MIN ||
	    out->iter > SCRAM_ITER_MAX) {
		snprintf(why, whylen, "{SCRAM-SHA-256} iteration count is not a number in %d..%d",
		         SCRAM_ITER_MIN, SCRAM_ITER_MAX);
		return -1;
	}
	if (b64_field(f[1], out->salt, sizeof(out->salt), 0, &out->salt_len) < 0) {
		snprintf(why, whylen, "{SCRAM-SHA-256} salt is not base64 of 1..%d octets",
		         SCRAM_SALT_MAX);
		return -1;
	}
	for (i = 2; i < 4; i++) {
		unsigned char *key = i == 2 ? out->stored_key : out->server_key;

		if (b64_field(f[i], key, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &got) < 0) {
			snprintf(why, whylen, "{SCRAM-SHA-256} %s is not base64 of %d octets",
			         i == 2 ? "StoredKey" : "ServerKey", SCRAM_KEY_LEN);
			return -1;
		}
	}
	return 0;
}

static int check_scram(const struct scheme_def *s, struct slice secret, char *why, size_t whylen)
{
	struct scram_cred cred;
	int r;

	(void)s;
	if (secret.n == 0) {
		snprintf(why, whylen, "empty password");
		return -1;
	}
	r = scram_parse(secret, &cred, why, whylen);
	wipe(&cred, sizeof(cred));
	return r;
}

/* Split field 2 into scheme and secret; 0, or -1 with a reason in why. */
static int parse_password(struct slice field, const struct scheme_def **out, struct slice *secret,
                          char *why, size_t whylen)
{
	const struct scheme_def *s = &SCHEME_DEFAULT;
	struct slice name;
	const char *close;
	size_t i;

	if (field.n == 0) {
		snprintf(why, whylen, "empty password");
		return -1;
	}
	*secret = field;
	if (field.p[0] == '{') {
		close = memchr(field.p, '}', field.n);
		if (close == NULL) {
			snprintf(why, whylen, "password starts with '{' but has no '}'");
			return -1;
		}
		name.p = field.p + 1;
		name.n = (size_t)(close - name.p);
		s = NULL;
		for (i = 0; i < sizeof(SCHEMES) / sizeof(SCHEMES[0]) && s == NULL; i++)
			if (slice_eq_nocase(name, SCHEMES[i].name))
				s = &SCHEMES[i];
		if (s == NULL) {
			char q[QUOTE_MAX * 4 + 4];

			str_escape(q, sizeof(q), name.p, name.n, QUOTE_MAX);
			snprintf(why, whylen, "unknown password scheme {%s}", q);
			return -1;
		}
		secret->p = close + 1;
		secret->n = field.n - (name.n + 2);
	}
	if (s->check(s, *secret, why, whylen) < 0)
		return -1;
	*out = s;
	return 0;
}

/* ---- users ------------------------------------------------------------- */

/* name, secret and home live in one allocation starting at name. */
static void user_free(struct user *usr)
{
	size_t len;

	if (usr->name == NULL)
		return;
	len = strlen(usr->name) + 1 + strlen(usr->secret) + 1 + strlen(usr->home) + 1;
	wipe(usr->name, len);
	free(usr->name);
	usr->name = usr->secret = usr->home = NULL;
	if (usr->scram != NULL) {
		wipe(usr->scram, sizeof(*usr->scram));
		free(usr->scram);
		usr->scram = NULL;
	}
}

static void users_free(struct users *u)
{
	size_t i;

	for (i = 0; i < u->n; i++)
		user_free(&u->v[i]);
	free(u->v);
	free(u->path);
	free(u);
}

struct users *users_ref(struct users *u)
{
	atomic_fetch_add_explicit(&u->refs, 1, memory_order_relaxed);
	return u;
}

void users_unref(struct users *u)
{
	if (u == NULL)
		return;
	if (atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) == 1)
		users_free(u);
}

static int user_cmp(const void *a, const void *b)
{
	const struct user *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

struct name_key {
	const char *p;
	size_t      n;
};

/* Byte order, as strcmp sorts the array (names never contain NUL). */
static int key_cmp(const void *k, const void *e)
{
	const struct name_key *key = k;
	const struct user *usr = e;
	size_t len = strlen(usr->name);
	int c = memcmp(key->p, usr->name, key->n < len ? key->n : len);

	if (c != 0)
		return c;
	return (key->n > len) - (key->n < len);
}

const struct user *users_find(const struct users *u, const char *name, size_t n)
{
	struct name_key key = { name, n };

	if (u == NULL || u->n == 0 || name == NULL)
		return NULL;
	return bsearch(&key, u->v, u->n, sizeof(u->v[0]), key_cmp);
}

int users_any_plain(const struct users *u)
{
	size_t i;

	for (i = 0; u != NULL && i < u->n; i++)
		if (u->v[i].scheme == PW_PLAIN)
			return 1;
	return 0;
}

/* ---- SCRAM credentials ------------------------------------------------- */

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The most common iteration count of the {SCRAM-SHA-256} users (ties: the lowest). */
static int common_iter(const struct users *u, uint32_t *out)
{
	uint32_t *it;
	size_t i, k = 0, run = 0, best = 0;

	*out = SCRAM_ITER_DEFAULT;
	if (u->nscram == 0)
		return 0;
	it = calloc(u->nscram, sizeof(*it));
	if (it == NULL)
		return -1;
	for (i = 0; i < u->n; i++)
		if (u->v[i].scheme == PW_SCRAM)
			it[k++] = u->v[i].scram->iter;
	qsort(it, k, sizeof(*it), u32_cmp);
	for (i = 0; i < k; i++) {
		run = i > 0 && it[i] == it[i - 1] ? run + 1 : 1;
		if (run > best) {
			best = run;
			*out = it[i];
		}
	}
	free(it);
	return 0;
}

/* The salt users_scram gives a name that has no SCRAM secret of its own. */
static void fake_salt(const struct users *u, const char *name, size_t n,
                      unsigned char salt[SCRAM_SALT_LEN])
{
	unsigned char mac[SCRAM_KEY_LEN];

	auth_hmac_sha256(u->scram_key, sizeof(u->scram_key), name, n, mac);
	memcpy(salt, mac, SCRAM_SALT_LEN);
	wipe(mac, sizeof(mac));
}

#define SETUP_NOMEM    (-1)
#define SETUP_NORANDOM (-2)

/*
 * After loading: count the SCRAM users, pick the common iteration count, draw
 * the fake-salt key and, when SCRAM is offered at all, derive the keys of every
 * {PLAIN} user, so SCRAM works for them and looks exactly as it does for an
 * unknown name. 0, or SETUP_*.
 */
/*
 * What checking an unknown name costs: the same as the file's most common kind
 * of user (a crypt hash with that user's own setting, a SCRAM derivation, or a
 * plain comparison), so a failed login does not tell whether the name exists.
 * Failure replies are also held back to auth.failure_delay after the attempt,
 * which hides the rest whenever the hash is faster than that delay.
 */
static void dummy_setup(struct users *u)
{
	size_t i, count[3] = { 0, 0, 0 };

	for (i = 0; i < u->n; i++)
		count[u->v[i].scheme]++;
	u->dummy_scheme = PW_CRYPT;
	if (count[PW_PLAIN] > count[u->dummy_scheme])
		u->dummy_scheme = PW_PLAIN;
	if (count[PW_SCRAM] > count[u->dummy_scheme])
		u->dummy_scheme = PW_SCRAM;
	u->dummy_setting = DUMMY_HASH;
	for (i = 0; i < u->n; i++) {
		if (u->v[i].scheme == PW_CRYPT) {
			u->dummy_setting = u->v[i].secret;
			break;
		}
	}
}

static int scram_setup(struct users *u)
{
	size_t i;

	for (i = 0; i < u->n; i++)
		u->nscram += u->v[i].scheme == PW_SCRAM;
	if (common_iter(u, &u->scram_iter) < 0)
		return SETUP_NOMEM;
	if (RAND_bytes(u->scram_key, (int)sizeof(u->scram_key)) != 1)
		return SETUP_NORANDOM;
	/* SCRAM is offered only when some user has a {SCRAM-SHA-256} secret; only
	 * then do {PLAIN} users need keys (a few ms each, so not for nothing). */
	for (i = 0; u->nscram > 0 && i < u->n; i++) {
		struct user *usr = &u->v[i];
		struct scram_cred *sc;

		if (usr->scheme != PW_PLAIN)
			continue;
		sc = calloc(1, sizeof(*sc));
		if (sc == NULL)
			return SETUP_NOMEM;
		sc->iter = u->scram_iter;
		sc->salt_len = SCRAM_SALT_LEN;
		fake_salt(u, usr->name, strlen(usr->name), sc->salt);
		auth_scram_keys(usr->secret, strlen(usr->secret), sc->salt, sc->salt_len, sc->iter,
		                sc->stored_key, sc->server_key);
		usr->scram = sc;
	}
	return 0;
}

int users_any_scram(const struct users *u)
{
	return u != NULL && u->nscram > 0;
}

int users_scram(const struct users *u, const char *name, size_t n, struct scram_cred *out)
{
	const struct user *usr = users_find(u, name, n);

	/* The fake salt is computed for every name, so a real one costs the same. */
	memset(out, 0, sizeof(*out));
	out->iter = u != NULL ? u->scram_iter : SCRAM_ITER_DEFAULT;
	out->salt_len = SCRAM_SALT_LEN;
	if (u != NULL && name != NULL)
		fake_salt(u, name, n, out->salt);
	if (usr != NULL && usr->scram != NULL) {
		*out = *usr->scram;
		return 1;
	}
	return 0;
}

/* ---- the users file, read in bounded lines ---------------------------- */

enum rd_status {
	RD_LINE,      /* *line holds one line without LF and one CR before it */
	RD_TOOLONG,   /* a line over USERS_LINE_MAX was skipped whole */
	RD_END,
	RD_ERROR      /* reason in why */
};

struct reader {
	int     fd;
	char   *buf;       /* READ_CHUNK octets */
	size_t  start;     /* first unconsumed octet */
	size_t  end;       /* end of valid octets */
	size_t  total;     /* octets read so far, capped at USERS_FILE_MAX */
	int     eof;
	int     skipping;  /* discarding an overlong line up to its LF */
	int     line;      /* number of the line last returned */
};

/* Append what read(2) gives to the buffer; 0 (r->eof set at the end) or -1 with why. */
static int read_more(struct reader *r, char *why, size_t whylen)
{
	char eb[128];
	ssize_t got;

	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	do
		got = read(r->fd, r->buf + r->end, READ_CHUNK - r->end);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		snprintf(why, whylen, "read error: %s", errstr(errno, eb, sizeof(eb)));
		return -1;
	}
	if (got == 0) {
		r->eof = 1;
		return 0;
	}
	r->total += (size_t)got;
	if (r->total > USERS_FILE_MAX) {
		snprintf(why, whylen, "larger than %d MiB", USERS_FILE_MAX / (1024 * 1024));
		return -1;
	}
	r->end += (size_t)got;
	return 0;
}

static enum rd_status next_line(struct reader *r, struct slice *line, char *why, size_t whylen)
{
	for (;;) {
		const char *b = r->buf + r->start;
		size_t avail = r->end - r->start;
		const char *lf = memchr(b, '\n', avail);

		if (lf != NULL || (r->eof && (avail > 0 || r->skipping))) {
			size_t n = lf != NULL ? (size_t)(lf - b) : avail;

			r->start += lf != NULL ? n + 1 : n;
			r->line++;
			if (r->skipping) {
				r->skipping = 0;
				return RD_TOOLONG;
			}
			if (n > 0 && b[n - 1] == '\r')
				n--;
			if (n > USERS_LINE_MAX)
				return RD_TOOLONG;
			line->p = b;
			line->n = n;
			return RD_LINE;
		}
		if (r->eof)
			return RD_END;
		if (r->skipping || avail > USERS_LINE_MAX + 1) {
			/* Too long whatever follows: drop it as it comes. */
			r->skipping = 1;
			r->start = r->end = 0;
		}
		if (read_more(r, why, whylen) < 0)
			return RD_ERROR;
	}
}

struct loader {
	struct users *u;
	size_t        cap;
	struct diag  *d;
	const char   *path;
};

/* Append one user (scram: the parsed secret of a PW_SCRAM user, else NULL); -1 on ENOMEM. */
static int add_user(struct loader *ld, struct slice name, enum pw_scheme kind,
                    struct slice secret, struct slice home, int line,
                    const struct scram_cred *scram)
{
	struct scram_cred *sc = NULL;
	struct users *u = ld->u;
	struct user *usr;
	char *block;

	if (u->n == ld->cap) {
		size_t ncap = ld->cap ? ld->cap * 2 : 16;
		struct user *v;

		if (ncap > SIZE_MAX / sizeof(*v))
			return -1;
		v = realloc(u->v, ncap * sizeof(*v));
		if (v == NULL)
			return -1;
		u->v = v;
		ld->cap = ncap;
	}
	if (scram != NULL) {
		sc = malloc(sizeof(*sc));
		if (sc == NULL)
			return -1;
		*sc = *scram;
	}
	/* Each field is at most USERS_LINE_MAX octets: no overflow. */
	block = malloc(name.n + secret.n + home.n + 3);
	if (block == NULL) {
		free(sc);
		return -1;
	}
	usr = &u->v[u->n++];
	usr->scram = sc;
	usr->name = block;
	memcpy(usr->name, name.p, name.n);
	usr->name[name.n] = '\0';
	usr->secret = usr->name + name.n + 1;
	memcpy(usr->secret, secret.p, secret.n);
	usr->secret[secret.n] = '\0';
	usr->home = usr->secret + secret.n + 1;
	memcpy(usr->home, home.p, home.n);
	usr->home[home.n] = '\0';
	usr->scheme = kind;
	usr->line = line;
	return 0;
}

/* Fields of "user:password:uid:gid:gecos:home:shell:extra"; the last keeps any ':'. */
#define NFIELDS 8
#define F_NAME  0
#define F_PASS  1
#define F_HOME  5

/* One non-blank, non-comment line: a user, a problem in the diag, or -1 on ENOMEM. */
static int parse_line(struct loader *ld, struct slice line, int lineno)
{
	struct slice f[NFIELDS];
	struct slice rest = line, secret;
	const struct scheme_def *s;
	char why[WHY_MAX];
	const char *c;
	size_t i, nf = 0;

	if (memchr(line.p, '\0', line.n) != NULL) {
		diag_add(ld->d, "%s:%d: NUL byte in line", ld->path, lineno);
		return 0;
	}
	if (memchr(line.p, ':', line.n) == NULL) {
		diag_add(ld->d, "%s:%d: no ':' after the user name", ld->path, lineno);
		return 0;
	}
	memset(f, 0, sizeof(f));
	while (nf < NFIELDS) {
		c = nf + 1 < NFIELDS ? memchr(rest.p, ':', rest.n) : NULL;
		f[nf].p = rest.p;
		f[nf].n = c != NULL ? (size_t)(c - rest.p) : rest.n;
		nf++;
		if (c == NULL)
			break;
		rest.p = c + 1;
		rest.n -= f[nf - 1].n + 1;
	}
	for (i = nf; i < NFIELDS; i++)
		f[i].p = "";

	{
		const char *nwhy = file_name_problem(f[F_NAME].p, f[F_NAME].n);

		if (nwhy != NULL) {
			char q[QUOTE_MAX * 4 + 4];

			str_escape(q, sizeof(q), f[F_NAME].p, f[F_NAME].n, QUOTE_MAX);
			diag_add(ld->d, "%s:%d: %s: \"%s\"", ld->path, lineno, nwhy, q);
			return 0;
		}
	}
	if (parse_password(f[F_PASS], &s, &secret, why, sizeof(why)) < 0) {
		diag_add(ld->d, "%s:%d: %s", ld->path, lineno, why);
		return 0;
	}
	if (s->kind == PW_SCRAM) {
		struct scram_cred cred;
		int r;

		/* check_scram has accepted it: this parse cannot fail. */
		if (scram_parse(secret, &cred, why, sizeof(why)) < 0)
			return 0;
		r = add_user(ld, f[F_NAME], s->kind, secret, f[F_HOME], lineno, &cred);
		wipe(&cred, sizeof(cred));
		return r;
	}
	return add_user(ld, f[F_NAME], s->kind, secret, f[F_HOME], lineno, NULL);
}

struct dup {
	struct user usr;
	int         first;   /* line of the entry that is kept */
};

static int dup_cmp(const void *a, const void *b)
{
	const struct dup *x = a, *y = b;

	return (x->usr.line > y->usr.line) - (x->usr.line < y->usr.line);
}

/* Sort by name and drop every later line of a name, reported in line order. */
static int sort_dedup(struct loader *ld)
{
	struct users *u = ld->u;
	struct dup *dups = NULL;
	size_t i, keep = 0, nd = 0;

	if (u->n == 0)
		return 0;
	qsort(u->v, u->n, sizeof(u->v[0]), user_cmp);
	for (i = 1; i < u->n; i++)
		if (strcmp(u->v[i].name, u->v[i - 1].name) == 0)
			nd++;
	if (nd > 0) {
		dups = calloc(nd, sizeof(*dups));
		if (dups == NULL)
			return -1;
	}
	nd = 0;
	for (i = 1; i < u->n; i++) {
		if (strcmp(u->v[i].name, u->v[keep].name) == 0) {
			dups[nd].usr = u->v[i];
			dups[nd].first = u->v[keep].line;
			nd++;
		} else {
			u->v[++keep] = u->v[i];
		}
	}
	u->n = keep + 1;
	if (nd > 0)
		qsort(dups, nd, sizeof(*dups), dup_cmp);
	for (i = 0; i < nd; i++) {
		char q[QUOTE_MAX * 4 + 4];

		str_escape(q, sizeof(q), dups[i].usr.name, strlen(dups[i].usr.name), QUOTE_MAX);
		diag_add(ld->d, "%s:%d: duplicate user \"%s\" (kept line %d)", ld->path,
		         dups[i].usr.line, q, dups[i].first);
		user_free(&dups[i].usr);
	}
	free(dups);
	return 0;
}

int users_load(const char *path, struct users **out, struct diag *d)
{
	struct reader r = { .fd = -1 };
	struct loader ld = { .d = d, .path = path };
	struct slice line;
	struct stat st;
	char why[WHY_MAX], eb[128];
	enum rd_status rs;

	*out = NULL;
	/* O_NONBLOCK: a FIFO must not hang us in open(); regular files ignore it. */
	r.fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (r.fd < 0) {
		diag_add(d, "%s: cannot open: %s", path, errstr(errno, eb, sizeof(eb)));
		return -1;
	}
	if (fstat(r.fd, &st) < 0) {
		diag_add(d, "%s: cannot stat: %s", path, errstr(errno, eb, sizeof(eb)));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		diag_add(d, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > USERS_FILE_MAX) {
		diag_add(d, "%s: larger than %d MiB", path, USERS_FILE_MAX / (1024 * 1024));
		goto fail;
	}
	r.buf = malloc(READ_CHUNK);
	ld.u = calloc(1, sizeof(*ld.u));
	if (r.buf == NULL || ld.u == NULL)
		goto oom;
	ld.u->refs = 1;
	ld.u->path = strdup(path);
	if (ld.u->path == NULL)
		goto oom;

	while ((rs = next_line(&r, &line, why, sizeof(why))) != RD_END) {
		if (rs == RD_ERROR) {
			diag_add(d, "%s: %s", path, why);
			goto fail;
		}
		if (rs == RD_TOOLONG) {
			diag_add(d, "%s:%d: line longer than %d octets", path, r.line, USERS_LINE_MAX);
			continue;
		}
		if (line.n == 0 || line.p[0] == '#')
			continue;
		if (parse_line(&ld, line, r.line) < 0)
			goto oom;
	}
	if (sort_dedup(&ld) < 0)
		goto oom;
	dummy_setup(ld.u);
	switch (scram_setup(ld.u)) {
	case 0:
		break;
	case SETUP_NORANDOM:
		diag_add(d, "%s: no random bytes for the SCRAM key", path);
		goto fail;
	default:
		goto oom;
	}
	close(r.fd);
	wipe(r.buf, READ_CHUNK);
	free(r.buf);
	*out = ld.u;
	return 0;

oom:
	diag_add(d, "%s: out of memory", path);
fail:
	close(r.fd);
	if (r.buf != NULL) {
		wipe(r.buf, READ_CHUNK);
		free(r.buf);
	}
	if (ld.u != NULL)
		users_free(ld.u);
	return -1;
}

/* ---- asynchronous check ------------------------------------------------ */

struct auth_req {
	uv_work_t          work;      /* must stay valid until after_check */
	struct auth_queue *q;
	struct auth_req   *next;      /* in q->wait_head..wait_tail while waiting */
	struct ipkey       who;       /* len 0: no client */
	long               failures;  /* its address's recent failures when it asked */
	int                queued;    /* handed to the thread pool */
	struct users      *users;     /* reference held until the request is freed */
	const struct user *user;      /* NULL when unknown; immutable while users is held */
	char              *pass;      /* NUL-terminated copy; wiped as soon as it is used */
	size_t             plen;
	enum auth_result   result;    /* written by the pool thread, read in after_check */
	auth_cb            cb;        /* NULL once cancelled or called */
	void              *arg;
};

/*
 * Equality of a {PLAIN} secret (slen > 0) and a password whose time depends on
 * plen only, the client's own input: no early exit and no branch on the
 * secret's bytes or length. Plain C, so pool threads never enter OpenSSL
 * (whose per-thread state would outlive them).
 */
static int plain_equal(const char *secret, size_t slen, const char *pass, size_t plen)
{
	unsigned diff = (unsigned)(slen != plen);
	size_t i;

	for (i = 0; i < plen; i++) {
		size_t in = (size_t)0 - (size_t)(i < slen);   /* all ones while inside secret */

		diff |= (unsigned char)(pass[i] ^ secret[i & in]);
	}
	return diff == 0;
}

/* Equality of two SCRAM keys in time independent of their bytes (plain C, as above). */
static int key_equal(const unsigned char *a, const unsigned char *b)
{
	unsigned diff = 0;
	size_t i;

	for (i = 0; i < SCRAM_KEY_LEN; i++)
		diff |= (unsigned)(a[i] ^ b[i]);
	return diff == 0;
}

/* The salt of the stand-in PBKDF2 for users without SCRAM keys; never accepted. */
static const unsigned char DUMMY_SALT[SCRAM_SALT_LEN] = { 0 };

/*
 * The SCRAM half of a check, run only when the file has {SCRAM-SHA-256} users:
 * theirs against their keys, everyone else's against a stand-in at the common
 * count, so a crypt, {PLAIN} or unknown user costs what a SCRAM user does.
 * 1 when the user is a SCRAM user and the password matches.
 */
static int scram_check(const struct auth_req *r)
{
	const struct user *usr = r->user;
	const struct scram_cred *sc = usr != NULL && usr->scheme == PW_SCRAM ? usr->scram : NULL;
	unsigned char stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	int ok;

	if (sc != NULL)
		auth_scram_keys(r->pass, r->plen, sc->salt, sc->salt_len, sc->iter, stored, server);
	else
		auth_scram_keys(r->pass, r->plen, DUMMY_SALT, sizeof(DUMMY_SALT),
		                r->users->scram_iter, stored, server);
	/* As for crypt: a password with a NUL cannot be what the secret was made from
	 * (auth_hash_password_scheme and Dovecot hash C strings). */
	ok = sc != NULL && key_equal(stored, sc->stored_key) &&
	     memchr(r->pass, '\0', r->plen) == NULL;
	wipe(stored, sizeof(stored));
	wipe(server, sizeof(server));
	return ok;
}

/* A crypt(3) check; 1 when phrase produces setting. -1 on a hashing failure. */
static int crypt_check(const char *phrase, const char *setting)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *out;
	size_t n = strlen(setting);
	int ok;

	if (cd == NULL)
		return -1;
	out = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
	ok = out == NULL ? -1 : strlen(out) == n && CRYPTO_memcmp(out, setting, n) == 0;
	wipe(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* Runs on a pool thread: touches only r and the immutable users data. */
static void work_check(uv_work_t *w)
{
	struct auth_req *r = w->data;
	const struct user *usr = r->user;
	enum pw_scheme kind = usr != NULL ? usr->scheme : r->users->dummy_scheme;
	/* A crypt phrase ends at NUL and is at most CRYPT_MAX_PASSPHRASE_SIZE - 1
	 * octets: other passwords cannot match, but still cost one hash. */
	int phrase_ok = r->plen < CRYPT_MAX_PASSPHRASE_SIZE && memchr(r->pass, '\0', r->plen) == NULL;
	int ok = 0;

	switch (kind) {
	case PW_CRYPT:
		ok = crypt_check(phrase_ok ? r->pass : "",
		                 usr != NULL ? usr->secret : r->users->dummy_setting);
		if (ok > 0 && (usr == NULL || !phrase_ok))
			ok = 0;
		break;
	case PW_PLAIN:
		ok = usr != NULL && plain_equal(usr->secret, strlen(usr->secret), r->pass, r->plen);
		break;
	case PW_SCRAM:
		ok = scram_check(r);   /* a stand-in derivation for unknown users */
		break;
	}
	r->result = ok < 0 ? AUTH_ERROR : ok ? AUTH_OK : AUTH_FAIL;
	wipe(r->pass, r->plen + 1);
	free(r->pass);
	r->pass = NULL;
}

static void req_free(struct auth_req *r)
{
	if (r->pass != NULL) {
		wipe(r->pass, r->plen + 1);
		free(r->pass);
	}
	users_unref(r->users);
	free(r);
}

/* Loop thread, once per request, also after uv_cancel (status UV_ECANCELED). */
static void after_check(uv_work_t *w, int status);

void auth_queue_init(struct auth_queue *q, uv_loop_t *loop, unsigned limit)
{
	memset(q, 0, sizeof *q);
	q->loop = loop;
	q->limit = limit < 1 ? 1 : limit > AUTH_HASH_CONCURRENCY ? AUTH_HASH_CONCURRENCY : limit;
}

static int same_key(const struct ipkey *a, const struct ipkey *b)
{
	return a->len == b->len && memcmp(a->addr, b->addr, a->len) == 0;
}

/* 1 when a check of who's is on the pool now (a request without a client: never). */
static int client_running(const struct auth_queue *q, const struct ipkey *who)
{
	unsigned i;

	if (who->len == 0)
		return 0;
	for (i = 0; i < q->hashing; i++)
		if (same_key(&q->running[i], who))
			return 1;
	return 0;
}

/* Hand r to the thread pool. 0, or -1 when libuv refused it. */
static int start_check(struct auth_req *r)
{
	struct auth_queue *q = r->q;

	q->running[q->hashing++] = r->who;
	r->queued = 1;
	if (uv_queue_work(q->loop, &r->work, work_check, after_check) != 0) {
		q->hashing--;
		r->queued = 0;
		return -1;
	}
	return 0;
}

/* A check left the pool: forget its client in running[] (order does not matter). */
static void check_done(struct auth_queue *q, const struct ipkey *who)
{
	unsigned i;

	for (i = 0; i < q->hashing; i++)
		if (same_key(&q->running[i], who)) {
			q->running[i] = q->running[q->hashing - 1];
			break;
		}
	q->hashing--;
}

/*
 * The next waiter to get a turn (see struct auth_queue): among those whose
 * client has nothing running, else among all, the fewest failures, oldest
 * first. The scan is bounded by the sessions of this loop and runs once per
 * finished hash. Unlinks it from the line.
 */
static struct auth_req *next_waiter(struct auth_queue *q)
{
	struct auth_req *prev = NULL, *r, *p, *best = NULL, *best_prev = NULL;
	int best_free = 0;

	for (p = NULL, r = q->wait_head; r != NULL; p = r, r = r->next) {
		int free_turn = !client_running(q, &r->who);

		if (best == NULL || free_turn > best_free ||
		    (free_turn == best_free && r->failures < best->failures)) {
			best = r;
			best_prev = p;
			best_free = free_turn;
		}
	}
	r = best;
	prev = best_prev;
	if (prev != NULL)
		prev->next = r->next;
	else
		q->wait_head = r->next;
	if (q->wait_tail == r)
		q->wait_tail = prev;
	r->next = NULL;
	q->waiting--;
	return r;
}

/* A hash finished: let waiting checks take free turns (cancelled ones just go). */
static void start_waiting(struct auth_queue *q)
{
	while (q->hashing < q->limit && q->wait_head != NULL) {
		struct auth_req *r = next_waiter(q);
		auth_cb cb;

		if (r->cb != NULL && start_check(r) == 0)
			continue;
		cb = r->cb;
		r->cb = NULL;
		if (cb != NULL)
			cb(r->arg, AUTH_ERROR);
		req_free(r);
	}
}

static void after_check(uv_work_t *w, int status)
{
	struct auth_req *r = w->data;
	struct auth_queue *q = r->q;
	auth_cb cb = r->cb;

	check_done(q, &r->who);
	if (cb != NULL) {
		r->cb = NULL;
		cb(r->arg, status == 0 ? r->result : AUTH_ERROR);
	}
	start_waiting(q);
	req_free(r);
}

struct auth_req *auth_check(struct auth_queue *q, const struct ipkey *who, long failures,
                            struct users *u, const char *name, size_t nlen,
                            const char *pass, size_t plen, auth_cb cb, void *arg)
{
	struct auth_req *r;

	if (plen == SIZE_MAX)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->pass = malloc(plen + 1);
	if (r->pass == NULL) {
		free(r);
		return NULL;
	}
	if (plen > 0)
		memcpy(r->pass, pass, plen);
	r->pass[plen] = '\0';
	r->plen = plen;
	r->users = users_ref(u);
	r->user = users_find(u, name, nlen);
	r->cb = cb;
	r->arg = arg;
	r->q = q;
	if (who != NULL)
		r->who = *who;
	r->failures = failures > 0 ? failures : 0;
	r->work.data = r;
	if (q->hashing >= q->limit) {   /* wait for a turn */
		if (q->wait_tail != NULL)
			q->wait_tail->next = r;
		else
			q->wait_head = r;
		q->wait_tail = r;
		q->waiting++;
		return r;
	}
	if (start_check(r) != 0) {
		req_free(r);
		return NULL;
	}
	return r;
}

int auth_check_inline(const struct users *u, const char *name, size_t nlen,
                      const char *pass, size_t plen, enum auth_result *out)
{
	const struct user *usr = users_find(u, name, nlen);

	/* Only where the pool would do no real work either: a {PLAIN} user, or an
	 * unknown name in a file whose common kind (the dummy cost) is {PLAIN}. */
	if (usr != NULL ? usr->scheme != PW_PLAIN : u->dummy_scheme != PW_PLAIN)
		return 0;
	*out = usr != NULL && plain_equal(usr->secret, strlen(usr->secret), pass, plen) ?
	       AUTH_OK : AUTH_FAIL;
	return 1;
}

void auth_cancel(struct auth_req *r)
{
	if (r == NULL)
		return;
	r->cb = NULL;
	r->arg = NULL;
	/* Waiting for a turn: start_waiting frees it when it comes up. On the pool:
	 * dequeued when no thread has taken it yet; after_check frees it either way. */
	if (r->queued)
		(void)uv_cancel((uv_req_t *)&r->work);
}

/* ---- APOP and hashing -------------------------------------------------- */

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int auth_apop(const struct users *u, const char *name, size_t nlen,
              const char *timestamp, const char *digest, size_t dlen)
{
	const struct user *usr = users_find(u, name, nlen);
	unsigned char want[16], got[EVP_MAX_MD_SIZE];
	unsigned int ngot = 0;
	const char *secret = "";
	EVP_MD_CTX *ctx;
	size_t i;
	int ok;

	if (timestamp == NULL || digest == NULL || dlen != 2 * sizeof(want))
		return 0;
	for (i = 0; i < sizeof(want); i++) {
		int hi = hexval((unsigned char)digest[2 * i]);
		int lo = hexval((unsigned char)digest[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return 0;
		want[i] = (unsigned char)(hi << 4 | lo);
	}
	if (usr != NULL && usr->scheme == PW_PLAIN)
		secret = usr->secret;
	/* Same work for users without a {PLAIN} secret; the result is refused below. */
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL &&
	     EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	     EVP_DigestFinal_ex(ctx, got, &ngot) == 1 && ngot == sizeof(want);
	EVP_MD_CTX_free(ctx);
	ok = ok && CRYPTO_memcmp(got, want, sizeof(want)) == 0 &&
	     usr != NULL && usr->scheme == PW_PLAIN;
	wipe(got, sizeof(got));
	return ok;
}

char *auth_hash_password(const char *pass, size_t plen, char *err, size_t errlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], eb[128];
	struct crypt_data *cd = NULL;
	const char *out;
	char *z = NULL, *res = NULL;

	if (err == NULL)
		errlen = 0;
	if (plen == 0) {
		snprintf(err, errlen, "empty password");
		return NULL;
	}
	if (memchr(pass, '\0', plen) != NULL) {
		snprintf(err, errlen, "password contains a NUL byte");
		return NULL;
	}
	if (plen >= CRYPT_MAX_PASSPHRASE_SIZE) {
		snprintf(err, errlen, "password longer than %d octets", CRYPT_MAX_PASSPHRASE_SIZE - 1);
		return NULL;
	}
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, (int)sizeof(salt)) == NULL) {
		snprintf(err, errlen, "crypt_gensalt: %s", errstr(errno, eb, sizeof(eb)));
		return NULL;
	}
	cd = calloc(1, sizeof(*cd));
	z = malloc(plen + 1);
	if (cd == NULL || z == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	memcpy(z, pass, plen);
	z[plen] = '\0';
	out = crypt_rn(z, salt, cd, (int)sizeof(*cd));
	if (out == NULL) {
		snprintf(err, errlen, "crypt: %s", errstr(errno, eb, sizeof(eb)));
		goto done;
	}
	res = strdup(out);
	if (res == NULL)
		snprintf(err, errlen, "out of memory");
done:
	if (z != NULL) {
		wipe(z, plen + 1);
		free(z);
	}
	if (cd != NULL) {
		wipe(cd, sizeof(*cd));
		free(cd);
	}
	return res;
}

/* Append base64 of p[0..n) at line + *w, then sep unless it is NUL; 0 or -1 (no room). */
static int append_b64(char *line, size_t cap, size_t *w, const unsigned char *p, size_t n,
                      char sep)
{
	size_t k;

	if (b64_encode(line + *w, cap - *w, p, n, &k) < 0 || cap - *w - k < 2)
		return -1;
	*w += k;
	if (sep != '\0')
		line[(*w)++] = sep;
	line[*w] = '\0';
	return 0;
}

/* "{SCRAM-SHA-256}4096,salt,StoredKey,ServerKey" for pass (checked by the caller). */
static char *hash_scram(const char *pass, size_t plen, char *err, size_t errlen)
{
	unsigned char salt[SCRAM_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	/* prefix and count, base64 of the salt and both keys, commas, NUL: about 150 */
	char line[256], *res = NULL;
	size_t w;

	if (RAND_bytes(salt, (int)sizeof(salt)) != 1) {
		snprintf(err, errlen, "no random bytes for the salt");
		return NULL;
	}
	auth_scram_keys(pass, plen, salt, sizeof(salt), SCRAM_ITER_DEFAULT, stored, server);
	w = (size_t)snprintf(line, sizeof(line), "{SCRAM-SHA-256}%d,", SCRAM_ITER_DEFAULT);
	if (append_b64(line, sizeof(line), &w, salt, sizeof(salt), ',') < 0 ||
	    append_b64(line, sizeof(line), &w, stored, sizeof(stored), ',') < 0 ||
	    append_b64(line, sizeof(line), &w, server, sizeof(server), '\0') < 0)
		snprintf(err, errlen, "internal error: SCRAM line does not fit");
	else if ((res = strdup(line)) == NULL)
		snprintf(err, errlen, "out of memory");
	wipe(stored, sizeof(stored));
	wipe(server, sizeof(server));
	wipe(line, sizeof(line));
	return res;
}

char *auth_hash_password_scheme(const char *pass, size_t plen, const char *scheme,
                                char *err, size_t errlen)
{
	struct slice name;

	if (err == NULL)
		errlen = 0;
	if (errlen > 0)
		err[0] = '\0';
	if (scheme == NULL)
		return auth_hash_password(pass, plen, err, errlen);
	name.p = scheme;
	name.n = strlen(scheme);
	if (slice_eq_nocase(name, "yescrypt"))
		return auth_hash_password(pass, plen, err, errlen);
	if (!slice_eq_nocase(name, "SCRAM-SHA-256")) {
		char q[QUOTE_MAX * 4 + 4];

		str_escape(q, sizeof(q), name.p, name.n, QUOTE_MAX);
		snprintf(err, errlen, "unknown scheme \"%s\" (use yescrypt or SCRAM-SHA-256)", q);
		return NULL;
	}
	if (plen == 0) {
		snprintf(err, errlen, "empty password");
		return NULL;
	}
	if (memchr(pass, '\0', plen) != NULL) {
		snprintf(err, errlen, "password contains a NUL byte");
		return NULL;
	}
	return hash_scram(pass, plen, err, errlen);
}
