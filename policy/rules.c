/*
 * rules: owns the compiled retention table (defaults, domains, user overrides,
 * each a private copy of the config) and the EXPIRE / LOGIN-DELAY arithmetic.
 * Never touches maildirs or the clock, and never removes anything itself.
 */
#include "policy/rules.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/auth.h"
#include "server/strutil.h"

/*
 * The ranges server/config.c accepts (see the field comments in
 * server/config.h). Checked again here so a hand-built or future config
 * cannot feed the arithmetic a negative period.
 */
#define RULE_DAYS_MAX  36500
#define RULE_DELAY_MAX 86400

/* Names in messages and in the -t table are escaped and capped like log fields. */
#define NAME_CAP 64
#define NAME_BUF (NAME_CAP * 4 + 4)

/* One domain or user entry, copied out of the config. */
struct entry {
	char           *key;          /* domains: ASCII lower-cased; users: as written */
	size_t          n;
	int             line;
	enum retention  retention;
	int32_t         keep_days;    /* POLICY_UNSET when not written */
	int32_t         unread_days;
	int32_t         login_delay;
};

struct rules {
	struct rule   def;            /* built-in base with policy.* applied */
	int           def_line;
	struct entry *dom;            /* sorted by key (byte order of the lower-cased key) */
	size_t        ndom;
	struct entry *usr;            /* sorted by key (byte order, exact) */
	size_t        nusr;
};

/*
 * With nothing configured a message is kept forever and only the client's
 * DELE removes it: the one default that can never break a promise.
 */
static const struct rule base_rule = { RET_KEEP, DAYS_NEVER, 0, 0 };

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Byte order over explicit lengths; fold lower-cases a (the query) only. */
static int key_cmp(const char *a, size_t an, const char *b, size_t bn, int fold)
{
	size_t i, n = an < bn ? an : bn;

	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (fold)
			x = lower(x);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return (an > bn) - (an < bn);
}

static int entry_sort_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = key_cmp(x->key, x->n, y->key, y->n, 0);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

