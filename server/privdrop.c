/*
 * privdrop: runs as root once, before the event loop; turns the process into
 * process.user and proves it. Never half-drops silently: every failure is an
 * error the caller exits on. Never touches a socket or a client byte.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "server/privdrop.h"

#define NSS_BUF_START 4096
#define NSS_BUF_MAX   (1024 * 1024)   /* a passwd/group entry larger than this is nonsense */

static void
seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
has_gid(const gid_t *v, size_t n, gid_t g)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] == g)
			return 1;
	return 0;
}

int
privdrop_check_ids(const struct privdrop_target *t, const struct privdrop_ids *h,
                   char *err, size_t errlen)
{
	size_t i;

	if (h->ruid != t->uid || h->euid != t->uid || h->suid != t->uid || h->fsuid != t->uid) {
		seterr(err, errlen, "uid not dropped: want %lu, have real=%lu effective=%lu "
		       "saved=%lu fs=%lu", (unsigned long)t->uid, (unsigned long)h->ruid,
		       (unsigned long)h->euid, (unsigned long)h->suid, (unsigned long)h->fsuid);
		return -1;
	}
	if (h->rgid != t->gid || h->egid != t->gid || h->sgid != t->gid || h->fsgid != t->gid) {
		seterr(err, errlen, "gid not dropped: want %lu, have real=%lu effective=%lu "
		       "saved=%lu fs=%lu", (unsigned long)t->gid, (unsigned long)h->rgid,
		       (unsigned long)h->egid, (unsigned long)h->sgid, (unsigned long)h->fsgid);
		return -1;
	}
	/* Same set, ignoring the primary gid (the kernel may or may not list it). */
	for (i = 0; i < h->ngroups; i++)
		if (h->groups[i] != t->gid && !has_gid(t->groups, t->ngroups, h->groups[i])) {
			seterr(err, errlen, "supplementary group %lu kept but not wanted",
			       (unsigned long)h->groups[i]);
			return -1;
		}
	for (i = 0; i < t->ngroups; i++)
		if (t->groups[i] != t->gid && !has_gid(h->groups, h->ngroups, t->groups[i])) {
			seterr(err, errlen, "supplementary group %lu wanted but not set",
			       (unsigned long)t->groups[i]);
			return -1;
		}
	/* Implied by the set check; spelt out because it is the one that matters. */
	if (has_gid(h->groups, h->ngroups, 0) && t->gid != 0 && !has_gid(t->groups, t->ngroups, 0)) {
		seterr(err, errlen, "supplementary group 0 (root) still present");
		return -1;
	}
	return 0;
}

/* Permitted and effective capability sets, both halves (v3 is 64 bits). */
static int
caps_empty(char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr;
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(&hdr, 0, sizeof hdr);
	memset(data, 0, sizeof data);
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	hdr.pid = 0;
	if (syscall(SYS_capget, &hdr, data) != 0) {
		seterr(err, errlen, "capget: %s", strerror(errno));
		return -1;
	}
	if (data[0].permitted | data[1].permitted | data[0].effective | data[1].effective) {
		seterr(err, errlen, "capabilities left after the drop: permitted=%08x%08x "
		       "effective=%08x%08x", data[1].permitted, data[0].permitted,
		       data[1].effective, data[0].effective);
		return -1;
	}
	return 0;
}

int
privdrop_verify(const struct privdrop_target *t, char *err, size_t errlen)
{
	struct privdrop_ids h;
	gid_t buf[PRIVDROP_MAX_GROUPS];
	int n;

	memset(&h, 0, sizeof h);
	if (getresuid(&h.ruid, &h.euid, &h.suid) != 0 || getresgid(&h.rgid, &h.egid, &h.sgid) != 0) {
		seterr(err, errlen, "getresuid/getresgid: %s", strerror(errno));
		return -1;
	}
	/* setfs[ug]id with an invalid id changes nothing and returns the current one. */
	h.fsuid = (uid_t)setfsuid((uid_t)-1);
	h.fsgid = (gid_t)setfsgid((gid_t)-1);
	n = getgroups(PRIVDROP_MAX_GROUPS, buf);
	if (n < 0) {
		seterr(err, errlen, "getgroups: %s", strerror(errno));
		return -1;
	}
	h.groups = buf;
	h.ngroups = (size_t)n;
	if (privdrop_check_ids(t, &h, err, errlen) != 0)
		return -1;
	if (t->uid == 0)
		return 0;    /* allow_root with a uid-0 user: nothing to prove */
	if (setuid(0) != -1) {
		seterr(err, errlen, "setuid(0) succeeded after the drop: root can be regained");
		return -1;
	}
	if (t->gid != 0 && setgid(0) != -1) {
		seterr(err, errlen, "setgid(0) succeeded after the drop: group root can be regained");
		return -1;
	}
	return caps_empty(err, errlen);
}

