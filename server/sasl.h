/*
 * sasl: the server side of RFC 5034 AUTH mechanisms PLAIN, LOGIN and
 * SCRAM-SHA-256 (RFC 7677, RFC 5802) as pure exchanges over base64 lines.
 * Never logs or keeps a secret longer than the exchange; never does I/O.
 */
#ifndef POP3D_SASL_H
#define POP3D_SASL_H

#include <stddef.h>

#include "server/auth.h"
#include "server/strutil.h"

/* Longest SASL response line we accept (base64), far above any real one. */
#define SASL_LINE_MAX 4096

enum sasl_mech {
	SASL_PLAIN,
	SASL_LOGIN,
	SASL_SCRAM_SHA_256
};

/* Mechanism name (case-insensitive) to enum: 0, or -1 when unknown. */
int sasl_mech_parse(struct slice name, enum sasl_mech *out);

/* "PLAIN", "LOGIN", "SCRAM-SHA-256". */
const char *sasl_mech_name(enum sasl_mech m);

enum sasl_result {
	SASL_CHALLENGE,      /* send "+ " out (base64, may be empty) and read the next line */
	SASL_CHECK_PASSWORD, /* PLAIN/LOGIN: sasl_user()/sasl_password() hold the credentials:
	                        check them with auth_check, then sasl_free */
	SASL_SUCCESS,        /* SCRAM: the client proved the password */
	SASL_FAIL,           /* SCRAM: wrong password or unknown user (indistinguishable) */
	SASL_BAD             /* malformed input: bad base64, wrong syntax, authzid != authcid */
};

struct sasl;

/*
 * Start an exchange. users is borrowed for the exchange's lifetime (take a
 * users_ref). Returns NULL on ENOMEM.
 */
struct sasl *sasl_new(enum sasl_mech m, const struct users *users);

/*
 * Feed one client line: the initial response (pass "=" for an empty one) or
 * the answer to a challenge, base64 without CRLF. "*" is handled by the
 * caller (cancel), never passed here. out receives the next challenge in
 * base64 (outcap >= SASL_LINE_MAX); *outlen its length.
 * Without an initial response, pass line NULL (n 0) first: that returns the
 * first challenge, empty for PLAIN and SCRAM-SHA-256, "VXNlcm5hbWU6" for LOGIN.
 * An empty line (n 0) answering a challenge is an empty response; so is "=".
 * After any result but SASL_CHALLENGE every further call returns SASL_BAD.
 */
enum sasl_result sasl_step(struct sasl *s, const char *line, size_t n,
                           char *out, size_t outcap, size_t *outlen);

/* 1 when the mechanism sends a first empty challenge without an initial response. */
int sasl_wants_initial(const struct sasl *s);

/* After SASL_CHECK_PASSWORD or SASL_SUCCESS: the authenticated login name. */
const char *sasl_user(const struct sasl *s, size_t *n);

/* After SASL_CHECK_PASSWORD: the password (wiped by sasl_free). */
const char *sasl_password(const struct sasl *s, size_t *n);

/* Wipe and free; NULL is fine. */
void sasl_free(struct sasl *s);

/*
 * TEST ONLY: use nonce (1..64 printable octets other than ',') as the SCRAM
 * server nonce of this exchange instead of 18 random octets, so a test can
 * replay RFC 7677 §3. Call before the client-first message. Returns 0, or -1
 * for a bad nonce, another mechanism or too late. Never called by the server.
 */
int sasl_set_nonce_for_test(struct sasl *s, const char *nonce, size_t n);

/* 1 when valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
int utf8_valid(const char *p, size_t n);

#endif
