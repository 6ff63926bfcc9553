/*
 * worker: the event loops beside the main one (process.workers), what they
 * share (the per-address table, the session count and ids), and how the main
 * loop talks to them: an async wake-up carrying DMSG_* flags under a mutex.
 * Each worker owns its loop, listeners, sessions and password-check line;
 * nothing else crosses threads.
 */
#include <stdlib.h>
#include <string.h>

#include "server/confset.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"

long
daemon_ip_acquire(struct daemon *d, const struct ipkey *k, uint32_t max)
{
	long n;

	uv_mutex_lock(&d->sh->ip_lock);
	n = ipcount_acquire(&d->sh->per_ip, k, max);
	uv_mutex_unlock(&d->sh->ip_lock);
	return n;
}

void
daemon_ip_release(struct daemon *d, const struct ipkey *k)
{
	uv_mutex_lock(&d->sh->ip_lock);
	ipcount_release(&d->sh->per_ip, k);
	uv_mutex_unlock(&d->sh->ip_lock);
}

long
daemon_ip_fail(struct daemon *d, const struct ipkey *k, uint64_t now_ms, uint64_t forget_ms)
{
	long n;

	uv_mutex_lock(&d->sh->ip_lock);
	n = ipcount_fail(&d->sh->per_ip, k, now_ms, forget_ms);
	uv_mutex_unlock(&d->sh->ip_lock);
	return n;
}

long
daemon_ip_failures(struct daemon *d, const struct ipkey *k, uint64_t now_ms, uint64_t forget_ms)
{
	long n;

	uv_mutex_lock(&d->sh->ip_lock);
	n = ipcount_failures(&d->sh->per_ip, k, now_ms, forget_ms);
	uv_mutex_unlock(&d->sh->ip_lock);
	return n;
}

static void
on_grace_over(uv_timer_t *t)
{
	struct daemon *d = t->data;

	log_msg(LOG_INFO, "shutdown grace period over: closing %zu sessions", d->nsessions);
	session_close_all(d, "shutdown");
}

void
daemon_stop(struct daemon *d, uint32_t grace)
{
	d->stopping = 1;
	listen_close_all(d);
	if (grace == 0 || d->nsessions == 0) {
		session_close_all(d, "shutdown");
	} else {
		uv_timer_start(&d->grace_timer, on_grace_over, (uint64_t)grace * 1000, 0);
		uv_unref((uv_handle_t *)&d->grace_timer);   /* the loop may end before it fires */
	}
	daemon_session_gone(d);
}

/* A worker's last handles: once they are closed its loop ends. */
void
daemon_session_gone(struct daemon *d)
{
	if (d->index == 0 || !d->stopping || d->nsessions > 0 || d->gone)
		return;
	uv_mutex_lock(&d->msg_lock);
	d->gone = 1;   /* from now on main posts nothing, so wake can go */
	uv_mutex_unlock(&d->msg_lock);
	uv_close((uv_handle_t *)&d->wake, NULL);
	if (!uv_is_closing((uv_handle_t *)&d->grace_timer))
		uv_close((uv_handle_t *)&d->grace_timer, NULL);
}

static void
on_wake(uv_async_t *a)
{
	struct daemon *d = a->data;
	struct conf_set *cs;
	unsigned msgs;
	uint32_t grace;

	uv_mutex_lock(&d->msg_lock);
	msgs = d->msgs;
	cs = d->next_cur;
	grace = d->grace;
	d->msgs = 0;
	d->next_cur = NULL;
	uv_mutex_unlock(&d->msg_lock);
	if (cs != NULL) {
		conf_set_unref(d->cur);
		d->cur = cs;
	}
	if ((msgs & DMSG_STOP) && !d->stopping) {
		daemon_stop(d, grace);
		uv_mutex_lock(&d->sh->stop_lock);
		d->sh->stopped++;
		uv_cond_signal(&d->sh->stop_cond);
		uv_mutex_unlock(&d->sh->stop_lock);
	}
	if (msgs & DMSG_CLOSE_ALL)
		session_close_all(d, "shutdown");
}

