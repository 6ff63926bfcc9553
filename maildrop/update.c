/*
 * update: UPDATE (RFC 1939 §6) and the expiry removal: records first downloads, unlinks exactly
 * MSG_REMOVE, marks retrieved mail seen. Acts only when armed by maildrop_quit or claimed by
 * maildrop_sweep_claim; keeps a message whenever in doubt.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/maildrop.h"
#include "maildrop/state.h"

static void
note(struct maildrop *md, const char *what, const char *file, int e)
{
	char eb[128];

	snprintf(md->err, sizeof md->err, "%s %s/%s: %s", what, md->path, file,
	    strerror_r(e, eb, sizeof eb));
}

static int
root_path(const struct maildrop *md, const char *file, char *out, size_t outlen)
{
	int k = snprintf(out, outlen, "%s/%s", md->path, file);

	return k < 0 || (size_t)k >= outlen ? -1 : 0;
}

/* Find msgs[i] again after ENOENT. 1 found (file updated), 0 gone, -1 error (noted). */
static int
refind(struct maildrop *md, size_t i)
{
	int fd = maildrop_msg_open(md, i);

	if (fd >= 0) {
		close(fd);
		return 1;
	}
	if (fd == -ENOENT)
		return 0;
	note(md, "finding", md->msgs[i].file, -fd);
	return -1;
}

/*
 * 1 removed (or already gone), 0 kept (failed; a cause that will recur counts
 * in r->failed_perm), 2 a sweep's candidate no longer under its name: left
 * alone. A session follows a rename (the client said DELE to that message); a
 * sweep does not, since what it decided on was the file under that name, and
 * a renamed file (a flag set over IMAP) is decided afresh by the next sweep.
 */
static int
remove_msg(struct maildrop *md, size_t i, struct md_update_result *r)
{
	char path[PATH_MAX];
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (root_path(md, md->msgs[i].file, path, sizeof path) < 0) {
			note(md, "unlink", md->msgs[i].file, ENAMETOOLONG);
			return 0;
		}
		if (unlink(path) == 0)
			return 1;
		if (errno != ENOENT) {
			if (maildrop_errno_status(errno) == MD_PERM)
				r->failed_perm++;
			note(md, "unlink", md->msgs[i].file, errno);
			return 0;
		}
		if (md->sweep)
			return 2;
		switch (refind(md, i)) {
		case 0:
			return 1;
		case -1:
			return 0;
		}
	}
	/* Renamed again while we worked: it is still there, so it was not removed. */
	note(md, "unlink", md->msgs[i].file, EBUSY);
	return 0;
}

/*
 * The cur/ name with the S flag for file ("new/NAME" or "cur/NAME"): BASE
 * ":2," and the old flags plus 'S', in ASCII order. Returns 1 with the name
 * in out, 0 when file is already seen in cur/, -1 when the name is not one
 * we understand (then it is left alone).
 */
static int
seen_name(const char *file, char *out, size_t outlen)
{
	const char *name = file + 4, *colon, *f = "";
	unsigned char set[128];
	size_t baselen, pos, c;
	int k;

	memset(set, 0, sizeof set);
	colon = strchr(name, ':');
	baselen = colon != NULL ? (size_t)(colon - name) : strlen(name);
	if (colon != NULL) {
		if (colon[1] != '2' || colon[2] != ',')
			return -1;   /* experimental or unknown info: keep */
		f = colon + 3;
	}
	for (; *f != '\0'; f++) {
		c = (unsigned char)*f;
		if (c < 0x21 || c > 0x7e || c == '/' || c == ',')
			return -1;
		set[c] = 1;
	}
	if (set['S'] && strncmp(file, "cur/", 4) == 0)
		return 0;
	set['S'] = 1;
	k = snprintf(out, outlen, "cur/%.*s:2,", (int)baselen, name);
	if (k < 0 || (size_t)k >= outlen)
		return -1;
	pos = (size_t)k;
	for (c = 0x21; c < 0x7f; c++) {
		if (!set[c])
			continue;
		if (pos + 1 >= outlen)
			return -1;
		out[pos++] = (char)c;
	}
	out[pos] = '\0';
	if (pos - 4 > NAME_MAX)
		return -1;
	return 1;
}

/* rename without replacing what is at the target. 0 or an errno value. */
static int
rename_noreplace(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return errno;
	/* The file system cannot do it atomically: check, then rename. */
	if (lstat(to, &st) == 0)
		return EEXIST;
	if (errno != ENOENT)
		return errno;
	return rename(from, to) == 0 ? 0 : errno;
}

/* 1 moved, 0 not (already seen, gone, or a failure noted in md->err). */
static int
mark_seen(struct maildrop *md, size_t i)
{
	char from[PATH_MAX], to[PATH_MAX], target[NAME_MAX + 8];
	char *copy;
	int tries, r, e;

	for (tries = 0; tries < 2; tries++) {
		r = seen_name(md->msgs[i].file, target, sizeof target);
		if (r <= 0)
			return 0;
		if (root_path(md, md->msgs[i].file, from, sizeof from) < 0 ||
		    root_path(md, target, to, sizeof to) < 0) {
			note(md, "rename", md->msgs[i].file, ENAMETOOLONG);
			return 0;
		}
		e = rename_noreplace(from, to);
		if (e == 0) {
			copy = strdup(target);
			if (copy != NULL) {
				free(md->msgs[i].file);
				md->msgs[i].file = copy;
			}
			return 1;
		}
		if (e != ENOENT) {
			note(md, "rename", md->msgs[i].file, e);
			return 0;
		}
		if (refind(md, i) <= 0)
			return 0;
	}
	return 0;
}

