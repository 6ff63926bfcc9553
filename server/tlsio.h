/*
 * tlsio: OpenSSL for pop3d. Builds the server contexts from the tls config
 * (default certificate plus SNI certificates) and runs one TLS engine per
 * connection over memory BIOs, so the session keeps doing all socket I/O on
 * the libuv loop. Never touches a socket or blocks.
 */
#ifndef POP3D_TLSIO_H
#define POP3D_TLSIO_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "server/config.h"
#include "server/diag.h"

struct tls_ctx;
struct tls_conn;

/*
 * Build the contexts: load cfg->certificate/key (PEM, chain allowed) and each
 * SNI entry's, check every key matches its certificate, apply min_version,
 * ciphers and ciphersuites, disable compression, renegotiation and session
 * tickets. Problems go to errors as "FILE: setting: text"; a certificate
 * expiring within 30 days goes to warnings, an expired one to errors.
 * Returns NULL when any error was found.
 */
struct tls_ctx *tls_ctx_new(const struct tls_cfg *cfg, struct diag *errors, struct diag *warnings);

/* For pop3d -t: one line per certificate (subject CN, SANs, notAfter). */
void tls_ctx_describe(const struct tls_ctx *t, FILE *f);

void tls_ctx_free(struct tls_ctx *t);

/* A server-side engine for one connection; NULL on ENOMEM. */
struct tls_conn *tls_conn_new(struct tls_ctx *t);

void tls_conn_free(struct tls_conn *c);

/* Hand ciphertext received from the network to the engine. 0, or -1 on ENOMEM. */
int tls_conn_feed(struct tls_conn *c, const char *p, size_t n);

enum tls_status {
	TLS_OK,       /* handshake complete (tls_conn_handshake) / progress made */
	TLS_WANT,     /* needs more ciphertext from the peer; send what is pending first */
	TLS_CLOSED,   /* the peer sent close_notify (tls_conn_read) */
	TLS_FAIL      /* protocol error or handshake failure: close the connection */
};

/* Advance the handshake. TLS_OK once it is complete. */
enum tls_status tls_conn_handshake(struct tls_conn *c);

/*
 * Decrypt up to n octets of plaintext into p. Returns the count (> 0), or 0
 * with *st set: TLS_WANT (feed more), TLS_CLOSED, TLS_FAIL.
 */
size_t tls_conn_read(struct tls_conn *c, char *p, size_t n, enum tls_status *st);

/*
 * Encrypt plaintext p[0..n). Returns 0, or -1 (TLS_FAIL). The ciphertext
 * waits in the engine until taken with tls_conn_take.
 */
int tls_conn_write(struct tls_conn *c, const char *p, size_t n);

/* Ciphertext octets waiting to be sent. */
size_t tls_conn_pending(const struct tls_conn *c);

/* Move up to n waiting ciphertext octets into p; returns the count. */
size_t tls_conn_take(struct tls_conn *c, char *p, size_t n);

/* Queue a close_notify alert (its ciphertext is then pending). */
void tls_conn_close_notify(struct tls_conn *c);

/*
 * 1 when OpenSSL wipes this connection's decrypted records once they are read
 * (SSL_OP_CLEANSE_PLAINTEXT: they carry passwords). For tests; never needed
 * by the server.
 */
int tls_conn_cleanses_plaintext(const struct tls_conn *c);

/* For logs: "TLSv1.3", cipher name, requested SNI name (or "-"), the last error text. */
const char *tls_conn_version(const struct tls_conn *c);
const char *tls_conn_cipher(const struct tls_conn *c);
const char *tls_conn_sni(const struct tls_conn *c);
const char *tls_conn_error(const struct tls_conn *c);

#endif
