/*
 * pop3: the POP3 state machine: command table, dispatcher that gates state
 * and arity, bad-command counting, and the resumable long replies.
 * The session calls in here; handlers live in pop3_auth.c and pop3_trans.c.
 */
#ifndef POP3D_POP3_H
#define POP3D_POP3_H

#include "server/linein.h"
#include "server/strutil.h"

struct session;

/* A new connection: set AUTHORIZATION state and send the greeting. */
void pop3_start(struct session *s);

/* The TLS handshake finished: implicit TLS greets, STLS restarts AUTHORIZATION. */
void pop3_tls_ready(struct session *s);

/* The longest line the protocol accepts now (a command, or a SASL response). */
size_t pop3_line_max(const struct session *s);

/* One complete command line (without CRLF). */
void pop3_line(struct session *s, struct slice line);

/* The line reader refused input (LINEIN_TOOLONG or LINEIN_NUL). */
void pop3_bad_input(struct session *s, enum linein_status st);

/* Output drained below the low-water mark: continue the running job. */
void pop3_job_step(struct session *s);

/* The session is being destroyed: release the maildrop, the job, secrets. */
void pop3_cleanup(struct session *s);

#endif