/* getpwnam_r with a growing buffer; *bufp is the caller's to free. */
static int
lookup_user(const char *name, struct passwd *pw, char **bufp, char *err, size_t errlen)
{
	struct passwd *res = NULL;
	size_t len = NSS_BUF_START;
	int r;

	for (;;) {
		char *b = realloc(*bufp, len);
		if (b == NULL) {
			seterr(err, errlen, "process.user: out of memory");
			return -1;
		}
		*bufp = b;
		r = getpwnam_r(name, pw, b, len, &res);
		if (r != ERANGE || len >= NSS_BUF_MAX)
			break;
		len *= 2;
	}
	if (r != 0) {
		seterr(err, errlen, "process.user \"%s\": cannot look up: %s", name, strerror(r));
		return -1;
	}
	if (res == NULL) {
		seterr(err, errlen, "process.user \"%s\": no such user", name);
		return -1;
	}
	return 0;
}

static int
lookup_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
	struct group gr, *res = NULL;
	char *buf = NULL;
	size_t len = NSS_BUF_START;
	int r;

	for (;;) {
		char *b = realloc(buf, len);
		if (b == NULL) {
			free(buf);
			seterr(err, errlen, "process.group: out of memory");
			return -1;
		}
		buf = b;
		r = getgrnam_r(name, &gr, buf, len, &res);
		if (r != ERANGE || len >= NSS_BUF_MAX)
			break;
		len *= 2;
	}
	if (r == 0 && res != NULL)
		*gid = gr.gr_gid;
	free(buf);
	if (r != 0) {
		seterr(err, errlen, "process.group \"%s\": cannot look up: %s", name, strerror(r));
		return -1;
	}
	if (res == NULL) {
		seterr(err, errlen, "process.group \"%s\": no such group", name);
		return -1;
	}
	return 0;
}

/* Not root: nothing can change, so the config must describe what we already are. */
static int
check_unprivileged(const struct process_cfg *p, char *err, size_t errlen)
{
	struct passwd pw;
	char *buf = NULL;
	gid_t gid;

	if (p->user != NULL) {
		if (lookup_user(p->user, &pw, &buf, err, errlen) != 0) {
			free(buf);
			return -1;
		}
		free(buf);
		if (pw.pw_uid != geteuid()) {
			seterr(err, errlen, "process.user is \"%s\" (uid %lu) but pop3d runs as uid %lu "
			       "and only root can switch users", p->user, (unsigned long)pw.pw_uid,
			       (unsigned long)geteuid());
			return -1;
		}
	}
	if (p->group != NULL) {
		if (lookup_group(p->group, &gid, err, errlen) != 0)
			return -1;
		if (gid != getegid()) {
			seterr(err, errlen, "process.group is \"%s\" (gid %lu) but pop3d runs as gid %lu "
			       "and only root can switch groups", p->group, (unsigned long)gid,
			       (unsigned long)getegid());
			return -1;
		}
	}
	return 0;
}

int
privdrop(const struct process_cfg *p, char *err, size_t errlen)
{
	struct privdrop_target t;
	struct passwd pw;
	gid_t groups[PRIVDROP_MAX_GROUPS];
	char *buf = NULL;
	int ng = PRIVDROP_MAX_GROUPS, rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (geteuid() != 0)
		return check_unprivileged(p, err, errlen);
	if (p->user == NULL) {
		if (p->allow_root)
			return 0;
		seterr(err, errlen, "refusing to serve as root: set process.user, or "
		       "process.allow_root = true");
		return -1;
	}

	if (lookup_user(p->user, &pw, &buf, err, errlen) != 0)
		goto out;
	memset(&t, 0, sizeof t);
	t.uid = pw.pw_uid;
	t.gid = pw.pw_gid;
	if (p->group != NULL && lookup_group(p->group, &t.gid, err, errlen) != 0)
		goto out;
	if (t.uid == 0 && !p->allow_root) {
		seterr(err, errlen, "process.user \"%s\" is uid 0: refusing to serve as root "
		       "(choose an unprivileged user, or set process.allow_root = true)", p->user);
		goto out;
	}
	/* The user's groups from the group database, plus t.gid (as initgroups does). */
	if (getgrouplist(p->user, t.gid, groups, &ng) < 0) {
		seterr(err, errlen, "process.user \"%s\": in more than %d groups", p->user,
		       PRIVDROP_MAX_GROUPS);
		goto out;
	}
	t.groups = groups;
	t.ngroups = (size_t)ng;

	/* Order matters: groups and gid need root, so they go before the uid. */
	if (setgroups(t.ngroups, t.groups) != 0) {
		seterr(err, errlen, "setgroups for \"%s\": %s", p->user, strerror(errno));
		goto out;
	}
	if (setresgid(t.gid, t.gid, t.gid) != 0) {
		seterr(err, errlen, "setresgid(%lu): %s", (unsigned long)t.gid, strerror(errno));
		goto out;
	}
	if (setresuid(t.uid, t.uid, t.uid) != 0) {
		seterr(err, errlen, "setresuid(%lu): %s", (unsigned long)t.uid, strerror(errno));
		goto out;
	}
	rc = privdrop_verify(&t, err, errlen);
out:
	free(buf);
	return rc;
}