static void
worker_main(void *arg)
{
	struct daemon *w = arg;
	struct daemon *owner = w->owner;
	int r;

	uv_run(w->loop, UV_RUN_DEFAULT);
	/* A loop that ends without a stop (it cannot, short of a bug): close what is left. */
	if (!w->gone) {
		listen_close_all(w);
		uv_mutex_lock(&w->msg_lock);
		w->gone = 1;
		uv_mutex_unlock(&w->msg_lock);
		if (!uv_is_closing((uv_handle_t *)&w->wake))
			uv_close((uv_handle_t *)&w->wake, NULL);
		if (!uv_is_closing((uv_handle_t *)&w->grace_timer))
			uv_close((uv_handle_t *)&w->grace_timer, NULL);
		uv_run(w->loop, UV_RUN_DEFAULT);
	}
	r = uv_loop_close(w->loop);
	if (r != 0)
		log_msg(LOG_ERR, "worker %u: event loop did not close cleanly: %s", w->index,
		        uv_strerror(r));
	uv_mutex_lock(&w->msg_lock);
	w->running = 0;
	uv_mutex_unlock(&w->msg_lock);
	uv_async_send(&owner->worker_done);
}

static void
on_worker_done(uv_async_t *a)
{
	struct daemon *d = a->data;
	size_t i, left = 0;

	/* Several sends may fold into one callback: count who is still running. */
	for (i = 0; i < d->nworkers; i++) {
		uv_mutex_lock(&d->workers[i].msg_lock);
		left += d->workers[i].running != 0;
		uv_mutex_unlock(&d->workers[i].msg_lock);
	}
	d->workers_left = left;
	if (left == 0 && !uv_is_closing((uv_handle_t *)&d->worker_done))
		uv_close((uv_handle_t *)&d->worker_done, NULL);
}

/* Set up worker w (loop, handles, listeners) before its thread starts. */
static int
worker_init(struct daemon *d, struct daemon *w, unsigned index, unsigned hash_turns)
{
	w->index = index;
	w->owner = d;
	w->sh = d->sh;
	w->config_path = d->config_path;
	w->cur = conf_set_ref(d->cur);
	memcpy(w->hostname, d->hostname, sizeof w->hostname);
	if (uv_mutex_init(&w->msg_lock) != 0)
		return -1;
	if (uv_loop_init(&w->own_loop) != 0) {
		uv_mutex_destroy(&w->msg_lock);
		return -1;
	}
	w->loop = &w->own_loop;
	w->loop->data = w;
	auth_queue_init(&w->hashq, w->loop, hash_turns);
	uv_timer_init(w->loop, &w->grace_timer);
	w->grace_timer.data = w;
	uv_async_init(w->loop, &w->wake, on_wake);
	w->wake.data = w;
	return 0;
}

