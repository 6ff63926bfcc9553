/*
 * pop3_int: what the dispatcher (pop3.c) shares with the command handlers
 * (pop3_auth.c, pop3_trans.c). Not for use outside server/pop3*.c.
 */
#ifndef POP3D_POP3_INT_H
#define POP3D_POP3_INT_H

#include <stddef.h>

#include "server/session.h"
#include "server/strutil.h"

/* What a handler did; the dispatcher acts on it (habit 4). */
enum p3_outcome {
	P3_OK,      /* replied +OK (or a multi-line reply started) */
	P3_ERR,     /* replied -ERR: counts as a bad command */
	P3_BUSY,    /* asynchronous: the handler set s->busy; the completion replies,
	               clears it and calls session_resume */
	P3_CLOSE    /* replied; close once the reply is written */
};

#define CMD_ARGS_MAX 2
#define ARG_REST     0x1u   /* the single argument is the rest of the line, spaces and all */

struct p3_args {
	struct slice v[CMD_ARGS_MAX];
	size_t       n;
};

typedef enum p3_outcome (*p3_handler)(struct session *s, const struct p3_args *a);

struct p3_cmd {
	const char *name;
	p3_handler  fn;
	unsigned    states;    /* mask of enum pop3_state where the command is valid */
	unsigned    min_args;
	unsigned    max_args;
	unsigned    flags;     /* ARG_REST */
};

/* Handlers (pop3_auth.c) */
enum p3_outcome cmd_capa(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_user(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_pass(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_apop(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_quit(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_stls(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_auth(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_utf8(struct session *s, const struct p3_args *a);

/* pop3_auth.c: one line of a running AUTH exchange (s->sasl != NULL). */
void sasl_line(struct session *s, struct slice line);

/* pop3_auth.c: the AUTH response line was unusable (too long, NUL): fail the login. */
void sasl_refuse_line(struct session *s);

/* Handlers (pop3_trans.c) */
enum p3_outcome cmd_stat(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_list(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_uidl(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_retr(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_top(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_dele(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_noop(struct session *s, const struct p3_args *a);
enum p3_outcome cmd_rset(struct session *s, const struct p3_args *a);

/* pop3_trans.c: QUIT in TRANSACTION enters UPDATE. */
enum p3_outcome trans_quit(struct session *s);

/* pop3_trans.c: continue a LIST/UIDL/RETR/TOP job; frees it when done. */
void job_step(struct session *s);
void job_free(struct session *s);

/* pop3_auth.c: release login state (pending check, user name). */
void auth_state_free(struct session *s);

/* pop3.c: an asynchronous command ended with -ERR: count it, maybe close. */
void pop3_count_bad(struct session *s);

#endif
