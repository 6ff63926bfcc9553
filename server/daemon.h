/*
 * daemon: struct daemon (one per worker loop) and struct shared, the only
 * mutable state that outlives a function. Owned by main(); reached through
 * loop->data and each handle's data pointer. The functions are in worker.c.
 */
#ifndef POP3D_DAEMON_H
#define POP3D_DAEMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "policy/rules.h"
#include "server/auth.h"
#include "server/ipcount.h"

struct conf_set;
struct session;
struct listener;

/*
 * Written only by the worker that owns them, read by the main loop for
 * SIGUSR1 and at exit: hence atomic (relaxed adds; no ordering is needed).
 */
struct counters {
	atomic_uint_least64_t connections;     /* accepted */
	atomic_uint_least64_t refused;         /* over a connection cap */
	atomic_uint_least64_t logins;
	atomic_uint_least64_t login_failures;
	atomic_uint_least64_t retr_msgs;
	atomic_uint_least64_t retr_bytes;
	atomic_uint_least64_t deleted;          /* all removals */
	atomic_uint_least64_t deleted_dele;     /* at UPDATE: the client's DELE */
	atomic_uint_least64_t deleted_download; /* at UPDATE: retention = delete */
	atomic_uint_least64_t expired;          /* by expiry sweeps (keep_days, unread_days, ...) */
	atomic_uint_least64_t reloads;
};

/* What every worker shares; lives in main(). */
struct shared {
	uv_mutex_t            ip_lock;     /* guards per_ip */
	struct ipcount        per_ip;
	atomic_size_t         nsessions;   /* live sessions of all workers (max_connections) */
	atomic_uint_least64_t next_id;     /* session ids, unique across workers */
	uv_mutex_t            stop_lock;   /* guards stopped */
	uv_cond_t             stop_cond;
	size_t                stopped;     /* workers whose listeners are closed (DMSG_STOP) */
};

/* Messages from the main loop to a worker (struct daemon.msgs). */
#define DMSG_RELOAD     0x1   /* take next_cur as the configuration for new sessions */
#define DMSG_STOP       0x2   /* stop accepting; sessions get `grace` seconds */
#define DMSG_CLOSE_ALL  0x4   /* close every session now (a second SIGTERM) */

/*
 * One worker: an event loop with its own listening handles (duplicates of the
 * main loop's sockets: the kernel hands each connection to one of them), its
 * sessions and its line of password checks. Worker 0 is the main loop on the
 * main thread, which alone also owns the signals, the expiry timer and the
 * other workers (process.workers - 1 threads).
 */
struct daemon {
	uv_loop_t        *loop;
	unsigned          index;          /* 0: the main loop */
	struct shared    *sh;
	const char       *config_path;
	struct conf_set  *cur;            /* the configuration new sessions get (SIGHUP swaps it);
	                                     sessions and sweeps hold references to theirs */
	uv_timer_t        expire_timer;   /* main: periodic expiry sweep (one-shot, re-armed) */
	int               expire_running; /* a sweep is on the thread pool */
	int               reload_running; /* a SIGHUP's load is on the thread pool */
	int               reload_again;   /* another SIGHUP came meanwhile: load once more */
	uint64_t          expire_started; /* main: uv_now of the start, ms */
	uint64_t          expire_last;    /* main: uv_now of the last sweep started, 0 = none */
	uint32_t          expire_interval;/* main: the interval the timer was armed with, s */

	struct listener  *listeners;
	size_t            nlisteners;

	struct session   *sessions;       /* doubly linked list of this worker's live sessions */
	size_t            nsessions;
	struct auth_queue hashq;          /* this loop's password checks */

	uv_signal_t       sig_term;       /* main only: signals */
	uv_signal_t       sig_int;
	uv_signal_t       sig_hup;
	uv_signal_t       sig_usr1;
	uv_timer_t        grace_timer;    /* shutdown: how long sessions may still finish */
	int               stopping;

	char              hostname[64];   /* for APOP timestamps, truncated */
	struct counters   stats;

	/* Worker threads (index > 0): */
	struct daemon    *owner;          /* the main loop's daemon */
	int               running;        /* the thread has not finished (under msg_lock) */
	uv_loop_t         own_loop;
	uv_thread_t       thread;
	uv_async_t        wake;           /* the main loop posted msgs */
	uv_mutex_t        msg_lock;       /* guards msgs, next_cur, grace, gone */
	unsigned          msgs;           /* DMSG_* */
	struct conf_set  *next_cur;
	uint32_t          grace;
	int               gone;           /* the worker is ending: post nothing more */

	/* The main loop (index 0): */
	struct daemon    *workers;        /* process.workers - 1 of them */
	size_t            nworkers;
	uv_async_t        worker_done;    /* a worker thread finished its loop */
	size_t            workers_left;   /* still running */
};

/* max_connections_per_ip and the auth backoff, under sh->ip_lock (see ipcount.h). */
long daemon_ip_acquire(struct daemon *d, const struct ipkey *k, uint32_t max);
void daemon_ip_release(struct daemon *d, const struct ipkey *k);
long daemon_ip_fail(struct daemon *d, const struct ipkey *k, uint64_t now_ms, uint64_t forget_ms);
long daemon_ip_failures(struct daemon *d, const struct ipkey *k, uint64_t now_ms,
                        uint64_t forget_ms);

/*
 * Stop this loop: close its listeners, give its sessions grace seconds (0:
 * close them now; one in UPDATE finishes either way). Sets d->stopping.
 */
void daemon_stop(struct daemon *d, uint32_t grace);

/* A session of d was destroyed: a stopping worker ends once it has none left. */
void daemon_session_gone(struct daemon *d);

/*
 * Main loop only. Start n - 1 worker threads beside main (each with a copy of
 * main's listeners); 0, or -1 (logged) with none started.
 */
int workers_start(struct daemon *main, unsigned n);
/* Post DMSG_* to every worker still running; DMSG_RELOAD takes a reference to cs. */
void workers_post(struct daemon *main, unsigned msgs, struct conf_set *cs, uint32_t grace);
/*
 * After DMSG_STOP: wait (at most timeout_ms) until every worker has closed its
 * listeners, so that once the main loop logs the shutdown no loop accepts.
 * Each worker does it on its next loop turn; none blocks, so this is short.
 */
void workers_wait_stopped(struct daemon *main, uint64_t timeout_ms);
/* Sum of every worker's counters, main's included. */
void workers_counters(const struct daemon *main, struct counters *sum);
/*
 * After main's loop ended (every worker reported done): join and free them,
 * adding their counters to main's.
 */
void workers_join(struct daemon *main);

/* The number of CPU cores this process may run on (at least 1): process.workers = 0. */
unsigned workers_default(void);

#endif
