"""Signals against the real binary (issue 5, "Signals"): SIGHUP reloads the configuration, the users
file, the certificates and the policies (new sessions use the new generation, running ones keep
theirs; an invalid new configuration is rejected with its errors logged and the old one stays in
force); SIGUSR1 logs one "counters" line; SIGTERM/SIGINT stop accepting, let sessions finish for
process.shutdown_grace seconds and then close them without UPDATE, a second SIGTERM closes them at
once, and the daemon exits 0 with "stopped" as its last log line.

harness.py stays untouched: SigDaemon extends harness.Daemon (extra keys in the limits group, a
way to wait for the process to exit by itself). Every wait is for an event or a poll with a
deadline; the only durations asserted are minimums (the grace period) and generous maximums.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

# tests/run.py puts this folder on sys.path; `python3 -m unittest tests/integration/...` does not.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (IO_TIMEOUT, SANITIZER_MARKERS, STOP_TIMEOUT, Closed, Daemon, Pop3TestCase,
                     child_env, deliver, expected_retr, make_maildir, pop3_size,
                     pop3d_path)
from tlsutil import TlsClient, TlsDaemon, client_context, test_certs

EXIT_TIMEOUT = 20.0       # generous: the machine may be loaded
POLL = 0.02

KV = re.compile(r"(\w+)=(\S+)")


def policy(text):
    return "policy = { %s };\n" % text


def process(text):
    """A process group (it replaces the harness's, so it says allow_root itself when root)."""
    root = "allow_root = true; " if os.geteuid() == 0 else ""
    return "process = { %s%s };\n" % (root, text)


class DaemonExtras:
    """Mixed into harness.Daemon subclasses: signals, reload, counters, waiting for the exit."""

    def kill(self, signum):
        self.proc.send_signal(signum)

    def wait_any(self, wanted, timeout=IO_TIMEOUT):
        """wanted: {substring: count}. Poll until one substring reaches its count; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for sub, n in wanted.items():
                if self.count_log(sub) >= n:
                    return sub
            if time.monotonic() >= deadline or not self.alive():
                raise AssertionError("none of %r within %ss (process %s); stderr:\n%s"
                                     % (wanted, timeout, "alive" if self.alive() else "exited",
                                        self.stderr()))
            time.sleep(POLL)

    def reload(self):
        """SIGHUP; wait for its outcome. Returns True (reloaded) or False (rejected)."""
        ok, bad = self.count_log("reloaded users="), self.count_log("reload rejected")
        self.kill(signal.SIGHUP)
        got = self.wait_any({"reloaded users=": ok + 1, "reload rejected": bad + 1})
        return got == "reloaded users="

    def counters(self):
        """SIGUSR1; the new "counters" line as {name: int}."""
        n = self.count_log("counters ")
        self.kill(signal.SIGUSR1)
        line = self.wait_log("counters ", count=n + 1)
        return {k: int(v) for k, v in KV.findall(line.split("counters ", 1)[1])}

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        """Wait for the process to exit by itself; returns its status. Takes over what stop()
        would check (sanitizer reports) and makes stop() a no-op."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("pop3d still running %ss later; stderr:\n%s"
                                 % (timeout, self.stderr()))
        finally:
            if self.proc.poll() is not None:
                self.stopped = True
        if self._reader:
            self._reader.join(STOP_TIMEOUT)
        self.proc.stderr.close()
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                raise AssertionError("stderr contains %r:\n%s" % (marker, err))
        return rc


class SigDaemon(DaemonExtras, Daemon):
    """harness.Daemon without the auth backoff unless a test sets limits_extra itself."""

    def __init__(self, limits_extra="auth_backoff_base = 0;", **kw):
        super().__init__(limits_extra=limits_extra, **kw)


class SigTlsDaemon(DaemonExtras, TlsDaemon):
    """tlsutil.TlsDaemon writes its own config text: add the harness's process group to it."""

    def config_text(self):
        text = super().config_text()
        if not re.search(r"(?m)^process\s*=", text):
            text += self.process_config()
        return text