/* Binary search; fold: the table holds lower-cased keys and the query any case. */
static const struct entry *entry_find(const struct entry *v, size_t nv, const char *p, size_t n,
                                      int fold)
{
	size_t lo = 0, hi = nv;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(p, n, v[mid].key, v[mid].n, fold);

		if (c == 0)
			return &v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Apply one level on top of r, field by field (the order rules.h gives). */
static void rule_apply(struct rule *r, enum retention ret, int32_t keep, int32_t unread,
                       int32_t delay)
{
	if (ret != RET_UNSET) {
		r->retention = ret;
		r->keep_days = keep == POLICY_UNSET ? DAYS_NEVER : keep;
	} else if (keep != POLICY_UNSET) {
		r->keep_days = keep;
	}
	if (unread != POLICY_UNSET)
		r->unread_days = unread;
	if (delay != POLICY_UNSET)
		r->login_delay = delay;
}

static void entry_apply(struct rule *r, const struct entry *e)
{
	rule_apply(r, e->retention, e->keep_days, e->unread_days, e->login_delay);
}

/*
 * The domain of a login is what follows its LAST '@' ("a@b@example.org" is in
 * example.org): an address's local part may itself contain '@' when quoted,
 * a domain never does. No '@', or nothing after it, means no domain.
 */
static const struct entry *domain_of(const struct rules *r, const char *name, size_t n)
{
	const char *at = n > 0 ? memrchr(name, '@', n) : NULL;
	size_t dn;

	if (at == NULL)
		return NULL;
	dn = n - (size_t)(at + 1 - name);
	if (dn == 0)
		return NULL;
	return entry_find(r->dom, r->ndom, at + 1, dn, 1);
}

void rules_for(const struct rules *r, const char *name, size_t n, struct rule *out)
{
	const struct entry *e;

	if (r == NULL) {
		*out = base_rule;
		return;
	}
	*out = r->def;
	if (name == NULL)
		return;
	e = domain_of(r, name, n);
	if (e != NULL)
		entry_apply(out, e);
	e = entry_find(r->usr, r->nusr, name, n, 0);
	if (e != NULL)
		entry_apply(out, e);
}

int32_t rule_promise_days(const struct rule *r)
{
	if (r->retention == RET_DELETE)
		return 0;
	if (r->retention == RET_KEEP && r->keep_days >= 0)
		return r->keep_days;
	return DAYS_NEVER;   /* keep forever, or a state we do not understand: never remove */
}

/* 1 when a is a shorter period than b; DAYS_NEVER is longer than any number. */
static int days_less(int32_t a, int32_t b)
{
	if (a < 0)
		return 0;
	return b < 0 || a < b;
}

int32_t rule_expire_days(const struct rule *r)
{
	int32_t d = rule_promise_days(r);

	if (r->unread_days > 0 && days_less(r->unread_days, d))
		d = r->unread_days;
	return d;
}

void rules_summary(const struct rules *r, const struct users *users, struct capa_summary *out)
{
	struct rule ru;
	int32_t e;
	size_t i;

	/* Over the users who can log in (RFC 2449: "USER" when they differ between
	 * users); the defaults only when the users file is empty. */
	ru = r != NULL ? r->def : base_rule;
	if (users != NULL && users->n > 0)
		rules_for(r, users->v[0].name, strlen(users->v[0].name), &ru);
	out->expire = rule_expire_days(&ru);
	out->expire_varies = 0;
	out->login_delay = ru.login_delay;
	out->delay_varies = 0;
	if (users == NULL)
		return;
	for (i = 1; i < users->n; i++) {
		const char *name = users->v[i].name;

		rules_for(r, name, strlen(name), &ru);
		e = rule_expire_days(&ru);
		if (e != out->expire) {
			out->expire_varies = 1;
			if (days_less(e, out->expire))
				out->expire = e;
		}
		if (ru.login_delay != out->login_delay) {
			out->delay_varies = 1;
			if (ru.login_delay > out->login_delay)
				out->login_delay = ru.login_delay;
		}
	}
}

/*
 * Returns the length actually written (not the length it would have had, as
 * snprintf does), so a caller can always send buf[0..return) safely.
 */
size_t capa_expire_text(char *buf, size_t len, int32_t days, int varies)
{
	const char *user = varies ? " USER" : "";
	int k;

	if (buf == NULL || len == 0)
		return 0;
	if (days < 0)
		k = snprintf(buf, len, "EXPIRE NEVER%s", user);
	else
		k = snprintf(buf, len, "EXPIRE %d%s", (int)days, user);
	if (k < 0) {
		buf[0] = '\0';
		return 0;
	}
	return (size_t)k < len ? (size_t)k : len - 1;
}

void rules_free(struct rules *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->ndom; i++)
		free(r->dom[i].key);
	for (i = 0; i < r->nusr; i++)
		free(r->usr[i].key);
	free(r->dom);
	free(r->usr);
	free(r);
}

/* ---- rules_build ---- */

struct build {
	const char   *file;
	struct diag  *d;
	int           errors;
};

static const char *esc(char *buf, const char *s)
{
	str_escape(buf, NAME_BUF, s, strlen(s), NAME_CAP);
	return buf;
}

static int field_ok(int32_t v, int32_t max)
{
	return v == POLICY_UNSET || (v >= 0 && v <= max);
}

/* Range and same-entry checks shared by every level. what: "policy", "policy.domains "x"". */
static void check_fields(struct build *b, const char *what, int line, enum retention ret,
                         int32_t keep, int32_t unread, int32_t delay)
{
	if (ret != RET_UNSET && ret != RET_DELETE && ret != RET_KEEP) {
		diag_add(b->d, "%s:%d: %s: retention has an unknown value", b->file, line, what);
		b->errors++;
	}
	if (ret == RET_DELETE && keep != POLICY_UNSET) {
		diag_add(b->d, "%s:%d: %s: keep_days has no meaning with retention \"delete\"",
		         b->file, line, what);
		b->errors++;
	}
	if (!field_ok(keep, RULE_DAYS_MAX)) {
		diag_add(b->d, "%s:%d: %s: keep_days must be 0..%d", b->file, line, what,
		         RULE_DAYS_MAX);
		b->errors++;
	}
	if (!field_ok(unread, RULE_DAYS_MAX)) {
		diag_add(b->d, "%s:%d: %s: unread_days must be 0..%d", b->file, line, what,
		         RULE_DAYS_MAX);
		b->errors++;
	}
	if (!field_ok(delay, RULE_DELAY_MAX)) {
		diag_add(b->d, "%s:%d: %s: login_delay must be 0..%d", b->file, line, what,
		         RULE_DELAY_MAX);
		b->errors++;
	}
}

/*
 * Copy, check, sort and de-duplicate one list. fold: domains (lower-cased,
 * no '@'). Returns 0, or -1 on ENOMEM (*out is then freed by the caller
 * through rules_free, which only needs *nout entries with keys).
 */
