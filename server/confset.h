/*
 * confset: one generation of everything the configuration names (the config,
 * the users file, TLS contexts, the policy table), loaded and checked
 * together, reference counted so that SIGHUP can swap in a new generation
 * while sessions and sweeps finish on the one they started with.
 */
#ifndef POP3D_CONFSET_H
#define POP3D_CONFSET_H

#include <stdatomic.h>

#include "policy/rules.h"
#include "server/diag.h"

struct config;
struct users;
struct tls_ctx;

struct conf_set {
	struct config      *cfg;
	struct users       *users;
	struct tls_ctx     *tls;      /* NULL without a tls group */
	struct rules       *rules;
	struct capa_summary capa;     /* EXPIRE / LOGIN-DELAY shown before login */
	atomic_uint         refs;     /* taken and dropped by every worker's sessions */
};

/*
 * Load and check the config at path and everything it names. Problems that
 * make the set unusable go to errors ("FILE:LINE: text"); unparseable lines of
 * the users file (skipped, never fatal at run time) to user_errors; warnings
 * (certificates near expiry, policy entries naming nobody) to warnings.
 * Returns a set with refs = 1 when errors stayed empty, else NULL.
 */
struct conf_set *conf_set_load(const char *path, struct diag *errors, struct diag *user_errors,
                               struct diag *warnings);

struct conf_set *conf_set_ref(struct conf_set *cs);

/* Drop a reference; the last one frees the whole generation. NULL is fine. */
void conf_set_unref(struct conf_set *cs);

#endif
