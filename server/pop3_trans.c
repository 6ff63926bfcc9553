/*
 * pop3_trans: TRANSACTION state (STAT LIST UIDL RETR TOP DELE NOOP RSET) and
 * QUIT into UPDATE. Long replies are resumable jobs with one file chunk in
 * flight; nothing is removed except by UPDATE, which only QUIT can reach.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/maildrop.h"
#include "policy/policy.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/pop3_int.h"
#include "server/session.h"

#define LINE_MAX_OUT 128   /* "N SIZE" or "N UIDL" plus CRLF, with room to spare */

/*
 * Parse a message number argument; reply and return -1 when it is not a
 * number, out of range, or (unless allow_deleted) marked deleted.
 */
static int
msg_arg(struct session *s, struct slice a, size_t *idx)
{
	uint32_t n;

	if (parse_u32(a.p, a.n, &n) != 0) {
		session_replyf(s, "-ERR invalid message number");
		return -1;
	}
	if (n == 0 || n > s->md->n) {
		session_replyf(s, "-ERR no such message, only %zu in maildrop", s->md->n);
		return -1;
	}
	if (s->md->msgs[n - 1].flags & MSG_DELE) {
		session_replyf(s, "-ERR message %u already deleted", n);
		return -1;
	}
	*idx = n - 1;
	return 0;
}

static void
maildrop_totals(const struct session *s, size_t *count, uint64_t *octets)
{
	size_t i;

	*count = 0;
	*octets = 0;
	for (i = 0; i < s->md->n; i++) {
		if (s->md->msgs[i].flags & MSG_DELE)
			continue;
		(*count)++;
		*octets += s->md->msgs[i].size;
	}
}

enum p3_outcome
cmd_stat(struct session *s, const struct p3_args *a)
{
	size_t count;
	uint64_t octets;

	(void)a;
	maildrop_totals(s, &count, &octets);
	session_replyf(s, "+OK %zu %llu", count, (unsigned long long)octets);
	return P3_OK;
}

static void
job_done(struct session *s)
{
	job_free(s);
	s->busy = 0;
	session_resume(s);
}

/* LIST/UIDL without argument: emit lines until the output is backed up. */
static void
listing_step(struct session *s)
{
	struct job *j = &s->job;

	while (j->next < s->md->n && session_backlog(s) < OUTPUT_HIGH_WATER) {
		const struct msg *m = &s->md->msgs[j->next++];
		char *out;
		int n;

		if (m->flags & MSG_DELE)
			continue;
		out = session_out_reserve(s, LINE_MAX_OUT);
		if (out == NULL)
			return;
		if (j->kind == JOB_LIST)
			n = snprintf(out, LINE_MAX_OUT, "%zu %llu\r\n", j->next,
			             (unsigned long long)m->size);
		else
			n = snprintf(out, LINE_MAX_OUT, "%zu %s\r\n", j->next, m->uidl);
		session_out_commit(s, (size_t)n);
		if (s->closing)
			return;
	}
	if (j->next >= s->md->n) {
		session_write(s, ".\r\n", 3);
		job_done(s);
	}
}

static enum p3_outcome
listing(struct session *s, const struct p3_args *a, enum job_kind kind)
{
	size_t i, count;
	uint64_t octets;

	if (a->n == 1) {
		if (msg_arg(s, a->v[0], &i) != 0)
			return P3_ERR;
		if (kind == JOB_LIST)
			session_replyf(s, "+OK %zu %llu", i + 1,
			               (unsigned long long)s->md->msgs[i].size);
		else
			session_replyf(s, "+OK %zu %s", i + 1, s->md->msgs[i].uidl);
		return P3_OK;
	}
	maildrop_totals(s, &count, &octets);
	if (kind == JOB_LIST)
		session_replyf(s, "+OK %zu messages (%llu octets)", count,
		               (unsigned long long)octets);
	else
		session_replyf(s, "+OK unique-id listing follows");
	s->job.kind = kind;
	s->job.next = 0;
	s->busy = 1;
	listing_step(s);
	return P3_BUSY;
}

enum p3_outcome
cmd_list(struct session *s, const struct p3_args *a)
{
	return listing(s, a, JOB_LIST);
}

enum p3_outcome
cmd_uidl(struct session *s, const struct p3_args *a)
{
	return listing(s, a, JOB_UIDL);
}

/* --- RETR and TOP: open on the thread pool, then read chunk by chunk --- */

struct msgopen_work {
	uv_work_t       req;
	struct session *s;
	int             fd;        /* or -errno */
};

static void msg_read_next(struct session *s);

static void
msg_abort(struct session *s, const char *why, int err)
{
	struct msg *m = &s->md->msgs[s->job.msg];

	log_msg(LOG_ERR, "message read failed id=%llx file=%s: %s: %s",
	        (unsigned long long)s->id, m->file, why, uv_strerror(err));
	/* The +OK is out and a multi-line reply cannot turn into -ERR: hang up. */
	session_close(s, "message read error");
}

