"""Retention policies against the real binary (README "Retention policies"): the EXPIRE and
LOGIN-DELAY capabilities, delete-after-download at UPDATE, keep N days and the promise rule,
unread_days, `pop3d --expire` (--dry-run, --user, --at, --json, a locked maildrop), LOGIN-DELAY
enforcement, getmail6 and fetchmail in keep mode under each policy, and SIGKILL during UPDATE and
during a sweep.

Time is moved with `pop3d --expire --at`, never waited for. The daemon's own periodic sweep runs
with expire_interval = 1..3 s, and its tests wait for its log lines (and check the sweep's
removal in the SIGUSR1 counters).
"""
import base64
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

# tests/run.py puts this folder on sys.path; `python3 -m unittest tests/integration/test_policy.py`
# does not.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (IO_TIMEOUT, Pop3TestCase, apop_timestamp, child_env, deliver, expected_retr,
                     getmail_dirs, getmail_rc, pop3d_path, run_tool, snapshot)
import test_privdrop as privdrop_test   # (a module, so its tests do not run twice)
from policyutil import (DAY, at_midnight, by_base, capa_policy, contents, count_files, fill,
                        iso, kill9, kill_midway, message, pipeline, place, read_state, restart,
                        run_expire, stop_while_open, tree, uidl_map, EXPIRE_TIMEOUT)

TOOL_TIMEOUT = 90


def policy(text):
    return "policy = { %s };\n" % text


class PolicyCase(Pop3TestCase):
    """Shared helpers: log in, download, expire, and look at one maildir."""

    def login(self, d, user, password=None):
        c = self.connect(d)
        self.assertOK(c.greeting)
        c.login(user, password or d.password(user))
        return c

    def download(self, d, user, uidls, quit=True):
        """One session: RETR each of uidls (checked byte for byte), then QUIT or drop the
        connection; returns once the daemon logged the session's end."""
        md = d.maildir(user)
        files = {b: os.path.join(md, p[0]) for b, p in by_base(md).items()}
        c = self.login(d, user)
        num = uidl_map(c)
        for u in uidls:
            st, body = c.cmd_multi("RETR %d" % num[u])
            self.assertOK(st)
            with open(files[u], "rb") as f:
                self.assertEqual(body, expected_retr(f.read()), u)
        ends = d.count_log("session end") + 1
        if quit:
            c.quit()
        else:
            c.close()
        d.wait_session_end(ends)
        return c

    def expire(self, d, *args, ok=True):
        r = run_expire(d.conf, *args)
        if ok:
            self.assertEqual(r.rc, 0, r.describe())
            self.assertEqual(r.of("failed"), [], r.describe())
            self.assertEqual(r.of("note"), [], r.describe())
        return r

    def assertNoStateDoubt(self, md):
        bad = [n for n in os.listdir(md) if n.startswith("pop3d.state.bad")]
        self.assertEqual(bad, [], "state file was set aside")
        read_state(md)   # raises when it does not follow state.h


# ---------------------------------------------------------------- CAPA: EXPIRE and LOGIN-DELAY

class CapaTest(PolicyCase):

    def capa_before(self, d):
        c = self.connect(d)
        lines = capa_policy(c)
        c.quit()
        return lines

    def capa_after(self, d, user):
        c = self.login(d, user)
        lines = capa_policy(c)
        c.quit()
        return lines

    def test_mixed_users_before_and_after_login(self):
        users = {u: "{PLAIN}pw" for u in ("alice", "bob@example.org", "frank@EXAMPLE.org", "carol",
                                          "dave", "erin", "gina@example.org")}
        d = self.daemon(users=users, extra_config=policy(
            'retention = "keep";'                                         # forever
            ' domains = ( { domain = "Example.ORG"; retention = "delete"; } );'
            ' users = ( { user = "carol"; keep_days = 7; login_delay = 300; },'
            '           { user = "dave"; keep_days = 30; unread_days = 10; },'   # unread wins
            '           { user = "erin"; keep_days = 5; unread_days = 20; },'    # keep wins
            '           { user = "gina@example.org"; unread_days = 3; } );'))    # still delete
        self.assertEqual(self.capa_before(d), ["EXPIRE 0 USER", "LOGIN-DELAY 300 USER"])
        want = {
            "alice": ["EXPIRE NEVER"],
            "bob@example.org": ["EXPIRE 0"],
            "frank@EXAMPLE.org": ["EXPIRE 0"],          # the domain matches case-insensitively
            "carol": ["EXPIRE 7", "LOGIN-DELAY 300"],
            "dave": ["EXPIRE 10"],
            "erin": ["EXPIRE 5"],
            "gina@example.org": ["EXPIRE 0"],
        }
        for user, lines in want.items():
            self.assertEqual(self.capa_after(d, user), lines, user)

    def test_same_rule_for_everybody_has_no_user_suffix(self):
        d = self.daemon(extra_config=policy("keep_days = 5; login_delay = 0;"))
        self.assertEqual(self.capa_before(d), ["EXPIRE 5"])          # no LOGIN-DELAY line at all
        for user in d.users:
            self.assertEqual(self.capa_after(d, user), ["EXPIRE 5"], user)

    def test_same_login_delay_for_everybody(self):
        d = self.daemon(extra_config=policy('retention = "delete"; login_delay = 60;'))
        self.assertEqual(self.capa_before(d), ["EXPIRE 0", "LOGIN-DELAY 60"])
        self.assertEqual(self.capa_after(d, "alice"), ["EXPIRE 0", "LOGIN-DELAY 60"])

    def test_no_policy_group_means_never(self):
        d = self.daemon()
        self.assertEqual(self.capa_before(d), ["EXPIRE NEVER"])
        self.assertEqual(self.capa_after(d, "alice"), ["EXPIRE NEVER"])

    def test_users_sharing_one_override_do_not_differ(self):
        # README: USER follows the value "when they differ between users". Both users get the
        # domain's rule, so they do not differ, although the (unused) defaults do.
        users = {"bob@example.org": "{PLAIN}pw", "gina@example.org": "{PLAIN}pw"}
        d = self.daemon(users=users, extra_config=policy(
            'domains = ( { domain = "example.org"; retention = "delete"; login_delay = 30; } );'))
        for user in users:
            self.assertEqual(self.capa_after(d, user), ["EXPIRE 0", "LOGIN-DELAY 30"], user)
        self.assertEqual(self.capa_before(d), ["EXPIRE 0", "LOGIN-DELAY 30"])


# ---------------------------------------------------------------- retention = "delete"

