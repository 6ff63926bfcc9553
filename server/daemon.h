/*
 * daemon: struct daemon, the only mutable state that outlives a function.
 * Owned by main(); reached through loop->data and each handle's data pointer.
 */
#ifndef POP3D_DAEMON_H
#define POP3D_DAEMON_H

#include <stdint.h>
#include <uv.h>

#include "policy/rules.h"
#include "server/ipcount.h"

struct conf_set;
struct session;
struct listener;

struct counters {
	uint64_t connections;     /* accepted */
	uint64_t refused;         /* over a connection cap */
	uint64_t logins;
	uint64_t login_failures;
	uint64_t retr_msgs;
	uint64_t retr_bytes;
	uint64_t deleted;          /* all removals */
	uint64_t deleted_dele;     /* at UPDATE: the client's DELE */
	uint64_t deleted_download; /* at UPDATE: retention = delete */
	uint64_t expired;          /* by expiry sweeps (keep_days, unread_days, ...) */
	uint64_t reloads;
};

struct daemon {
	uv_loop_t        *loop;
	const char       *config_path;
	struct conf_set  *cur;            /* the configuration new sessions get (SIGHUP swaps it);
	                                     sessions and sweeps hold references to theirs */
	uv_timer_t        expire_timer;   /* periodic expiry sweep */
	int               expire_running; /* a sweep is on the thread pool */

	struct listener  *listeners;
	size_t            nlisteners;

	struct session   *sessions;       /* doubly linked list of live sessions */
	size_t            nsessions;
	struct ipcount    per_ip;
	uint64_t          next_id;

	uv_signal_t       sig_term;
	uv_signal_t       sig_int;
	uv_signal_t       sig_hup;
	uv_signal_t       sig_usr1;
	uv_timer_t        grace_timer;    /* shutdown: how long sessions may still finish */
	int               stopping;

	char              hostname[64];   /* for APOP timestamps, truncated */
	struct counters   stats;
};

#endif
