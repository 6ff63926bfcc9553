/*
 * Unit tests for policy/retention.c: the keep-or-remove decision as a pure
 * function of (rule, message state, now), at UPDATE and at a sweep, with the
 * day boundaries in pairs. Tests only through policy/retention.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "policy/retention.h"

#define DAY ((int64_t)86400)
#define T0  ((int64_t)1700000000)   /* a first download or an arrival */

static const struct rule R_DELETE  = { RET_DELETE, DAYS_NEVER, 0, 0 };
static const struct rule R_KEEP30  = { RET_KEEP, 30, 0, 0 };
static const struct rule R_KEEP7   = { RET_KEEP, 7, 0, 0 };
static const struct rule R_KEEP0   = { RET_KEEP, 0, 0, 0 };
static const struct rule R_FOREVER = { RET_KEEP, DAYS_NEVER, 0, 0 };

static struct rule with_unread(struct rule r, int32_t days)
{
	r.unread_days = days;
	return r;
}

/* A message never downloaded, arrived at T0, state read fine. */
static struct msg_meta fresh(void)
{
	struct msg_meta m;

	memset(&m, 0, sizeof m);
	m.arrived = T0;
	m.state_ok = 1;
	return m;
}

/* A message first downloaded at T0 with promised days. */
static struct msg_meta recorded(int32_t promised)
{
	struct msg_meta m = fresh();

	m.has_record = 1;
	m.first_download = T0;
	m.promised_days = promised;
	m.seen = 1;
	m.arrived = T0 - DAY;
	return m;
}

/* Decide; checks that *cause is set exactly for DELETE and why only for KEEP. */
static enum decision decide(const struct rule *r, const struct msg_meta *m, int64_t now,
                            enum when w, enum cause *cause, const char **why)
{
	enum cause c = (enum cause)99;
	const char *y = "garbage";
	enum decision d = retention_decide(r, m, now, w, &c, &y);

	if (d == KEEP)
		assert_int_equal(c, CAUSE_NONE);
	else
		assert_null(y);
	if (cause != NULL)
		*cause = c;
	if (why != NULL)
		*why = y;
	return d;
}

/* KEEP for a reason of doubt (why set). */
static void assert_doubt(const struct rule *r, const struct msg_meta *m, int64_t now, enum when w)
{
	const char *why = NULL;

	assert_int_equal(decide(r, m, now, w, NULL, &why), KEEP);
	assert_non_null(why);
	assert_true(strlen(why) > 0);
}

/* Plain KEEP: nothing doubtful, just not time yet (or never). */
static void assert_keep(const struct rule *r, const struct msg_meta *m, int64_t now, enum when w)
{
	const char *why = "x";

	assert_int_equal(decide(r, m, now, w, NULL, &why), KEEP);
	assert_null(why);
}

static void assert_delete(const struct rule *r, const struct msg_meta *m, int64_t now,
                          enum when w, enum cause expect)
{
	enum cause c = CAUSE_NONE;

	assert_int_equal(decide(r, m, now, w, &c, NULL), DELETE);
	assert_int_equal(c, expect);
}

/* ---- AT_UPDATE ---- */

static void test_update_dele_always_honoured(void **state)
{
	const struct rule *rules[] = { &R_DELETE, &R_KEEP30, &R_FOREVER, &R_KEEP0 };
	struct msg_meta m;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof rules / sizeof rules[0]; i++) {
		m = fresh();
		m.dele = 1;
		assert_delete(rules[i], &m, T0, AT_UPDATE, CAUSE_DELE);
		/* even with the state file unreadable, clock skew, unknown arrival */
		m.state_ok = 0;
		m.arrived = -1;
		assert_delete(rules[i], &m, 0, AT_UPDATE, CAUSE_DELE);
		/* even against a promise never to remove it */
		m = recorded(DAYS_NEVER);
		m.dele = 1;
		assert_delete(rules[i], &m, T0 + DAY, AT_UPDATE, CAUSE_DELE);
	}
}