static int copy_entries(struct build *b, const struct policy_rule_cfg *src, size_t n, int fold,
                        const char *list, struct entry **out, size_t *nout)
{
	char nb[NAME_BUF], what[NAME_BUF + 32];
	struct entry *v;
	size_t i, j;

	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	v = calloc(n, sizeof(*v));
	if (v == NULL)
		return -1;
	*out = v;
	for (i = 0; i < n; i++) {
		const struct policy_rule_cfg *c = &src[i];
		const char *m = c->match != NULL ? c->match : "";
		size_t mn = strlen(m);

		snprintf(what, sizeof what, "%s \"%s\"", list, esc(nb, m));
		check_fields(b, what, c->line, c->retention, c->keep_days, c->unread_days,
		             c->login_delay);
		if (mn == 0) {
			diag_add(b->d, "%s:%d: %s: an entry needs a non-empty name", b->file, c->line,
			         list);
			b->errors++;
			continue;
		}
		if (fold && memchr(m, '@', mn) != NULL) {
			diag_add(b->d, "%s:%d: %s: a domain cannot contain '@' (it is matched against "
			         "the part of the login after the last '@')", b->file, c->line, what);
			b->errors++;
			continue;
		}
		v[*nout].key = malloc(mn + 1);
		if (v[*nout].key == NULL)
			return -1;
		for (j = 0; j < mn; j++)
			v[*nout].key[j] = fold ? (char)lower((unsigned char)m[j]) : m[j];
		v[*nout].key[mn] = '\0';
		v[*nout].n = mn;
		v[*nout].line = c->line;
		v[*nout].retention = c->retention;
		v[*nout].keep_days = c->keep_days;
		v[*nout].unread_days = c->unread_days;
		v[*nout].login_delay = c->login_delay;
		(*nout)++;
	}
	qsort(v, *nout, sizeof(*v), entry_sort_cmp);
	for (i = 1; i < *nout; i++) {
		if (key_cmp(v[i].key, v[i].n, v[i - 1].key, v[i - 1].n, 0) != 0)
			continue;
		for (j = i; j > 0 && key_cmp(v[j - 1].key, v[j - 1].n, v[i].key, v[i].n, 0) == 0; j--)
			;
		diag_add(b->d, "%s:%d: %s \"%s\": listed twice (first at line %d)%s", b->file,
		         v[i].line, list, esc(nb, v[i].key), v[j].line,
		         fold ? "; domains match without regard to case" : "");
		b->errors++;
	}
	return 0;
}

