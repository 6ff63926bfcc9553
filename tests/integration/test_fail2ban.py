"""fail2ban: etc/fail2ban/filter.d/pop3d.conf against what the real daemon logs.

A daemon on 127.0.0.1 gets real failed logins (wrong passwords, unknown users, a UTF-8 name, names
with spaces, quotes, a backslash, a control character and text that imitates a log line with another ip=, one
longer than the 64 octets pop3d logs; over USER/PASS, AUTH PLAIN and APOP) and one good login. Its
stderr lines go to a file and `fail2ban-regex FILE FILTER` must match exactly the failed logins,
each for 127.0.0.1 and nothing else: not the good login, not a session end, not the ready line.
The same lines rewritten as rsyslog (traditional and RFC 3339 stamps) and journald
(fail2ban's systemd backend, both log targets) would show them must match the same way, as must
hand-written IPv6 and IPv4-mapped samples. mode=aggressive adds the per-address refusal.
The jail file must load with fail2ban-client's own reader. Nothing here needs the fail2ban
service; only fail2ban-regex and fail2ban-client (package fail2ban).
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO, Client, Daemon, Pop3TestCase, apop_timestamp  # noqa: E402

FILTER = os.path.join(REPO, "etc", "fail2ban", "filter.d", "pop3d.conf")
JAIL = os.path.join(REPO, "etc", "fail2ban", "jail.d", "pop3d.conf")
# Where scripts/deps.sh looks too: PATH, then the sbin folders a normal user's PATH may lack.
F2B_REGEX = shutil.which("fail2ban-regex") or shutil.which("fail2ban-regex", path="/usr/sbin:/sbin")
F2B_CLIENT = shutil.which("fail2ban-client") or shutil.which("fail2ban-client", path="/usr/sbin:/sbin")
F2B_SYSTEM_CONF = "/etc/fail2ban"
F2B_TIMEOUT = 120

JORG = "j\u00f6rg@example.org"
USERS = {
    "alice": "{PLAIN}alice-pw",
    "bob@example.org": "{PLAIN}bob-pw",
    JORG: "{PLAIN}p\u00e4ss",
}

# What pop3d puts before the text on stderr: "TIME pop3d[PID]: LEVEL: ".
STDERR_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) pop3d\[(\d+)\]: "
                           r"(error|warning|notice|info|debug): ")
LINES = re.compile(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed")

# User names the client picks; each must cost one failed login logged for 127.0.0.1.
HOSTILE_NAMES = [
    'Mr "Evil" O\'Hara ip=6.6.6.6 mechanism=USER',
    "x pop3d[1]: info: login failed id=1 ip=6.6.6.7 user=y mechanism=USER",
    "back\\slash m\u00fcller",
    "A" * 70 + " ip=6.6.6.8",                   # cut at 64 octets: the tail is never logged
    "x mechanism=APOP backoff_ms=0 ip=6.6.6.11",  # fake keys after the name
]


def logfmt_keys(text):
    """The keys of a key=value text as a logfmt reader sees them: a value that starts with '"'
    runs to the next '"' not escaped by a backslash, any other value to the next space."""
    keys, i, n = [], 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in " =":
            j += 1
        if j < n and text[j] == "=":
            keys.append(text[i:j])
            j += 1
            if j < n and text[j] == '"':
                j += 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
            while j < n and text[j] != " ":
                j += 1
        i = j + 1
    return keys


class F2bDaemon(Daemon):
    """The harness daemon with a backoff far shorter than the default (1 s doubling would make
    a dozen failures from one address take minutes) but not off, so the failed-login lines carry
    a non-zero backoff_ms like on a real server. Started as root, it is allowed to stay root."""

    def config_text(self):
        text = super().config_text()
        new = text.replace("limits = { ", "limits = { auth_backoff_base = 0.01; "
                           "auth_backoff_max = 0.05; ", 1)
        if new == text:
            raise AssertionError("harness config has no 'limits = { ' to extend:\n" + text)
        if os.geteuid() == 0 and not re.search(r"^process\s*=", new, re.M):
            new += "process = { allow_root = true; };\n"
        return new


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def run_regex(log, filt=FILTER, out=None):
    """fail2ban-regex LOG FILT [-o out]; returns stdout (raises with its output on failure)."""
    argv = [F2B_REGEX]
    if out:
        argv += ["-o", out]
    argv += [log, filt]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=F2B_TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r.stdout


def summary(log, filt=FILTER):
    """(lines, ignored, matched, missed) from fail2ban-regex's report."""
    text = run_regex(log, filt)
    m = LINES.search(text)
    if m is None:
        raise AssertionError("no 'Lines:' summary in fail2ban-regex output:\n" + text)
    return tuple(int(x) for x in m.groups()), text


