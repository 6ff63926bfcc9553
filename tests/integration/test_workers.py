"""process.workers: several event loops (threads) share the listening sockets. What must hold
across them: connections reach more than one loop, the connection caps and the counters are
global, a SIGHUP reaches every loop, and SIGTERM (with its grace period) and a second SIGTERM
stop every loop. Sessions say which loop served them (`worker=N` on `session end`).

Which loop accepts a connection is up to the kernel and the scheduler, so the spread test opens
rounds of concurrent connections until two loops have served (bounded in rounds); nothing else
depends on where a connection lands."""

import os
import re
import select
import signal
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from harness import (IO_TIMEOUT, SANITIZER_MARKERS, STOP_TIMEOUT, Client, Daemon,  # noqa: E402
                     Pop3TestCase, deliver, free_port, pop3d_path)
import subprocess  # noqa: E402

ROUNDS = 40          # spread: at most this many rounds ...
PER_ROUND = 8        # ... of this many concurrent connections


def process(extra=""):
    return "process = { allow_root = true; shutdown_grace = 0; %s };\n" % extra


class ClientFrom(Client):
    """A Client whose connection comes from another loopback address (127.0.0.x)."""

    def __init__(self, port, src):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT,
                                             source_address=(src, 0))
        self.timeout = IO_TIMEOUT
        self.buf = bytearray()
        self.greeting = self.line()