static void test_update_retr_under_delete(void **state)
{
	struct msg_meta m = fresh();

	(void)state;
	m.retr_now = 1;
	assert_delete(&R_DELETE, &m, T0, AT_UPDATE, CAUSE_DOWNLOAD);
	/* the caller may already have written this session's record (promise 0) */
	m = recorded(0);
	m.retr_now = 1;
	assert_delete(&R_DELETE, &m, T0, AT_UPDATE, CAUSE_DOWNLOAD);
	/* a seen flag set by someone else does not matter: this session downloaded it */
	m = fresh();
	m.retr_now = 1;
	m.seen = 1;
	assert_delete(&R_DELETE, &m, T0, AT_UPDATE, CAUSE_DOWNLOAD);
}

static void test_update_retr_under_keep_is_kept(void **state)
{
	struct msg_meta m = fresh();

	(void)state;
	m.retr_now = 1;
	assert_keep(&R_KEEP30, &m, T0, AT_UPDATE);
	assert_keep(&R_FOREVER, &m, T0, AT_UPDATE);
	/* keep_days 0 is removed by the next sweep, not at UPDATE */
	assert_keep(&R_KEEP0, &m, T0, AT_UPDATE);
}

/* TOP is not a download: the session passes retr_now = 0. */
static void test_update_not_downloaded_is_kept(void **state)
{
	struct rule r = with_unread(R_DELETE, 1);
	struct msg_meta m = fresh();

	(void)state;
	assert_keep(&R_DELETE, &m, T0, AT_UPDATE);
	assert_keep(&r, &m, T0 + 100 * DAY, AT_UPDATE);
}

/* UPDATE only removes what this session caused; periods are for the sweep. */
static void test_update_leaves_expiry_to_sweep(void **state)
{
	struct rule r = with_unread(R_KEEP7, 1);
	struct msg_meta m = recorded(7);

	(void)state;
	assert_keep(&r, &m, T0 + 365 * DAY, AT_UPDATE);
	m = fresh();
	assert_keep(&r, &m, T0 + 365 * DAY, AT_UPDATE);
}

static void test_update_state_doubt_keeps_download(void **state)
{
	struct msg_meta m = fresh();

	(void)state;
	m.retr_now = 1;
	m.state_ok = 0;
	assert_doubt(&R_DELETE, &m, T0, AT_UPDATE);
}

/* Downloaded under keep_days 30, the admin switches to delete, downloaded again. */
static void test_update_delete_honours_older_promise(void **state)
{
	struct msg_meta m = recorded(30);

	(void)state;
	m.retr_now = 1;
	assert_keep(&R_DELETE, &m, T0 + 10 * DAY, AT_UPDATE);
	assert_keep(&R_DELETE, &m, T0 + 30 * DAY - 1, AT_UPDATE);
	assert_delete(&R_DELETE, &m, T0 + 30 * DAY, AT_UPDATE, CAUSE_KEEP_DAYS);
	m = recorded(DAYS_NEVER);
	m.retr_now = 1;
	assert_keep(&R_DELETE, &m, T0 + 36500 * DAY, AT_UPDATE);
	/* and the clock before that record is doubt */
	m = recorded(0);
	m.retr_now = 1;
	assert_doubt(&R_DELETE, &m, T0 - 1, AT_UPDATE);
}

/* ---- AT_SWEEP with a download record ---- */

