/*
 * expire: drives one expiry sweep over the users' maildrops and reports it (the decision is
 * retention.c's, each removal maildrop_sweep_remove's). Never waits for a session's lock.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "maildrop/maildrop.h"
#include "policy/expire.h"
#include "policy/policy.h"
#include "policy/retention.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/strutil.h"

#define DAY ((int64_t)86400)
#define LINE_MAX_ 8192    /* a JSON line with a 255-octet login and a reason, escaped */
#define LOG_CAP   64      /* untrusted strings in log lines (house style) */
#define OUT_CAP   255     /* on the command line: a whole login name */
#define ESC_SIZE  (4 * OUT_CAP + 8)
#define JSON_SIZE (6 * OUT_CAP + 8)
/*
 * Removals per hold of the maildrop lock. A login waits LOCK_RETRY_MS (250
 * ms) for it; a few hundred unlinks, a state write and two directory fsyncs
 * take a few milliseconds on a local disk, so a login arriving during a
 * large first sweep (unread_days switched on over an old maildrop) gets in
 * between two batches instead of [IN-USE].
 */
#define SWEEP_BATCH 256

/* One report line: to o->out, or to the log at lvl. */
static void emit(const struct expire_opts *o, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
emit(const struct expire_opts *o, enum log_level lvl, const char *fmt, ...)
{
	char line[LINE_MAX_];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (o->out != NULL) {
		fputs(line, o->out);
		fputc('\n', o->out);
	} else {
		log_msg(lvl, "%s", line);
	}
}

/* Text form: escaped (and capped) for a key=value line. */
static const char *
txt(const struct expire_opts *o, char *buf, const char *s)
{
	str_escape(buf, ESC_SIZE, s, strlen(s), o->out != NULL ? OUT_CAP : LOG_CAP);
	return buf;
}

/* Length of a valid UTF-8 sequence at p (at most n octets), or 0. */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	size_t k, i;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		k = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		k = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		k = 4, c = p[0] & 0x07;
	else
		return 0;
	if (k > n)
		return 0;
	for (i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((k == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (k == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return k;
}

/*
 * A JSON string (with its quotes) of at most OUT_CAP input octets: '"', '\\'
 * and control characters escaped, valid UTF-8 as is, any other octet as
 * \u00XX so that the line is always valid JSON.
 */
static const char *
js(char *buf, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, pos = 0, k;

	if (n > OUT_CAP)
		n = OUT_CAP;
	buf[pos++] = '"';
	while (i < n) {
		k = utf8_len(p + i, n - i);
		if (p[i] == '"' || p[i] == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)p[i];
		} else if (k == 1 && p[i] >= 0x20 && p[i] != 0x7f) {
			buf[pos++] = (char)p[i];
		} else if (k > 1) {
			memcpy(buf + pos, p + i, k);
			pos += k;
			i += k;
			continue;
		} else {
			pos += (size_t)snprintf(buf + pos, JSON_SIZE - pos, "\\u%04x", p[i]);
		}
		i++;
	}
	buf[pos++] = '"';
	buf[pos] = '\0';
	return buf;
}

static int64_t
days_since(int64_t then, int64_t now)
{
	return then >= 0 && now >= then ? (now - then) / DAY : 0;
}

/* One line for a message removed (or that would be). */
static void
report_msg(const struct expire_opts *o, const char *user, const struct msg *m, enum cause c,
           int had_record)
{
	char u[JSON_SIZE], id[JSON_SIZE], dl[48] = "";
	const char *ev = o->dry_run ? "would_remove" : "removed";

	if (o->json) {
		if (had_record)
			snprintf(dl, sizeof dl, ",\"downloaded_days\":%" PRId64,
			    days_since(m->first_download, o->now));
		emit(o, LOG_INFO, "{\"event\":\"%s\",\"user\":%s,\"uidl\":%s,\"cause\":\"%s\","
		    "\"age_days\":%" PRId64 "%s,\"size\":%" PRIu64 "}",
		    ev, js(u, user), js(id, m->uidl), cause_name(c), days_since(m->mtime, o->now),
		    dl, m->disk_size);
		return;
	}
	if (had_record)
		snprintf(dl, sizeof dl, " downloaded_days=%" PRId64, days_since(m->first_download, o->now));
	emit(o, LOG_INFO, "expire %s user=%s uidl=%s cause=%s age_days=%" PRId64 "%s size=%" PRIu64,
	    ev, txt(o, u, user), txt(o, id, m->uidl), cause_name(c), days_since(m->mtime, o->now),
	    dl, m->disk_size);
}

/* "skipped" / "failed" / "note" about one user, with a reason. */
static void
report_user_event(const struct expire_opts *o, enum log_level lvl, const char *ev,
                  const char *user, const char *reason)
{
	char u[JSON_SIZE], r[JSON_SIZE], rr[ESC_SIZE];

	if (o->json) {
		emit(o, lvl, "{\"event\":\"%s\",\"user\":%s,\"reason\":%s}", ev, js(u, user), js(r, reason));
		return;
	}
	/* Quoted below when it has a space, so its spaces stay readable. */
	str_escape_quoted(rr, sizeof rr, reason, strlen(reason), OUT_CAP);
	emit(o, lvl, "expire %s user=%s reason=%s%s%s", ev, txt(o, u, user),
	    strchr(rr, ' ') != NULL ? "\"" : "", rr, strchr(rr, ' ') != NULL ? "\"" : "");
}

struct user_sum {
	size_t      messages, removed, would_remove, failed, kept_doubt;
	uint64_t    bytes;
	const char *doubt;     /* the first reason a message was kept in doubt */
};

static void
report_user(const struct expire_opts *o, const char *user, const struct user_sum *s)
{
	char u[JSON_SIZE], r[JSON_SIZE];
	enum log_level lvl;

	lvl = s->removed + s->would_remove + s->failed + s->kept_doubt > 0 ? LOG_INFO : LOG_DEBUG;
	if (o->json) {
		emit(o, lvl, "{\"event\":\"user\",\"user\":%s,\"messages\":%zu,\"removed\":%zu,"
		    "\"would_remove\":%zu,\"failed\":%zu,\"kept_doubt\":%zu,\"bytes\":%" PRIu64
		    ",\"doubt\":%s}", js(u, user), s->messages, s->removed, s->would_remove, s->failed,
		    s->kept_doubt, s->bytes, s->doubt != NULL ? js(r, s->doubt) : "null");
		return;
	}
	emit(o, lvl, "expire user=%s messages=%zu removed=%zu would_remove=%zu failed=%zu "
	    "kept_doubt=%zu bytes=%" PRIu64 "%s%s%s", txt(o, u, user), s->messages, s->removed,
	    s->would_remove, s->failed, s->kept_doubt, s->bytes,
	    s->doubt != NULL ? " doubt=\"" : "", s->doubt != NULL ? s->doubt : "",
	    s->doubt != NULL ? "\"" : "");
}

static void
report_totals(const struct expire_opts *o, const struct expire_totals *t)
{
	if (o->json) {
		emit(o, LOG_INFO, "{\"event\":\"summary\",\"now\":%" PRId64 ",\"dry_run\":%s,"
		    "\"users\":%zu,\"skipped_locked\":%zu,\"failed\":%zu,\"removed\":%zu,"
		    "\"would_remove\":%zu,\"kept_doubt\":%zu,\"bytes\":%" PRIu64 "}",
		    o->now, o->dry_run ? "true" : "false", t->users, t->skipped_locked, t->failed,
		    t->removed, t->would_remove, t->kept_doubt, t->bytes);
		return;
	}
	emit(o, LOG_INFO, "expire done now=%" PRId64 " dry_run=%s users=%zu skipped_locked=%zu "
	    "failed=%zu removed=%zu would_remove=%zu kept_doubt=%zu bytes=%" PRIu64,
	    o->now, o->dry_run ? "yes" : "no", t->users, t->skipped_locked, t->failed, t->removed,
	    t->would_remove, t->kept_doubt, t->bytes);
}

/* One line for a message kept because something was in doubt. */
static void
report_doubt(const struct expire_opts *o, const char *user, const struct msg *m, const char *why)
{
	char u[JSON_SIZE], id[JSON_SIZE];

	if (o->json) {
		emit(o, LOG_INFO, "{\"event\":\"kept\",\"user\":%s,\"uidl\":%s,\"reason\":\"%s\"}",
		    js(u, user), js(id, m->uidl), why);
		return;
	}
	emit(o, LOG_INFO, "expire kept user=%s uidl=%s reason=\"%s\"", txt(o, u, user),
	    txt(o, id, m->uidl), why);
}

/*
 * Messages kept only because something was in doubt: one line each (user,
 * UIDL, reason) for the first DOUBT_LOG_MAX, then only the count in the
 * user's summary, so that a broken state file cannot flood the log.
 */
static void
count_doubt(const struct expire_opts *o, const char *user, const struct maildrop *md,
            const struct rule *r, const unsigned char *went, struct user_sum *s)
{
	struct msg_meta m;
	const char *why;
	size_t i;

	for (i = 0; i < md->n; i++) {
		if (went[i])
			continue;
		policy_sweep_meta(md, i, &m);
		why = NULL;
		if (retention_decide(r, &m, o->now, AT_SWEEP, NULL, &why) == KEEP && why != NULL) {
			if (s->kept_doubt < DOUBT_LOG_MAX)
				report_doubt(o, user, &md->msgs[i], why);
			s->kept_doubt++;
			if (s->doubt == NULL)
				s->doubt = why;
		}
	}
}

/*
 * What the last scan or claim noted about the maildrop (the state in doubt,
 * or unreadable, a listing cut short): reported once, as a "note", or as a
 * "failed" when the state could not be read at all (not this sweep's fault,
 * but its job is not done: the caller must hear of it). md->err is cleared;
 * seen holds the last note so that a claim reading the same doubt again does
 * not repeat it. Returns -1 for a failure, else 0.
 */
static int
report_notes(const struct expire_opts *o, const struct user *u, struct maildrop *md,
             char *seen)
{
	int rc = 0;

	if (md->state_unread)
		rc = -1;
	if (md->err[0] != '\0' && strcmp(md->err, seen) != 0)
		report_user_event(o, md->state_unread ? LOG_ERR : md->state_ok ? LOG_WARN : LOG_ERR,
		    md->state_unread ? "failed" : "note", u->name, md->err);
	memcpy(seen, md->err, sizeof md->err);
	md->err[0] = '\0';
	return rc;
}

/*
 * Flag the next batch of candidates (cand[from..to)) and clear every other
 * flag: one lock hold removes at most SWEEP_BATCH messages.
 */
static void
flag_batch(struct maildrop *md, const size_t *cand, size_t from, size_t to)
{
	size_t i;

	for (i = 0; i < md->n; i++)
		md->msgs[i].flags &= ~MSG_REMOVE;
	for (i = from; i < to; i++)
		md->msgs[cand[i]].flags |= MSG_REMOVE;
}

/*
 * One batch under the lock (a dry run only asks whether it is held):
 * decide again on what is there now, remove, and set went[] for what went
 * (or would go) and had[] for whether it had a download record. 0 done,
 * 1 in use, -1 failed (reported).
 */
static int
sweep_batch(struct maildrop *md, const struct rule *r, const struct user *u,
            const struct expire_opts *o, int first, enum cause *causes, unsigned char *went,
            unsigned char *had, char *seen_note, struct user_sum *s)
{
	struct md_update_result res;
	char err[256] = "";
	enum md_status st;
	size_t i;
	int k, rc = 0;

	st = maildrop_sweep_claim(md, o->dry_run, err, sizeof err);
	if (st == MD_INUSE)
		return 1;
	if (st != MD_OK) {
		report_user_event(o, LOG_ERR, "failed", u->name, err[0] != '\0' ? err : "cannot lock");
		return -1;
	}
	rc = report_notes(o, u, md, seen_note);
	policy_recheck_sweep(md, r, o->now, causes);
	for (i = 0; i < md->n; i++)   /* this batch only: earlier ones' records are gone */
		if (md->msgs[i].flags & MSG_REMOVE)
			had[i] = (unsigned char)md->msgs[i].has_record;
	if (!o->dry_run) {
		if (first)
			maildrop_sweep_tidy(md);
		md->err[0] = '\0';
		k = maildrop_sweep_remove(md, &res);
		s->failed += res.failed;
		for (i = 0; k < 0 && i < md->n; i++) {
			/* Refused: nothing went. */
			s->failed += (md->msgs[i].flags & MSG_REMOVE) != 0;
			md->msgs[i].flags &= ~MSG_REMOVE;
		}
		if (k != 0) {
			rc = -1;
			report_user_event(o, LOG_ERR, "failed", u->name,
			    md->err[0] != '\0' ? md->err : "removal failed");
		}
	}
	maildrop_unlock(md);
	/* After maildrop_sweep_remove, MSG_REMOVE marks exactly what went. */
	for (i = 0; i < md->n; i++)
		if (md->msgs[i].flags & MSG_REMOVE)
			went[i] = 1;
	return rc;
}

/*
 * Sweep one user. 0 swept, 1 skipped (in use), -1 failed (reported).
 *
 * The scan and the first decision run without the maildrop lock, which a
 * login waits for only LOCK_RETRY_MS: a sweep of a 100k-message maildrop
 * scans for far longer than that and would turn logins away with [IN-USE].
 * The lock is taken only to remove, SWEEP_BATCH messages at a time, and
 * under it the state and each candidate are looked at again, so that
 * anything a session changed meanwhile (a first download recorded, a rename)
 * is decided on afresh and only what is still due goes.
 */
static int
sweep_user(const struct config *cfg, const struct rules *rules, const struct user *u,
           const struct expire_opts *o_in, struct expire_totals *t)
{
	struct expire_opts uo = *o_in, *o = &uo;   /* this user's clock: see live_clock */
	struct user_sum s = { 0, 0, 0, 0, 0, 0, NULL };
	struct maildrop *md = NULL;
	enum cause *causes = NULL;
	unsigned char *had = NULL;   /* has_record before the removal dropped it */
	unsigned char *went = NULL;  /* removed, or would be in a dry run */
	size_t *cand = NULL, ncand = 0, from, to;
	char path[PATH_MAX], err[256], seen_note[sizeof md->err];
	enum md_status st;
	struct rule r;
	size_t i;
	int rc = 0, k;

	if (maildrop_expand(cfg->maildrop_path, u->name, u->home, path, sizeof path) < 0) {
		report_user_event(o, LOG_ERR, "failed", u->name, "maildrop path does not expand");
		return -1;
	}
	err[0] = '\0';
	if (o->live_clock)
		o->now = (int64_t)time(NULL);
	st = maildrop_scan_sweep(path, &md, err, sizeof err);
	if (st != MD_OK) {
		report_user_event(o, LOG_ERR, "failed", u->name, err[0] != '\0' ? err : "cannot open");
		return -1;
	}
	s.messages = md->n;
	seen_note[0] = '\0';
	rc = report_notes(o, u, md, seen_note);
	causes = calloc(md->n ? md->n : 1, sizeof *causes);
	had = calloc(md->n ? md->n : 1, 1);
	went = calloc(md->n ? md->n : 1, 1);
	cand = calloc(md->n ? md->n : 1, sizeof *cand);
	if (causes == NULL || had == NULL || went == NULL || cand == NULL) {
		report_user_event(o, LOG_ERR, "failed", u->name, "out of memory");
		rc = -1;
		goto out;
	}
	rules_for(rules, u->name, strlen(u->name), &r);
	policy_mark_sweep(md, &r, o->now, causes);
	for (i = 0; i < md->n; i++)
		if (md->msgs[i].flags & MSG_REMOVE)
			cand[ncand++] = i;
	/*
	 * At least one claim, even with nothing due: it tidies tmp/ and finds a
	 * maildrop in use. None when the state could not be read at all: nothing
	 * of this user goes this time (reported as failed above), and the doubts
	 * counted are the ones this sweep decided on.
	 */
	from = 0;
	do {
		if (md->state_unread)
			break;
		to = ncand - from > SWEEP_BATCH ? from + SWEEP_BATCH : ncand;
		flag_batch(md, cand, from, to);
		if (o->live_clock && (int64_t)time(NULL) > o->now)
			o->now = (int64_t)time(NULL);   /* decided again under the lock, as of now */
		k = sweep_batch(md, &r, u, o, from == 0, causes, went, had, seen_note, &s);
		if (k == 1 && from == 0) {
			report_user_event(o, LOG_INFO, "skipped", u->name, "in-use");
			rc = 1;
			goto out;
		}
		if (k == 1)   /* a session came in between two batches: the rest waits */
			report_user_event(o, LOG_INFO, "skipped", u->name, "in-use");
		if (k != 0) {
			rc = rc < 0 ? rc : k;
			break;
		}
		from = to;
	} while (from < ncand);
	t->users++;
	for (i = 0; i < md->n; i++) {
		const struct msg *m = &md->msgs[i];

		if (!went[i])
			continue;
		report_msg(o, u->name, m, causes[i], had[i]);
		if (o->dry_run)
			s.would_remove++;
		else
			s.removed++;
		s.bytes += m->disk_size;
	}
	count_doubt(o, u->name, md, &r, went, &s);
	report_user(o, u->name, &s);
	t->removed += s.removed;
	t->would_remove += s.would_remove;
	t->kept_doubt += s.kept_doubt;
	t->bytes += s.bytes;
out:
	free(causes);
	free(had);
	free(went);
	free(cand);
	maildrop_close(md);
	return rc;
}

int
expire_sweep(const struct config *cfg, const struct users *users, const struct rules *rules,
             const struct expire_opts *o, struct expire_totals *t)
{
	const struct user *one;
	size_t i;
	int r;

	memset(t, 0, sizeof *t);
	if (cfg == NULL || users == NULL || rules == NULL || o == NULL) {
		if (o != NULL)
			emit(o, LOG_ERR, "expire: no configuration, users or rules");
		return -1;
	}
	if (o->user != NULL) {
		one = users_find(users, o->user, strlen(o->user));
		if (one == NULL) {
			char u[JSON_SIZE];

			if (o->json)
				emit(o, LOG_ERR, "{\"event\":\"error\",\"user\":%s,\"reason\":\"unknown user\"}",
				    js(u, o->user));
			else
				emit(o, LOG_ERR, "expire: unknown user %s", txt(o, u, o->user));
			return -1;
		}
		r = sweep_user(cfg, rules, one, o, t);
		t->skipped_locked += r == 1;
		t->failed += r < 0;
	} else {
		for (i = 0; i < users->n; i++) {
			r = sweep_user(cfg, rules, &users->v[i], o, t);
			t->skipped_locked += r == 1;
			t->failed += r < 0;
		}
	}
	report_totals(o, t);
	return t->failed > 0 ? 1 : 0;
}

/* ---- expire_parse_at ---- */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Exactly n digits at p, as a number. */
static int
digits(const char *p, size_t n, uint32_t *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return -1;
	return parse_u32(p, n, out);
}

int
expire_parse_at(const char *s, int64_t now, int64_t *out)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	uint32_t y, mo, d, h = 0, mi = 0, se = 0, n;
	size_t len;
	int64_t step;

	if (s == NULL || out == NULL)
		return -1;
	len = strlen(s);
	if (len >= 3 && s[0] == '+') {
		step = s[len - 1] == 'd' ? DAY : s[len - 1] == 'h' ? 3600 : 0;
		if (step == 0 || len - 2 > 9 || (len > 3 && s[1] == '0') || digits(s + 1, len - 2, &n) < 0)
			return -1;
		if (now < 0 || (int64_t)n * step > INT64_MAX - now)
			return -1;
		*out = now + (int64_t)n * step;
		return 0;
	}
	if (len != 10 && len != 20)
		return -1;
	if (digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &mo) < 0 || s[7] != '-' ||
	    digits(s + 8, 2, &d) < 0)
		return -1;
	if (len == 20 && (s[10] != 'T' || digits(s + 11, 2, &h) < 0 || s[13] != ':' ||
	    digits(s + 14, 2, &mi) < 0 || s[16] != ':' || digits(s + 17, 2, &se) < 0 || s[19] != 'Z'))
		return -1;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
		return -1;
	if (d > mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
		return -1;
	*out = days_from_civil(y, mo, d) * DAY + (int64_t)h * 3600 + (int64_t)mi * 60 + se;
	return 0;
}
