"""Per-address authentication backoff against the real binary (issue 5, "Abuse limits"):
limits.auth_backoff_base / auth_backoff_max / auth_backoff_forget / trusted.

Each failed login from one IPv4 address adds base * 2^(n-1) (capped at max) to auth.failure_delay
before the -ERR [AUTH]; the "login failed ... backoff_ms=N" line shows the extra wait. An address
quiet for auth_backoff_forget seconds starts again from zero; a trusted address gets no backoff;
other addresses are not affected, and the wait is a timer: other clients are served meanwhile.

The daemon listens on 127.0.0.1 only; a second client address is 127.0.0.2 (the client socket is
bound to it before connecting: loopback accepts all of 127.0.0.0/8). harness.py stays untouched:
BackoffDaemon extends harness.Daemon with the extra keys in the limits group it writes, and
SourceClient is a harness.Client with a source address. Times are checked as minimums only; the
exact values come from backoff_ms in the log.
"""
import base64
import hashlib
import os
import re
import select
import socket
import sys
import time
import unittest

# tests/run.py puts this folder on sys.path; `python3 -m unittest tests/integration/...` does not.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import IO_TIMEOUT, Client, Daemon, Pop3TestCase

FAILURE_DELAY = 0.2
SLACK = 0.05              # timer granularity: a reply may come this much before the nominal time
OTHER_IP = "127.0.0.2"
WAIT = 2                  # the backoff a waiting client sits out while others are served

BACKOFF = re.compile(r"\bbackoff_ms=(\d+)\b")


class BackoffDaemon(Daemon):
    """harness.Daemon with this module's failure_delay."""

    def __init__(self, **kw):
        super().__init__(failure_delay=FAILURE_DELAY, **kw)


def limits(base=0.2, max_=1.0, forget=30, trusted=None):
    text = ("auth_backoff_base = %s; auth_backoff_max = %s; auth_backoff_forget = %d;"
            % (repr(float(base)), repr(float(max_)), forget))
    if trusted is not None:
        text += " trusted = ( %s );" % ", ".join('"%s"' % t for t in trusted)
    return text