static void test_sweep_keep_days_boundary(void **state)
{
	struct msg_meta m = recorded(30);

	(void)state;
	assert_keep(&R_KEEP30, &m, T0, AT_SWEEP);
	assert_keep(&R_KEEP30, &m, T0 + 30 * DAY - 1, AT_SWEEP);
	assert_delete(&R_KEEP30, &m, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
	assert_delete(&R_KEEP30, &m, T0 + 31 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
	m = recorded(1);
	assert_keep(&(struct rule){ RET_KEEP, 1, 0, 0 }, &m, T0 + DAY - 1, AT_SWEEP);
	assert_delete(&(struct rule){ RET_KEEP, 1, 0, 0 }, &m, T0 + DAY, AT_SWEEP,
	              CAUSE_KEEP_DAYS);
}

static void test_sweep_forever(void **state)
{
	struct msg_meta m = recorded(DAYS_NEVER);

	(void)state;
	assert_keep(&R_FOREVER, &m, T0 + 36500 * DAY, AT_SWEEP);
	assert_keep(&R_FOREVER, &m, INT64_MAX, AT_SWEEP);
}

static void test_sweep_promise_longer_than_today(void **state)
{
	struct msg_meta m = recorded(30);

	(void)state;
	/* recorded 30, today 7: kept until 30 */
	assert_keep(&R_KEEP7, &m, T0 + 7 * DAY, AT_SWEEP);
	assert_keep(&R_KEEP7, &m, T0 + 30 * DAY - 1, AT_SWEEP);
	assert_delete(&R_KEEP7, &m, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
	/* recorded 30, today delete: still kept until 30 */
	assert_keep(&R_DELETE, &m, T0 + 30 * DAY - 1, AT_SWEEP);
	assert_delete(&R_DELETE, &m, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
}

static void test_sweep_today_longer_than_promise(void **state)
{
	struct msg_meta m = recorded(7);

	(void)state;
	/* recorded 7, today 30: kept until 30 */
	assert_keep(&R_KEEP30, &m, T0 + 7 * DAY, AT_SWEEP);
	assert_keep(&R_KEEP30, &m, T0 + 30 * DAY - 1, AT_SWEEP);
	assert_delete(&R_KEEP30, &m, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
}

static void test_sweep_never_on_either_side(void **state)
{
	struct msg_meta m = recorded(DAYS_NEVER);

	(void)state;
	/* recorded NEVER: today's rule cannot shorten it */
	assert_keep(&R_KEEP7, &m, T0 + 36500 * DAY, AT_SWEEP);
	assert_keep(&R_DELETE, &m, T0 + 36500 * DAY, AT_SWEEP);
	/* today NEVER with recorded 7 */
	m = recorded(7);
	assert_keep(&R_FOREVER, &m, T0 + 7 * DAY, AT_SWEEP);
	assert_keep(&R_FOREVER, &m, T0 + 36500 * DAY, AT_SWEEP);
}

/* A download under delete that survived its UPDATE goes at the next sweep, as "download". */
static void test_sweep_delete_mode_record(void **state)
{
	struct msg_meta m = recorded(0);

	(void)state;
	assert_delete(&R_DELETE, &m, T0, AT_SWEEP, CAUSE_DOWNLOAD);
	assert_delete(&R_DELETE, &m, T0 + DAY, AT_SWEEP, CAUSE_DOWNLOAD);
	/* keep_days 0 is the same arithmetic and the same cause */
	assert_delete(&R_KEEP0, &m, T0, AT_SWEEP, CAUSE_DOWNLOAD);
	/* the clock one second before the download is doubt, not zero days */
	assert_doubt(&R_DELETE, &m, T0 - 1, AT_SWEEP);
	/* promise 0, today 30: today's longer period holds, and names the cause */
	assert_keep(&R_KEEP30, &m, T0 + 30 * DAY - 1, AT_SWEEP);
	assert_delete(&R_KEEP30, &m, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
}

static void test_sweep_clock_before_download(void **state)
{
	struct msg_meta m = recorded(7);

	(void)state;
	assert_doubt(&R_KEEP7, &m, T0 - 1, AT_SWEEP);
	assert_doubt(&R_KEEP7, &m, 0, AT_SWEEP);
	assert_doubt(&R_KEEP7, &m, INT64_MIN, AT_SWEEP);
}

static void test_sweep_impossible_record(void **state)
{
	struct msg_meta m = recorded(7);

	(void)state;
	m.first_download = -5;
	assert_doubt(&R_DELETE, &m, T0, AT_SWEEP);
	m = recorded(-7);
	assert_doubt(&R_DELETE, &m, T0 + 365 * DAY, AT_SWEEP);
	/* far-future record and clock: no overflow, just arithmetic */
	m = recorded(30);
	m.first_download = INT64_MAX - DAY;
	assert_keep(&R_KEEP30, &m, INT64_MAX, AT_SWEEP);
	m.first_download = 0;
	assert_delete(&R_KEEP30, &m, INT64_MAX, AT_SWEEP, CAUSE_KEEP_DAYS);
}

/* unread_days does not touch a downloaded message. */
static void test_sweep_record_ignores_unread(void **state)
{
	struct rule r = with_unread(R_FOREVER, 1);
	struct msg_meta m = recorded(DAYS_NEVER);

	(void)state;
	assert_keep(&r, &m, T0 + 365 * DAY, AT_SWEEP);
	r = with_unread(R_KEEP30, 1);
	m = recorded(30);
	assert_keep(&r, &m, T0 + 30 * DAY - 1, AT_SWEEP);
}

/* ---- AT_SWEEP without a record ---- */

static void test_sweep_unread_boundary(void **state)
{
	const struct rule *bases[] = { &R_DELETE, &R_KEEP30, &R_FOREVER };
	struct msg_meta m = fresh();
	struct rule r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bases / sizeof bases[0]; i++) {
		r = with_unread(*bases[i], 10);
		assert_keep(&r, &m, T0, AT_SWEEP);
		assert_keep(&r, &m, T0 + 10 * DAY - 1, AT_SWEEP);
		assert_delete(&r, &m, T0 + 10 * DAY, AT_SWEEP, CAUSE_UNREAD_DAYS);
	}
}

static void test_sweep_unread_off(void **state)
{
	const struct rule *bases[] = { &R_DELETE, &R_KEEP0, &R_KEEP30, &R_FOREVER };
	struct msg_meta m = fresh();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bases / sizeof bases[0]; i++) {
		assert_keep(bases[i], &m, T0 + 36500 * DAY, AT_SWEEP);
		/* with unread_days off an unknown arrival is not even a question */
		m.arrived = -1;
		assert_keep(bases[i], &m, T0, AT_SWEEP);
		m.arrived = T0;
	}
}

static void test_sweep_unread_doubt(void **state)
{
	struct rule r = with_unread(R_FOREVER, 10);
	struct msg_meta m = fresh();

	(void)state;
	assert_doubt(&r, &m, T0 - 1, AT_SWEEP);          /* clock before arrival */
	m.arrived = -1;
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);  /* arrival unknown */
	m.arrived = INT64_MIN;
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);
}

/* S flag without our record: someone read it elsewhere; we cannot date it. */
static void test_sweep_seen_without_record(void **state)
{
	struct rule r = with_unread(R_DELETE, 1);
	struct msg_meta m = fresh();

	(void)state;
	m.seen = 1;
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);
	assert_doubt(&R_DELETE, &m, T0 + 365 * DAY, AT_SWEEP);
}

/* A message file the sweep cannot read: kept in doubt once due, plain keep before. */
static void test_sweep_unreadable_file(void **state)
{
	struct rule r = with_unread(R_KEEP30, 10);
	struct msg_meta m = fresh(), d = recorded(30);

	(void)state;
	m.unreadable = 1;
	assert_keep(&r, &m, T0, AT_SWEEP);                    /* not due: no doubt to report */
	assert_doubt(&r, &m, T0 + 10 * DAY, AT_SWEEP);        /* unread_days due */
	d.unreadable = 1;
	assert_doubt(&r, &d, T0 + 30 * DAY, AT_SWEEP);        /* keep_days due */
	d.unreadable = 0;
	assert_delete(&r, &d, T0 + 30 * DAY, AT_SWEEP, CAUSE_KEEP_DAYS);
}

/* An unreadable state file keeps everything at a sweep; DELE still wins at UPDATE. */
static void test_state_not_ok(void **state)
{
	struct rule r = with_unread(R_DELETE, 1);
	struct msg_meta m = recorded(0);

	(void)state;
	m.state_ok = 0;
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);
	m = fresh();
	m.state_ok = 0;
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);
	m.dele = 1;
	assert_delete(&r, &m, T0 + 365 * DAY, AT_UPDATE, CAUSE_DELE);
	/* a sweep never acts on a stale DELE flag */
	assert_doubt(&r, &m, T0 + 365 * DAY, AT_SWEEP);
	m.state_ok = 1;
	m.dele = 1;
	m.retr_now = 1;
	assert_delete(&R_FOREVER, &m, T0, AT_UPDATE, CAUSE_DELE);
}

