/*
 * pop3: the command table and the dispatcher, which rejects unknown commands,
 * wrong states and wrong arity before any handler runs (habit 3), then acts on
 * the handler's outcome. Never touches files or sockets directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "maildrop/maildrop.h"
#include "server/auth.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/pop3.h"
#include "server/pop3_int.h"
#include "server/sasl.h"
#include "server/session.h"

static const struct p3_cmd commands[] = {
	/* name    handler    states               min max flags */
	{ "CAPA", cmd_capa, ST_AUTH | ST_TRANS,     0, 0, 0 },
	{ "USER", cmd_user, ST_AUTH,                1, 1, ARG_REST },
	{ "PASS", cmd_pass, ST_AUTH,                1, 1, ARG_REST },
	{ "APOP", cmd_apop, ST_AUTH,                2, 2, 0 },
	{ "QUIT", cmd_quit, ST_AUTH | ST_TRANS,     0, 0, 0 },
	{ "STLS", cmd_stls, ST_AUTH,                0, 0, 0 },
	{ "AUTH", cmd_auth, ST_AUTH,                0, 2, 0 },
	{ "UTF8", cmd_utf8, ST_AUTH,                0, 0, 0 },
	{ "STAT", cmd_stat, ST_TRANS,               0, 0, 0 },
	{ "LIST", cmd_list, ST_TRANS,               0, 1, 0 },
	{ "UIDL", cmd_uidl, ST_TRANS,               0, 1, 0 },
	{ "RETR", cmd_retr, ST_TRANS,               1, 1, 0 },
	{ "TOP",  cmd_top,  ST_TRANS,               2, 2, 0 },
	{ "DELE", cmd_dele, ST_TRANS,               1, 1, 0 },
	{ "NOOP", cmd_noop, ST_TRANS,               0, 0, 0 },
	{ "RSET", cmd_rset, ST_TRANS,               0, 0, 0 },
};

static const struct p3_cmd *
cmd_find(struct slice name)
{
	size_t i;

	for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (slice_eq_nocase(name, commands[i].name))
			return &commands[i];
	return NULL;
}

void
pop3_count_bad(struct session *s)
{
	unsigned limit = s->state == ST_AUTH ? BAD_CMDS_AUTH : BAD_CMDS_TRANS;

	if (++s->bad_cmds < limit)
		return;
	session_replyf(s, "-ERR too many bad commands, closing connection");
	session_close_after_flush(s, "too many bad commands");
}

static const char *
wrong_state_text(const struct session *s, const struct p3_cmd *c)
{
	if (s->state == ST_AUTH)
		return "-ERR %s is only valid after login";
	if (c->states & ST_AUTH)
		return "-ERR %s is only valid before login; already logged in";
	return "-ERR %s is not valid now";
}