class SignalCase(Pop3TestCase):

    def daemon(self, corpus_for=(), cls=SigDaemon, **kw):
        d = cls(**kw)
        self.addCleanup(d.cleanup_dir)
        d.corpora = {u: d.corpus(u) for u in corpus_for}
        self.addCleanup(d.stop)
        d.start()
        return d

    def fill(self, d, user, n):
        """n small messages; returns [(name, bytes)] in delivery (= listing) order."""
        md = d.maildir(user)
        out = []
        base = time.time() - 100
        for i in range(n):
            data = b"From: t@example.org\nSubject: m%d %s\n\nbody %d\n" % (i, user.encode(), i)
            out.append((deliver(md, data, mtime=base + i), data))
        return out

    def names_in(self, d, user):
        md = d.maildir(user)
        return sorted(n.split(":", 1)[0] for sub in ("new", "cur")
                      for n in os.listdir(os.path.join(md, sub)))

    def capa_policy(self, c):
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        return [l.decode() for l in data.split(b"\r\n") if l.startswith(b"EXPIRE")]

    def assert_login_fails(self, d, user, password):
        c = self.connect(d)
        self.assertOK(c.cmd("USER " + user))
        self.assertTrue(c.cmd("PASS " + password).startswith(b"-ERR [AUTH]"), user)
        c.quit()

    def assert_not_served(self, port):
        """A connection is refused, or accepted by the kernel and then dropped unanswered."""
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        except ConnectionRefusedError:
            return
        try:
            s.settimeout(IO_TIMEOUT)
            try:
                data = s.recv(1024)
            except (ConnectionResetError, socket.timeout) as e:
                if isinstance(e, socket.timeout):
                    self.fail("a connection after SIGTERM was neither refused nor closed")
                data = b""
            self.assertEqual(data, b"", "a connection after SIGTERM was served")
        finally:
            s.close()

    def assert_stopped_cleanly(self, d, rc):
        self.assertEqual(rc, 0, d.stderr())
        with d._cond:
            lines = list(d.lines)
        self.assertTrue(lines and lines[-1].endswith("stopped"), lines[-3:])


# ---------------------------------------------------------------- SIGHUP

