"""log.target = "syslog": lines reach /dev/log with the configured facility and the level's
priority, without the stderr prefix, and the level filter applies; the lines that answer the admin
(ready, SIGUSR1 counters, reload, stop) are notices that pass any level.

pop3d is started in a private mount namespace (unshare -m, as root) in which /dev is a temporary
folder holding our own datagram socket named log, so the host's /dev/log, if any, is untouched.
Skipped where mount namespaces are not allowed.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Client, child_env, deliver, free_port, make_maildir, pop3d_path

WAIT = 10
LOCAL3 = 19          # syslog facility number of local3
PRI = {"error": 3, "warning": 4, "notice": 5, "info": 6}


def wait_port(port):
    """Until something accepts on 127.0.0.1:port (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on %d" % port)


def can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


@unittest.skipUnless(can_unshare(), "needs root and mount namespaces (unshare -m)")
class SyslogTest(unittest.TestCase):
    def start(self, level):
        self.dir = tempfile.mkdtemp(prefix="pop3d-syslog-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        dev = os.path.join(self.dir, "dev")
        os.mkdir(dev)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(dev, "log"))
        self.sock.settimeout(WAIT)
        self.addCleanup(self.sock.close)
        self.port = free_port()
        with open(os.path.join(self.dir, "users"), "w") as f:
            f.write("alice:{PLAIN}pw\n")
        self.maildir = make_maildir(os.path.join(self.dir, "mail", "alice", "Maildir"))
        deliver(self.maildir, b"Subject: x\n\nhello\n")
        self.conf = conf = os.path.join(self.dir, "pop3d.conf")
        with open(conf, "w") as f:
            f.write('listen = ( { address = "127.0.0.1"; port = %d; } );\n'
                    'auth = { users_file = "users"; plaintext = "always"; failure_delay = 0; };\n'
                    'maildrop = { path = "%s/mail/%%n/Maildir"; };\n'
                    'log = { target = "syslog"; facility = "local3"; level = "%s"; };\n'
                    'process = { allow_root = true; shutdown_grace = 0; };\n'
                    % (self.port, self.dir, level))
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /dev && exec "$@"', dev,
             pop3d_path(), "-c", conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=child_env())
        self.addCleanup(self.stop)
        if level == "info":
            return self.until("ready")
        wait_port(self.port)
        return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        # the sanitizer build reports on stderr: keep that an error
        self.assertNotIn("Sanitizer", err)
        self.assertNotIn("runtime error", err)

    def until(self, text):
        """Datagrams (pri, message) up to and including the first whose text contains text."""
        seen = []
        for _ in range(200):
            data = self.sock.recv(8192).decode(errors="replace")
            self.assertTrue(data.startswith("<"), data)
            pri = int(data[1:data.index(">")])
            seen.append((pri, data))
            if text in data:
                return seen
        self.fail("no %r in %r" % (text, seen))

    def test_facility_priority_and_format(self):
        seen = self.start("info")
        pri, line = seen[-1]
        self.assertEqual(pri, LOCAL3 * 8 + PRI["notice"], line)    # ready answers the start
        self.assertIn(" pop3d[", line)
        self.assertNotIn("notice:", line)      # the level is the priority, not text
        c = Client(self.port)
        self.assertTrue(c.cmd("USER alice").startswith(b"+OK"))
        self.assertTrue(c.cmd("PASS wrong").startswith(b"-ERR [AUTH]"))
        pri, line = self.until("login failed")[-1]
        self.assertEqual(pri, LOCAL3 * 8 + PRI["info"])
        self.assertIn("ip=127.0.0.1 user=alice mechanism=USER", line)
        self.assertNotIn("info:", line)
        self.assertNotIn("wrong", line)       # never the password
        c.close()
        self.proc.terminate()
        self.until("stopped")
        self.assertEqual(self.proc.wait(WAIT), 0)

    def test_level_filters(self):
        """At "warning": no info line (ready is a notice, logins are info), but errors and the
        admin's answers arrive. Each expected datagram is waited for, so a daemon that sends
        nothing at all fails here instead of passing an empty list."""
        self.start("warning")
        seen = self.until("ready")
        c = Client(self.port)
        self.assertTrue(c.cmd("USER alice").startswith(b"+OK"))
        self.assertTrue(c.cmd("PASS wrong").startswith(b"-ERR [AUTH]"))
        c.close()
        self.proc.send_signal(signal.SIGUSR1)
        seen += self.until("counters ")
        self.assertIn("login_failures=1 ", seen[-1][1])     # the failure happened, unlogged
        with open(self.conf, "a") as f:                     # an error: a rejected reload
            f.write("bogus = 1;\n")
        self.proc.send_signal(signal.SIGHUP)
        seen += self.until("reload rejected")
        self.proc.terminate()
        seen += self.until("stopped")
        self.assertEqual(self.proc.wait(WAIT), 0)
        self.sock.settimeout(0.5)
        try:
            while True:
                data = self.sock.recv(8192).decode(errors="replace")
                seen.append((int(data[1:data.index(">")]), data))
        except socket.timeout:
            pass
        by_pri = {}
        for pri, line in seen:
            self.assertEqual(pri // 8, LOCAL3, line)
            by_pri.setdefault(pri % 8, []).append(line)
        self.assertFalse(any("login failed" in l for l in seen_text(seen)), seen)
        self.assertNotIn(PRI["info"], by_pri, seen)
        self.assertTrue(any("reload rejected" in l for l in by_pri.get(PRI["error"], [])), seen)
        notices = by_pri.get(PRI["notice"], [])
        for text in ("ready", "counters ", "reloading", "shutting down on SIGTERM", "stopped"):
            self.assertTrue(any(text in l for l in notices), (text, seen))


def seen_text(seen):
    return [line for _, line in seen]


if __name__ == "__main__":
    unittest.main()