/* retr_now and dele are UPDATE facts: a sweep looks at the record only. */
static void test_sweep_ignores_session_flags(void **state)
{
	struct msg_meta m = fresh();

	(void)state;
	m.dele = 1;
	m.retr_now = 1;
	assert_keep(&R_DELETE, &m, T0 + 365 * DAY, AT_SWEEP);
}

static void test_null_args_and_unknown(void **state)
{
	struct msg_meta m = fresh();
	const char *why = NULL;
	struct rule odd = { RET_UNSET, 3, 0, 0 };

	(void)state;
	m.dele = 1;
	assert_int_equal(retention_decide(NULL, &m, T0, AT_UPDATE, NULL, &why), KEEP);
	assert_non_null(why);
	assert_int_equal(retention_decide(&R_DELETE, NULL, T0, AT_SWEEP, NULL, NULL), KEEP);
	assert_int_equal(retention_decide(&R_DELETE, &m, T0, (enum when)7, NULL, &why), KEEP);
	assert_non_null(why);
	/* cause and why may both be NULL */
	assert_int_equal(retention_decide(&R_DELETE, &m, T0, AT_UPDATE, NULL, NULL), DELETE);
	/* a rule with no retention never removes */
	m = recorded(0);
	assert_keep(&odd, &m, T0 + 365 * DAY, AT_SWEEP);
}