class SourceClient(Client):
    """harness.Client whose socket is bound to a source address before connecting."""

    def __init__(self, port, source, timeout=IO_TIMEOUT, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = self.line() if greeting else None


class BackoffCase(Pop3TestCase):

    def daemon(self, **kw):
        d = BackoffDaemon(**kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        d.start()
        return d

    def client(self, d, source=None):
        c = SourceClient(d.port, source) if source else Client(d.port)
        self.addCleanup(c.close)
        self.assertOK(c.greeting)
        return c

    def fail_login(self, d, c, user="alice", mech="USER"):
        """One failed login on c; returns (seconds from the failing command to -ERR, backoff_ms
        from the new "login failed" line)."""
        n = d.count_log("login failed")
        if mech == "USER":
            self.assertOK(c.cmd("USER " + user))
            t0 = time.monotonic()
            st = c.cmd("PASS wrong-password")
        else:   # AUTH PLAIN with an initial response
            resp = base64.b64encode(b"\0" + user.encode() + b"\0wrong-password").decode()
            t0 = time.monotonic()
            st = c.cmd("AUTH PLAIN " + resp)
        took = time.monotonic() - t0
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        line = d.wait_log("login failed", count=n + 1)
        m = BACKOFF.search(line)
        self.assertIsNotNone(m, line)
        return took, int(m.group(1)), line

    def failures(self, d, c, count, **kw):
        """count failed logins on c; returns [(took, backoff_ms)]."""
        out = []
        for _ in range(count):
            took, ms, _line = self.fail_login(d, c, **kw)
            out.append((took, ms))
        return out

    def assertTook(self, took, backoff_ms, what=""):
        want = FAILURE_DELAY + backoff_ms / 1000.0 - SLACK
        self.assertGreaterEqual(took, want, "%s: -ERR after %.3fs, expected at least %.3fs"
                                % (what, took, want))


class BackoffTest(BackoffCase):

    def test_delay_doubles_per_failure_up_to_the_cap(self):
        d = self.daemon(limits_extra=limits(base=0.2, max_=1.0))
        c = self.client(d)
        got = self.failures(d, c, 4)
        self.assertEqual([ms for _, ms in got], [200, 400, 800, 1000])    # 1600 capped
        for i, (took, ms) in enumerate(got, 1):
            self.assertTook(took, ms, "failure %d" % i)
        # the third reply waited failure_delay + 0.8 s at least, and longer than the first
        self.assertGreaterEqual(got[2][0], FAILURE_DELAY + 0.8 - SLACK)
        self.assertGreater(got[2][0], got[0][0])
        # the address is slowed down, not locked out: the right password still works, but
        # its +OK is held as long as a failure's extra wait (else a guesser could give up on
        # every attempt not answered at once and guess at full speed)
        c2 = self.client(d)
        self.assertOK(c2.cmd("USER alice"))
        t0 = time.monotonic()
        self.assertOK(c2.cmd("PASS alice-pw"))
        self.assertGreaterEqual(time.monotonic() - t0, 1.0 - SLACK, "+OK not held by the backoff")
        c2.quit()
        # every failure is logged once, with the client address and the mechanism
        lines = d.log_lines("login failed")
        self.assertEqual(len(lines), 4)
        for line in lines:
            self.assertIn("ip=127.0.0.1 ", line)
            self.assertIn("user=alice ", line)

    def test_failures_count_per_address_across_connections_and_mechanisms(self):
        d = self.daemon(limits_extra=limits(base=0.1, max_=1.0))
        a = self.client(d)
        self.assertEqual(self.fail_login(d, a)[1], 100)
        b = self.client(d)                               # another connection, same address
        self.assertEqual(self.fail_login(d, b, user="nobody-here")[1], 200)   # unknown user too
        took, ms, line = self.fail_login(d, a, mech="PLAIN")
        self.assertEqual(ms, 400, line)
        self.assertIn("mechanism=PLAIN", line)
        self.assertTook(took, ms, "AUTH PLAIN")

    def test_impossible_user_name_is_a_failed_login(self):
        """A name that cannot exist is answered like an unknown one: USER +OK, then PASS fails
        after the same delay and backoff, with the same reply and log line, whatever the
        password; the name is never looked up."""
        d = self.daemon(limits_extra=limits(base=0.1, max_=1.0))
        c = self.client(d)
        for user in ("a/b", "..", "nobody-here"):
            took, ms, line = self.fail_login(d, c, user=user)
            self.assertTook(took, ms, user)
        self.assertEqual([int(BACKOFF.search(l).group(1)) for l in d.log_lines("login failed")],
                         [100, 200, 400])
        self.assertIn("user=a/b ", d.log_lines("login failed")[0])

    def test_forgotten_after_quiet_period(self):
        forget = 2
        d = self.daemon(limits_extra=limits(base=0.1, max_=1.0, forget=forget))
        c = self.client(d)
        got = self.failures(d, c, 2)
        self.assertEqual([ms for _, ms in got], [100, 200])
        last = time.monotonic()          # the last failure was counted before this
        # quiet for longer than auth_backoff_forget (a wait for the clock, not a guess)
        time.sleep(max(0.0, last + forget + 0.3 - time.monotonic()))
        took, ms, line = self.fail_login(d, c)
        self.assertEqual(ms, 100, "backoff not forgotten after %ds: %s" % (forget, line))
        self.assertTook(took, ms)
        # and it grows again from there
        self.assertEqual(self.fail_login(d, c)[1], 200)

    def test_other_address_is_not_affected(self):
        d = self.daemon(limits_extra=limits(base=0.1, max_=0.5))
        a = self.client(d)
        self.assertEqual([ms for _, ms in self.failures(d, a, 3)], [100, 200, 400])
        b = self.client(d, OTHER_IP)
        took, ms, line = self.fail_login(d, b)
        self.assertIn("ip=%s " % OTHER_IP, line)
        self.assertEqual(ms, 100, line)                 # its own count, from the start
        self.assertTook(took, ms)
        self.assertEqual(self.fail_login(d, b)[1], 200)
        self.assertEqual(self.fail_login(d, a)[1], 500)   # the first address goes on (capped)
        b.login("alice", "alice-pw")
        b.quit()

    def test_trusted_address_gets_no_backoff(self):
        d = self.daemon(limits_extra=limits(base=0.1, max_=1.0, trusted=[OTHER_IP + "/32"]))
        t = self.client(d, OTHER_IP)
        got = self.failures(d, t, 3)
        self.assertEqual([ms for _, ms in got], [0, 0, 0])
        for took, _ in got:
            self.assertTook(took, 0, "trusted")          # auth.failure_delay still applies
        # an untrusted address on the same daemon is backed off
        u = self.client(d)
        self.assertEqual([ms for _, ms in self.failures(d, u, 2)], [100, 200])
        t.login("alice", "alice-pw")
        t.quit()

    def test_right_password_held_for_every_mechanism(self):
        """APOP and AUTH PLAIN successes wait out the backoff too; another address does not."""
        d = self.daemon(limits_extra=limits(base=0.6, max_=0.6))
        c = self.client(d)
        self.failures(d, c, 1)
        for mech in ("APOP", "PLAIN"):
            c = self.client(d)
            t0 = time.monotonic()
            if mech == "APOP":
                stamp = re.search(rb"<[^>]*>", c.greeting).group(0)
                digest = hashlib.md5(stamp + b"alice-pw").hexdigest()
                st = c.cmd("APOP alice " + digest)
            else:
                st = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0alice-pw").decode())
            took = time.monotonic() - t0
            self.assertOK(st)
            self.assertGreaterEqual(took, 0.6 - SLACK, "%s +OK after %.3fs" % (mech, took))
            ends = d.count_log("session end")
            c.quit()
            d.wait_session_end(ends + 1)      # the maildrop lock is free for the next one
        b = self.client(d, OTHER_IP)
        t0 = time.monotonic()
        b.login("alice", "alice-pw")
        self.assertLess(time.monotonic() - t0, 0.6, "another address was held")
        b.quit()

    def test_trusted_block(self):
        d = self.daemon(limits_extra=limits(base=0.2, max_=1.0, trusted=["127.0.0.0/8"]))
        c = self.client(d)
        self.assertEqual([ms for _, ms in self.failures(d, c, 3)], [0, 0, 0])

    def test_base_zero_turns_it_off(self):
        d = self.daemon(limits_extra=limits(base=0, max_=1.0))
        c = self.client(d)
        self.assertEqual([ms for _, ms in self.failures(d, c, 3)], [0, 0, 0])

    def test_waiting_client_does_not_block_others(self):
        # a long backoff: meanwhile another client is greeted and answered
        d = self.daemon(limits_extra=limits(base=WAIT, max_=WAIT))
        a = self.client(d)
        self.assertOK(a.cmd("USER alice"))
        t0 = time.monotonic()
        a.send("PASS wrong-password\r\n")
        d.wait_log("login failed")
        self.assertIn("backoff_ms=%d" % (WAIT * 1000), d.log_lines("login failed")[0])
        b = self.client(d, OTHER_IP)
        st, _ = b.cmd_multi("CAPA")
        self.assertOK(st)
        b.login("bob@example.org", "bob-pw")
        self.assertOK(b.cmd("STAT"))
        b.quit()
        served = time.monotonic() - t0
        # a's reply had not come while b was served (if b took less than the delay)
        if served < FAILURE_DELAY + WAIT - SLACK:
            readable, _, _ = select.select([a.sock], [], [], 0)
            self.assertEqual(readable, [], "a's -ERR came before its backoff was over")
        st = a.line(timeout=IO_TIMEOUT)
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        self.assertGreaterEqual(time.monotonic() - t0, FAILURE_DELAY + WAIT - SLACK)


if __name__ == "__main__":
    unittest.main()