def hosts(log, filt=FILTER):
    """The address fail2ban-regex finds in each matched line, in order."""
    return run_regex(log, filt, out="ip").split()


@unittest.skipUnless(F2B_REGEX, "fail2ban-regex not installed (apt-get install fail2ban)")
class Fail2banFilter(Pop3TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pop3d-f2b-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self, **kw):
        d = F2bDaemon(users=USERS, **kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        d.start()
        return d

    def write_log(self, name, lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(l + "\n" for l in lines))
        return path

    def assert_only(self, log, n, filt=FILTER, host="127.0.0.1"):
        """Exactly n lines of log match, each for host."""
        (total, _ignored, matched, _missed), text = summary(log, filt)
        self.assertEqual(matched, n, "%d of %d lines matched, wanted %d:\n%s"
                         % (matched, total, n, text))
        self.assertEqual(hosts(log, filt), [host] * n)

    # -- producing real log lines

    def fail_user_pass(self, d, user, password):
        c = self.connect(d)
        self.assertOK(c.greeting)
        self.assertOK(c.cmd("USER " + user))
        self.assertERR(c.cmd("PASS " + password))
        c.quit()

    def fail_plain(self, d, user, password):
        c = self.connect(d)
        self.assertOK(c.greeting)
        st = c.cmd("AUTH PLAIN " + b64("\0" + user + "\0" + password))
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        c.quit()

    def fail_apop(self, d, user):
        c = self.connect(d)
        stamp = apop_timestamp(c.greeting)
        self.assertIsNotNone(stamp, c.greeting)
        digest = hashlib.md5(stamp + b"not-the-password").hexdigest()
        self.assertERR(c.cmd("APOP %s %s" % (user, digest)))
        c.quit()

    def produce(self, d):
        """Every kind of failed login, then one good login. Returns the number of failures."""
        attempts = [
            lambda: self.fail_user_pass(d, "alice", "wrong"),        # known user, bad password
            lambda: self.fail_user_pass(d, "no-such-user@example.org", "x"),   # unknown user
            lambda: self.fail_user_pass(d, JORG, "p\u00e4ss-not"),   # UTF-8 name
            lambda: self.fail_plain(d, "bob@example.org", "wrong"),
            lambda: self.fail_plain(d, 'j\u00f6rg "the" m\u00fcller ip=6.6.6.9', "x"),
            # A control character: refused as a name, still a failed login (logged as user=).
            lambda: self.fail_plain(d, "tab\there ip=6.6.6.10", "x"),
            # The audit's name: over AUTH PLAIN it once logged a second ip= and mechanism=.
            lambda: self.fail_plain(d, "x mechanism=APOP backoff_ms=0 ip=6.6.6.12", "x"),
            lambda: self.fail_apop(d, "alice"),
        ] + [lambda name=name: self.fail_user_pass(d, name, "x") for name in HOSTILE_NAMES]
        for attempt in attempts:
            attempt()
        c = self.connect(d)
        c.login("alice", "alice-pw")
        c.quit()
        n = len(attempts)
        d.wait_log("login failed", count=n)
        d.wait_log(": login id=")
        d.wait_session_end(n + 1)
        return n

    # -- the tests

    def test_real_log_lines(self):
        d = self.start()
        n = self.produce(d)
        lines = list(d.lines)
        failed = [l for l in lines if ": login failed " in l]
        self.assertEqual(len(failed), n, "\n".join(lines))
        for l in failed:
            self.assertIn(" ip=127.0.0.1 user=", l)
        # What the filter is up against, as pop3d wrote it: escaped into one token (space and
        # '=' as \xHH), 6.6.6.x only inside user=.
        self.assertTrue(any('user=Mr\\x20\\"Evil\\"\\x20O\'Hara\\x20ip\\x3d6.6.6.6\\x20mechanism\\x3dUSER '
                            in l for l in failed), failed)
        self.assertTrue(any("user=back\\\\slash\\x20m\\xc3\\xbcller mechanism=USER" in l
                            for l in failed), failed)
        self.assertTrue(any("user=x\\x20mechanism\\x3dAPOP\\x20backoff_ms\\x3d0\\x20ip\\x3d6.6.6.11 "
                            "mechanism=USER" in l for l in failed), failed)
        # No name adds a key: every key of every line appears once, read as logfmt would.
        for l in lines:
            m = STDERR_PREFIX.match(l)
            if m is None:
                continue
            keys = logfmt_keys(l[m.end():])
            self.assertEqual(len(keys), len(set(keys)), "a key twice in: " + l)
            if l[m.end():].startswith("login failed "):
                self.assertEqual(keys, ["id", "ip", "user", "mechanism", "backoff_ms"], l)
        self.assertFalse(any("6.6.6.8" in l for l in lines), "cut at 64 octets")

        log = self.write_log("stderr.log", lines)
        self.assert_only(log, n)

        # Nothing else pop3d writes matches: ready, the good login, every session end.
        others = [l for l in lines if ": login failed " not in l]
        self.assertTrue(any(": login id=" in l for l in others), others)
        self.assertEqual(sum(1 for l in others if ": session end " in l), n + 1, others)
        self.assert_only(self.write_log("others.log", others), 0)

    def test_syslog_and_journal_forms(self):
        """The same events as rsyslog and fail2ban's journal reader present them."""
        d = self.start()
        n = self.produce(d)
        texts, raw = [], []
        for l in d.lines:
            m = STDERR_PREFIX.match(l)
            if m is None:
                continue                  # not a log line (nothing else is expected, though)
            texts.append(l[m.end():])     # log.target = "syslog" sends the text alone
            raw.append(l)
        self.assertEqual(sum(1 for t in texts if t.startswith("login failed ")), n)

        forms = {
            # rsyslog's RSYSLOG_TraditionalFileFormat
            "traditional.log": ["Nov 22 04:00:%02d mailhost pop3d[4242]: %s" % (i % 60, t)
                                for i, t in enumerate(texts)],
            # rsyslog's default file format on Debian 12 (RFC 3339, high precision)
            "rfc3339.log": ["2026-11-22T04:00:%02d.123456+00:00 mailhost pop3d[4242]: %s"
                            % (i % 60, t) for i, t in enumerate(texts)],
            # log.target = "stderr" under systemd, journald forwarding to rsyslog
            "forwarded.log": ["Nov 22 04:00:%02d mailhost pop3d[4242]: %s" % (i % 60, l)
                              for i, l in enumerate(raw)],
            # fail2ban's systemd backend: "HOST IDENT[PID]: MESSAGE", time kept apart
            "journal-syslog.log": ["mailhost pop3d[4242]: " + t for t in texts],
            "journal-stderr.log": ["mailhost pop3d[4242]: " + l for l in raw],
        }
        for name, lines in forms.items():
            with self.subTest(form=name):
                self.assert_only(self.write_log(name, lines), n)

    def test_hand_written_samples(self):
        """Addresses the loopback daemon cannot produce: IPv6, IPv4-mapped, as rsyslog writes."""
        log = self.write_log("samples.log", [
            "Nov 22 04:00:00 host pop3d[123]: login failed id=2a ip=2001:db8::7 user=bob "
            "mechanism=USER backoff_ms=1000",
            "Nov 22 04:00:01 host pop3d[123]: login failed id=2b ip=::ffff:192.0.2.1 "
            "user=x ip=6.6.6.6 mechanism=PLAIN backoff_ms=0",
            "Nov 22 04:00:02 host pop3d[123]: login failed id=2c ip=192.0.2.2 user= "
            "mechanism=APOP",
            "Nov 22 04:00:03 host pop3d[123]: login id=2d ip=192.0.2.3 user=alice messages=1 "
            "octets=10",
            "Nov 22 04:00:04 host pop3d[123]: login refused id=2e ip=192.0.2.4 user=alice "
            "reason=login-delay",
            "Nov 22 04:00:05 host pop3d[123]: session end id=2a user=bob ip=2001:db8::7 port=1 "
            "tls=none duration_ms=5 reason=quit",
            "Nov 22 04:00:06 host pop3d[123]: proxy listener refused untrusted peer id=2f "
            "ip=192.0.2.5 port=2",
            "Nov 22 04:00:07 host otherd[9]: login failed id=30 ip=192.0.2.6 user=z "
            "mechanism=USER",
        ])
        (_t, _i, matched, _m), text = summary(log)
        self.assertEqual(matched, 3, text)
        self.assertEqual(hosts(log), ["2001:db8::7", "192.0.2.1", "192.0.2.2"])

    def test_aggressive_mode_adds_per_address_refusals(self):
        d = self.start(max_connections_per_ip=1)
        first = self.connect(d)
        self.assertOK(first.greeting)
        second = Client(d.port)
        self.addCleanup(second.close)
        self.assertTrue(second.greeting.startswith(b"-ERR [SYS/TEMP] too many connections from "
                                                   b"your address"), second.greeting)
        second.wait_closed()
        d.wait_log("connection refused ip=127.0.0.1")
        first.quit()
        d.wait_session_end(1)
        log = self.write_log("refused.log", d.lines)
        self.assert_only(log, 0)
        self.assert_only(log, 1, filt=FILTER + "[mode=aggressive]")

    @unittest.skipUnless(F2B_CLIENT and os.path.isfile(os.path.join(F2B_SYSTEM_CONF, "jail.conf")),
                         "needs fail2ban-client and the packaged /etc/fail2ban")
    def test_jail_loads(self):
        """The jail, with the packaged defaults, as fail2ban-client would hand it to the server."""
        conf = os.path.join(self.tmp, "fail2ban")
        shutil.copytree(F2B_SYSTEM_CONF, conf, symlinks=True)
        shutil.rmtree(os.path.join(conf, "jail.d"))   # only ours: other jails need other logs
        os.mkdir(os.path.join(conf, "jail.d"))
        shutil.copy(FILTER, os.path.join(conf, "filter.d", "pop3d.conf"))
        shutil.copy(JAIL, os.path.join(conf, "jail.d", "pop3d.conf"))
        for local in ("jail.local", "fail2ban.local"):
            if os.path.exists(os.path.join(conf, local)):
                os.unlink(os.path.join(conf, local))
        r = subprocess.run([F2B_CLIENT, "-c", conf, "-d"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=F2B_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout
        self.assertIn("['add', 'pop3d', 'systemd']", out)
        self.assertIn("['set', 'pop3d', 'usedns', 'no']", out)
        self.assertIn("['set', 'pop3d', 'maxretry', 5]", out)
        self.assertIn("['set', 'pop3d', 'findtime', '10m']", out)
        self.assertIn("['set', 'pop3d', 'bantime', '1h']", out)
        self.assertIn("['set', 'pop3d', 'addjournalmatch', '_SYSTEMD_UNIT=pop3d.service']", out)
        self.assertIn("['port', 'pop3,pop3s']", out)
        self.assertIn("['start', 'pop3d']", out)


if __name__ == "__main__":
    unittest.main()