static void
fsync_sub(struct maildrop *md, const char *sub)
{
	char path[PATH_MAX];
	int fd;

	if (root_path(md, sub, path, sizeof path) < 0)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		note(md, "fsync", sub, errno);
	if (fd >= 0)
		close(fd);
}

void
maildrop_quit(struct maildrop *md)
{
	if (md != NULL)
		md->quit_seen = 1;
}

/* A first download: sent whole in this session and never recorded before. */
static int
first_download(const struct msg *m)
{
	return (m->flags & MSG_RETR) && !m->has_record;
}

/*
 * Before any unlink: record first downloads, also of messages about to go, and
 * keep the records of those: if we die between this write and an unlink, the
 * survivor still has its record and promise (0 under retention = delete), so
 * the next sweep decides it as downloaded instead of keeping it in doubt.
 * Records of removed messages drop out at the next write. 0 when the state is
 * written (or nothing changes), -1 when it could not be (md->err says why; the
 * records in memory are as before).
 */
static int
update_state(struct maildrop *md)
{
	int64_t now = md->now > 0 ? md->now : (int64_t)time(NULL);
	int32_t days = md->promise_days >= -1 ? md->promise_days : -1;
	unsigned char *was;
	size_t i, changes = 0;
	int rc;

	for (i = 0; i < md->n; i++)
		changes += first_download(&md->msgs[i]);
	if (changes == 0)
		return 0;
	was = malloc(md->n);
	if (was == NULL) {
		snprintf(md->err, sizeof md->err, "writing state for %s: out of memory", md->path);
		return -1;
	}
	for (i = 0; i < md->n; i++) {
		struct msg *m = &md->msgs[i];

		was[i] = (unsigned char)m->has_record;
		if (first_download(m)) {
			m->has_record = 1;
			m->first_download = now;
			m->promised_days = days;
		}
	}
	rc = md_state_write(md);
	if (rc < 0)
		for (i = 0; i < md->n; i++)
			md->msgs[i].has_record = was[i];
	free(was);
	return rc;
}

int
maildrop_update(struct maildrop *md, struct md_update_result *res)
{
	struct md_update_result r = { 0, 0, 0, 0, 0 };
	size_t i;
	int state_ok;

	if (res != NULL)
		*res = r;
	/* Checked here, not by callers: no cleanup path can reach the unlinks. */
	if (md == NULL || md->sweep || !md->quit_seen || md->lock_fd < 0)
		return -1;
	state_ok = update_state(md) == 0;
	for (i = 0; i < md->n; i++) {
		unsigned fl = md->msgs[i].flags;

		if (fl & MSG_REMOVE) {
			/* Without the state written, only what the client asked for goes. */
			if ((!state_ok && !(fl & MSG_DELE)) || !remove_msg(md, i, &r)) {
				r.failed++;
				md->msgs[i].flags &= ~MSG_REMOVE;   /* afterwards: exactly what went */
			} else {
				r.removed++;
			}
		} else if (fl & MSG_RETR) {
			r.seen += (size_t)mark_seen(md, i);
		}
	}
	if (r.removed > 0 || r.seen > 0) {
		fsync_sub(md, "new");
		fsync_sub(md, "cur");
	}
	r.state_failed = !state_ok;
	if (res != NULL)
		*res = r;
	return r.failed > 0 || r.state_failed ? 1 : 0;
}

int
maildrop_record_login(struct maildrop *md, int64_t now)
{
	int64_t old;

	if (md == NULL || md->sweep || md->lock_fd < 0)
		return -1;
	old = md->last_login;
	md->last_login = now;
	if (md_state_write(md) < 0) {
		md->last_login = old;
		return -1;
	}
	return 0;
}

int
maildrop_sweep_remove(struct maildrop *md, struct md_update_result *res)
{
	struct md_update_result r = { 0, 0, 0, 0, 0 };
	size_t i, marked = 0, dropped = 0;
	int rc = 0;

	if (res != NULL)
		*res = r;
	if (md == NULL || !md->sweep)
		return -1;
	for (i = 0; i < md->n; i++)
		marked += (md->msgs[i].flags & MSG_REMOVE) != 0;
	/* Nothing to remove, but records of messages gone may be pruned (state.h). */
	if (marked == 0) {
		if (md->state_unlisted > 0 && !md->pruned && md->state_ok && md->lock_fd >= 0 &&
		    md_state_write(md) < 0)
			return 1;
		return 0;
	}
	/* Every sweep removal is a time rule, and time rules need a state beyond doubt. */
	if (md->lock_fd < 0 || !md->state_ok) {
		snprintf(md->err, sizeof md->err, "sweep removal refused for %s: %s", md->path,
		    md->lock_fd < 0 ? "not locked" : "state in doubt");
		return -1;
	}
	for (i = 0; i < md->n; i++) {
		if (!(md->msgs[i].flags & MSG_REMOVE))
			continue;
		switch (remove_msg(md, i, &r)) {
		case 1:
			r.removed++;
			if (md->msgs[i].has_record) {
				md->msgs[i].has_record = 0;
				dropped++;
			}
			break;
		case 2:   /* gone from its name since the claim: not ours to report */
			md->msgs[i].flags &= ~MSG_REMOVE;
			break;
		default:
			md->msgs[i].flags &= ~MSG_REMOVE;   /* still there: so is its record */
			r.failed++;
		}
	}
	/* After the unlinks: a crash in between leaves records of gone messages, which are harmless. */
	if ((dropped > 0 || (md->state_unlisted > 0 && !md->pruned)) && md_state_write(md) < 0)
		rc = 1;
	if (r.removed > 0) {
		fsync_sub(md, "new");
		fsync_sub(md, "cur");
	}
	if (res != NULL)
		*res = r;
	return rc != 0 || r.failed > 0 ? 1 : 0;
}
