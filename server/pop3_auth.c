/*
 * pop3_auth: AUTHORIZATION state: CAPA, USER, PASS, APOP, QUIT, and the move
 * into TRANSACTION (lock and scan the maildrop on the thread pool).
 * Never logs or keeps a password: it is wiped in the input buffer at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "maildrop/maildrop.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/pop3_int.h"
#include "server/sasl.h"
#include "server/session.h"
#include "server/tlsio.h"

/* Maildrop open result, carried from the thread pool back to the loop. */
struct open_work {
	uv_work_t        req;
	struct session  *s;
	char            *path;
	struct maildrop *md;
	enum md_status   st;
	int32_t          login_delay;  /* seconds; 0 = no LOGIN-DELAY */
	int64_t          now;
	int              too_soon;     /* refused by LOGIN-DELAY */
	char             err[256];
};

/* May a password cross this connection (USER/PASS, AUTH PLAIN/LOGIN)? */
static int
plaintext_ok(const struct session *s)
{
	return s->cs->cfg->plaintext == PLAINTEXT_ALWAYS || s->tls_state == TLSS_ACTIVE ||
	       s->plaintext_trusted;
}

static int
stls_offered(const struct session *s)
{
	return s->state == ST_AUTH && s->tls_state == TLSS_NONE && s->cs->tls != NULL &&
	       s->lcfg->tls == TLS_STARTTLS;
}

static const enum sasl_mech sasl_all[] = { SASL_PLAIN, SASL_LOGIN, SASL_SCRAM_SHA_256 };

/* Is mechanism m usable on this connection now? SCRAM never reveals the password. */
static int
mech_allowed(const struct session *s, enum sasl_mech m)
{
	if (m == SASL_SCRAM_SHA_256)
		return users_any_scram(s->cs->users);
	return plaintext_ok(s);
}

static void
reply_plaintext_refused(struct session *s)
{
	if (stls_offered(s))
		session_replyf(s, "-ERR [AUTH] plaintext authentication needs TLS: use STLS first");
	else
		session_replyf(s, "-ERR [AUTH] plaintext authentication is disabled on "
		               "unencrypted connections");
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
	s->user_refused = 0;
}

