/*
 * sasl: owns one AUTH exchange (PLAIN, LOGIN, SCRAM-SHA-256): parses the client's
 * base64 lines and builds the challenges. Never does I/O, never logs, never checks
 * a password itself (PLAIN/LOGIN go to auth_check), and wipes every secret in sasl_free.
 */
#include "server/sasl.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Octets a line of SASL_LINE_MAX base64 characters decodes to at most. */
#define RAW_MAX (SASL_LINE_MAX / 4 * 3)

/*
 * Login names: RFC 4616 §2 asks servers to take at least 255 octets, and the
 * users file (auth.h) holds no longer name, so a longer one can never log in.
 */
#define NAME_OCTETS_MAX 255

/*
 * SCRAM client nonce: RFC 5802 sets no bound; real clients send 24..48
 * characters. 256 keeps the server-first message far below SASL_LINE_MAX.
 */
#define CNONCE_MAX 256

/*
 * SCRAM server nonce: 18 random octets (144 bits, RFC 5802 §5.1 "sufficiently
 * random"), 24 base64 characters without padding. A test nonce may be longer.
 */
#define SNONCE_RAW      18
#define SNONCE_TEST_MAX 64

/* "r=" nonce ",s=" salt ",i=" count: bounded by the limits above, with room to spare. */
#define SERVER_FIRST_MAX (2 + CNONCE_MAX + SNONCE_TEST_MAX + 3 + (SCRAM_SALT_MAX + 2) / 3 * 4 + \
                          3 + 10 + 16)

/* "v=" and base64 of a 32-octet signature. */
#define SERVER_FINAL_MAX (2 + 44 + 1)

enum step {
	ST_START,        /* nothing received or sent yet */
	ST_FIRST_SENT,   /* first challenge sent (empty, or "Username:" for LOGIN) */
	ST_LOGIN_PASS,   /* LOGIN: "Password:" sent */
	ST_SCRAM_FINAL,  /* SCRAM: server-first sent, client-final expected */
	ST_SCRAM_OK,     /* SCRAM: server-final sent, an empty line expected */
	ST_DONE          /* a result other than SASL_CHALLENGE was returned */
};

struct sasl {
	enum sasl_mech      mech;
	enum step           step;
	const struct users *users;                       /* borrowed */

	char                user[NAME_OCTETS_MAX + 1];   /* NUL-terminated; ulen > 0 once parsed */
	size_t              ulen;
	char                pass[RAW_MAX + 1];           /* PLAIN/LOGIN; wiped by sasl_free */
	size_t              plen;

	/* SCRAM */
	struct scram_cred   cred;                        /* the user's, or the fake ones */
	int                 known;                       /* cred can succeed */
	char                first[RAW_MAX];              /* client-first: gs2 header, then bare */
	size_t              first_len;
	size_t              gs2_len;
	char                sfirst[SERVER_FIRST_MAX];    /* server-first */
	size_t              sfirst_len;
	char                nonce[CNONCE_MAX + SNONCE_TEST_MAX];   /* client + server nonce */
	size_t              nonce_len;
	char                test_snonce[SNONCE_TEST_MAX];
	size_t              test_snonce_len;
};

static const char *const MECH_NAMES[] = {
	[SASL_PLAIN]         = "PLAIN",
	[SASL_LOGIN]         = "LOGIN",
	[SASL_SCRAM_SHA_256] = "SCRAM-SHA-256",
};

int sasl_mech_parse(struct slice name, enum sasl_mech *out)
{
	size_t i;

	for (i = 0; i < sizeof(MECH_NAMES) / sizeof(MECH_NAMES[0]); i++) {
		if (slice_eq_nocase(name, MECH_NAMES[i])) {
			*out = (enum sasl_mech)i;
			return 0;
		}
	}
	return -1;
}

const char *sasl_mech_name(enum sasl_mech m)
{
	if ((size_t)m >= sizeof(MECH_NAMES) / sizeof(MECH_NAMES[0]))
		return "?";
	return MECH_NAMES[m];
}

struct sasl *sasl_new(enum sasl_mech m, const struct users *users)
{
	struct sasl *s;

