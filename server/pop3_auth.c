/*
 * pop3_auth: AUTHORIZATION state: CAPA, USER, PASS, APOP, QUIT, and the move
 * into TRANSACTION (lock and scan the maildrop on the thread pool).
 * Never logs or keeps a password: it is wiped in the input buffer at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop/maildrop.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/pop3_int.h"
#include "server/session.h"

/* Maildrop open result, carried from the thread pool back to the loop. */
struct open_work {
	uv_work_t        req;
	struct session  *s;
	char            *path;
	struct maildrop *md;
	enum md_status   st;
	char             err[256];
};

static int
plaintext_ok(const struct session *s)
{
	return s->d->cfg->plaintext == PLAINTEXT_ALWAYS;
}

/* Overwrite an argument in the input buffer (a password). */
static void
wipe_arg(struct session *s, struct slice a)
{
	if (a.n > 0 && a.p >= s->in.buf && a.p + a.n <= s->in.buf + s->in.cap)
		wipe(s->in.buf + (a.p - s->in.buf), a.n);
}

static void
user_forget(struct session *s)
{
	if (s->user != NULL)
		wipe(s->user, s->user_len);
	free(s->user);
	s->user = NULL;
	s->user_len = 0;
}

void
auth_state_free(struct session *s)
{
	if (s->auth != NULL) {
		auth_cancel(s->auth);
		s->auth = NULL;
	}
	user_forget(s);
	if (s->users != NULL) {
		users_unref(s->users);
		s->users = NULL;
	}
}

static int
user_set(struct session *s, struct slice name)
{
	user_forget(s);
	s->user = malloc(name.n + 1);
	if (s->user == NULL)
		return -1;
	memcpy(s->user, name.p, name.n);
	s->user[name.n] = '\0';
	s->user_len = name.n;
	return 0;
}

enum p3_outcome
cmd_capa(struct session *s, const struct p3_args *a)
{
	static const char head[] =
		"+OK capability list follows\r\n"
		"TOP\r\n"
		"UIDL\r\n"
		"RESP-CODES\r\n"
		"AUTH-RESP-CODE\r\n"
		"PIPELINING\r\n";
	static const char tail[] = "IMPLEMENTATION pop3d\r\n.\r\n";

	(void)a;
	session_write(s, head, sizeof head - 1);
	if (s->state == ST_AUTH && plaintext_ok(s))
		session_write(s, "USER\r\n", 6);
	session_write(s, tail, sizeof tail - 1);
	return P3_OK;
}

enum p3_outcome
cmd_user(struct session *s, const struct p3_args *a)
{
	if (!plaintext_ok(s)) {
		session_replyf(s, "-ERR [AUTH] plaintext authentication is disabled on "
		               "unencrypted connections");
		return P3_ERR;
	}
	if (!login_name_valid(a->v[0].p, a->v[0].n)) {
		user_forget(s);
		session_replyf(s, "-ERR [AUTH] invalid user name");
		return P3_ERR;
	}
	if (user_set(s, a->v[0]) != 0) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	session_replyf(s, "+OK send PASS");
	return P3_OK;
}

static void
log_login_failure(struct session *s, const char *mech)
{
	char user[300];

	str_escape(user, sizeof user, s->user != NULL ? s->user : "", s->user_len, 64);
	log_msg(LOG_INFO, "login failed id=%llx ip=%s user=%s mechanism=%s",
	        (unsigned long long)s->id, s->peer, user, mech);
}

/* The end of every failed login, after the delay: one reply for all causes. */
static void
auth_fail_reply(struct session *s)
{
	s->d->stats.login_failures++;
	user_forget(s);
	s->busy = 0;
	session_replyf(s, "-ERR [AUTH] invalid user name or password");
	pop3_count_bad(s);
	session_resume(s);
}

static void
on_fail_delay(uv_timer_t *t)
{
	auth_fail_reply(t->data);
}

/* Wait until failure_delay has passed since the attempt started, then reply. */
static void
auth_fail(struct session *s, const char *mech)
{
	uint64_t spent = uv_now(s->d->loop) - s->auth_started;
	uint64_t delay = s->d->cfg->failure_delay_ms;

	log_login_failure(s, mech);
	if (spent >= delay)
		auth_fail_reply(s);
	else
		uv_timer_start(&s->delay, on_fail_delay, delay - spent, 0);
}

static void
open_work(uv_work_t *req)
{
	struct open_work *w = req->data;

	w->st = maildrop_open(w->path, &w->md, w->err, sizeof w->err);
}