static void
msg_finish(struct session *s)
{
	struct job *j = &s->job;
	struct msg *m = &s->md->msgs[j->msg];
	char tail[ML_FINISH_MAX];
	size_t n = ml_finish(&j->enc, tail);

	session_write(s, tail, n);
	if (j->is_retr) {
		/* What LIST promised: the CRLF form without stuffing, and without the
		 * CRLF ml_finish adds to a file that does not end with a line break. */
		uint64_t crlf = j->wire - j->enc.stuffed;

		if (j->sent != m->disk_size)
			log_msg(LOG_WARN, "message changed size id=%llx file=%s listed=%llu read=%llu",
			        (unsigned long long)s->id, m->file, (unsigned long long)m->disk_size,
			        (unsigned long long)j->sent);
		else if (crlf != m->size)   /* a wrong ,W= in the name, or a stale size cache */
			log_msg(LOG_WARN, "message size differs from LIST id=%llx file=%s listed=%llu "
			        "sent=%llu", (unsigned long long)s->id, m->file,
			        (unsigned long long)m->size, (unsigned long long)crlf);
		m->flags |= MSG_RETR;
		s->retr_count++;
		s->retr_bytes += m->size;
		s->d->stats.retr_msgs++;
		s->d->stats.retr_bytes += m->size;
	}
	job_done(s);
}

static void
on_chunk(uv_fs_t *req)
{
	struct session *s = req->data;
	struct job *j = &s->job;
	ssize_t r = req->result;
	char *out;
	size_t used, n;

	uv_fs_req_cleanup(req);
	j->reading = 0;
	if (s->closing)
		goto out;
	if (r < 0) {
		msg_abort(s, "read", (int)r);
		goto out;
	}
	if (r == 0) {
		msg_finish(s);
		goto out;
	}
	out = session_out_reserve(s, 2 * (size_t)r);
	if (out == NULL)
		goto out;
	n = ml_encode(&j->enc, j->chunk, (size_t)r, out, &used);
	session_out_commit(s, n);
	j->wire += n;
	j->offset += r;
	j->sent += (uint64_t)r;
	if (s->closing)
		goto out;
	if (ml_ended(&j->enc))
		msg_finish(s);
	else if (session_backlog(s) < OUTPUT_HIGH_WATER)
		msg_read_next(s);
	/* else: on_write calls job_step once the client has read enough. */
out:
	session_unref(s);
}

static void
msg_read_next(struct session *s)
{
	struct job *j = &s->job;
	uv_buf_t b = uv_buf_init(j->chunk, FILE_CHUNK);
	int r;

	j->fs.data = s;
	r = uv_fs_read(s->d->loop, &j->fs, j->fd, &b, 1, j->offset, on_chunk);
	if (r != 0) {
		msg_abort(s, "read", r);
		return;
	}
	j->reading = 1;
	session_ref(s);
}

static void
msgopen_work(uv_work_t *req)
{
	struct msgopen_work *w = req->data;
	struct session *s = w->s;

	w->fd = maildrop_msg_open(s->md, s->job.msg);
}

static void
msgopen_done(uv_work_t *req, int status)
{
	struct msgopen_work *w = req->data;
	struct session *s = w->s;
	struct job *j = &s->job;
	struct msg *m;

	(void)status;
	if (s->closing) {
		if (w->fd >= 0)
			j->fd = w->fd;       /* job_free closes it */
		goto out;
	}
	m = &s->md->msgs[j->msg];
	if (w->fd < 0) {
		log_msg(LOG_ERR, "cannot open message id=%llx file=%s: %s",
		        (unsigned long long)s->id, m->file, strerror(-w->fd));
		job_free(s);
		s->busy = 0;
		if (w->fd == -ENOENT)
			session_replyf(s, "-ERR message %zu is no longer in the maildrop", j->msg + 1);
		else
			session_replyf(s, "-ERR [SYS/%s] cannot read message %zu",
			               maildrop_errno_status(-w->fd) == MD_PERM ? "PERM" : "TEMP",
			               j->msg + 1);
		pop3_count_bad(s);
		session_resume(s);
		goto out;
	}
	j->fd = w->fd;
	session_replyf(s, "+OK %llu octets", (unsigned long long)m->size);
	if (!s->closing)
		msg_read_next(s);
out:
	free(w);
	session_unref(s);
}