class WorkersTest(Pop3TestCase):

    def wait_exit(self, d, timeout=30):
        """The process exits by itself: its status; stop() becomes a no-op."""
        try:
            rc = d.proc.wait(timeout)
        finally:
            d.stopped = d.proc.poll() is not None
        d._reader.join(STOP_TIMEOUT)
        d.proc.stderr.close()
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, d.stderr())
        self.assertEqual(rc, 0, d.stderr())
        self.assertTrue(d.lines[-1].endswith("stopped"), d.lines[-3:])

    def workers_of(self, d):
        return {int(m.group(1)) for l in d.log_lines("session end")
                for m in [re.search(r" worker=(\d+) ", l)] if m}

    def counters(self, d, n):
        """Send SIGUSR1 and return the n-th counters line as a dict."""
        d.proc.send_signal(signal.SIGUSR1)
        line = d.wait_log("counters ", count=n)
        return dict(kv.split("=", 1) for kv in line.split("counters ", 1)[1].split())

    def wait_sessions_open(self, d, want, first_n):
        """SIGUSR1 until sessions_open == want (a closed session is counted until destroyed,
        a moment after the client sees EOF). Returns the next counters index."""
        n = first_n
        for _ in range(100):
            c = self.counters(d, n)
            n += 1
            if c["sessions_open"] == str(want):
                return n
            time.sleep(0.02)
        self.fail("sessions_open never reached %d: %r" % (want, c))

    def test_ready_line_and_check_summary(self):
        d = self.daemon(extra_config=process("workers = 3;"))
        self.assertIn(" workers=3", d.wait_log("ready"))
        d2 = self.daemon(extra_config=process("workers = 0;"))
        self.assertRegex(d2.wait_log("ready"), r" workers=[1-9]\d*$")

    def test_workers_checked_by_t(self):
        for value, ok in (("65", False), ("-1", False), ("\"2\"", False), ("64", True),
                          ("0", True)):
            with self.subTest(workers=value):
                d = Daemon(extra_config=process("workers = %s;" % value))
                self.addCleanup(d.cleanup_dir)
                d.port = free_port()
                d.write_files()
                r = subprocess.run([pop3d_path(), "-c", d.conf, "-t"], capture_output=True,
                                   text=True, timeout=30)
                self.assertEqual(r.returncode, 0 if ok else 1, r)
                if ok:
                    self.assertRegex(r.stdout, r"workers=[1-9]")
                else:
                    self.assertRegex(r.stdout, r"pop3d.conf:\d+: .*workers")

    def test_connections_spread_and_counted_once(self):
        d = self.daemon(extra_config=process("workers = 2;"))
        self.assertIn(" workers=2", d.wait_log("ready"))
        opened = 0
        for _ in range(ROUNDS):
            cs = [self.connect(d, greeting=False) for _ in range(PER_ROUND)]
            for c in cs:
                c.greeting = c.line()
                self.assertOK(c.greeting)
            for c in cs:
                self.assertOK(c.cmd("QUIT"))
                c.close()
            opened += PER_ROUND
            d.wait_session_end(opened)
            if len(self.workers_of(d)) >= 2:
                break
        self.assertEqual(self.workers_of(d), {0, 1}, "only one loop ever accepted")
        c = self.counters(d, 1)
        self.assertEqual(c["connections"], str(opened))
        self.assertEqual(c["sessions_open"], "0")

    def test_caps_are_global(self):
        """max_connections_per_ip = 3 and max_connections = 5 hold over 4 loops."""
        d = self.daemon(extra_config=process("workers = 4;"), max_connections=5,
                        max_connections_per_ip=3)
        held = [ClientFrom(d.port, "127.0.0.1") for _ in range(3)]
        for c in held:
            self.addCleanup(c.close)
            self.assertOK(c.greeting)
        over = ClientFrom(d.port, "127.0.0.1")
        self.addCleanup(over.close)
        self.assertIn(b"too many connections from your address", over.greeting)
        over.wait_closed()
        n = self.wait_sessions_open(d, 3, 1)
        more = [ClientFrom(d.port, "127.0.0.2") for _ in range(2)]
        for c in more:
            self.addCleanup(c.close)
            self.assertOK(c.greeting)
        full = ClientFrom(d.port, "127.0.0.3")
        self.addCleanup(full.close)
        self.assertIn(b"too many connections", full.greeting)
        self.assertNotIn(b"address", full.greeting)
        c = self.counters(d, n)
        self.assertEqual(c["refused"], "2")

    def test_reload_reaches_every_loop(self):
        """A user added by SIGHUP can log in on whichever loop takes the connection."""
        d = self.daemon(extra_config=process("workers = 4;"))
        new = {"new%d" % i: "{PLAIN}new%d-pw" % i for i in range(PER_ROUND)}
        with open(d.users_file, "a") as f:
            for name, pw in new.items():
                f.write("%s:%s\n" % (name, pw))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded users=")
        ends = 0
        for _ in range(ROUNDS):
            cs = [self.connect(d) for _ in range(PER_ROUND)]
            for c, name in zip(cs, new):
                c.send(b"USER %s\r\nPASS %s-pw\r\n" % (name.encode(), name.encode()))
            for c in cs:
                self.assertOK(c.line())
                st = c.line()
                self.assertOK(st, "login after reload on some loop: %r" % st)
                self.assertOK(c.cmd("QUIT"))
                c.close()
            ends += PER_ROUND
            d.wait_session_end(ends)
            if len(self.workers_of(d)) >= 2:
                break
        self.assertGreaterEqual(len(self.workers_of(d)), 2)

    def test_sigterm_grace_then_update_on_every_loop(self):
        """Logged-in sessions on several loops: after SIGTERM nothing new is accepted, each
        session can still DELE and QUIT (UPDATE runs), and the process exits when the last
        one has quit, long before the grace period."""
        users = {"u%d" % i: "{PLAIN}pw%d" % i for i in range(PER_ROUND)}
        d = self.daemon(users=users, extra_config=process("workers = 4;").replace(
            "shutdown_grace = 0", "shutdown_grace = 60"))
        names = {}
        for u in users:
            names[u] = deliver(d.maildir(u), b"Subject: x\r\n\r\nbody\r\n")
        cs = []
        for u in users:
            c = self.connect(d)
            c.login(u, d.password(u))
            cs.append(c)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("shutting down on SIGTERM sessions=%d" % PER_ROUND)
        # Logged once every loop has closed its listener: the port refuses at once.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port), timeout=IO_TIMEOUT).close()
        for c in cs:
            self.assertOK(c.cmd("DELE 1"))
            self.assertIn(b"1 message removed", c.quit())
        self.wait_exit(d)
        self.assertLess(time.monotonic() - t0, 30)
        for u in users:
            self.assertEqual(os.listdir(os.path.join(d.maildir(u), "new")), [])
            self.assertEqual(os.listdir(os.path.join(d.maildir(u), "cur")), [])
        self.assertEqual(d.count_log("shutdown grace period over"), 0)
        self.assertIn("connections=%d " % PER_ROUND, d.log_lines("counters ")[-1])

    def test_second_sigterm_closes_every_loop(self):
        users = {"u%d" % i: "{PLAIN}pw%d" % i for i in range(PER_ROUND)}
        d = self.daemon(users=users, extra_config=process("workers = 4;").replace(
            "shutdown_grace = 0", "shutdown_grace = 600"))
        cs = []
        for u in users:
            deliver(d.maildir(u), b"Subject: x\r\n\r\nbody\r\n")
            c = self.connect(d)
            c.login(u, d.password(u))
            self.assertOK(c.cmd("DELE 1"))
            cs.append(c)
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("shutting down on SIGTERM")
        d.proc.send_signal(signal.SIGTERM)
        for c in cs:
            c.wait_closed()
        self.wait_exit(d)
        for u in users:   # closed without UPDATE: DELE undone
            self.assertEqual(len(os.listdir(os.path.join(d.maildir(u), "new"))), 1)