	if ((size_t)m >= sizeof(MECH_NAMES) / sizeof(MECH_NAMES[0]))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->mech = m;
	s->step = ST_START;
	s->users = users;
	return s;
}

int sasl_wants_initial(const struct sasl *s)
{
	return s->mech != SASL_LOGIN;
}

const char *sasl_user(const struct sasl *s, size_t *n)
{
	*n = s->ulen;
	return s->ulen > 0 ? s->user : NULL;
}

const char *sasl_password(const struct sasl *s, size_t *n)
{
	*n = s->plen;
	return s->mech == SASL_SCRAM_SHA_256 ? NULL : s->pass;
}

void sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	wipe(s, sizeof(*s));
	free(s);
}

int sasl_set_nonce_for_test(struct sasl *s, const char *nonce, size_t n)
{
	size_t i;

	if (s->mech != SASL_SCRAM_SHA_256 || s->step > ST_FIRST_SENT || n == 0 ||
	    n > sizeof(s->test_snonce))
		return -1;
	for (i = 0; i < n; i++)
		if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',')
			return -1;
	memcpy(s->test_snonce, nonce, n);
	s->test_snonce_len = n;
	return 0;
}

/* ---- UTF-8 ------------------------------------------------------------- */

int utf8_valid(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, k, len;
	uint32_t cp, min;

	while (i < n) {
		unsigned c = u[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {          /* 0xc0, 0xc1: overlong ASCII */
			len = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {   /* 0xf5..: above U+10FFFF */
			len = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;                            /* continuation or 0xf5..0xff */
		}
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (u[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* ---- helpers ----------------------------------------------------------- */

/* A client line into raw (RAW_MAX octets); "=" is an empty response (RFC 5034 §4). */
static int decode_line(const char *line, size_t n, unsigned char *raw, size_t *rlen)
{
	if (n > SASL_LINE_MAX)
		return -1;
	if (n == 1 && line[0] == '=') {
		*rlen = 0;
		return 0;
	}
	return b64_decode(raw, RAW_MAX, line, n, rlen);
}

/* Base64 of p[0..n) as the next challenge. */
static enum sasl_result challenge(const void *p, size_t n, char *out, size_t outcap,
                                  size_t *outlen)
{
	if (b64_encode(out, outcap, p, n, outlen) < 0) {
		*outlen = 0;
		return SASL_BAD;   /* outcap below the contract's SASL_LINE_MAX */
	}
	return SASL_CHALLENGE;
}

/* A login name: 1..NAME_OCTETS_MAX octets of UTF-8 without NUL. Copies it into s->user. */
static int take_user(struct sasl *s, const char *p, size_t n)
{
	if (n == 0 || n > NAME_OCTETS_MAX || memchr(p, '\0', n) != NULL || !utf8_valid(p, n))
		return -1;
	memcpy(s->user, p, n);
	s->user[n] = '\0';
	s->ulen = n;
	return 0;
}

/* ---- PLAIN and LOGIN ---------------------------------------------------- */

/* RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
static enum sasl_result plain_step(struct sasl *s, const char *m, size_t n)
{
	const char *nul1 = memchr(m, '\0', n), *nul2, *authcid, *pw;
	size_t azlen, aclen, pwlen;

	if (nul1 == NULL)
		return SASL_BAD;
	azlen = (size_t)(nul1 - m);
	authcid = nul1 + 1;
	nul2 = memchr(authcid, '\0', n - azlen - 1);
	if (nul2 == NULL)
		return SASL_BAD;
	aclen = (size_t)(nul2 - authcid);
	pw = nul2 + 1;
	pwlen = n - azlen - aclen - 2;
	/* passwd = 1*SAFE: not empty, no third NUL. Its octets are otherwise the
	 * user's business: crypt and SCRAM hashes compare bytes. */
	if (pwlen == 0 || memchr(pw, '\0', pwlen) != NULL)
		return SASL_BAD;
	if (take_user(s, authcid, aclen) < 0)
		return SASL_BAD;
	/* We act for nobody else: an authzid must name the same user. */
	if (azlen != 0 && (azlen != aclen || memcmp(m, authcid, aclen) != 0))
		return SASL_BAD;
	memcpy(s->pass, pw, pwlen);
	s->pass[pwlen] = '\0';
	s->plen = pwlen;
	return SASL_CHECK_PASSWORD;
}

static enum sasl_result login_step(struct sasl *s, const char *m, size_t n, char *out,
                                   size_t outcap, size_t *outlen)
{
	if (s->step == ST_LOGIN_PASS) {
		/* Non-standard mechanism, no syntax: the password is the octets sent. */
		memcpy(s->pass, m, n);
		s->pass[n] = '\0';
		s->plen = n;
		return SASL_CHECK_PASSWORD;
	}
	/* The answer to "Username:", or the user name as an initial response. */
	if (take_user(s, m, n) < 0)
		return SASL_BAD;
	s->step = ST_LOGIN_PASS;
	return challenge("Password:", 9, out, outcap, outlen);
}

/* ---- SCRAM-SHA-256 ------------------------------------------------------ */

/* RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ','). */
static int printable(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
			return 0;
	return 1;
}

/* The octets before the next ',' (or the end) of [*p, end); *p moves past the ','. */
static struct slice next_attr(const char **p, const char *end, int *more)
{
	struct slice a = { *p, (size_t)(end - *p) };
	const char *c = memchr(*p, ',', a.n);

	*more = c != NULL;
	if (c != NULL) {
		a.n = (size_t)(c - *p);
		*p = c + 1;
	} else {
		*p = end;
	}
	return a;
}

/* "x=value" with the given attribute letter and a non-empty value. */
static int attr_is(struct slice a, char letter, struct slice *value)
{
	if (a.n < 3 || a.p[0] != letter || a.p[1] != '=')
		return 0;
	value->p = a.p + 2;
	value->n = a.n - 2;
	return 1;
}

/* RFC 5802 §7: extensions = attr-val *("," attr-val); attr-val = ALPHA "=" value. */
static int extension_ok(struct slice a)
{
	unsigned char c = a.n > 0 ? (unsigned char)a.p[0] : 0;

	return a.n >= 3 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) && a.p[1] == '=';
}

/* saslname: "=2C" is ',' and "=3D" is '='; any other '=' is refused (RFC 5802 §5.1). */
static int unescape_name(struct slice v, char *dst, size_t cap, size_t *len)
{
	size_t i, w = 0;

	for (i = 0; i < v.n; i++) {
		char c = v.p[i];

		if (c == '=') {
			if (v.n - i < 3)
				return -1;
			if (v.p[i + 1] == '2' && v.p[i + 2] == 'C')
				c = ',';
			else if (v.p[i + 1] == '3' && v.p[i + 2] == 'D')
				c = '=';
			else
				return -1;
			i += 2;
		}
		if (w == cap)
			return -1;
		dst[w++] = c;
	}
	*len = w;
	return 0;
}

/*
 * client-first = gs2-header client-first-bare (RFC 5802 §7):
 *   gs2-header = ("n" / "y") "," [ "a=" saslname ] ","     ("p=..." is channel binding: refused)
 *   bare       = "n=" saslname "," "r=" c-nonce [ "," extensions ]   ("m=" first: refused)
 * Answers with server-first "r=c-nonce s-nonce,s=salt,i=count".
 */
static enum sasl_result scram_first(struct sasl *s, const char *m, size_t n, char *out,
                                    size_t outcap, size_t *outlen)
{
	const char *p = m, *end = m + n;
	struct slice a, v, cnonce, authzid = { NULL, 0 };
	char name[NAME_OCTETS_MAX], az[NAME_OCTETS_MAX], snonce[SNONCE_TEST_MAX + 1];
	unsigned char rnd[SNONCE_RAW];
	size_t nlen, azlen = 0, snlen, k;
	int more, w;

	if (n < 3 || memchr(m, '\0', n) != NULL || !utf8_valid(m, n))
		return SASL_BAD;
	if ((m[0] != 'n' && m[0] != 'y') || m[1] != ',')
		return SASL_BAD;
	p += 2;
	a = next_attr(&p, end, &more);
	if (!more)
		return SASL_BAD;
	if (a.n > 0) {
		if (!attr_is(a, 'a', &authzid) ||
		    unescape_name(authzid, az, sizeof(az), &azlen) < 0)
			return SASL_BAD;
	}
	s->gs2_len = (size_t)(p - m);

	a = next_attr(&p, end, &more);
	if (!attr_is(a, 'n', &v) || !more || unescape_name(v, name, sizeof(name), &nlen) < 0 ||
	    take_user(s, name, nlen) < 0)
		return SASL_BAD;
	if (authzid.p != NULL && (azlen != nlen || memcmp(az, name, nlen) != 0))
		return SASL_BAD;
	a = next_attr(&p, end, &more);
	if (!attr_is(a, 'r', &cnonce) || cnonce.n > CNONCE_MAX || !printable(cnonce.p, cnonce.n))
		return SASL_BAD;
	while (more) {
		a = next_attr(&p, end, &more);
		if (!extension_ok(a))
			return SASL_BAD;
	}
	memcpy(s->first, m, n);
	s->first_len = n;

	/* Unknown names and users without SCRAM keys go on with fake ones and fail at the end. */
	s->known = users_scram(s->users, s->user, s->ulen, &s->cred);

	if (s->test_snonce_len > 0) {
		memcpy(snonce, s->test_snonce, s->test_snonce_len);
		snlen = s->test_snonce_len;
	} else {
		/* No randomness, no exchange: fail closed. */
		if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1 ||
		    b64_encode(snonce, sizeof(snonce), rnd, sizeof(rnd), &snlen) < 0)
			return SASL_FAIL;
	}
	memcpy(s->nonce, cnonce.p, cnonce.n);
	memcpy(s->nonce + cnonce.n, snonce, snlen);
	s->nonce_len = cnonce.n + snlen;

	w = snprintf(s->sfirst, sizeof(s->sfirst), "r=%.*s,s=", (int)s->nonce_len, s->nonce);
	if (w < 0 || (size_t)w >= sizeof(s->sfirst) ||
	    b64_encode(s->sfirst + w, sizeof(s->sfirst) - (size_t)w, s->cred.salt,
	               s->cred.salt_len, &k) < 0)
		return SASL_BAD;
	s->sfirst_len = (size_t)w + k;
	w = snprintf(s->sfirst + s->sfirst_len, sizeof(s->sfirst) - s->sfirst_len, ",i=%lu",
	             (unsigned long)s->cred.iter);
	if (w < 0 || (size_t)w >= sizeof(s->sfirst) - s->sfirst_len)
		return SASL_BAD;
	s->sfirst_len += (size_t)w;
	s->step = ST_SCRAM_FINAL;
	return challenge(s->sfirst, s->sfirst_len, out, outcap, outlen);
}

/*
 * client-final = "c=" base64(gs2-header) "," "r=" nonce ["," extensions] "," "p=" proof.
 * Checks the proof (RFC 5802 §3) and answers with server-final "v=" signature.
 */
static enum sasl_result scram_final(struct sasl *s, const char *m, size_t n, char *out,
                                    size_t outcap, size_t *outlen)
{
	const char *p = m, *end = m + n, *proof_at = NULL;
	struct slice a, v;
	unsigned char cb[RAW_MAX], proof[SCRAM_KEY_LEN + 3], sig[SCRAM_KEY_LEN];
	unsigned char key[SCRAM_KEY_LEN], hkey[SCRAM_KEY_LEN];
	char *am, final[SERVER_FINAL_MAX];
	size_t cblen, plen, amlen, k, i;
	enum sasl_result r = SASL_BAD;
	int more, ok;

	if (memchr(m, '\0', n) != NULL || !utf8_valid(m, n))
		return SASL_BAD;
	a = next_attr(&p, end, &more);
	/* "c=": exactly the gs2 header we were sent; we have no channel binding data. */
	if (!attr_is(a, 'c', &v) || !more || b64_decode(cb, sizeof(cb), v.p, v.n, &cblen) < 0 ||
	    cblen != s->gs2_len || memcmp(cb, s->first, cblen) != 0)
		return SASL_BAD;
	a = next_attr(&p, end, &more);
	if (!attr_is(a, 'r', &v) || !more || v.n != s->nonce_len ||
	    memcmp(v.p, s->nonce, v.n) != 0)
		return SASL_BAD;
	for (;;) {
		const char *at = p;

		a = next_attr(&p, end, &more);
		if (a.n >= 2 && a.p[0] == 'p' && a.p[1] == '=') {
			if (more)
				return SASL_BAD;     /* the proof comes last */
			proof_at = at - 1;       /* the ',' before "p=" */
			break;
		}
		if (!extension_ok(a) || !more)
			return SASL_BAD;
	}
	if (b64_decode(proof, sizeof(proof), a.p + 2, a.n - 2, &plen) < 0 || plen != SCRAM_KEY_LEN)
		return SASL_BAD;

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	amlen = (s->first_len - s->gs2_len) + 1 + s->sfirst_len + 1 + (size_t)(proof_at - m);
	am = malloc(amlen);
	if (am == NULL)
		return SASL_FAIL;
	k = s->first_len - s->gs2_len;
	memcpy(am, s->first + s->gs2_len, k);
	am[k++] = ',';
	memcpy(am + k, s->sfirst, s->sfirst_len);
	k += s->sfirst_len;
	am[k++] = ',';
	memcpy(am + k, m, (size_t)(proof_at - m));

	/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); it must hash to StoredKey.
	 * Fake credentials take the same steps and are refused at the end. */
	auth_hmac_sha256(s->cred.stored_key, SCRAM_KEY_LEN, am, amlen, sig);
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	auth_sha256(key, sizeof(key), hkey);
	ok = CRYPTO_memcmp(hkey, s->cred.stored_key, SCRAM_KEY_LEN) == 0 && s->known;
	if (!ok) {
		r = SASL_FAIL;
	} else {
		auth_hmac_sha256(s->cred.server_key, SCRAM_KEY_LEN, am, amlen, sig);
		memcpy(final, "v=", 2);
		if (b64_encode(final + 2, sizeof(final) - 2, sig, sizeof(sig), &k) == 0) {
			s->step = ST_SCRAM_OK;
			r = challenge(final, 2 + k, out, outcap, outlen);
		}
	}
	wipe(am, amlen);
	free(am);
	wipe(key, sizeof(key));
	wipe(hkey, sizeof(hkey));
	wipe(sig, sizeof(sig));
	wipe(proof, sizeof(proof));
	wipe(final, sizeof(final));
	return r;
}

/* ---- the exchange ------------------------------------------------------- */

enum sasl_result sasl_step(struct sasl *s, const char *line, size_t n,
                           char *out, size_t outcap, size_t *outlen)
{
	unsigned char raw[RAW_MAX];
	const char *m = (const char *)raw;
	size_t rlen = 0;
	enum sasl_result r = SASL_BAD;

	*outlen = 0;
	if (outcap > 0)
		out[0] = '\0';
	if (s->step == ST_DONE)
		return SASL_BAD;
	if (line == NULL) {
		/* No initial response: the first challenge. */
		if (s->step != ST_START) {
			s->step = ST_DONE;
			return SASL_BAD;
		}
		s->step = ST_FIRST_SENT;
		if (s->mech == SASL_LOGIN)
			return challenge("Username:", 9, out, outcap, outlen);
		return challenge("", 0, out, outcap, outlen);
	}
	if (decode_line(line, n, raw, &rlen) < 0) {
		s->step = ST_DONE;
		return SASL_BAD;
	}
	switch (s->mech) {
	case SASL_PLAIN:
		r = plain_step(s, m, rlen);
		break;
	case SASL_LOGIN:
		r = login_step(s, m, rlen, out, outcap, outlen);
		break;
	case SASL_SCRAM_SHA_256:
		if (s->step == ST_START || s->step == ST_FIRST_SENT)
			r = scram_first(s, m, rlen, out, outcap, outlen);
		else if (s->step == ST_SCRAM_FINAL)
			r = scram_final(s, m, rlen, out, outcap, outlen);
		else   /* ST_SCRAM_OK: the client acknowledges server-final with an empty line */
			r = rlen == 0 ? SASL_SUCCESS : SASL_BAD;
		break;
	}
	if (r != SASL_CHALLENGE)
		s->step = ST_DONE;
	wipe(raw, rlen);
	return r;
}