static enum p3_outcome
msg_start(struct session *s, size_t idx, long top_lines)
{
	struct job *j = &s->job;
	struct msgopen_work *w;

	j->chunk = malloc(FILE_CHUNK);
	w = malloc(sizeof *w);
	if (j->chunk == NULL || w == NULL) {
		free(w);
		job_free(s);
		session_replyf(s, "-ERR [SYS/TEMP] out of memory");
		return P3_ERR;
	}
	j->kind = JOB_MSG;
	j->msg = idx;
	j->is_retr = top_lines < 0;
	j->fd = -1;
	j->offset = 0;
	j->sent = 0;
	j->wire = 0;
	ml_init(&j->enc, top_lines);
	w->s = s;
	w->req.data = w;
	if (uv_queue_work(s->d->loop, &w->req, msgopen_work, msgopen_done) != 0) {
		free(w);
		job_free(s);
		session_replyf(s, "-ERR [SYS/TEMP] cannot read message");
		return P3_ERR;
	}
	session_ref(s);
	s->busy = 1;
	return P3_BUSY;
}

enum p3_outcome
cmd_retr(struct session *s, const struct p3_args *a)
{
	size_t i;

	if (msg_arg(s, a->v[0], &i) != 0)
		return P3_ERR;
	return msg_start(s, i, -1);
}

enum p3_outcome
cmd_top(struct session *s, const struct p3_args *a)
{
	size_t i;
	uint32_t lines;

	if (msg_arg(s, a->v[0], &i) != 0)
		return P3_ERR;
	if (parse_u32(a->v[1].p, a->v[1].n, &lines) != 0) {
		session_replyf(s, "-ERR invalid line count");
		return P3_ERR;
	}
	return msg_start(s, i, (long)lines);
}

void
job_step(struct session *s)
{
	struct job *j = &s->job;

	if (s->closing)
		return;
	if (j->kind == JOB_LIST || j->kind == JOB_UIDL)
		listing_step(s);
	else if (j->kind == JOB_MSG && j->fd >= 0 && !j->reading)
		msg_read_next(s);
}

static void
on_fd_closed(uv_fs_t *req)
{
	uv_fs_req_cleanup(req);
	free(req);
}

void
job_free(struct session *s)
{
	struct job *j = &s->job;

	if (j->reading)
		return;   /* on_chunk holds a reference and comes back here */
	if (j->fd >= 0) {
		uv_fs_t *req = malloc(sizeof *req);
		if (req == NULL || uv_fs_close(s->d->loop, req, j->fd, on_fd_closed) != 0) {
			free(req);
			close(j->fd);
		}
	}
	free(j->chunk);
	memset(j, 0, sizeof *j);
	j->fd = -1;
}

enum p3_outcome
cmd_dele(struct session *s, const struct p3_args *a)
{
	size_t i;

	if (msg_arg(s, a->v[0], &i) != 0)
		return P3_ERR;
	s->md->msgs[i].flags |= MSG_DELE;
	s->dele_count++;
	session_replyf(s, "+OK message %zu deleted", i + 1);
	return P3_OK;
}

enum p3_outcome
cmd_noop(struct session *s, const struct p3_args *a)
{
	(void)a;
	session_replyf(s, "+OK");
	return P3_OK;
}

enum p3_outcome
cmd_rset(struct session *s, const struct p3_args *a)
{
	size_t i, count;
	uint64_t octets;

	(void)a;
	for (i = 0; i < s->md->n; i++)
		s->md->msgs[i].flags &= ~MSG_DELE;
	s->dele_count = 0;
	maildrop_totals(s, &count, &octets);
	session_replyf(s, "+OK maildrop has %zu messages (%llu octets)", count,
	               (unsigned long long)octets);
	return P3_OK;
}

/* --- UPDATE --- */

struct update_work {
	uv_work_t               req;
	struct session         *s;
	int                     rc;
	struct md_update_result res;
};

static void
update_work(uv_work_t *req)
{
	struct update_work *w = req->data;

	w->rc = maildrop_update(w->s->md, &w->res);
	maildrop_unlock(w->s->md);   /* before the +OK: the client may log in again at once */
}

/*
 * One line per message UPDATE keeps only because something is in doubt (a
 * download under "delete" whose state file could not be read, or whose record
 * is impossible): the admin must be able to see why mail stayed. At most
 * DOUBT_LOG_MAX per session: a broken state file must not flood the log (the
 * rest are counted in the update line).
 */
static void
log_doubt(void *arg, const struct msg *m, const char *why)
{
	struct session *s = arg;
	char user[300];

	if (s->doubt_logged++ >= DOUBT_LOG_MAX)
		return;
	str_escape(user, sizeof user, s->user, s->user_len, 64);
	log_msg(LOG_WARN, "update kept id=%llx user=%s uidl=%s reason=\"%s\"",
	        (unsigned long long)s->id, user, m->uidl, why);
}