static void test_cause_names(void **state)
{
	(void)state;
	assert_string_equal(cause_name(CAUSE_NONE), "none");
	assert_string_equal(cause_name(CAUSE_DELE), "dele");
	assert_string_equal(cause_name(CAUSE_DOWNLOAD), "download");
	assert_string_equal(cause_name(CAUSE_KEEP_DAYS), "keep_days");
	assert_string_equal(cause_name(CAUSE_UNREAD_DAYS), "unread_days");
	assert_string_equal(cause_name((enum cause)42), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_dele_always_honoured),
		cmocka_unit_test(test_update_retr_under_delete),
		cmocka_unit_test(test_update_retr_under_keep_is_kept),
		cmocka_unit_test(test_update_not_downloaded_is_kept),
		cmocka_unit_test(test_update_leaves_expiry_to_sweep),
		cmocka_unit_test(test_update_state_doubt_keeps_download),
		cmocka_unit_test(test_update_delete_honours_older_promise),
		cmocka_unit_test(test_sweep_keep_days_boundary),
		cmocka_unit_test(test_sweep_forever),
		cmocka_unit_test(test_sweep_promise_longer_than_today),
		cmocka_unit_test(test_sweep_today_longer_than_promise),
		cmocka_unit_test(test_sweep_never_on_either_side),
		cmocka_unit_test(test_sweep_delete_mode_record),
		cmocka_unit_test(test_sweep_clock_before_download),
		cmocka_unit_test(test_sweep_impossible_record),
		cmocka_unit_test(test_sweep_record_ignores_unread),
		cmocka_unit_test(test_sweep_unread_boundary),
		cmocka_unit_test(test_sweep_unread_off),
		cmocka_unit_test(test_sweep_unread_doubt),
		cmocka_unit_test(test_sweep_seen_without_record),
		cmocka_unit_test(test_sweep_unreadable_file),
		cmocka_unit_test(test_state_not_ok),
		cmocka_unit_test(test_sweep_ignores_session_flags),
		cmocka_unit_test(test_null_args_and_unknown),
		cmocka_unit_test(test_cause_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