class HashTurnsTest(Pop3TestCase):
    """The password-hash line gives a free turn first to an address with no check running."""

    FLOOD = 32

    def test_flooding_address_does_not_hold_back_another(self):
        """32 yescrypt logins from 127.0.0.1 are queued (4 hash at once), then one from
        127.0.0.2: it gets the next free turn, so only the few flood logins already hashing are
        answered before it, not all that wait (the order of replies is checked, not times)."""
        from tlsutil import crypt_secret
        h = crypt_secret("pw")
        users = {"f%d" % i: h for i in range(self.FLOOD)}
        users["probe"] = h
        d = self.daemon(users=users, extra_config=process("workers = 1;"))
        flood = [ClientFrom(d.port, "127.0.0.1") for _ in range(self.FLOOD)]
        probe = ClientFrom(d.port, "127.0.0.2")
        for c in flood + [probe]:
            self.addCleanup(c.close)
        for i, c in enumerate(flood):
            self.assertOK(c.cmd("USER f%d" % i))
        self.assertOK(probe.cmd("USER probe"))
        for c in flood:
            c.send(b"PASS pw\r\n")
        # The first reply means the line is full: every flood PASS was read before it.
        pending = {c.sock: c for c in flood}
        r, _, _ = select.select(list(pending), [], [], IO_TIMEOUT * 3)
        self.assertTrue(r, "no login answered")
        while r:   # what has come already came before the probe asked
            for sock in r:
                self.assertOK(pending.pop(sock).line())
            r, _, _ = select.select(list(pending), [], [], 0)
        left = len(pending)
        self.assertGreaterEqual(left, 12, "the flood drained too fast for the check to mean much")
        probe.send(b"PASS pw\r\n")
        pending[probe.sock] = probe
        overtook = None
        deadline = time.monotonic() + IO_TIMEOUT * 6
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select(list(pending), [], [], 1.0)
            for sock in r:
                c = pending.pop(sock)
                self.assertOK(c.line())
                if c is probe:
                    overtook = left - sum(1 for x in pending.values() if x is not probe)
        self.assertEqual(pending, {}, "logins still unanswered")
        # A plain first-come line would answer all `left` flood logins first; with turns, only
        # the 4 running when the probe came (one of them freeing its turn) and a few started
        # beside it go before it: about 4 on a quiet machine, up to 9 seen on a loaded one
        # under ASan (hashes go on finishing while the probe's PASS is in flight). Half of
        # what waited (at least 8) still fails a first-come line by far.
        self.assertIsNotNone(overtook)
        self.assertLessEqual(overtook, max(8, left // 2), "%d of %d waiting flood logins were "
                             "answered before the probe" % (overtook, left))


if __name__ == "__main__":
    unittest.main()