class DeleteOnDownloadTest(PolicyCase):

    def setUp(self):
        self.d = self.daemon(extra_config=policy('retention = "delete";'))
        self.md = self.d.maildir("alice")
        self.uidls = [deliver(self.md, message("del-%d" % i), mtime=time.time() - 100 + i)
                      for i in range(4)]

    def removes(self):
        return self.d.log_lines("remove id=")

    def ended(self, n=1):
        """The n-th "session end" line (README: it carries removed=N)."""
        return self.d.wait_session_end(n)

    def test_retr_removed_at_quit_top_and_untouched_stay(self):
        before = snapshot(self.md)
        m1, m2, m3, m4 = self.uidls
        c = self.login(self.d, "alice")
        num = uidl_map(c)
        st, body = c.cmd_multi("RETR %d" % num[m1])
        self.assertEqual(body, expected_retr(before["new/" + m1]))
        self.assertOK(c.cmd_multi("TOP %d 0" % num[m2])[0])
        st, body = c.cmd_multi("TOP %d 1000" % num[m3])          # the whole message, by TOP
        self.assertEqual(body, expected_retr(before["new/" + m3]))
        self.assertOK(c.cmd("DELE %d" % num[m4]))
        c.quit()
        # one DELE, two files gone: the policy's removal has a count of its own
        self.assertIn(" dele=1 removed=2 removed_policy=1 ", self.ended())
        after = snapshot(self.md)
        self.assertEqual(after, {k: before[k] for k in ("new/" + m2, "new/" + m3)})
        rm = self.removes()
        self.assertEqual(len(rm), 2, rm)
        self.assertEqual(sum(1 for l in rm if "uidl=%s cause=download" % m1 in l), 1, rm)
        self.assertEqual(sum(1 for l in rm if "uidl=%s cause=dele" % m4 in l), 1, rm)
        # the next session sees exactly what is left; a sweep finds nothing to do
        c = self.login(self.d, "alice")
        self.assertEqual(set(uidl_map(c)), {m2, m3})
        c.quit()
        r = self.expire(self.d, "--at", "+3650d")
        self.assertEqual(r.removed(), {})
        self.assertEqual(snapshot(self.md), after)

    def test_dropped_connection_removes_nothing(self):
        before = snapshot(self.md)
        self.download(self.d, "alice", self.uidls[:3], quit=False)
        self.assertEqual(snapshot(self.md), before)
        self.assertEqual(self.removes(), [])
        self.assertIn('reason="disconnected"', self.d.log_lines("session end")[-1])
        state = read_state(self.md)
        self.assertTrue(state is None or state[1] == {}, state)
        r = self.expire(self.d)                                  # nothing downloaded, nothing due
        self.assertEqual(r.removed(), {})
        self.assertEqual(snapshot(self.md), before)

    def test_top_only_removes_nothing(self):
        before = snapshot(self.md)
        c = self.login(self.d, "alice")
        for n in range(1, 5):
            st, body = c.cmd_multi("TOP %d 100000" % n)
            self.assertOK(st)
        c.quit()
        self.assertIn(" removed=0 removed_policy=0 ", self.ended())
        self.assertEqual(snapshot(self.md), before)
        self.assertEqual(self.removes(), [])
        self.assertEqual(self.expire(self.d).removed(), {})
        self.assertEqual(snapshot(self.md), before)


# ---------------------------------------------------------------- keep N days, the promise

class KeepDaysTest(PolicyCase):

    def start(self, text, n=2):
        self.d = self.daemon(extra_config=policy(text))
        self.md = self.d.maildir("alice")
        self.uidls = [deliver(self.md, message("keep-%d" % i), mtime=time.time() - 100 + i)
                      for i in range(n)]

    def due(self, *args):
        return self.expire(self.d, "--dry-run", *args).removed()

    def test_kept_n_days_after_first_download(self):
        self.start("keep_days = 3;")
        m1, m2 = self.uidls
        t0 = time.time()
        self.download(self.d, "alice", [m1])
        t1 = time.time()
        self.assertIn("cur/%s:2,S" % m1, snapshot(self.md))     # README: retrieved -> cur/, S
        first, days = read_state(self.md)[1][m1]
        self.assertEqual(days, 3)
        self.assertTrue(math.floor(t0) <= first <= math.ceil(t1), (t0, first, t1))
        self.assertEqual(self.due(), {})
        self.assertEqual(self.due("--at", "+2d"), {})
        # "stays at least N days after its first download": exactly N days is enough
        self.assertEqual(self.due("--at", iso(first + 3 * DAY - 1)), {})
        self.assertEqual(self.due("--at", iso(first + 3 * DAY)), {m1: "keep_days"})
        # the same boundary from the client's clock alone
        self.assertEqual(self.due("--at", iso(math.floor(t0) + 3 * DAY - 1)), {})
        self.assertEqual(self.due("--at", iso(math.ceil(t1) + 3 * DAY)), {m1: "keep_days"})
        r = self.expire(self.d, "--at", "+3d")
        self.assertEqual(r.removed(), {m1: "keep_days"})
        ev = r.of("removed")[0]
        self.assertEqual((ev["user"], ev["downloaded_days"]), ("alice", "3"))
        self.assertEqual(set(snapshot(self.md)), {"new/" + m2})
        self.assertNotIn(m1, read_state(self.md)[1])             # its record went with it

    def test_keep_days_zero_goes_at_the_next_sweep_not_at_update(self):
        self.start("keep_days = 0;")
        m1, m2 = self.uidls
        self.download(self.d, "alice", [m1])
        self.assertIn("cur/%s:2,S" % m1, snapshot(self.md))
        self.assertEqual(self.d.log_lines("remove id="), [])
        r = self.expire(self.d)
        self.assertEqual(set(r.removed()), {m1})
        self.assertIn(r.removed()[m1], ("download", "keep_days"))
        self.assertEqual(set(snapshot(self.md)), {"new/" + m2})

    def test_lowering_keep_days_keeps_the_promise(self):
        self.start("keep_days = 30;")
        m1, m2 = self.uidls
        self.download(self.d, "alice", [m1])
        self.assertEqual(read_state(self.md)[1][m1][1], 30)
        restart(self.d, policy("keep_days = 7;"))
        c = self.login(self.d, "alice")
        self.assertEqual(capa_policy(c), ["EXPIRE 7"])
        c.quit()
        self.download(self.d, "alice", [m2])                     # downloaded under the new rule
        recs = read_state(self.md)[1]
        self.assertEqual((recs[m1][1], recs[m2][1]), (30, 7))
        self.assertEqual(self.due("--at", "+8d"), {m2: "keep_days"})
        r = self.expire(self.d, "--at", "+8d")
        self.assertEqual(r.removed(), {m2: "keep_days"})
        self.assertEqual(set(snapshot(self.md)), {"cur/%s:2,S" % m1})
        self.assertEqual(self.due("--at", "+29d"), {})
        r = self.expire(self.d, "--at", "+30d")
        self.assertEqual(r.removed(), {m1: "keep_days"})
        self.assertEqual(snapshot(self.md), {})

    def test_forever_stays_forever_after_lowering(self):
        self.start('retention = "keep";')
        m1, m2 = self.uidls
        self.download(self.d, "alice", [m1])
        self.assertEqual(read_state(self.md)[1][m1][1], -1)
        restart(self.d, policy("keep_days = 1;"))
        self.download(self.d, "alice", [m2])
        self.assertEqual(self.due("--at", "+1d"), {m2: "keep_days"})
        self.assertEqual(self.due("--at", "+36500d"), {m2: "keep_days"})

    def test_switch_to_delete_keeps_an_earlier_promise(self):
        self.start("keep_days = 30;", n=3)
        m1, m2, m3 = self.uidls
        self.download(self.d, "alice", [m1])
        restart(self.d, policy('retention = "delete";'))
        c = self.login(self.d, "alice")
        num = uidl_map(c)
        self.assertOK(c.cmd_multi("RETR %d" % num[m1])[0])
        self.assertOK(c.cmd_multi("RETR %d" % num[m2])[0])
        c.quit()
        end = self.d.wait_session_end(1)                        # the log restarted with pop3d
        self.assertIn(" removed=1 ", end)
        self.assertEqual(set(snapshot(self.md)), {"cur/%s:2,S" % m1, "new/" + m3})
        self.assertEqual(self.due("--at", "+29d"), {})
        self.assertEqual(self.due("--at", "+30d"), {m1: "keep_days"})


# ---------------------------------------------------------------- unread_days

class UnreadDaysTest(PolicyCase):

    def test_never_downloaded_mail_expires_after_arrival(self):
        d = self.daemon(extra_config=policy("unread_days = 5;"))
        md = d.maildir("alice")
        now = int(time.time())
        late = now - 5 * DAY + 3600                          # due in one hour
        a = place(md, "%d.A.old" % now, message("A"), now - 6 * DAY)
        b = place(md, "%d.B.soon" % now, message("B"), late)
        c = place(md, "%d.C.new" % now, message("C"), now - 10)
        dl = place(md, "%d.D.downloaded" % now, message("D"), now - 30 * DAY)
        seen = place(md, "%d.E.seen" % now, message("E"), now - 30 * DAY, sub="cur", info=":2,S")
        self.download(d, "alice", [dl])             # now it has a record: unread_days is over
        self.assertEqual(read_state(md)[1][dl][1], -1)

        def due(*args):
            return self.expire(d, "--dry-run", *args).removed()

        r = self.expire(d, "--dry-run")
        self.assertEqual(r.removed(), {a: "unread_days"})
        self.assertEqual(r.user("alice")["kept_doubt"], "1")  # S flag without a record
        self.assertEqual(due("--at", iso(late + 5 * DAY - 1)), {a: "unread_days"})
        self.assertEqual(due("--at", iso(late + 5 * DAY)), {a: "unread_days", b: "unread_days"})
        self.assertEqual(due("--at", "+2h"), {a: "unread_days", b: "unread_days"})
        self.assertEqual(set(due("--at", "+5d")), {a, b, c})
        self.assertEqual(set(due("--at", "+3650d")), {a, b, c})
        r = self.expire(d)
        self.assertEqual(r.removed(), {a: "unread_days"})
        self.assertEqual(r.of("removed")[0]["age_days"], "6")
        self.assertEqual(set(by_base(md)), {b, c, dl, seen})