/* Undo worker_init for a worker whose thread never ran. */
static void
worker_discard(struct daemon *w)
{
	listen_close_all(w);
	uv_close((uv_handle_t *)&w->wake, NULL);
	uv_close((uv_handle_t *)&w->grace_timer, NULL);
	uv_run(w->loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(w->loop);
	uv_mutex_destroy(&w->msg_lock);
	free(w->listeners);
	w->listeners = NULL;
	conf_set_unref(w->cur);
	w->cur = NULL;
}

/* Password-check turns per loop: AUTH_HASH_CONCURRENCY split, so the total (memory) holds. */
static unsigned
hash_turns(unsigned n)
{
	unsigned t = AUTH_HASH_CONCURRENCY / (n ? n : 1);

	return t < 1 ? 1 : t;
}

int
workers_start(struct daemon *d, unsigned n)
{
	size_t i, made = 0;

	auth_queue_init(&d->hashq, d->loop, hash_turns(n));
	if (n <= 1)
		return 0;
	d->workers = calloc(n - 1, sizeof *d->workers);
	if (d->workers == NULL) {
		log_msg(LOG_ERR, "workers: out of memory");
		return -1;
	}
	for (i = 0; i < n - 1; i++, made++) {
		struct daemon *w = &d->workers[i];

		if (worker_init(d, w, (unsigned)i + 1, hash_turns(n)) != 0) {
			log_msg(LOG_ERR, "worker %zu: cannot set up its event loop", i + 1);
			goto fail;
		}
		if (listen_clone_all(d, w) != 0) {
			made++;
			goto fail;
		}
	}
	uv_async_init(d->loop, &d->worker_done, on_worker_done);
	d->worker_done.data = d;
	for (i = 0; i < n - 1; i++) {
		struct daemon *w = &d->workers[i];

		w->running = 1;
		if (uv_thread_create(&w->thread, worker_main, w) != 0) {
			/* Threads already started keep serving; this one and the rest never will. */
			log_msg(LOG_ERR, "workers: cannot start thread %zu; serving with %zu loops",
			        i + 1, i + 1);
			for (; i < n - 1; i++) {
				d->workers[i].running = 0;
				worker_discard(&d->workers[i]);
			}
			break;
		}
		d->nworkers = i + 1;   /* joined by workers_join */
		d->workers_left++;
	}
	if (d->workers_left == 0) {
		uv_close((uv_handle_t *)&d->worker_done, NULL);
		free(d->workers);
		d->workers = NULL;
		d->nworkers = 0;
	}
	return 0;
fail:
	for (i = 0; i < made; i++)
		worker_discard(&d->workers[i]);
	free(d->workers);
	d->workers = NULL;
	return -1;
}

void
workers_post(struct daemon *d, unsigned msgs, struct conf_set *cs, uint32_t grace)
{
	size_t i;

	for (i = 0; i < d->nworkers; i++) {
		struct daemon *w = &d->workers[i];

		uv_mutex_lock(&w->msg_lock);
		if (!w->gone && w->running) {
			w->msgs |= msgs;
			if (msgs & DMSG_RELOAD) {
				conf_set_unref(w->next_cur);
				w->next_cur = conf_set_ref(cs);
			}
			if (msgs & DMSG_STOP)
				w->grace = grace;
			/* Under the lock: the worker closes wake only after setting gone. */
			uv_async_send(&w->wake);
		}
		uv_mutex_unlock(&w->msg_lock);
	}
}

static void
counters_add(struct counters *sum, const struct counters *c)
{
	sum->connections += c->connections;
	sum->refused += c->refused;
	sum->logins += c->logins;
	sum->login_failures += c->login_failures;
	sum->retr_msgs += c->retr_msgs;
	sum->retr_bytes += c->retr_bytes;
	sum->deleted += c->deleted;
	sum->deleted_dele += c->deleted_dele;
	sum->deleted_download += c->deleted_download;
	sum->expired += c->expired;
	sum->reloads += c->reloads;
}

void
workers_wait_stopped(struct daemon *d, uint64_t timeout_ms)
{
	uint64_t end = uv_hrtime() + timeout_ms * 1000000u, now;

	uv_mutex_lock(&d->sh->stop_lock);
	while (d->sh->stopped < d->nworkers && (now = uv_hrtime()) < end)
		(void)uv_cond_timedwait(&d->sh->stop_cond, &d->sh->stop_lock, end - now);
	if (d->sh->stopped < d->nworkers)
		log_msg(LOG_WARN, "shutdown: %zu of %zu workers still accepting after %llu ms",
		        d->nworkers - d->sh->stopped, d->nworkers, (unsigned long long)timeout_ms);
	uv_mutex_unlock(&d->sh->stop_lock);
}

void
workers_counters(const struct daemon *d, struct counters *sum)
{
	size_t i;

	memset(sum, 0, sizeof *sum);
	counters_add(sum, &d->stats);
	for (i = 0; i < d->nworkers; i++)
		counters_add(sum, &d->workers[i].stats);
}

void
workers_join(struct daemon *d)
{
	size_t i;

	for (i = 0; i < d->nworkers; i++) {
		struct daemon *w = &d->workers[i];

		uv_thread_join(&w->thread);
		counters_add(&d->stats, &w->stats);   /* the final counters line still sees them */
		uv_mutex_destroy(&w->msg_lock);
		free(w->listeners);
		conf_set_unref(w->next_cur);
		conf_set_unref(w->cur);
	}
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
}

unsigned
workers_default(void)
{
	unsigned n = uv_available_parallelism();

	return n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
}
