/*
 * confset: loads a configuration generation and frees it when its last user
 * lets go. Never logs: callers decide how problems are shown.
 */
#include <linux/limits.h>     /* PATH_MAX */
#include <stdlib.h>
#include <string.h>

#include "maildrop/maildrop.h"
#include "policy/rules.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/confset.h"
#include "server/tlsio.h"

static void
conf_set_free(struct conf_set *cs)
{
	rules_free(cs->rules);
	tls_ctx_free(cs->tls);
	if (cs->users != NULL)
		users_unref(cs->users);
	config_free(cs->cfg);
	free(cs);
}

/* rules_build reports warnings ("FILE:LINE: warning: ...") among its errors. */
static void
split_rules_diag(const struct diag *rd, struct diag *errors, struct diag *warnings)
{
	size_t i;

	for (i = 0; i < rd->n; i++)
		diag_add(strstr(rd->msg[i], ": warning: ") != NULL ? warnings : errors, "%s",
		         rd->msg[i]);
}

/*
 * Every user's maildrop path must be buildable from the template, or that user
 * can never log in (a %h template and no home field, a relative home). Like a
 * bad users-file line: reported per user, and the others are still served.
 */
static void
check_user_maildrops(const struct conf_set *cs, struct diag *user_errors)
{
	const char *tmpl = cs->cfg->maildrop_path;
	char out[PATH_MAX];
	size_t i;

	for (i = 0; i < cs->users->n; i++) {
		const struct user *u = &cs->users->v[i];

		if (maildrop_expand(tmpl, u->name, u->home, out, sizeof(out)) == 0)
			continue;
		if (strstr(tmpl, "%h") != NULL && u->home[0] == '\0')
			diag_add(user_errors, "%s:%d: user %s has no home field (the 6th), "
			    "which maildrop.path \"%s\" needs for %%h", cs->users->path,
			    u->line, u->name, tmpl);
		else
			diag_add(user_errors, "%s:%d: user %s: maildrop.path \"%s\" does not give "
			    "an absolute path under %d octets for this user", cs->users->path,
			    u->line, u->name, tmpl, PATH_MAX);
	}
}

struct conf_set *
conf_set_load(const char *path, struct diag *errors, struct diag *user_errors,
              struct diag *warnings)
{
	struct conf_set *cs = calloc(1, sizeof *cs);
	struct diag rd = { 0 };
	size_t before = errors->n;

	if (cs == NULL) {
		diag_add(errors, "%s: out of memory", path);
		return NULL;
	}
	cs->refs = 1;
	if (config_load(path, &cs->cfg, errors) != 0)
		goto fail;
	if (cs->cfg->tls.present)
		cs->tls = tls_ctx_new(&cs->cfg->tls, errors, warnings);
	if (users_load(cs->cfg->users_file, &cs->users, user_errors) != 0) {
		/* The file itself cannot be read: that is fatal, not one bad line,
		 * and reported at the setting that names it. */
		if (user_errors->n > 0) {   /* move it: reported once, as fatal */
			user_errors->n--;
			diag_add(errors, "%s:%d: auth.users_file: %s", path,
			    cs->cfg->users_file_line, user_errors->msg[user_errors->n]);
			free(user_errors->msg[user_errors->n]);
		} else {
			diag_add(errors, "%s:%d: auth.users_file: cannot be read", path,
			    cs->cfg->users_file_line);
		}
		goto fail;
	}
	check_user_maildrops(cs, user_errors);
	cs->rules = rules_build(cs->cfg, cs->users, &rd);
	split_rules_diag(&rd, errors, warnings);
	if (cs->rules == NULL && rd.n == 0)
		diag_add(errors, "%s: policy: out of memory", path);
	diag_free(&rd);
	if (errors->n != before || errors->oom || cs->rules == NULL ||
	    (cs->cfg->tls.present && cs->tls == NULL))
		goto fail;
	rules_summary(cs->rules, cs->users, &cs->capa);
	return cs;
fail:
	if (errors->n == before)
		diag_add(errors, "%s: configuration cannot be used", path);
	conf_set_free(cs);
	return NULL;
}

struct conf_set *
conf_set_ref(struct conf_set *cs)
{
	atomic_fetch_add_explicit(&cs->refs, 1, memory_order_relaxed);
	return cs;
}

void
conf_set_unref(struct conf_set *cs)
{
	if (cs != NULL && atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) == 1)
		conf_set_free(cs);
}