/* Exact lookup in the users file array (sorted by strcmp, see server/auth.h). */
static int user_known(const struct users *u, const char *p, size_t n)
{
	size_t lo = 0, hi = u->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *name = u->v[mid].name;
		int c = key_cmp(p, n, name, strlen(name), 0);

		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/*
 * Warnings that do not stop the build: an override naming nobody, and a
 * keep_days written alone under a retention "delete" it inherits (it can
 * never take effect, which is rarely what the admin meant).
 */
static void warn_entries(struct build *b, const struct rules *r, const struct users *users)
{
	char nb[NAME_BUF];
	struct rule up;
	size_t i;

	for (i = 0; i < r->ndom; i++) {
		const struct entry *e = &r->dom[i];

		if (e->retention == RET_UNSET && e->keep_days != POLICY_UNSET &&
		    r->def.retention == RET_DELETE)
			diag_add(b->d, "%s:%d: warning: policy.domains \"%s\": keep_days has no effect: "
			         "the default retention is \"delete\"", b->file, e->line,
			         esc(nb, e->key));
	}
	for (i = 0; i < r->nusr; i++) {
		const struct entry *e = &r->usr[i];
		const struct entry *dom = domain_of(r, e->key, e->n);

		if (users != NULL && !user_known(users, e->key, e->n))
			diag_add(b->d, "%s:%d: warning: policy.users \"%s\": not in the users file%s%s",
			         b->file, e->line, esc(nb, e->key), users->path ? " " : "",
			         users->path ? users->path : "");
		up = r->def;
		if (dom != NULL)
			entry_apply(&up, dom);
		if (e->retention == RET_UNSET && e->keep_days != POLICY_UNSET &&
		    up.retention == RET_DELETE)
			diag_add(b->d, "%s:%d: warning: policy.users \"%s\": keep_days has no effect: "
			         "the inherited retention is \"delete\"", b->file, e->line,
			         esc(nb, e->key));
	}
}

struct rules *rules_build(const struct config *cfg, const struct users *users, struct diag *d)
{
	const struct policy_cfg *p = &cfg->policy;
	struct build b = { cfg->path != NULL ? cfg->path : "(config)", d, 0 };
	struct rules *r;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	check_fields(&b, "policy", p->def.line, p->def.retention, p->def.keep_days,
	             p->def.unread_days, p->def.login_delay);
	r->def = base_rule;
	rule_apply(&r->def, p->def.retention, p->def.keep_days, p->def.unread_days,
	           p->def.login_delay);
	r->def_line = p->def.line;
	if (copy_entries(&b, p->domains, p->ndomains, 1, "policy.domains", &r->dom, &r->ndom) < 0 ||
	    copy_entries(&b, p->users, p->nusers, 0, "policy.users", &r->usr, &r->nusr) < 0) {
		diag_add(d, "%s: policy: out of memory", b.file);
		rules_free(r);
		return NULL;
	}
	warn_entries(&b, r, users);   /* before the verdict, so -t shows every problem at once */
	if (b.errors > 0) {
		rules_free(r);
		return NULL;
	}
	return r;
}

/* ---- rules_print ---- */

static const char *days_text(char *buf, size_t len, int32_t days, const char *zero,
                             const char *never)
{
	if (days < 0)
		return never;
	if (days == 0 && zero != NULL)
		return zero;
	snprintf(buf, len, "%d", (int)days);
	return buf;
}

static void print_row(FILE *f, const char *level, const char *name, int line,
                      const struct rule *ru, const char *note)
{
	char nb[NAME_BUF], lb[16], kb[16], ub[16], eb[16], db[16];

	if (line > 0)
		snprintf(lb, sizeof lb, "%d", line);
	else
		snprintf(lb, sizeof lb, "-");
	snprintf(db, sizeof db, "%d", (int)ru->login_delay);
	fprintf(f, "  %-7s %-28s %-5s %-9s %-9s %-11s %-11s %-6s %s%s\n", level,
	        name != NULL ? esc(nb, name) : "-", lb,
	        ru->retention == RET_DELETE ? "delete" : "keep",
	        ru->retention == RET_DELETE ? "-"
	        : days_text(kb, sizeof kb, ru->keep_days, NULL, "forever"),
	        days_text(ub, sizeof ub, ru->unread_days, "off", "off"),
	        db, days_text(eb, sizeof eb, rule_expire_days(ru), NULL, "NEVER"),
	        ru->login_delay > 0 ? db : "-", note);
}

void rules_print(const struct rules *r, const struct users *users, FILE *f)
{
	struct capa_summary s;
	char eb[32];
	struct rule ru;
	size_t i;

	fprintf(f, "  policy (each row is the effective rule; EXPIRE and LOGIN-DELAY as clients "
	        "see them after login, \"-\" = not sent)\n");
	fprintf(f, "  %-7s %-28s %-5s %-9s %-9s %-11s %-11s %-6s %s\n", "level", "name", "line",
	        "retention", "keep_days", "unread_days", "login_delay", "EXPIRE", "LOGIN-DELAY");
	ru = r != NULL ? r->def : base_rule;
	print_row(f, "default", NULL, r != NULL ? r->def_line : 0, &ru, "");
	for (i = 0; r != NULL && i < r->ndom; i++) {
		ru = r->def;
		entry_apply(&ru, &r->dom[i]);
		print_row(f, "domain", r->dom[i].key, r->dom[i].line, &ru, "");
	}
	for (i = 0; r != NULL && i < r->nusr; i++) {
		rules_for(r, r->usr[i].key, r->usr[i].n, &ru);
		print_row(f, "user", r->usr[i].key, r->usr[i].line, &ru,
		          users != NULL && !user_known(users, r->usr[i].key, r->usr[i].n)
		          ? "  (not in the users file)" : "");
	}
	rules_summary(r, users, &s);
	capa_expire_text(eb, sizeof eb, s.expire, s.expire_varies);
	/* As server/pop3_auth.c sends it: no LOGIN-DELAY line when it is 0. */
	if (s.login_delay > 0)
		fprintf(f, "  CAPA before login: %s, LOGIN-DELAY %d%s\n", eb, (int)s.login_delay,
		        s.delay_varies ? " USER" : "");
	else
		fprintf(f, "  CAPA before login: %s\n", eb);
}