class TimeoutDownloadsNothingTest(PolicyCase):
    """README: a session that times out downloads nothing. Under "delete" and keep_days the
    RETRs of a session closed by the idle timeout leave the messages and no download record."""

    def test_idle_timeout_records_nothing(self):
        for text in ('retention = "delete";', "keep_days = 5;"):
            with self.subTest(policy=text):
                d = self.daemon(idle_timeout=1, extra_config=policy(text))
                md = d.maildir("alice")
                uidls = [deliver(md, message("t%d" % i), mtime=time.time() - 100 + i)
                         for i in range(2)]
                before = snapshot(md)
                c = self.login(d, "alice")
                num = uidl_map(c)
                for u in uidls:
                    self.assertOK(c.cmd_multi("RETR %d" % num[u])[0])
                c.wait_closed(timeout=15)
                d.wait_session_end(1)
                self.assertIn("retr=2 ", d.log_lines("session end")[-1])
                self.assertEqual(d.log_lines("update id="), [])
                self.assertEqual(snapshot(md), before)
                state = read_state(md)                   # at most the login, no record
                self.assertTrue(state is None or state[1] == {}, state)
                self.assertEqual(self.expire(d, "--at", "+3650d").removed(), {})


# ---------------------------------------------------------------- pop3d --expire

class ExpireCliTest(PolicyCase):
    """keep_days = 2, unread_days = 10. alice: two old unread messages, one young one, one
    downloaded now; bob@example.org: one old, one young."""

    def setUp(self):
        self.d = self.daemon(extra_config=policy("keep_days = 2; unread_days = 10;"))
        now = int(time.time())
        self.alice = self.d.maildir("alice")
        self.bob = self.d.maildir("bob@example.org")
        self.data = {}

        def put(md, token, mtime):
            name = "%d.%s" % (now, token)
            self.data[name] = message(token)
            return place(md, name, self.data[name], mtime)

        self.a_old = [put(self.alice, "a-old-%d" % i, now - 11 * DAY + i) for i in range(2)]
        self.a_young = put(self.alice, "a-young", now - 100)
        self.a_dl = put(self.alice, "a-dl", now - 50)
        self.b_old = put(self.bob, "b-old", now - 12 * DAY)
        self.b_young = put(self.bob, "b-young", now - 100)
        self.download(self.d, "alice", [self.a_dl])

    def trees(self):
        """Both maildirs in full, except that a sweep may create the empty pop3d.lock it locks
        (bob never logged in, so he has none yet)."""
        out = []
        for md in (self.alice, self.bob):
            t = tree(md)
            if t.get("./pop3d.lock", (b"",))[0] == b"":
                t.pop("./pop3d.lock", None)
            out.append(t)
        return out

    def test_dry_run_changes_nothing_but_says_what_would_go(self):
        before = self.trees()
        with open(os.path.join(self.alice, "pop3d.state"), "rb") as f:
            state = f.read()
        now_due = {u: "unread_days" for u in self.a_old + [self.b_old]}
        for args, due in ((("--dry-run",), now_due),
                          (("--dry-run", "--json"), now_due),
                          (("--dry-run", "--at", "+3d"), dict(now_due, **{self.a_dl: "keep_days"})),
                          (("--dry-run", "--at", "+10d", "--json"),
                           dict(now_due, **{self.a_dl: "keep_days",
                                            self.a_young: "unread_days",
                                            self.b_young: "unread_days"}))):
            r = self.expire(self.d, *args)
            self.assertEqual(r.removed(), due, r.describe())
            self.assertEqual(r.of("removed"), [], r.describe())
            s = r.summary()
            if "--json" in args:
                self.assertIs(s["dry_run"], True)
                self.assertEqual((s["removed"], s["would_remove"]), (0, len(due)))
            else:
                self.assertEqual((s["dry_run"], s["removed"], s["would_remove"]),
                                 ("yes", "0", str(len(due))))
            self.assertEqual(self.trees(), before, args)
            with open(os.path.join(self.alice, "pop3d.state"), "rb") as f:
                self.assertEqual(f.read(), state, args)
        # what the dry run announced is what a real run removes
        r = self.expire(self.d)
        self.assertEqual(r.removed(), now_due)
        self.assertEqual(r.summary()["dry_run"], "no")
        self.assertEqual(set(by_base(self.alice)), {self.a_young, self.a_dl})
        self.assertEqual(set(by_base(self.bob)), {self.b_young})

    def test_dry_run_leaves_tmp_alone(self):
        # tmp/ debris of a writer that died (a state or cache temp file): a real sweep may clean
        # it up, a dry run touches nothing (README: "nothing is touched").
        for name in ("pop3d.state.12345.abcdef", "pop3d.cache.12345.abcdef", "1.2.other"):
            place(self.alice, name, b"half-written\n", time.time() - 3600, sub="tmp")
        before = self.trees()
        self.expire(self.d, "--dry-run", "--at", "+30d")
        self.assertEqual(self.trees(), before)

    def test_user_limits_the_sweep(self):
        bob_before = tree(self.bob)
        r = self.expire(self.d, "--user", "alice")
        self.assertEqual(r.removed(), {u: "unread_days" for u in self.a_old})
        self.assertEqual({e["user"] for e in r.events if "user" in e}, {"alice"})
        self.assertEqual(r.summary()["users"], "1")
        self.assertEqual(tree(self.bob), bob_before)
        r = self.expire(self.d, "--user", "bob@example.org", "--json")
        self.assertEqual(r.removed(), {self.b_old: "unread_days"})
        self.assertEqual({e["user"] for e in r.events if "user" in e}, {"bob@example.org"})
        # an unknown user is an error, and nothing is swept
        before = self.trees()
        r = self.expire(self.d, "--user", "nobody", "--at", "+3650d", ok=False)
        self.assertNotEqual(r.rc, 0, r.describe())
        self.assertIn("unknown user", r.stdout + r.stderr)
        self.assertEqual(r.removed(), {})
        self.assertEqual(self.trees(), before)

    def test_json_lines_parse(self):
        text = self.expire(self.d, "--dry-run", "--at", "+3d")
        for dry in (True, False):
            args = ("--dry-run",) if dry else ()
            r = self.expire(self.d, "--json", "--at", "+3d", *args)
            lines = [l for l in r.stdout.split("\n") if l]
            self.assertEqual(len(lines), len(r.events))
            for line in lines:
                self.assertIsInstance(json.loads(line), dict, line)
            self.assertEqual(r.removed(), text.removed())
            gone = r.of("would_remove" if dry else "removed")
            self.assertEqual(len(gone), 4)
            for e in gone:
                self.assertLessEqual({"user", "uidl", "cause", "age_days", "size"}, set(e))
                self.assertIsInstance(e["age_days"], int)
                self.assertIsInstance(e["size"], int)
                self.assertEqual(e["size"], len(self.data[e["uidl"]]), e)
            dl = [e for e in gone if e["uidl"] == self.a_dl][0]
            self.assertEqual((dl["cause"], dl["downloaded_days"]), ("keep_days", 3))
            users = {e["user"]: e for e in r.of("user")}
            self.assertEqual(set(users), set(self.d.users))
            self.assertEqual(users["alice"]["messages"], 4)
            self.assertEqual(users["alice"]["would_remove" if dry else "removed"], 3)
            s = r.summary()
            self.assertEqual(s["event"], "summary")
            self.assertIs(s["dry_run"], dry)
            self.assertIsInstance(s["now"], int)
            self.assertEqual(s["would_remove" if dry else "removed"], 4)
            self.assertEqual((s["failed"], s["skipped_locked"]), (0, 0))
        self.assertEqual(set(by_base(self.alice)), {self.a_young})

    def test_locked_maildrop_is_skipped_then_swept_after_quit(self):
        c = self.login(self.d, "alice")                        # holds alice's maildrop lock
        st = c.cmd("STAT")
        self.assertOK(st)
        for args in ((), ("--json",)):
            r = self.expire(self.d, *args)
            skipped = r.of("skipped")
            self.assertEqual(len(skipped), 1, r.describe())
            self.assertEqual((skipped[0]["user"], skipped[0]["reason"]), ("alice", "in-use"))
            s = r.summary()
            self.assertEqual(str(s["skipped_locked"]), "1")
            self.assertNotIn(self.a_old[0], r.removed())
        self.assertEqual(set(by_base(self.bob)), {self.b_young})   # the sweep went on with bob
        self.assertEqual(set(by_base(self.alice)),
                         set(self.a_old) | {self.a_young, self.a_dl})
        self.assertEqual(c.cmd("STAT"), st)                       # the session did not notice
        c.quit()
        self.d.wait_session_end(2)
        r = self.expire(self.d)
        self.assertEqual(r.removed(), {u: "unread_days" for u in self.a_old})
        self.assertEqual(r.summary()["skipped_locked"], "0")

    def test_future_at_needs_dry_run_or_force(self):
        # A real sweep "as of" next month removes today what clients were promised until then.
        before = self.trees()
        for args in (("--at", "+3d"), ("--at", "+1h", "--json"), ("--at", "2999-01-01")):
            r = run_expire(self.d.conf, *args, force=False)
            self.assertEqual(r.rc, 2, r.describe())
            self.assertEqual(r.stdout, "")
            self.assertIn("--dry-run", r.stderr)
            self.assertIn("--force", r.stderr)
        self.assertEqual(self.trees(), before)
        r = run_expire(self.d.conf, "--force", force=False)     # --force alone: not --expire's
        self.assertEqual(r.rc, 0, r.describe())                 # future: nothing to refuse
        r = run_expire(self.d.conf, "--at", "2001-01-01", force=False)   # the past: allowed
        self.assertEqual(r.rc, 0, r.describe())
        self.assertEqual(r.removed(), {})
        r = run_expire(self.d.conf, "--at", "+3d", "--force", force=False)
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn(self.a_dl, r.removed())

    def test_at_forms(self):
        def now_of(*args):
            return self.expire(self.d, "--dry-run", "--json", *args).summary()["now"]

        self.assertEqual(now_of("--at", "2027-01-31"), at_midnight("2027-01-31"))
        self.assertEqual(now_of("--at", "2027-01-31T12:34:56Z"),
                         at_midnight("2027-01-31") + 12 * 3600 + 34 * 60 + 56)
        self.assertEqual(now_of("--at", "2028-02-29"), at_midnight("2028-02-29"))
        t0 = int(time.time())
        n = now_of("--at", "+36h")
        self.assertTrue(t0 + 36 * 3600 <= n <= int(time.time()) + 36 * 3600, (t0, n))
        n = now_of("--at", "+2d")
        self.assertTrue(t0 + 2 * DAY <= n <= int(time.time()) + 2 * DAY, (t0, n))
        # a time before the mail arrived is a doubt: nothing goes
        r = self.expire(self.d, "--dry-run", "--json", "--at", "2001-01-01")
        self.assertEqual(r.removed(), {})
        self.assertGreater(r.user("alice")["kept_doubt"], 0)
        before = self.trees()
        for bad in ("+1w", "+-1d", "+d", "+1.5d", "2027-02-29", "2027-13-01", "2027-1-31",
                    "2027-01-31T24:00:00Z", "2027-01-31T12:00:00", "tomorrow", ""):
            with self.subTest(at=bad):
                r = run_expire(self.d.conf, "--at", bad)
                self.assertEqual(r.rc, 2, r.describe())
                self.assertEqual(r.stdout, "")
                self.assertIn("--at", r.stderr)
        self.assertEqual(self.trees(), before)