/* Split arguments per the command's arity rules; 0, or -1 having replied. */
static int
args_parse(struct session *s, const struct p3_cmd *c, struct slice rest, struct p3_args *a)
{
	struct slice tok;

	a->n = 0;
	if (c->flags & ARG_REST) {
		if (rest.n > 0) {
			a->v[0] = rest;
			a->n = 1;
		}
	} else {
		while (slice_token(&rest, &tok)) {
			if (a->n == c->max_args && c->max_args == 0) {
				session_replyf(s, "-ERR %s takes no argument", c->name);
				return -1;
			}
			if (a->n == c->max_args) {
				session_replyf(s, "-ERR %s takes at most %u argument%s", c->name,
				               c->max_args, c->max_args == 1 ? "" : "s");
				return -1;
			}
			a->v[a->n++] = tok;
		}
	}
	if (a->n < c->min_args) {
		session_replyf(s, "-ERR %s needs %u argument%s", c->name, c->min_args,
		               c->min_args == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

size_t
pop3_line_max(const struct session *s)
{
	return s->sasl != NULL ? SASL_LINE_MAX : CMD_LINE_MAX;
}

void
pop3_line(struct session *s, struct slice line)
{
	struct slice name = line, rest = { line.p + line.n, 0 };
	const struct p3_cmd *c;
	struct p3_args a;
	const char *sp;

	if (s->sasl != NULL) {
		sasl_line(s, line);
		return;
	}
	sp = memchr(line.p, ' ', line.n);
	if (sp != NULL) {
		name.n = (size_t)(sp - line.p);
		rest.p = sp + 1;
		rest.n = line.n - name.n - 1;
	}
	c = cmd_find(name);
	if (c == NULL) {
		session_replyf(s, "-ERR unknown command");
		pop3_count_bad(s);
		return;
	}
	if (!(c->states & s->state)) {
		session_replyf(s, wrong_state_text(s, c), c->name);
		pop3_count_bad(s);
		return;
	}
	if (args_parse(s, c, rest, &a) != 0) {
		pop3_count_bad(s);
		return;
	}
	switch (c->fn(s, &a)) {
	case P3_OK:
		break;
	case P3_ERR:
		pop3_count_bad(s);
		break;
	case P3_BUSY:   /* the handler set s->busy; its completion clears it */
		break;
	case P3_CLOSE:
		session_close_after_flush(s, "quit");
		break;
	}
}

void
pop3_bad_input(struct session *s, enum linein_status st)
{
	if (s->sasl != NULL) {
		sasl_refuse_line(s);
		return;
	}
	if (st == LINEIN_TOOLONG)
		session_replyf(s, "-ERR command line too long (at most %d octets)", CMD_LINE_MAX);
	else
		session_replyf(s, "-ERR NUL octet in command line");
	pop3_count_bad(s);
}

void
pop3_start(struct session *s)
{
	struct daemon *d = s->d;

	s->state = ST_AUTH;
	/* RFC 1939 §7: the APOP timestamp must differ for every greeting. */
	if (users_any_plain(s->cs->users))
		snprintf(s->timestamp, sizeof s->timestamp, "<%ld.%llx.%lld@%s>", (long)getpid(),
		         (unsigned long long)s->id, (long long)time(NULL), d->hostname);
	if (s->timestamp[0] != '\0')
		session_replyf(s, "+OK pop3d ready %s", s->timestamp);
	else
		session_replyf(s, "+OK pop3d ready");
}

void
pop3_tls_ready(struct session *s)
{
	if (s->state == 0) {          /* implicit TLS: the greeting waited for the handshake */
		pop3_start(s);
		return;
	}
	/* STLS (RFC 2595 §4): forget everything learnt before TLS; no new greeting. */
	auth_state_free(s);
	s->bad_cmds = 0;
	s->utf8 = 0;
}

void
pop3_job_step(struct session *s)
{
	job_step(s);
}

static void
close_work(uv_work_t *req)
{
	maildrop_close(req->data);
}

static void
close_done(uv_work_t *req, int status)
{
	(void)status;
	free(req);
}

void
pop3_cleanup(struct session *s)
{
	uv_work_t *req;

	job_free(s);
	auth_state_free(s);
	free(s->md_path);
	s->md_path = NULL;
	if (s->md == NULL)
		return;
	/* Release the lock now, in order with what the loop does next: a client that
	 * logs in again right after a drop must not find its own old session's lock.
	 * (One close(); on a network file system an unlock request.) Freeing a
	 * large snapshot is left to the thread pool; a small one costs less here
	 * than a round trip there. */
	maildrop_unlock(s->md);
	if (s->md->n <= MD_CLOSE_INLINE_MAX) {
		maildrop_close(s->md);
		s->md = NULL;
		return;
	}
	req = malloc(sizeof *req);
	if (req != NULL)
		req->data = s->md;
	if (req == NULL || uv_queue_work(s->d->loop, req, close_work, close_done) != 0) {
		free(req);
		maildrop_close(s->md);
	}
	s->md = NULL;
}