/* One line per message UPDATE chose to remove (issue: user, UIDL, cause, age). */
static void
log_removals(struct session *s)
{
	int64_t now = (int64_t)time(NULL);
	char user[300];
	size_t i;

	str_escape(user, sizeof user, s->user, s->user_len, 64);
	for (i = 0; i < s->md->n; i++) {
		const struct msg *m = &s->md->msgs[i];
		if (!(m->flags & MSG_REMOVE))
			continue;
		if (m->flags & MSG_DELE) {
			s->d->stats.deleted_dele++;
		} else {
			s->d->stats.deleted_download++;
			s->removed_policy++;
		}
		log_msg(LOG_INFO, "remove id=%llx user=%s uidl=%s cause=%s age_days=%lld size=%llu",
		        (unsigned long long)s->id, user, m->uidl,
		        (m->flags & MSG_DELE) ? "dele" : "download",
		        (long long)(now > m->mtime ? (now - m->mtime) / 86400 : 0),
		        (unsigned long long)m->size);
	}
}

static void
update_done(uv_work_t *req, int status)
{
	struct update_work *w = req->data;
	struct session *s = w->s;
	char user[300];

	(void)status;
	if (w->rc >= 0)
		log_removals(s);
	s->removed = w->res.removed;
	s->d->stats.deleted += w->res.removed;
	str_escape(user, sizeof user, s->user, s->user_len, 64);
	log_msg(w->rc == 0 ? LOG_INFO : LOG_ERR,
	        "update id=%llx user=%s removed=%zu failed=%zu seen=%zu kept_doubt=%zu%s%s",
	        (unsigned long long)s->id, user, w->res.removed, w->res.failed, w->res.seen,
	        s->doubt_logged,
	        w->res.state_failed ? " state=not-recorded" : "", w->rc < 0 ? " refused=yes" : "");
	if (s->md->err[0] != '\0')   /* why a removal, a move or the state write failed */
		log_msg(LOG_ERR, "update problem id=%llx user=%s: %s", (unsigned long long)s->id, user,
		        s->md->err);
	if (!s->closing) {
		s->busy = 0;
		if (w->rc == 0)
			session_replyf(s, "+OK bye, %zu message%s removed", w->res.removed,
			               w->res.removed == 1 ? "" : "s");
		else if (w->rc > 0 && w->res.failed > 0)   /* PERM: no retry will help (EACCES) */
			session_replyf(s, "-ERR [SYS/%s] %zu message%s could not be removed",
			               w->res.failed_perm == w->res.failed ? "PERM" : "TEMP",
			               w->res.failed, w->res.failed == 1 ? "" : "s");
		else if (w->rc > 0)   /* the promise of a first download was not recorded */
			session_replyf(s, "-ERR [SYS/TEMP] download state could not be recorded; "
			               "messages are kept");
		else
			session_replyf(s, "-ERR [SYS/TEMP] update refused; nothing was removed");
		session_close_after_flush(s, "quit");
	}
	free(w);
	session_unref(s);
}

/* Whether UPDATE has anything to write, remove or move (else it only releases the lock). */
static int
update_has_work(const struct maildrop *md)
{
	size_t i;

	for (i = 0; i < md->n; i++)
		if (md->msgs[i].flags & (MSG_RETR | MSG_DELE | MSG_REMOVE))
			return 1;
	return 0;
}

enum p3_outcome
trans_quit(struct session *s)
{
	struct update_work *w;

	if (s->state != ST_TRANS || s->md == NULL) {   /* the dispatcher gates this */
		session_replyf(s, "-ERR not in TRANSACTION state");
		return P3_ERR;
	}
	s->quit_seen = 1;
	s->state = ST_UPDATE;
	maildrop_quit(s->md);
	s->doubt_logged = 0;
	policy_mark_update(s->md, &s->rule, (int64_t)time(NULL), log_doubt, s);
	w = calloc(1, sizeof *w);
	if (w == NULL) {
		session_replyf(s, "-ERR [SYS/TEMP] out of memory; nothing was removed");
		return P3_CLOSE;
	}
	w->s = s;
	w->req.data = w;
	session_ref(s);
	s->busy = 1;
	if (!update_has_work(s->md)) {
		/* Nothing retrieved or deleted: no file operation but closing the lock, so no
		 * thread-pool round trip (the login benchmark's common case). */
		update_work(&w->req);
		update_done(&w->req, 0);
		return P3_BUSY;
	}
	if (uv_queue_work(s->d->loop, &w->req, update_work, update_done) != 0) {
		session_unref(s);
		s->busy = 0;
		free(w);
		session_replyf(s, "-ERR [SYS/TEMP] update failed; nothing was removed");
		return P3_CLOSE;
	}
	/* From here on a shutdown lets it finish; the line shows when it began (slow storage). */
	log_msg(LOG_DEBUG, "update start id=%llx", (unsigned long long)s->id);
	return P3_BUSY;
}