def owners(top):
    """{relative path: (uid, gid, mode, size)} of everything under top."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, top)] = (st.st_uid, st.st_gid, st.st_mode, st.st_size)
    return out


@unittest.skipUnless(os.geteuid() == 0, "needs root")
@unittest.skipIf(privdrop_test.NOBODY is None, "needs the nobody user and the nogroup group")
class ExpireAsRootTest(PolicyCase):
    """`pop3d --expire` started by root sweeps as process.user, like the daemon: the lock and
    state files it creates belong to that user, so the daemon (running as nobody) can still
    open them; without process.user (and without allow_root) it refuses; a dry run creates
    nothing at all; and a message that user cannot read is kept, not removed."""

    def setUp(self):
        self.uid, self.gid = privdrop_test.NOBODY.pw_uid, privdrop_test.NOGROUP.gr_gid
        d = privdrop_test.ProcessDaemon({"user": "nobody", "group": "nogroup"},
                                        owner=(self.uid, self.gid))
        d.extra_config += policy("unread_days = 1;")
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        self.d = d
        now = int(time.time())
        self.alice, self.bob = d.maildir("alice"), d.maildir("bob@example.org")
        self.old = place(self.alice, "%d.old" % now, message("old"), now - 2 * DAY)
        self.young = place(self.alice, "%d.young" % now, message("young"), now - 10)
        self.b_young = place(self.bob, "%d.b-young" % now, message("b-young"), now - 10)
        # Root's own file, mode 0000, old enough for unread_days: nobody can read it. (carol's:
        # her sessions leave it out, and no other test of this class logs her in.)
        self.carol = d.maildir("carol")
        self.secret = place(self.carol, "%d.secret" % now, message("secret"), now - 10 * DAY)
        d.start()                       # chowns the maildirs (but for the secret) to nobody
        os.chown(os.path.join(self.carol, "new", self.secret), 0, 0)
        os.chmod(os.path.join(self.carol, "new", self.secret), 0)
        self.mail = os.path.join(d.dir, "mail")

    def test_dry_run_as_root_creates_nothing(self):
        before = owners(self.mail)
        r = self.expire(self.d, "--dry-run")
        self.assertEqual(r.removed(), {self.old: "unread_days"}, r.describe())
        self.assertEqual(owners(self.mail), before)
        self.assertFalse(os.path.exists(os.path.join(self.bob, "pop3d.lock")))
        r = self.expire(self.d, "--dry-run", "--json", "--at", "+3650d")
        self.assertEqual(owners(self.mail), before)

    def test_sweep_as_root_leaves_files_the_daemon_can_use(self):
        r = self.expire(self.d)
        self.assertEqual(r.removed(), {self.old: "unread_days"}, r.describe())
        for md in (self.alice, self.bob):
            st = os.stat(os.path.join(md, "pop3d.lock"))
            self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), md)
        # bob never logged in: his first login goes through the lock file the sweep made
        c = self.login(self.d, "bob@example.org")
        self.assertOK(c.cmd("STAT"))
        c.quit()
        # alice downloads; the daemon (nobody) records it in the state file
        self.download(self.d, "alice", [self.young])
        self.assertNotIn("SYS/", self.d.stderr())
        self.assertIn(self.young, read_state(self.alice)[1])
        r = self.expire(self.d, "--at", "+1d")
        st = os.stat(os.path.join(self.alice, "pop3d.state"))
        self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid))

    def test_unreadable_message_is_kept_and_said_why(self):
        for args in (("--dry-run",), ()):
            r = self.expire(self.d, *args)
            self.assertNotIn(self.secret, r.removed(), r.describe())
            kept = [e for e in r.of("kept") if e["uidl"] == self.secret]
            self.assertEqual(len(kept), 1, r.describe())
            self.assertEqual(kept[0]["reason"], "message file cannot be read")
            self.assertEqual(r.user("carol")["kept_doubt"], "1")
        self.assertTrue(os.path.exists(os.path.join(self.carol, "new", self.secret)))

    def test_unreadable_message_is_left_out_of_a_session(self):
        """A message the daemon's user may not read does not lock carol out: her session lists
        the rest, a note names the file, and UPDATE keeps both the file and its download
        record (a lost record would let unread_days take it as never downloaded)."""
        now = int(time.time())
        visible = place(self.carol, "%d.visible" % now, message("visible"), now - 10)
        os.chown(os.path.join(self.carol, "new", visible), self.uid, self.gid)
        state = os.path.join(self.carol, "pop3d.state")
        with open(state, "w") as f:
            f.write("pop3d-state 1\nlast_login 0\n%s %d 30\n" % (self.secret, now - 5 * DAY))
        os.chown(state, self.uid, self.gid)
        self.download(self.d, "carol", [visible])
        self.assertEqual(self.d.count_log("cannot be read (permission denied; first: new/%s)"
                                          % self.secret), 1, self.d.stderr())
        self.assertTrue(os.path.exists(os.path.join(self.carol, "new", self.secret)))
        recs = read_state(self.carol)[1]
        self.assertEqual(recs.get(self.secret), (now - 5 * DAY, 30), recs)
        self.assertIn(visible, recs)

    def test_root_without_process_user_is_refused(self):
        conf = os.path.join(self.d.dir, "root.conf")
        with open(self.d.conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace(privdrop_test.process_config(user="nobody", group="nogroup"),
                                 ""))
        before = owners(self.mail)
        for args in ((), ("--dry-run",)):
            r = run_expire(conf, *args)
            self.assertEqual(r.rc, 1, r.describe())
            self.assertIn("refusing to serve as root: set process.user, or "
                          "process.allow_root = true", r.stderr)
            self.assertEqual(r.stdout, "")
        self.assertEqual(owners(self.mail), before)


class DoubtLogTest(PolicyCase):
    """README: on any doubt a message is kept "and the reason logged": one line per message
    (user, UIDL, reason), at UPDATE and in sweeps, at most 20 per maildrop and sweep (or
    session), the rest counted."""

    def test_update_logs_each_message_kept_in_doubt(self):
        d = self.daemon(extra_config=policy('retention = "delete";'))
        md = d.maildir("carol")
        now = int(time.time())
        a = place(md, "%d.future" % now, message("future"), now - 100)
        b = place(md, "%d.plain" % now, message("plain"), now - 100)
        with open(os.path.join(md, "pop3d.state"), "w") as f:   # downloaded "tomorrow"
            f.write("pop3d-state 1\nlast_login 0\n%s %d 0\n" % (a, now + DAY))
        self.download(d, "carol", [a, b])
        kept = d.log_lines("update kept ")
        self.assertEqual(len(kept), 1, d.stderr())
        self.assertIn('user=carol uidl=%s reason="clock is before the first download"' % a,
                      kept[0])
        self.assertIn("removed=1 ", d.log_lines("update id=")[-1])
        self.assertIn("kept_doubt=1", d.log_lines("update id=")[-1])
        self.assertEqual(set(by_base(md)), {a})

    def test_sweep_lines_are_capped(self):
        d = self.daemon(extra_config=policy("unread_days = 1;"))
        md = d.maildir("alice")
        now = int(time.time())
        seen = [place(md, "%d.s%02d" % (now, i), message("s%d" % i), now - 5 * DAY, sub="cur",
                      info=":2,S") for i in range(25)]
        for args in ((), ("--json",)):
            r = self.expire(d, "--dry-run", *args)
            kept = r.of("kept")
            self.assertEqual(len(kept), 20, r.describe())
            for e in kept:
                self.assertIn(e["uidl"], seen)
                self.assertEqual(e["reason"], "seen flag without a download record")
                self.assertEqual(e["user"], "alice")
            self.assertEqual(str(r.user("alice")["kept_doubt"]), "25")


class SweepLockTest(PolicyCase):
    """A sweep scans a maildrop without its lock and holds the lock only to remove, a batch at a
    time: a login during the scan of a large maildrop gets in (it waits only 250 ms for the
    lock), and what a session changed meanwhile is decided again under the lock."""

    N = 50000

    def test_login_while_a_sweep_scans_a_large_maildrop(self):
        d = self.daemon(extra_config=policy("unread_days = 1;"))
        md = d.maildir("alice")
        now = time.time()
        old = fill(md, "old", 300, now - 2 * DAY)          # due: more than one batch of 256
        young = fill(md, "young", self.N, now - 100)
        self.login(d, "alice").quit()                        # the size cache: logins are quick
        d.wait_session_end(1)
        p = subprocess.Popen([pop3d_path(), "-c", d.conf, "--expire", "--user", "alice"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), cwd="/", text=True)
        try:
            # in its scan: reading new/, and not holding the lock file open
            caught = stop_while_open(p, os.path.join(md, "new"), os.path.join(md, "pop3d.lock"))
            self.assertTrue(caught, "the sweep finished before it was caught in its scan")
            c = self.login(d, "alice")                      # [IN-USE] if the scan held the lock
            self.assertEqual(c.cmd("STAT").split()[:2], [b"+OK", str(self.N + 300).encode()])
            c.quit()
            d.wait_session_end(2)
        finally:
            if p.returncode is None:
                os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=EXPIRE_TIMEOUT)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("removed=300 ", out.splitlines()[-1])
        self.assertEqual(set(by_base(md)), set(young))

    def test_download_during_the_scan_is_decided_again(self):
        # A session downloads (records) a message between the sweep's scan and its claim: the
        # message is no longer "unread", so unread_days must not remove it.
        d = self.daemon(extra_config=policy("unread_days = 1; keep_days = 30;"))
        md = d.maildir("alice")
        now = time.time()
        old = sorted(fill(md, "old", 3, now - 2 * DAY))
        fill(md, "young", 20000, now - 100)
        self.login(d, "alice").quit()
        d.wait_session_end(1)
        p = subprocess.Popen([pop3d_path(), "-c", d.conf, "--expire", "--user", "alice"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), cwd="/", text=True)
        try:
            self.assertTrue(stop_while_open(p, os.path.join(md, "new"),
                                            os.path.join(md, "pop3d.lock")))
            self.download(d, "alice", [old[0]])
        finally:
            if p.returncode is None:
                os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=EXPIRE_TIMEOUT)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("removed=2 ", out.splitlines()[-1])
        self.assertEqual(set(old) & set(by_base(md)), {old[0]})
        self.assertEqual(read_state(md)[1][old[0]][1], 30)


class PeriodicSweepTest(PolicyCase):
    """The daemon's own sweep (expire_interval may be as short as 1 s for this): it removes and
    logs on its own, skips a maildrop in use and does it at the next sweep, and keeps its
    schedule across SIGHUP (the first sweep is due one interval after the start here, as the
    interval is shorter than EXPIRE_FIRST_DELAY)."""

    def test_daemon_sweeps_on_its_own(self):
        d = self.daemon(extra_config=policy("unread_days = 1; expire_interval = 2;"))
        md = d.maildir("alice")
        now = int(time.time())
        old = place(md, "%d.old" % now, message("old"), now - 2 * DAY)
        young = place(md, "%d.young" % now, message("young"), now - 10)
        line = d.wait_log("expire sweep ")
        self.assertIn("removed=1 ", line)
        rm = d.log_lines("expire removed")
        self.assertEqual(len(rm), 1, d.stderr())
        self.assertIn("user=alice uidl=%s cause=unread_days" % old, rm[0])
        self.assertEqual(set(by_base(md)), {young})
        # SIGUSR1: the sweep's removal is counted by cause
        d.proc.send_signal(signal.SIGUSR1)
        counters = d.wait_log("counters ")
        self.assertIn(" deleted=1 ", counters)
        self.assertIn(" deleted_dele=0 deleted_download=0 deleted_expire=1 ", counters)
        d.wait_log("expire sweep ", count=2)                     # and again, one interval later
        self.assertEqual(len(d.log_lines("expire removed")), 1)

    def test_locked_maildrop_is_done_by_the_next_sweep(self):
        d = self.daemon(extra_config=policy("unread_days = 1; expire_interval = 1;"))
        md = d.maildir("alice")
        now = int(time.time())
        old = place(md, "%d.old" % now, message("old"), now - 2 * DAY)
        c = self.login(d, "alice")                             # holds the lock
        n = d.count_log("expire sweep ")
        line = d.wait_log("expire sweep ", count=n + 1)
        self.assertIn("skipped_in_use=1 ", line)
        self.assertIn("removed=0 ", line)
        self.assertIn(old, by_base(md))
        self.assertIn("expire skipped user=alice reason=in-use", d.stderr())
        c.quit()
        d.wait_session_end(1)
        n = d.count_log("expire sweep ")
        line = d.wait_log("expire sweep ", count=n + 1)
        self.assertIn("removed=1 ", line)
        self.assertEqual(by_base(md), {})

    def test_reload_does_not_postpone_the_sweep(self):
        # SIGHUP every 0.5 s, more often than the 3 s interval: the sweep still comes on time
        # (it used to restart the full interval at every reload, and so never came).
        d = self.daemon(extra_config=policy("unread_days = 1; expire_interval = 3;"))
        md = d.maildir("alice")
        now = int(time.time())
        place(md, "%d.old" % now, message("old"), now - 2 * DAY)
        t0 = time.monotonic()
        reloads = 0
        while d.wait_log("expire sweep ", timeout=0.5, fail=False) is None:
            self.assertLess(time.monotonic() - t0, 20, "no sweep while reloading:\n" + d.stderr())
            d.proc.send_signal(signal.SIGHUP)
            reloads += 1
            d.wait_log("reloaded users=", count=reloads)
        self.assertGreaterEqual(reloads, 3)
        self.assertIn("removed=1 ", d.log_lines("expire sweep ")[0])
        self.assertEqual(by_base(md), {})


class PolicyTableTest(unittest.TestCase):
    """`pop3d -t` prints the effective policy table (defaults, each domain, each user entry)
    with the EXPIRE / LOGIN-DELAY values clients see: checked row by row on the real binary."""

    def check(self, policy_text, users):
        top = tempfile.mkdtemp(prefix="pop3d-table-")
        self.addCleanup(shutil.rmtree, top, True)
        conf = os.path.join(top, "pop3d.conf")
        with open(os.path.join(top, "users"), "w") as f:
            f.write("".join("%s:{PLAIN}pw\n" % u for u in users))
        with open(conf, "w") as f:
            f.write('listen = ( { address = "127.0.0.1"; port = 1; } );\n'
                    'auth = { users_file = "users"; plaintext = "always"; };\n'
                    'maildrop = { path = "%s/mail/%%d/%%n"; };\n'
                    "process = { allow_root = true; };\n%s" % (top, policy(policy_text)))
        p = subprocess.run([pop3d_path(), "-c", conf, "-t"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=IO_TIMEOUT, env=child_env())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        head = [i for i, l in enumerate(lines) if l.split()[:2] == ["level", "name"]]
        self.assertEqual(len(head), 1, p.stdout)
        self.assertEqual(lines[head[0]].split(),
                         ["level", "name", "line", "retention", "keep_days", "unread_days",
                          "login_delay", "EXPIRE", "LOGIN-DELAY"])
        rows = []
        for l in lines[head[0] + 1:]:
            if not l.startswith("  ") or l.startswith("  CAPA"):
                break
            rows.append(l.split())
        capa = [l.strip() for l in lines if l.startswith("  CAPA before login:")]
        self.assertEqual(len(capa), 1, p.stdout)
        return rows, capa[0]

    def test_readme_example(self):
        rows, capa = self.check(
            'retention = "keep"; keep_days = 30; expire_interval = 3600;\n'
            '  domains = ( { domain = "example.net"; retention = "delete"; } );\n'
            '  users = ( { user = "bob@example.org"; keep_days = 7; login_delay = 300; },\n'
            '            { user = "archive@example.org"; retention = "keep"; } );\n',
            ["alice@example.org", "carol@example.net", "bob@example.org",
             "archive@example.org"])
        # (the policy group starts on line 5 of the file: listen, auth, maildrop, process;
        # unread_days 0 prints as "off", keep_days without a value as "forever"; users sorted)
        self.assertEqual(rows, [
            ["default", "-", "5", "keep", "30", "off", "0", "30", "-"],
            ["domain", "example.net", "6", "delete", "-", "off", "0", "0", "-"],
            ["user", "archive@example.org", "8", "keep", "forever", "off", "0", "NEVER", "-"],
            ["user", "bob@example.org", "7", "keep", "7", "off", "300", "7", "300"],
        ])
        self.assertEqual(capa, "CAPA before login: EXPIRE 0 USER, LOGIN-DELAY 300 USER")

    def test_unread_days_and_one_rule_for_all(self):
        rows, capa = self.check(
            "keep_days = 30; unread_days = 10;\n"
            '  domains = ( { domain = "example.org"; unread_days = 0; } );\n'
            '  users = ( { user = "dave"; retention = "keep"; unread_days = 40; } );\n',
            ["dave", "erin"])
        self.assertEqual(rows, [
            ["default", "-", "5", "keep", "30", "10", "0", "10", "-"],
            ["domain", "example.org", "6", "keep", "30", "off", "0", "30", "-"],
            ["user", "dave", "7", "keep", "forever", "40", "0", "40", "-"],
        ])
        # dave: 40, erin (the defaults): 10; the example.org rule matches no user
        self.assertEqual(capa, "CAPA before login: EXPIRE 10 USER")


# ---------------------------------------------------------------- LOGIN-DELAY

class LoginDelayTest(PolicyCase):

    def test_second_login_refused_after_the_password(self):
        d = self.daemon(extra_config=policy('users = ( { user = "carol"; login_delay = 300; } );'))
        c = self.login(d, "carol")
        self.assertEqual(capa_policy(c), ["EXPIRE NEVER", "LOGIN-DELAY 300"])
        c.quit()
        c = self.connect(d)
        self.assertOK(c.cmd("USER carol"))                     # never on USER
        st = c.cmd("PASS wrong")
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)     # a wrong password stays [AUTH]
        self.assertOK(c.cmd("USER carol"))
        st = c.cmd("PASS carol-pw")
        self.assertTrue(st.startswith(b"-ERR [LOGIN-DELAY]"), st)
        c.close()
        # (one wrong password only: each failure from an address adds auth_backoff_base, 1 s)
        c = self.connect(d)
        ts = apop_timestamp(c.greeting)
        self.assertIsNotNone(ts, c.greeting)
        st = c.cmd("APOP carol " + hashlib.md5(ts + b"carol-pw").hexdigest())
        self.assertTrue(st.startswith(b"-ERR [LOGIN-DELAY]"), st)
        st = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0carol\0carol-pw").decode())
        self.assertTrue(st.startswith(b"-ERR [LOGIN-DELAY]"), st)
        c.close()
        # users without a delay log in back to back
        for _ in range(2):
            self.login(d, "alice").quit()
        # the last login lives in the maildir: a restart changes nothing
        restart(d)
        c = self.connect(d)
        self.assertOK(c.cmd("USER carol"))
        st = c.cmd("PASS carol-pw")
        self.assertTrue(st.startswith(b"-ERR [LOGIN-DELAY]"), st)
        c.close()

    def test_delay_runs_out(self):
        d = self.daemon(extra_config=policy('users = ( { user = "carol"; login_delay = 2; } );'))
        t0 = time.time()          # the first login is recorded at int(t0) or later ...
        self.login(d, "carol").quit()
        t1 = time.time()          # ... and at int(t1) at the latest (whole seconds)
        c = self.connect(d)
        self.assertOK(c.cmd("USER carol"))
        st = c.cmd("PASS carol-pw")
        if int(time.time()) - int(t0) < 2:     # certainly less than 2 s after the first login
            self.assertTrue(st.startswith(b"-ERR [LOGIN-DELAY]"), st)
        c.close()
        # a refused login is not a login: 2 s after the first one carol gets in
        while int(time.time()) < int(t1) + 2:
            time.sleep(0.05)
        self.login(d, "carol").quit()


# ---------------------------------------------------------------- real clients in keep mode

SIMPLE = [
    b"Return-Path: <a@example.net>\nMessage-ID: <1@test.invalid>\nSubject: one\n\nfirst\n",
    b"Return-Path: <b@example.net>\nMessage-ID: <2@test.invalid>\nSubject: two\n\n.leading dot\n"
    b"..two dots\n.\nend\n",
    b"Return-Path: <c@example.net>\nMessage-ID: <3@test.invalid>\nSubject: three\n\n"
    + b"x" * 900 + b"\n\nlast\n",
]

MDA = "#!/bin/sh\nexec cat > \"$1/$(date +%s%N).$$\"\n"


def files_in(folder):
    out = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append(f.read())
    return out


class ClientsTest(PolicyCase):
    """getmail6 (delete = false) and fetchmail (keep) against each policy: keep N days, keep
    forever, delete, unread_days. The messages
    have LF line ends and a Return-Path, so both tools store each one byte for byte as sent."""

    def start(self, text):
        self.d = self.daemon(extra_config=policy(text))
        self.md = self.d.maildir("alice")
        self.uidls = [deliver(self.md, data, mtime=time.time() - 100 + i)
                      for i, data in enumerate(SIMPLE)]
        self.home = os.path.join(self.d.dir, "home")
        os.makedirs(self.home)

    def run_tool_ok(self, argv, ok=(0,), home=None, **kw):
        ends = self.d.count_log("session end") + 1
        r = run_tool(argv, home or self.home, timeout=TOOL_TIMEOUT, **kw)
        if r.returncode not in ok:
            self.fail("%s exited %d\nstdout:\n%s\nstderr:\n%s\npop3d:\n%s"
                      % (argv[0], r.returncode, r.stdout.decode(errors="replace")[-3000:],
                         r.stderr.decode(errors="replace")[-3000:], self.d.stderr()[-3000:]))
        self.d.wait_session_end(ends)
        return self.d.log_lines("session end")[-1]

    # -- getmail: run as "nobody" when the tests run as root (harness.getmail_dirs)

    def getmail(self):
        if not hasattr(self, "dest"):
            self.dest, self.gm_home, self.gm_run = getmail_dirs(self)
        rc, gmdir = getmail_rc(self.gm_home, self.gm_run,
                               "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
                               "port = %d\nusername = alice\npassword = alice-pw\n\n"
                               "[destination]\ntype = Maildir\npath = %s/\n\n"
                               "[options]\ndelete = false\nread_all = false\n"
                               "delivered_to = false\nreceived = false\nverbose = 0\n"
                               "message_log_syslog = false\n" % (self.d.port, self.dest))
        end = self.run_tool_ok(["getmail", "--rcfile", rc, "--getmaildir", gmdir],
                               home=self.gm_home, **self.gm_run)
        got = files_in(os.path.join(self.dest, "new")) + files_in(os.path.join(self.dest, "cur"))
        return got, end

    def fetchmail(self):
        mda = os.path.join(self.home, "mda.sh")
        self.out = os.path.join(self.home, "out")
        if not os.path.exists(mda):
            with open(mda, "w") as f:
                f.write(MDA)
            os.chmod(mda, 0o755)
            os.makedirs(self.out)
        rc = os.path.join(self.home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no syslog\nset invisible\n"
                    "poll 127.0.0.1 with protocol POP3 port %d auth password uidl:\n"
                    '  user "alice" there with password "alice-pw" is "root" here\n'
                    "  sslproto ''\n  no rewrite\n  keep\n"
                    '  mda "%s %s"\n' % (self.d.port, mda, self.out))
        os.chmod(rc, 0o600)
        # exit 0: mail delivered; 1: no mail
        end = self.run_tool_ok(["fetchmail", "-f", rc, "--nosyslog", "--pidfile",
                                os.path.join(self.home, "fetchmail.pid"), "--idfile",
                                os.path.join(self.home, "fetchids")], ok=(0, 1),
                               env={"FETCHMAILUSER": "root"})
        return files_in(self.out), end

    def assertGotAll(self, got):
        self.assertEqual(sorted(got), sorted(SIMPLE))

    def test_getmail_keep_days(self):
        self.start("keep_days = 5;")
        before = snapshot(self.md)
        got, end = self.getmail()
        self.assertIn("retr=3 ", end)
        self.assertGotAll(got)
        self.assertEqual(sorted(snapshot(self.md).values()), sorted(before.values()))
        recs = read_state(self.md)[1]
        self.assertEqual({u: recs[u][1] for u in recs}, {u: 5 for u in self.uidls})
        got, end = self.getmail()                               # nothing fetched again
        self.assertIn("retr=0 ", end)
        self.assertGotAll(got)
        self.assertEqual(self.expire(self.d, "--dry-run", "--at", "+4d").removed(), {})
        r = self.expire(self.d, "--at", "+5d")
        self.assertEqual(r.removed(), {u: "keep_days" for u in self.uidls})
        self.assertEqual(snapshot(self.md), {})

    def test_getmail_under_delete(self):
        self.start('retention = "delete";')
        got, end = self.getmail()
        self.assertIn("retr=3 ", end)
        self.assertIn("removed=3 ", end)                       # RFC 2449 §6.7: client said keep
        self.assertGotAll(got)
        self.assertEqual(snapshot(self.md), {})
        rm = self.d.log_lines("remove id=")
        self.assertEqual(sorted(l.split(" uidl=")[1].split(" ")[0] for l in rm), sorted(self.uidls))
        self.assertTrue(all("cause=download" in l for l in rm), rm)
        got, end = self.getmail()
        self.assertIn("retr=0 ", end)
        self.assertGotAll(got)

    def test_getmail_keep_forever(self):
        self.start('retention = "keep";')
        before = snapshot(self.md)
        got, end = self.getmail()
        self.assertIn("retr=3 ", end)
        self.assertGotAll(got)
        recs = read_state(self.md)[1]
        self.assertEqual({u: recs[u][1] for u in recs}, {u: -1 for u in self.uidls})
        self.assertEqual(self.expire(self.d, "--at", "+3650d").removed(), {})
        self.assertEqual(sorted(snapshot(self.md).values()), sorted(before.values()))

    def test_getmail_unread_days(self):
        # What getmail downloaded is kept (forever by default); mail it never fetched goes
        # unread_days after arrival.
        self.start("unread_days = 2;")
        got, end = self.getmail()
        self.assertIn("retr=3 ", end)
        self.assertGotAll(got)
        late = deliver(self.md, b"Return-Path: <d@example.net>\nSubject: late\n\nlate\n")
        self.assertEqual(self.expire(self.d, "--dry-run", "--at", "+2d").removed(),
                         {late: "unread_days"})
        self.assertEqual(self.expire(self.d, "--at", "+2d").removed(), {late: "unread_days"})
        self.assertEqual(set(by_base(self.md)), set(self.uidls))

    # fetchmail (6.4) in keep mode fetches every message with "TOP n 99999999", never RETR: by
    # the README's definition it downloads nothing, so pop3d records nothing, keep_days and
    # "delete" never apply, and only unread_days removes its mail.

    def fetchmail_downloads_nothing(self):
        before = snapshot(self.md)
        for _ in range(2):                                      # the second run fetches nothing
            got, end = self.fetchmail()
            self.assertGotAll(got)
            self.assertIn("retr=0 ", end)
            self.assertIn("removed=0 ", end)
            self.assertEqual(snapshot(self.md), before)
            state = read_state(self.md)                         # no download record at all
            self.assertTrue(state is None or state[1] == {}, state)
        return before

    def test_fetchmail_keep_days(self):
        self.start("keep_days = 5;")
        before = self.fetchmail_downloads_nothing()
        self.assertEqual(self.expire(self.d, "--at", "+3650d").removed(), {})
        self.assertEqual(snapshot(self.md), before)

    def test_fetchmail_keep_forever(self):
        self.start('retention = "keep";')
        before = self.fetchmail_downloads_nothing()
        self.assertEqual(self.expire(self.d, "--at", "+3650d").removed(), {})
        self.assertEqual(snapshot(self.md), before)

    def test_fetchmail_under_delete(self):
        self.start('retention = "delete";')
        before = self.fetchmail_downloads_nothing()
        self.assertEqual(self.expire(self.d, "--at", "+3650d").removed(), {})
        self.assertEqual(snapshot(self.md), before)

    def test_fetchmail_unread_days(self):
        self.start("keep_days = 5; unread_days = 2;")
        self.fetchmail_downloads_nothing()
        self.assertEqual(self.expire(self.d, "--at", "+1d").removed(), {})
        self.assertEqual(self.expire(self.d, "--at", "+2d").removed(),
                         {u: "unread_days" for u in self.uidls})
        self.assertEqual(snapshot(self.md), {})


# ---------------------------------------------------------------- SIGKILL

class CrashTest(PolicyCase):
    """SIGKILL mid-UPDATE and mid-sweep: no message the policy keeps is lost, none is listed
    twice, the state file still parses and a later sweep finishes the job.

    Removing 200 small files takes about 0.1 ms here, so a kill at a random delay lands before
    or after the loop. "midway" rounds use MIDWAY_N messages, step the process with
    SIGSTOP/SIGCONT and SIGKILL it, while stopped, once a randomly chosen due file is gone
    (files go in maildir order: mtime, then name); such a round is repeated (a bounded number of
    times) until one kill landed strictly inside the loop."""

    N = 300
    MIDWAY_N = 1000
    MIDWAY_TRIES = 10

    def check_after_crash(self, d, user, originals, may_go):
        """Every message of originals is present byte for byte, or in may_go and gone; the state
        parses; the server lists each present message once; a dry run plans only may_go."""
        md = d.maildir(user)
        now = contents(md)                                      # raises on a duplicate
        self.assertEqual(set(now) - set(originals), set(), "unknown files")
        for u, data in now.items():
            self.assertEqual(data, originals[u], u)
        lost = set(originals) - set(now) - set(may_go)
        self.assertEqual(lost, set(), "messages lost")
        self.assertNoStateDoubt(md)
        r = self.expire(d, "--dry-run", "--json", "--user", user)
        self.assertEqual(set(r.removed()) - set(may_go), set(), r.describe())
        c = self.login(d, user)
        self.assertEqual(set(uidl_map(c)), set(now))            # uidl_map raises on a repeat
        c.close()
        return now, r

    def rounds(self, run_round):
        """Run "midway" rounds until one kill lands inside the loop, then an "after" and a
        "random" round. run_round(k, mode, n) returns (files gone at the kill, files due)."""
        progress = []
        for _ in range(self.MIDWAY_TRIES):
            progress.append(("midway",) + run_round(len(progress), "midway", self.MIDWAY_N))
            if 0 < progress[-1][1] < progress[-1][2]:
                break
        for mode in ("after", "random"):
            progress.append((mode,) + run_round(len(progress), mode, self.N))
        if os.environ.get("POP3D_TEST_VERBOSE"):
            print("\n%s: (mode, files gone at SIGKILL, due): %s" % (self.id(), progress))
        # Whether a kill lands inside the loop depends on timing (rarely under ASan on a
        # busy machine); the invariants above hold either way. tests/integration/test_crash.py
        # places kills inside the loops deterministically (ptrace) and requires it.
        if not any(0 < n < due for m, n, due in progress if m == "midway"):
            print("\n%s: no SIGKILL landed inside the removal loop this time: %s"
                  % (self.id(), progress))

    def test_kill9_during_update(self):
        users = {"u%d" % k: "{PLAIN}pw" for k in range(self.MIDWAY_TRIES + 2)}
        d = self.daemon(users=users, extra_config=policy('retention = "delete";'))

        def run_round(k, mode, n):
            user = "u%d" % k
            md = d.maildir(user)
            originals = fill(md, "up%d" % k, n, time.time() - 100)
            names = sorted(originals)
            retrd = [u for i, u in enumerate(names) if i % 3 != 0]
            topped = [u for i, u in enumerate(names) if i % 6 == 0]
            c = self.login(d, user)
            num = uidl_map(c)
            for st, _ in pipeline(c, ["RETR %d" % num[u] for u in retrd]
                                  + ["TOP %d 0" % num[u] for u in topped]):
                self.assertOK(st)
            c.send(b"QUIT\r\n")
            if mode == "midway":
                watch = retrd[random.randint(1, len(retrd) - 2)]
                kill_midway(d.proc, os.path.join(md, "new", watch))
            elif mode == "after":                               # as the log reports UPDATE
                d.wait_log("update id=")
            else:
                time.sleep(random.uniform(0, 0.005))
            kill9(d)
            gone = n - count_files(md)
            c.close()
            restart(d)
            self.check_after_crash(d, user, originals, retrd)
            # a sweep removes only downloaded mail left behind by the crash (none was DELE'd)
            r = self.expire(d, "--user", user)
            self.assertEqual(set(r.removed()) - set(retrd), set())
            self.assertEqual(set(names) - set(retrd) - set(contents(md)), set(), "lost")
            return gone, len(retrd)

        self.rounds(run_round)

    def test_kill9_during_expire(self):
        users = {"u%d" % k: "{PLAIN}pw" for k in range(self.MIDWAY_TRIES + 2)}
        d = self.daemon(users=users, extra_config=policy("keep_days = 30; unread_days = 1;"))

        def run_round(k, mode, n):
            user = "u%d" % k
            md = d.maildir(user)
            t = time.time()
            dl = fill(md, "dl%d" % k, 20, t - 2 * DAY)
            old = fill(md, "old%d" % k, n, t - 2 * DAY)
            young = fill(md, "young%d" % k, 100, t - 100)
            self.download(d, user, sorted(dl))                  # records, promise 30
            originals = dict(dl, **old, **young)
            total = len(originals)
            p = subprocess.Popen([pop3d_path(), "-c", d.conf, "--expire", "--user", user],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=child_env(), cwd="/")
            if mode == "midway":
                watch = sorted(old)[random.randint(1, n - 2)]
                kill_midway(p, os.path.join(md, "new", watch))
            elif mode == "after":
                p.wait(IO_TIMEOUT)
            else:
                time.sleep(random.uniform(0, 0.03))
            p.kill()
            p.wait(IO_TIMEOUT)
            gone = total - count_files(md)
            now, r = self.check_after_crash(d, user, originals, old)
            self.assertEqual(r.removed(), {u: "unread_days" for u in old if u in now})
            self.assertEqual(r.user(user)["kept_doubt"], 0)
            recs = read_state(md)[1]
            self.assertEqual({u: recs[u][1] for u in dl}, {u: 30 for u in dl})
            self.assertEqual(set(self.expire(d, "--dry-run", "--at", "+29d", "--user", user)
                                 .removed()) & set(dl), set())
            r = self.expire(d, "--dry-run", "--at", "+30d", "--user", user)
            self.assertEqual(set(dl) - set(r.removed()), set(), r.describe())
            self.expire(d, "--user", user)
            self.assertEqual(set(contents(md)), set(dl) | set(young))
            return gone, n

        self.rounds(run_round)


if __name__ == "__main__":
    unittest.main()