class ReloadTest(SignalCase):

    def test_new_sessions_use_new_users_and_policy_old_session_keeps_its_own(self):
        d = self.daemon(extra_config=policy("keep_days = 5;"))
        msgs = self.fill(d, "alice", 2)
        a = self.session(d, "alice")                   # logged in before the reload
        self.assertEqual(self.capa_policy(a), ["EXPIRE 5"])
        pre = self.connect(d)                          # connected, not logged in
        self.assertOK(pre.greeting)
        self.assert_login_fails(d, "erin", "erin-pw")

        del d.users["dave"]
        d.users["erin"] = "{PLAIN}erin-pw"
        d.extra_config = policy("keep_days = 9;")
        d.write_files()
        self.assertTrue(d.reload(), d.stderr())
        self.assertIn("reloaded users=4", d.log_lines("reloaded users=")[-1])

        # new sessions: the new users file and the new policy
        b = self.connect(d)
        self.assertEqual(self.capa_policy(b), ["EXPIRE 9"])
        b.login("erin", "erin-pw")
        self.assertEqual(self.capa_policy(b), ["EXPIRE 9"])
        b.quit()
        self.assert_login_fails(d, "dave", "dave-pw")
        c = self.session(d, "bob@example.org")
        self.assertEqual(self.capa_policy(c), ["EXPIRE 9"])
        c.quit()

        # the session open during the reload works on, with its old settings
        self.assertEqual(self.capa_policy(a), ["EXPIRE 5"])
        self.assertEqual(a.cmd("STAT"), b"+OK 2 %d" % sum(pop3_size(m) for _, m in msgs))
        st, body = a.cmd_multi("RETR 2")
        self.assertOK(st)
        self.assertEqual(body, expected_retr(msgs[1][1]))
        self.assertOK(a.cmd("DELE 1"))
        self.assertOK(a.quit())
        self.assertEqual(self.names_in(d, "alice"), [msgs[1][0]])

        # connected before the reload: still the old generation (dave exists, EXPIRE 5)
        self.assertEqual(self.capa_policy(pre), ["EXPIRE 5"])
        pre.login("dave", "dave-pw")
        self.assertEqual(self.capa_policy(pre), ["EXPIRE 5"])
        pre.quit()
        self.assertTrue(d.alive())

    def test_invalid_config_is_rejected_and_old_one_stays(self):
        d = self.daemon(extra_config=policy("keep_days = 5;"))
        good_conf = d.config_text()
        good_users = dict(d.users)
        other_port = d.port + 1 if d.port < 65535 else d.port - 1
        cases = [
            ("syntax error", good_conf + "policy = { keep_days = 9 \n", None,
             lambda errs: any(d.conf in l for l in errs)),
            ("unknown key", good_conf.replace("failure_delay =", "no_such_key = 1; failure_delay ="),
             None, lambda errs: any("no_such_key" in l for l in errs)),
            ("unreadable users file",
             good_conf.replace('users_file = "users"', 'users_file = "missing/users"'), None,
             lambda errs: any("missing/users" in l for l in errs)),
            ("listen list changed",
             good_conf.replace("port = %d;" % d.port, "port = %d;" % other_port), None,
             lambda errs: any("listen list changed" in l for l in errs)),
            ("listener added",
             good_conf.replace("} );", '}, { address = "127.0.0.1"; port = %d; } );'
                               % other_port, 1), None,
             lambda errs: any("listen list changed" in l for l in errs)),
            ("bad value", good_conf.replace("keep_days = 5", "keep_days = -3"), None,
             lambda errs: any("keep_days" in l for l in errs)),
        ]
        rejected = 0
        for name, conf, _, has_error in cases:
            with self.subTest(name):
                # every bad file comes with a users file that would add erin and drop dave
                users = dict(good_users)
                del users["dave"]
                users["erin"] = "{PLAIN}erin-pw"
                with open(d.users_file, "w") as f:
                    f.writelines("%s:%s\n" % kv for kv in users.items())
                with open(d.conf, "w") as f:
                    f.write(conf)
                start = len(d.lines)
                self.assertFalse(d.reload(), "%s: reload accepted; stderr:\n%s" % (name, d.stderr()))
                rejected += 1
                with d._cond:
                    new = d.lines[start:]
                bad = [l for l in new if "reload rejected" in l]
                self.assertEqual(len(bad), 1, new)
                errs = new[:new.index(bad[0]) + 1]
                self.assertTrue(has_error(errs), "%s: the problem is not logged:\n%s"
                                % (name, "\n".join(new)))
                # the old generation is in force: old users, old policy, same port
                c = self.connect(d)
                self.assertEqual(self.capa_policy(c), ["EXPIRE 5"])
                c.login("dave", "dave-pw")
                c.quit()
                self.assert_login_fails(d, "erin", "erin-pw")
        self.assertEqual(d.count_log("reload rejected"), rejected)
        self.assertEqual(d.count_log("reloaded users="), 0)
        self.assertEqual(d.counters()["reloads"], 0)

        # a good file again is taken
        d.users = dict(good_users, erin="{PLAIN}erin-pw")
        d.extra_config = policy("keep_days = 9;")
        d.write_files()
        self.assertTrue(d.reload(), d.stderr())
        c = self.connect(d)
        self.assertEqual(self.capa_policy(c), ["EXPIRE 9"])
        c.login("erin", "erin-pw")
        c.quit()
        self.assertEqual(d.counters()["reloads"], 1)

    def test_rejected_reload_logs_each_problem_once(self):
        d = self.daemon()
        with open(d.conf, "w") as f:
            f.write(d.config_text().replace('users_file = "users"', 'users_file = "missing"'))
        start = len(d.lines)
        self.assertFalse(d.reload(), d.stderr())
        with d._cond:
            new = [l.split(": ", 1)[1] for l in d.lines[start:] if ": " in l]
        dup = sorted({l for l in new if new.count(l) > 1})
        self.assertEqual(dup, [], "logged more than once:\n%s" % "\n".join(d.lines[start:]))

    def test_reload_does_not_stop_the_loop(self):
        """The reload reads its files on the thread pool: with the config file a FIFO that
        nobody writes yet (a read that cannot finish), sessions are still answered and new
        ones served; once the text arrives, the reload goes through. Two more SIGHUPs
        meanwhile collapse into one more load. One worker loop: the one that takes SIGHUP."""
        d = self.daemon(extra_config="process = { allow_root = true; shutdown_grace = 0; "
                                     "workers = 1; };\n")
        make_maildir(d.maildir("alice"))
        c = self.session(d)
        text = d.config_text()
        os.unlink(d.conf)
        os.mkfifo(d.conf)
        n = d.count_log("reloading ")
        d.kill(signal.SIGHUP)
        d.wait_log("reloading ", count=n + 1)
        d.kill(signal.SIGHUP)
        d.kill(signal.SIGHUP)
        self.assertOK(c.cmd("NOOP"))
        other = self.connect(d)
        other.login("bob@example.org", "bob-pw")
        other.quit()
        self.assertEqual(d.count_log("reloaded users="), 0)
        for i in (1, 2):   # the first load, then the one the extra SIGHUPs asked for
            with open(d.conf, "w") as f:    # blocks until pop3d opens the FIFO to read
                f.write(text)
            d.wait_log("reloaded users=", count=i)
        os.unlink(d.conf)
        with open(d.conf, "w") as f:
            f.write(text)
        self.assertEqual(d.count_log("reloading "), n + 2)
        self.assertOK(c.cmd("NOOP"))
        c.quit()

    def test_certificates_are_reloaded(self):
        certs = test_certs()
        d = self.daemon(cls=SigTlsDaemon, certs=certs, sni=False)
        ctx = client_context(None)

        def peer_cert():
            c = TlsClient(d.tls_port, greeting=False)
            self.addCleanup(c.close)
            c.start_tls(ctx)
            self.assertOK(c.line())
            return c, c.sock.getpeercert(binary_form=True)

        old, der = peer_cert()
        self.assertEqual(der, certs.der["default"])
        old.login("alice", "alice-pw")

        # the default certificate's files now hold the "net" pair
        cert, key = certs.files("default", d.dir)
        for src, dst in zip(certs.files("net", d.dir), (cert, key)):
            with open(src, "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
        self.assertTrue(d.reload(), d.stderr())
        new, der = peer_cert()
        self.assertEqual(der, certs.der["net"], "new sessions must get the reloaded certificate")
        new.login("bob@example.org", "bob-pw")
        new.quit()
        self.assertOK(old.cmd("STAT"))            # the old TLS session works on
        old.quit()

        # a broken key is rejected, the loaded certificate stays
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        self.assertFalse(d.reload(), d.stderr())
        self.assertTrue(d.log_lines("tls.key"), d.stderr())
        again, der = peer_cert()
        self.assertEqual(der, certs.der["net"])
        again.login("alice", "alice-pw")
        again.quit()


# ---------------------------------------------------------------- SIGUSR1

class CountersTest(SignalCase):

    def test_counters_after_known_actions(self):
        d = self.daemon(max_connections_per_ip=2,
                        extra_config=policy('users = ( { user = "bob@example.org"; '
                                            'retention = "delete"; } );'))
        alice = self.fill(d, "alice", 3)
        bob = self.fill(d, "bob@example.org", 2)
        first = d.counters()
        self.assertEqual(first, dict(connections=0, refused=0, sessions_open=0, logins=0,
                                     login_failures=0, retr=0, retr_bytes=0, deleted=0,
                                     deleted_dele=0, deleted_download=0, deleted_expire=0,
                                     reloads=0))

        a = self.session(d, "alice")                              # connection 1, login 1
        for n in (1, 2):
            st, _ = a.cmd_multi("RETR %d" % n)                    # retr 1, 2
            self.assertOK(st)
        self.assertOK(a.cmd("DELE 3"))
        b = self.connect(d)                                       # connection 2
        self.assertOK(b.cmd("USER carol"))
        self.assertTrue(b.cmd("PASS wrong").startswith(b"-ERR [AUTH]"))   # failure 1
        r = self.connect(d, greeting=False)                       # connection 3: over the cap
        self.assertTrue(r.line().startswith(b"-ERR [SYS/TEMP]"))
        r.wait_closed()
        d.wait_log("connection refused")
        a.quit()                                                  # removes 1 (dele)
        d.wait_session_end(1)
        c = self.session(d, "bob@example.org")                    # connection 4, login 2
        st, _ = c.cmd_multi("RETR 2")                             # retr 3
        self.assertOK(st)
        c.quit()                                                  # removes 1 (download)
        d.wait_session_end(2)
        self.assertTrue(d.reload())                               # reload 1
        with open(d.conf, "a") as f:
            f.write("bogus = 1;\n")
        self.assertFalse(d.reload())                              # rejected: not counted
        d.write_files()

        want = dict(connections=4, refused=1, sessions_open=1, logins=2, login_failures=1,
                    retr=3, retr_bytes=pop3_size(alice[0][1]) + pop3_size(alice[1][1]) +
                    pop3_size(bob[1][1]),
                    deleted=2, deleted_dele=1, deleted_download=1, deleted_expire=0, reloads=1)
        # sessions_open drops when the closed sessions' handles are gone: poll briefly
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            got = d.counters()
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(got, want)
        self.assertEqual(self.names_in(d, "alice"), sorted([alice[0][0], alice[1][0]]))
        self.assertEqual(self.names_in(d, "bob@example.org"), [bob[0][0]])

        b.quit()
        d.wait_session_end(3)
        d.kill(signal.SIGTERM)
        self.assert_stopped_cleanly(d, d.wait_exit())
        final = [l for l in d.log_lines("counters ")][-1]
        self.assertIn("sessions_open=0 ", final)
        self.assertIn("connections=4 ", final)


    def test_counters_are_logged_at_level_warning(self):
        """An admin who keeps the log quiet still gets the answer to SIGUSR1 (and to the start
        and stop): those lines are notices written whatever log.level says."""
        d = self.daemon(extra_config='log = { level = "warning"; };\n')
        self.assertIn(": notice: ready ", d.wait_log(": ready"))
        self.assert_login_fails(d, "alice", "wrong")      # counted before its -ERR is sent
        got = d.counters()
        self.assertEqual(got["login_failures"], 1)
        self.assertIn(": notice: counters ", d.log_lines("counters ")[-1])
        self.assertEqual(d.count_log("login failed"), 0, "the level filter applies to the rest")
        self.assertEqual(d.count_log(": info: "), 0, d.stderr())
        d.kill(signal.SIGTERM)
        self.assert_stopped_cleanly(d, d.wait_exit())
        self.assertIn(": notice: shutting down on SIGTERM", d.stderr())


# ---------------------------------------------------------------- SIGTERM / SIGINT

class StopTest(SignalCase):

    def test_grace_over_closes_without_update(self):
        grace = 4       # room for the checks below on a loaded machine
        d = self.daemon(extra_config=process("shutdown_grace = %d;" % grace))
        msgs = self.fill(d, "alice", 2)
        a = self.session(d, "alice")
        self.assertOK(a.cmd("DELE 1"))
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        d.wait_log("shutting down on SIGTERM sessions=1 grace=%ds" % grace)
        # during the grace period the session goes on
        self.assertOK(a.cmd("STAT"))
        st, body = a.cmd_multi("RETR 2")
        self.assertOK(st)
        self.assertEqual(body, expected_retr(msgs[1][1]))
        self.assertLess(time.monotonic() - t0, grace, "too slow to check the grace period")
        self.assert_not_served(d.port)
        a.wait_closed(timeout=grace + EXIT_TIMEOUT)
        closed = time.monotonic() - t0
        self.assertGreaterEqual(closed, grace - 0.05, "closed before the grace period was over")
        rc = d.wait_exit()
        self.assert_stopped_cleanly(d, rc)
        self.assertEqual(self.names_in(d, "alice"), sorted(n for n, _ in msgs))   # no UPDATE
        self.assertEqual(d.count_log("shutdown grace period over: closing 1 sessions"), 1)
        self.assertEqual(d.count_log("update id="), 0)
        end = d.log_lines("session end")
        self.assertEqual(len(end), 1)
        self.assertIn('reason="shutdown"', end[0])

    def test_quit_within_grace_updates_and_exit_comes_early(self):
        grace = 60
        d = self.daemon(extra_config=process("shutdown_grace = %d;" % grace))
        msgs = self.fill(d, "alice", 2)
        self.fill(d, "carol", 1)
        a = self.session(d, "alice")
        b = self.session(d, "carol")
        self.assertOK(a.cmd("DELE 1"))
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        d.wait_log("shutting down on SIGTERM sessions=2")
        self.assert_not_served(d.port)
        st = a.quit()
        self.assertIn(b"1 message removed", st)
        d.wait_session_end(1)
        self.assertTrue(d.alive(), "exited while a session was still open")
        self.assertOK(b.cmd("NOOP"))
        b.quit()
        rc = d.wait_exit(timeout=grace / 3)
        self.assertLess(time.monotonic() - t0, grace / 3)
        self.assert_stopped_cleanly(d, rc)
        self.assertEqual(self.names_in(d, "alice"), [msgs[1][0]])
        self.assertEqual(d.count_log("shutdown grace period over"), 0)

    def test_second_sigterm_closes_at_once(self):
        grace = 60
        d = self.daemon(extra_config=process("shutdown_grace = %d;" % grace))
        msgs = self.fill(d, "alice", 2)
        a = self.session(d, "alice")
        self.assertOK(a.cmd("DELE 1"))
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        d.wait_log("shutting down on SIGTERM")
        self.assertOK(a.cmd("NOOP"))
        d.kill(signal.SIGTERM)
        a.wait_closed(timeout=grace / 3)
        rc = d.wait_exit(timeout=grace / 3)
        self.assertLess(time.monotonic() - t0, grace / 3)
        self.assert_stopped_cleanly(d, rc)
        self.assertEqual(self.names_in(d, "alice"), sorted(n for n, _ in msgs))   # no UPDATE
        self.assertEqual(d.count_log("update id="), 0)
        self.assertIn('reason="shutdown"', d.log_lines("session end")[0])

    def test_sigint_without_sessions_exits_at_once(self):
        d = self.daemon(extra_config=process("shutdown_grace = 60;"))
        c = self.session(d, "alice")
        c.quit()
        d.wait_session_end(1)
        t0 = time.monotonic()
        d.kill(signal.SIGINT)
        rc = d.wait_exit(timeout=EXIT_TIMEOUT)
        self.assertLess(time.monotonic() - t0, EXIT_TIMEOUT)
        self.assert_stopped_cleanly(d, rc)
        self.assertEqual(d.count_log("shutting down on SIGINT sessions=0"), 1)

    def test_zero_grace_closes_at_once(self):
        d = self.daemon(extra_config=process("shutdown_grace = 0;"))
        msgs = self.fill(d, "alice", 1)
        a = self.session(d, "alice")
        self.assertOK(a.cmd("DELE 1"))
        d.kill(signal.SIGTERM)
        a.wait_closed()
        self.assert_stopped_cleanly(d, d.wait_exit())
        self.assertEqual(self.names_in(d, "alice"), [msgs[0][0]])

    def test_failed_start_names_no_signal(self):
        """A port already in use stops the start: the log says why and never mentions a
        signal nobody sent (it used to say "shutting down on SIGTERM")."""
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        d = SigDaemon()
        self.addCleanup(d.cleanup_dir)
        d.port = busy.getsockname()[1]
        d.write_files()
        r = subprocess.run([pop3d_path(), "-c", d.conf], stdin=subprocess.DEVNULL,
                           capture_output=True, cwd="/", env=child_env(), timeout=EXIT_TIMEOUT)
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("address already in use", err.lower())
        self.assertNotIn("SIGTERM", err)
        self.assertNotIn("shutting down", err)
        self.assertNotIn(": ready", err)
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, err)

    def test_session_in_update_finishes_after_sigterm(self):
        """A session that sent QUIT is in UPDATE: a SIGTERM then, even with no grace at all,
        lets its UPDATE run to the end; the client gets its +OK and the files are gone."""
        n = 20000                                   # enough unlinks to outlast the signal
        d = self.daemon(extra_config=process("shutdown_grace = 0;")
                        + 'log = { level = "debug"; };\n')
        md = d.maildir("alice")
        t = time.time() - 100
        for i in range(n):                          # no fsync per file, unlike deliver()
            path = os.path.join(md, "new", "%d.M%d.update-test" % (int(t), i))
            with open(path, "wb") as f:
                f.write(b"Subject: %d\n\nx\n" % i)
            os.utime(path, (t, t))
        a = self.session(d, "alice")
        self.assertTrue(a.cmd("STAT").startswith(b"+OK %d " % n))
        batch = 1000
        for first in range(1, n + 1, batch):        # pipelined, a batch at a time
            a.send(b"".join(b"DELE %d\r\n" % k for k in range(first, first + batch)))
            for _ in range(batch):
                self.assertOK(a.line())
        a.send(b"QUIT\r\n")
        d.wait_log("update start id=")              # in UPDATE now: the event, not a sleep
        d.kill(signal.SIGTERM)
        st = a.line(timeout=EXIT_TIMEOUT)
        self.assertEqual(st, b"+OK bye, %d messages removed" % n)
        a.wait_closed()
        self.assert_stopped_cleanly(d, d.wait_exit())
        self.assertEqual(self.names_in(d, "alice"), [])
        with d._cond:
            lines = list(d.lines)
        stop = [i for i, l in enumerate(lines) if "shutting down on SIGTERM" in l]
        upd = [i for i, l in enumerate(lines) if ": update id=" in l]
        self.assertEqual(len(stop), 1, lines[-5:])
        self.assertEqual(len(upd), 1, lines[-5:])
        # the signal came while UPDATE ran (else this test proves nothing)
        self.assertIn(" sessions=1 ", lines[stop[0]])
        self.assertLess(stop[0], upd[0], "UPDATE was over before the signal: raise n")
        self.assertIn(" removed=%d " % n, lines[upd[0]])
        self.assertIn('reason="quit"', d.log_lines("session end")[-1])


if __name__ == "__main__":
    unittest.main()
