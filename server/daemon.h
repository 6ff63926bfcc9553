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

struct config;
struct users;
struct session;
struct listener;
struct tls_ctx;

struct counters {
	uint64_t connections;     /* accepted */
	uint64_t refused;         /* over a connection cap */
	uint64_t logins;
	uint64_t login_failures;
	uint64_t retr_msgs;
	uint64_t retr_bytes;
	uint64_t deleted;
};

struct daemon {
	uv_loop_t        *loop;
	struct config    *cfg;
	struct users     *users;          /* reference held; sessions take their own */
	struct tls_ctx   *tls;            /* NULL when no listener uses TLS */
	struct rules     *rules;          /* retention policy table */
	struct capa_summary capa;         /* EXPIRE / LOGIN-DELAY shown before login */
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
	int               stopping;

	char              hostname[64];   /* for APOP timestamps, truncated */
	struct counters   stats;
};

#endif