static void
open_done(uv_work_t *req, int status)
{
	struct open_work *w = req->data;
	struct session *s = w->s;
	char user[300];

	(void)status;
	if (s->closing) {
		if (w->st == MD_OK)
			maildrop_close(w->md);   /* cheap: no session ever saw it */
		goto out;
	}
	str_escape(user, sizeof user, s->user, s->user_len, 64);
	s->busy = 0;
	switch (w->st) {
	case MD_OK:
		s->md = w->md;
		s->state = ST_TRANS;
		s->bad_cmds = 0;
		s->d->stats.logins++;
		log_msg(LOG_INFO, "login id=%llx ip=%s user=%s messages=%zu octets=%llu",
		        (unsigned long long)s->id, s->peer, user, s->md->n,
		        (unsigned long long)s->md->total);
		session_replyf(s, "+OK maildrop has %zu message%s (%llu octets)", s->md->n,
		               s->md->n == 1 ? "" : "s", (unsigned long long)s->md->total);
		break;
	case MD_INUSE:
		log_msg(LOG_INFO, "maildrop in use id=%llx ip=%s user=%s",
		        (unsigned long long)s->id, s->peer, user);
		user_forget(s);
		session_replyf(s, "-ERR [IN-USE] maildrop is in use by another session");
		break;
	case MD_TEMP:
	case MD_PERM:
		log_msg(LOG_ERR, "maildrop open failed id=%llx user=%s path=%s: %s",
		        (unsigned long long)s->id, user, w->path, w->err);
		user_forget(s);
		session_replyf(s, "-ERR [SYS/%s] cannot open the maildrop",
		               w->st == MD_TEMP ? "TEMP" : "PERM");
		break;
	}
	session_resume(s);
out:
	free(w->path);
	free(w);
	session_unref(s);
}

/* Credentials are good: lock and scan the maildrop off the loop. */
static void
login_ok(struct session *s)
{
	const struct user *u = users_find(s->users, s->user, s->user_len);
	char path[4096];
	struct open_work *w;

	if (u == NULL || maildrop_expand(s->d->cfg->maildrop_path, s->user, u->home,
	                                 path, sizeof path) != 0) {
		char user[300];
		str_escape(user, sizeof user, s->user, s->user_len, 64);
		log_msg(LOG_ERR, "maildrop path for user=%s cannot be built from \"%s\"", user,
		        s->d->cfg->maildrop_path);
		user_forget(s);
		s->busy = 0;
		session_replyf(s, "-ERR [SYS/PERM] maildrop path is not usable");
		session_resume(s);
		return;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL || (w->path = strdup(path)) == NULL) {
		free(w);
		goto oom;
	}
	w->s = s;
	w->req.data = w;
	if (uv_queue_work(s->d->loop, &w->req, open_work, open_done) != 0) {
		free(w->path);
		free(w);
		goto oom;
	}
	session_ref(s);
	return;
oom:
	user_forget(s);
	s->busy = 0;
	session_replyf(s, "-ERR [SYS/TEMP] out of memory");
	session_resume(s);
}

static void
on_auth_done(void *arg, enum auth_result r)
{
	struct session *s = arg;

	s->auth = NULL;
	if (s->closing)
		return;
	switch (r) {
	case AUTH_OK:
		login_ok(s);
		break;
	case AUTH_FAIL:
		auth_fail(s, "USER");
		break;
	case AUTH_ERROR:
		log_msg(LOG_ERR, "password check failed internally id=%llx",
		        (unsigned long long)s->id);
		user_forget(s);
		s->busy = 0;
		session_replyf(s, "-ERR [SYS/TEMP] authentication is temporarily unavailable");
		session_resume(s);
		break;
	}
}

enum p3_outcome
cmd_pass(struct session *s, const struct p3_args *a)
{
	if (s->user == NULL) {
		wipe_arg(s, a->v[0]);
		session_replyf(s, "-ERR send USER first");
		return P3_ERR;
	}
	if (!plaintext_ok(s)) {
		wipe_arg(s, a->v[0]);
		session_replyf(s, "-ERR [AUTH] plaintext authentication is disabled on "
		               "unencrypted connections");
		return P3_ERR;
	}
	if (s->users == NULL)
		s->users = users_ref(s->d->users);
	s->auth_started = uv_now(s->d->loop);
	s->auth = auth_check(s->d->loop, s->users, s->user, s->user_len, a->v[0].p, a->v[0].n,
	                     on_auth_done, s);
	wipe_arg(s, a->v[0]);
	if (s->auth == NULL) {
		user_forget(s);
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	s->busy = 1;
	return P3_BUSY;
}

enum p3_outcome
cmd_apop(struct session *s, const struct p3_args *a)
{
	if (s->timestamp[0] == '\0') {
		session_replyf(s, "-ERR APOP is not offered by this server");
		return P3_ERR;
	}
	if (!login_name_valid(a->v[0].p, a->v[0].n)) {
		session_replyf(s, "-ERR [AUTH] invalid user name");
		return P3_ERR;
	}
	if (user_set(s, a->v[0]) != 0) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	if (s->users == NULL)
		s->users = users_ref(s->d->users);
	s->auth_started = uv_now(s->d->loop);
	s->busy = 1;
	if (auth_apop(s->users, s->user, s->user_len, s->timestamp, a->v[1].p, a->v[1].n))
		login_ok(s);
	else
		auth_fail(s, "APOP");
	return P3_BUSY;
}

enum p3_outcome
cmd_quit(struct session *s, const struct p3_args *a)
{
	(void)a;
	if (s->state == ST_TRANS)
		return trans_quit(s);
	session_replyf(s, "+OK bye");
	return P3_CLOSE;
}
