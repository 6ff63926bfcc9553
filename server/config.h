/*
 * config: parses the libconfig file once into a typed struct config, copying
 * every string out of libconfig. Unknown keys, wrong types, missing required
 * keys and impossible values are "FILE:LINE: text" errors, never skipped.
 */
#ifndef POP3D_CONFIG_H
#define POP3D_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "server/diag.h"

enum plaintext_mode {
	PLAINTEXT_TLS_ONLY,   /* USER/PASS only once TLS is active (default) */
	PLAINTEXT_ALWAYS      /* USER/PASS allowed on clear-text connections */
};

struct listen_cfg {
	char     *address;    /* numeric IPv4 or IPv6 address */
	uint16_t  port;
	int       line;       /* config line of the entry, for messages */
};

struct config {
	char              *path;          /* the config file as given */
	char              *dir;           /* its folder: base for relative paths */

	struct listen_cfg *listen;        /* at least one entry */
	size_t             nlisten;

	char              *users_file;    /* absolute (resolved against dir) */
	enum plaintext_mode plaintext;
	uint32_t           failure_delay_ms;  /* auth.failure_delay, in ms */

	char              *maildrop_path; /* template with %u %n %d %h %% */

	uint32_t           idle_timeout;  /* seconds, 1..86400; -t warns below 600 (RFC 1939) */
	uint32_t           max_connections;
	uint32_t           max_connections_per_ip;
};

/*
 * Read and validate the file at path. On success returns 0 and sets *out
 * (free with config_free). On failure returns -1 with every problem added to
 * d as "FILE:LINE: text" (or "FILE: setting.path: text" without a line); *out
 * is left NULL. Does not read the users file or touch maildirs.
 */
int config_load(const char *path, struct config **out, struct diag *d);

/* Free a config and everything it owns; NULL is fine. */
void config_free(struct config *c);

#endif