void
auth_state_free(struct session *s)
{
	if (s->auth != NULL) {
		auth_cancel(s->auth);
		s->auth = NULL;
	}
	sasl_free(s->sasl);
	s->sasl = NULL;
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

/*
 * RFC 2449 §6.5, §6.7: after login, this user's EXPIRE and LOGIN-DELAY; before
 * it, the smallest EXPIRE and largest LOGIN-DELAY of all users, with USER
 * when users differ.
 */
static void
capa_policy(struct session *s)
{
	const struct capa_summary *c = &s->cs->capa;
	char buf[64];

	if (s->state == ST_AUTH) {
		capa_expire_text(buf, sizeof buf, c->expire, c->expire_varies);
		session_replyf(s, "%s", buf);
		if (c->login_delay > 0)
			session_replyf(s, "LOGIN-DELAY %d%s", (int)c->login_delay,
			               c->delay_varies ? " USER" : "");
		return;
	}
	capa_expire_text(buf, sizeof buf, rule_expire_days(&s->rule), 0);
	session_replyf(s, "%s", buf);
	if (s->rule.login_delay > 0)
		session_replyf(s, "LOGIN-DELAY %d", (int)s->rule.login_delay);
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
	char mechs[64];
	size_t i, n = 0;

	(void)a;
	session_write(s, head, sizeof head - 1);
	/* RFC 2449 §5: AUTHORIZATION capabilities are announced in both states;
	 * STLS only while it can be used (RFC 2595 §4). */
	if (stls_offered(s))
		session_replyf(s, "STLS");
	if (plaintext_ok(s))
		session_replyf(s, "USER");
	for (i = 0; i < sizeof sasl_all / sizeof sasl_all[0]; i++)
		if (mech_allowed(s, sasl_all[i]))
			n += (size_t)snprintf(mechs + n, sizeof mechs - n, " %s",
			                      sasl_mech_name(sasl_all[i]));
	if (n > 0)
		session_replyf(s, "SASL%s", mechs);
	/* RFC 6856 §2: the USER argument says that USER takes UTF-8 names; only where USER is
	 * offered. */
	session_replyf(s, plaintext_ok(s) ? "UTF8 USER" : "UTF8");
	session_replyf(s, "IMPLEMENTATION pop3d");
	capa_policy(s);
	session_write(s, ".\r\n", 3);
	return P3_OK;
}

/* RFC 6856 §2: after UTF8, every name and password must be valid UTF-8. */
static int
utf8_ok(const struct session *s, const char *p, size_t n)
{
	return !s->utf8 || utf8_valid(p, n);
}

enum p3_outcome
cmd_user(struct session *s, const struct p3_args *a)
{
	if (!plaintext_ok(s)) {
		reply_plaintext_refused(s);
		return P3_ERR;
	}
	if (user_set(s, a->v[0]) != 0) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	/*
	 * A name no user can have (a '/', "..", a control character, invalid
	 * UTF-8 after UTF8) is never looked up nor put in a path. It is answered
	 * like any unknown name, and its PASS fails like a wrong password: same
	 * delay, reply and log line, and nothing tells the two apart.
	 */
	s->user_refused = !utf8_ok(s, a->v[0].p, a->v[0].n) ||
	                  !login_name_valid(a->v[0].p, a->v[0].n);
	session_replyf(s, "+OK send PASS");
	return P3_OK;
}

static void
log_login_failure(struct session *s, const char *mech, uint64_t backoff_ms)
{
	char user[300];

	str_escape(user, sizeof user, s->user != NULL ? s->user : "", s->user_len, 64);
	log_msg(LOG_INFO, "login failed id=%llx ip=%s user=%s mechanism=%s backoff_ms=%llu",
	        (unsigned long long)s->id, s->peer, user, mech, (unsigned long long)backoff_ms);
}

/*
 * Per-address backoff (limits.auth_backoff_*): each failure from the same IPv4
 * address or IPv6 /64 doubles an extra wait before the -ERR, up to the cap,
 * until the address has been quiet for auth_backoff_forget seconds. Applied
 * with the session's timer, never by blocking.
 */
static uint64_t
backoff_ms(struct session *s, uint64_t now, int count_failure)
{
	const struct backoff_cfg *b = &s->cs->cfg->backoff;
	uint64_t forget = (uint64_t)b->forget * 1000;
	struct ipkey k;

	if (b->base_ms == 0 || s->trusted)
		return 0;
	ipkey_for_backoff(&s->peer_key, &k);
	return backoff_delay_ms(b->base_ms, b->max_ms, count_failure ?
	                        daemon_ip_fail(s->d, &k, now, forget) :
	                        daemon_ip_failures(s->d, &k, now, forget));
}

/* A failure: count it, and return the extra wait it earns. */
static uint64_t
backoff_extra(struct session *s, uint64_t now)
{
	return backoff_ms(s, now, 1);
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
	uint64_t now = uv_now(s->d->loop), spent = now - s->auth_started;
	uint64_t extra = backoff_extra(s, now), delay = s->cs->cfg->failure_delay_ms + extra;

	log_login_failure(s, mech, extra);
	if (spent >= delay)
		auth_fail_reply(s);
	else
		uv_timer_start(&s->delay, on_fail_delay, delay - spent, 0);
}

/*
 * Credentials refused before any check (bad UTF-8, a bad APOP name): a
 * failed login like any other, with the same delay, log line and reply, so
 * that fail2ban and the per-address backoff see it and timing tells nothing.
 */
static enum p3_outcome
refuse_attempt(struct session *s, const char *mech)
{
	s->mech = mech;
	s->auth_started = uv_now(s->d->loop);
	s->busy = 1;
	auth_fail(s, mech);
	return P3_BUSY;
}

static void
open_work(uv_work_t *req)
{
	struct open_work *w = req->data;

	w->st = maildrop_open(w->path, &w->md, w->err, sizeof w->err);
	if (w->st != MD_OK || w->login_delay <= 0)
		return;
	/* RFC 2449 §6.5, enforced across processes: the last login lives in the maildir.
	 * A last login in the future (clock stepped back) is not held against the user. */
	if (w->md->last_login > 0 && w->now >= w->md->last_login &&
	    w->now - w->md->last_login < w->login_delay) {
		w->too_soon = 1;
		maildrop_close(w->md);
		w->md = NULL;
		return;
	}
	if (maildrop_record_login(w->md, w->now) != 0)
		snprintf(w->err, sizeof w->err, "cannot record login time: %.200s", w->md->err);
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
		if (w->too_soon) {
			log_msg(LOG_INFO, "login refused id=%llx ip=%s user=%s reason=login-delay",
			        (unsigned long long)s->id, s->peer, user);
			user_forget(s);
			session_replyf(s, "-ERR [LOGIN-DELAY] wait before logging in again");
			break;
		}
		if (w->err[0] != '\0')
			log_msg(LOG_WARN, "maildrop id=%llx user=%s: %s", (unsigned long long)s->id, user,
			        w->err);
		if (w->md->err[0] != '\0') {   /* state in doubt, size cache not written, ... */
			log_msg(LOG_WARN, "maildrop id=%llx user=%s: %s", (unsigned long long)s->id, user,
			        w->md->err);
			w->md->err[0] = '\0';
		}
		s->md = w->md;
		s->state = ST_TRANS;
		s->bad_cmds = 0;
		s->d->stats.logins++;
		log_msg(LOG_INFO, "login id=%llx ip=%s user=%s mechanism=%s messages=%zu octets=%llu",
		        (unsigned long long)s->id, s->peer, user, s->mech != NULL ? s->mech : "-",
		        s->md->n, (unsigned long long)s->md->total);
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
login_open(struct session *s)
{
	const struct user *u = users_find(s->users, s->user, s->user_len);
	char path[4096];
	struct open_work *w;

	if (u == NULL || maildrop_expand(s->cs->cfg->maildrop_path, s->user, u->home,
	                                 path, sizeof path) != 0) {
		char user[300];
		str_escape(user, sizeof user, s->user, s->user_len, 64);
		log_msg(LOG_ERR, "maildrop path for user=%s cannot be built from \"%s\"", user,
		        s->cs->cfg->maildrop_path);
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
	rules_for(s->cs->rules, s->user, s->user_len, &s->rule);
	w->s = s;
	w->login_delay = s->rule.login_delay;
	w->now = (int64_t)time(NULL);
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

/*
 * The backoff holds every answer to an address with recent failures, not only
 * the -ERR: were a right password answered at once, a guesser could drop each
 * attempt after a few milliseconds without +OK and guess at full speed. The
 * hold is what the address's next failure would have waited beyond
 * failure_delay before this one.
 */
static uint64_t
backoff_hold(struct session *s, uint64_t now)
{
	return backoff_ms(s, now, 0);
}

static void
on_hold_done(uv_timer_t *t)
{
	login_open(t->data);
}

/* Credentials are right: open the maildrop once the address's backoff allows. */
static void
login_ok(struct session *s)
{
	uint64_t now = uv_now(s->d->loop), spent = now - s->auth_started;
	uint64_t hold = backoff_hold(s, now);

	if (spent >= hold)
		login_open(s);
	else
		uv_timer_start(&s->delay, on_hold_done, hold - spent, 0);
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
		auth_fail(s, s->mech);
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

/*
 * Check s->user's password: at once when no hashing is involved ({PLAIN}),
 * else on the thread pool; either way on_auth_done follows. s->busy is set.
 */
static void
check_password(struct session *s, const char *pass, size_t plen)
{
	enum auth_result r;
	struct ipkey who;
	long fails;

	if (auth_check_inline(s->users, s->user, s->user_len, pass, plen, &r)) {
		on_auth_done(s, r);
		return;
	}
	/* Turns: an address with a check running, or with recent failures, waits behind others. */
	ipkey_for_backoff(&s->peer_key, &who);
	fails = s->trusted ? 0 : daemon_ip_failures(s->d, &who, uv_now(s->d->loop),
	                                            (uint64_t)s->cs->cfg->backoff.forget * 1000);
	s->auth = auth_check(&s->d->hashq, &who, fails, s->users, s->user, s->user_len, pass,
	                     plen, on_auth_done, s);
	if (s->auth == NULL)
		on_auth_done(s, AUTH_ERROR);
}

enum p3_outcome
cmd_pass(struct session *s, const struct p3_args *a)
{
	/* Before the USER check: USER was refused too, and the client needs the same hint. */
	if (!plaintext_ok(s)) {
		wipe_arg(s, a->v[0]);
		reply_plaintext_refused(s);
		return P3_ERR;
	}
	if (s->user == NULL) {
		wipe_arg(s, a->v[0]);
		session_replyf(s, "-ERR send USER first");
		return P3_ERR;
	}
	if (s->user_refused || !utf8_ok(s, a->v[0].p, a->v[0].n)) {
		wipe_arg(s, a->v[0]);
		return refuse_attempt(s, "USER");
	}
	if (s->users == NULL)
		s->users = users_ref(s->cs->users);
	s->mech = "USER";
	s->auth_started = uv_now(s->d->loop);
	s->busy = 1;
	check_password(s, a->v[0].p, a->v[0].n);
	wipe_arg(s, a->v[0]);
	return P3_BUSY;
}

enum p3_outcome
cmd_apop(struct session *s, const struct p3_args *a)
{
	if (s->timestamp[0] == '\0') {
		session_replyf(s, "-ERR APOP is not offered by this server");
		return P3_ERR;
	}
	if (!login_name_valid(a->v[0].p, a->v[0].n) || !utf8_ok(s, a->v[0].p, a->v[0].n)) {
		(void)user_set(s, a->v[0]);   /* for the log line only (none on ENOMEM) */
		return refuse_attempt(s, "APOP");
	}
	if (user_set(s, a->v[0]) != 0) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	if (s->users == NULL)
		s->users = users_ref(s->cs->users);
	s->mech = "APOP";
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

enum p3_outcome
cmd_stls(struct session *s, const struct p3_args *a)
{
	(void)a;
	if (s->tls_state != TLSS_NONE) {
		session_replyf(s, "-ERR command not permitted when TLS is active");
		return P3_ERR;
	}
	if (!stls_offered(s)) {
		session_replyf(s, "-ERR STLS is not offered on this port");
		return P3_ERR;
	}
	session_replyf(s, "+OK begin TLS negotiation");
	session_start_tls_after_flush(s);
	return P3_BUSY;
}

enum p3_outcome
cmd_utf8(struct session *s, const struct p3_args *a)
{
	(void)a;
	s->utf8 = 1;
	session_replyf(s, "+OK UTF8 enabled");
	return P3_OK;
}

/* End the exchange as a failed authentication (delay, log line, -ERR [AUTH]). */
static void
sasl_fail(struct session *s)
{
	sasl_free(s->sasl);   /* wipes the password */
	s->sasl = NULL;
	s->busy = 1;
	auth_fail(s, s->mech);
}

/*
 * The exchange yielded credentials: take the login name, then log in (SCRAM
 * proved the password) or check the password. Names are UTF-8 already
 * (sasl.c); after UTF8 the password must be too (RFC 6856 §2).
 */
static void
sasl_credentials(struct session *s, enum sasl_result r)
{
	struct slice name;
	const char *pw;
	size_t pwlen;

	name.p = sasl_user(s->sasl, &name.n);
	pw = sasl_password(s->sasl, &pwlen);
	if (!login_name_valid(name.p, name.n) || !utf8_ok(s, name.p, name.n) ||
	    user_set(s, name) != 0) {
		user_forget(s);
		sasl_fail(s);
		return;
	}
	if (r == SASL_CHECK_PASSWORD && !utf8_ok(s, pw, pwlen)) {
		sasl_fail(s);
		return;
	}
	s->busy = 1;
	if (r == SASL_SUCCESS)
		login_ok(s);
	else
		check_password(s, pw, pwlen);
	sasl_free(s->sasl);   /* wipes the password */
	s->sasl = NULL;
}

/* Feed one client line to the SASL exchange and act on the result. */
static void
sasl_feed(struct session *s, const char *p, size_t n)
{
	char out[SASL_LINE_MAX + 1];
	size_t outlen = 0;
	enum sasl_result r;
	struct slice name;

	/* The failure delay runs from the client's last message of the exchange. */
	s->auth_started = uv_now(s->d->loop);
	r = sasl_step(s->sasl, p, n, out, sizeof out, &outlen);

	switch (r) {
	case SASL_CHALLENGE:
		session_write(s, "+ ", 2);
		session_write(s, out, outlen);
		session_write(s, "\r\n", 2);
		return;
	case SASL_CHECK_PASSWORD:
	case SASL_SUCCESS:
		sasl_credentials(s, r);
		return;
	case SASL_FAIL:
	case SASL_BAD:
		name.p = sasl_user(s->sasl, &name.n);
		if (name.p != NULL && name.n > 0)
			(void)user_set(s, name);   /* for the log line only */
		sasl_fail(s);
		return;
	}
}

void
sasl_refuse_line(struct session *s)
{
	sasl_fail(s);   /* an unusable response is a failed authentication */
}

void
sasl_line(struct session *s, struct slice line)
{
	if (line.n == 1 && line.p[0] == '*') {   /* RFC 5034 §4: the client cancels */
		sasl_free(s->sasl);
		s->sasl = NULL;
		session_replyf(s, "-ERR authentication cancelled");
		pop3_count_bad(s);
		return;
	}
	sasl_feed(s, line.p, line.n);
	wipe_arg(s, line);
}

enum p3_outcome
cmd_auth(struct session *s, const struct p3_args *a)
{
	enum sasl_mech m;
	size_t i;

	if (a->n == 0) {   /* RFC 1734 clients ask for the list with a bare AUTH */
		session_replyf(s, "+OK");
		for (i = 0; i < sizeof sasl_all / sizeof sasl_all[0]; i++)
			if (mech_allowed(s, sasl_all[i]))
				session_replyf(s, "%s", sasl_mech_name(sasl_all[i]));
		session_write(s, ".\r\n", 3);
		return P3_OK;
	}
	if (sasl_mech_parse(a->v[0], &m) != 0) {
		session_replyf(s, "-ERR unsupported authentication mechanism");
		return P3_ERR;
	}
	if (!mech_allowed(s, m)) {
		if (a->n == 2)
			wipe_arg(s, a->v[1]);
		if (m == SASL_SCRAM_SHA_256)
			session_replyf(s, "-ERR unsupported authentication mechanism");
		else
			reply_plaintext_refused(s);
		return P3_ERR;
	}
	if (s->users == NULL)
		s->users = users_ref(s->cs->users);
	user_forget(s);
	s->sasl = sasl_new(m, s->users);
	if (s->sasl == NULL) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	s->mech = sasl_mech_name(m);
	s->auth_started = uv_now(s->d->loop);
	if (a->n == 2) {   /* initial response (RFC 5034 §4); "=" is an empty one */
		sasl_feed(s, a->v[1].p, a->v[1].n);
		wipe_arg(s, a->v[1]);
	} else {
		sasl_feed(s, NULL, 0);   /* the mechanism's first challenge */
	}
	/* Response lines may be longer than commands (the slices above are done with). */
	if (s->sasl != NULL && linein_grow(&s->in, INPUT_BUF_SIZE) != 0) {
		sasl_free(s->sasl);
		s->sasl = NULL;
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	return s->busy ? P3_BUSY : P3_OK;
}
