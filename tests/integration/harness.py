"""Start and stop the real pop3d for integration tests, and talk to it.

Daemon writes a private temp dir (config, users file, maildirs), starts `$POP3D -c CONF` on a free
127.0.0.1 port, waits for the `ready` line on stderr and, on stop(), sends SIGTERM and fails the
test if the process died from a signal, exited non-zero or printed a sanitizer report.
Client is a raw line client with timeouts. Nothing here sleeps for a guessed time: every wait is
for an event (a log line, a reply, EOF, a process exit) or a poll with a deadline.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# In CI shared/ sits beside the clone; locally it is /work/shared beside /work/main.
SHARED = os.path.join(os.path.dirname(REPO), "shared")
MAKE_CORPUS = os.path.join(SHARED, "corpus", "make_corpus.py")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 10.0

DEFAULT_USERS = {
    "alice": "{PLAIN}alice-pw",
    "bob@example.org": "{PLAIN}bob-pw",
    "carol": "{PLAIN}carol-pw",
    "dave": "{PLAIN}dave-pw",
}


def pop3d_path():
    return os.path.abspath(os.environ.get("POP3D") or os.path.join(REPO, "build", "pop3d"))


def child_env(home=None, **extra):
    """Environment for children: sanitizer options always set (harmless without a sanitizer)."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if home is not None:
        env["HOME"] = home
    env.update(extra)
    return env


# ---------------------------------------------------------------- message encoding helpers

def crlf_form(data):
    """Every LF not preceded by CR becomes CRLF; existing CRLF and bare CR stay."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def pop3_size(data):
    return len(crlf_form(data))


def expected_retr(data):
    """What un-stuffing a RETR response must give: the CRLF form, plus a CRLF when the file does
    not end with a line break (that CRLF is not part of the size)."""
    c = crlf_form(data)
    if c and not c.endswith(b"\n"):
        c += b"\r\n"
    return c


def split_lines(data):
    """Lines ending with LF (kept), plus a final partial line if any."""
    out = []
    start = 0
    while start < len(data):
        i = data.find(b"\n", start)
        if i < 0:
            out.append(data[start:])
            break
        out.append(data[start:i + 1])
        start = i + 1
    return out


def expected_top(data, n):
    """TOP msg n: the header, the empty line after it and the first n body lines (CRLF form)."""
    lines = split_lines(crlf_form(data))
    out = []
    i = 0
    while i < len(lines):          # header up to and including the first empty line
        out.append(lines[i])
        i += 1
        if lines[i - 1] == b"\r\n":
            break
    out.extend(lines[i:i + n])
    c = b"".join(out)
    if c and not c.endswith(b"\n"):
        c += b"\r\n"
    return c


def unstuff(raw):
    """Undo POP3 multi-line encoding: drop a trailing ".\\r\\n" terminator if present and remove
    one leading '.' from every line. raw is the data after the status line."""
    if raw.endswith(b"\r\n.\r\n"):
        raw = raw[:-3]
    elif raw == b".\r\n":
        raw = b""
    out = []
    for line in split_lines(raw):
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(out)


# ---------------------------------------------------------------- corpus

class CorpusMessage:
    def __init__(self, maildir, path, disk_size, pop3_size_, why):
        self.maildir = maildir
        self.path = path                      # "new/NAME" or "cur/NAME:2,S"
        self.disk_size = disk_size
        self.pop3_size = pop3_size_           # None for files a server must ignore
        self.why = why
        self.name = os.path.basename(path)
        self.base = self.name.split(":", 1)[0]  # the expected UIDL
        with open(os.path.join(maildir, path), "rb") as f:
            self.data = f.read()

    def __repr__(self):
        return "<%s %s>" % (self.why, self.path)


class Corpus:
    """The shared corpus written by make_corpus.py into a maildir, with its MANIFEST.tsv."""

    def __init__(self, maildir):
        self.maildir = maildir
        r = subprocess.run([sys.executable, MAKE_CORPUS, maildir], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("make_corpus.py failed: %s" % r.stderr.decode(errors="replace"))
        manifest = os.path.join(os.path.dirname(os.path.abspath(maildir)), "MANIFEST.tsv")
        self.listed = []
        self.ignored = []
        with open(manifest) as f:
            rows = f.read().splitlines()
        assert rows[0].split("\t") == ["path", "disk_size", "pop3_size", "exercises"], rows[0]
        for row in rows[1:]:
            path, disk, psize, why = row.split("\t")
            m = CorpusMessage(maildir, path, int(disk), None if psize == "-" else int(psize), why)
            assert len(m.data) == m.disk_size, m
            (self.ignored if m.pop3_size is None else self.listed).append(m)
        # The manifest lists messages in mtime order (make_corpus sets increasing mtimes), which
        # is the order the server must number them in (mtime, then name).
        self.listed.sort(key=lambda m: (os.stat(os.path.join(maildir, m.path)).st_mtime, m.name))
        self.by_uidl = {m.base: m for m in self.listed}
        self.by_why = {m.why: m for m in self.listed}

    def total(self):
        return sum(m.pop3_size for m in self.listed)


def make_maildir(path):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def deliver(maildir, data, name=None, mtime=None):
    """Deliver like an MDA: write into tmp/, then rename into new/. Returns the base name.
    mtime defaults to 10 s ago: the server may hide messages from the current second (qmail rule,
    STYLE 21), and a test must not depend on which second it runs in."""
    if name is None:
        deliver.counter += 1
        name = "%d.M%dP%d.test-%d" % (int(time.time()), deliver.counter, os.getpid(), deliver.counter)
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    t = time.time() - 10 if mtime is None else mtime
    os.utime(tmp, (t, t))
    os.rename(tmp, os.path.join(maildir, "new", name))
    return name


deliver.counter = 0


def snapshot(maildir):
    """{relative path: bytes} of every file in new/ cur/ tmp/."""
    out = {}
    for sub in ("new", "cur", "tmp"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                out[sub + "/" + name] = f.read()
    return out


# ---------------------------------------------------------------- free port

def free_port(host="127.0.0.1"):
    """A port free on host now; raises OSError for "::1" when there is no IPv6 loopback."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------- daemon

class DaemonError(AssertionError):
    pass


class Daemon:
    """One pop3d process with its own temp dir. Use via Pop3TestCase.daemon()."""

    def __init__(self, users=None, plaintext="always", failure_delay=0.2, idle_timeout=600,
                 max_connections=10000, max_connections_per_ip=50, maildrop_path=None,
                 users_text=None, extra_config="", limits_extra=""):
        """users_text replaces the users file (and maildrop_path the template); "@DIR@" in them
        becomes the daemon's temp dir. extra_config is appended to the config file;
        limits_extra goes inside its limits group (a second limits group would be a duplicate
        setting), e.g. "auth_backoff_base = 0;"."""
        self.dir = tempfile.mkdtemp(prefix="pop3d-it-")
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.plaintext = plaintext
        self.failure_delay = failure_delay
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.maildrop_template = (maildrop_path or "@DIR@/mail/%d/%n/Maildir").replace("@DIR@", self.dir)
        self.users_text = users_text
        self.extra_config = extra_config
        self.limits_extra = limits_extra
        self.conf = os.path.join(self.dir, "pop3d.conf")
        self.users_file = os.path.join(self.dir, "users")
        self.port = None
        self.proc = None
        self.lines = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = None
        self.stopped = False

    # -- files

    def maildir(self, user):
        """Path of user's maildir by the default template (%d/%n), created on first use."""
        local, _, domain = user.partition("@")
        path = os.path.normpath(os.path.join(self.dir, "mail", domain, local, "Maildir"))
        return make_maildir(path)

    def password(self, user):
        return self.users[user].replace("{PLAIN}", "", 1)

    def corpus(self, user="alice"):
        return Corpus(self.maildir(user))

    def config_text(self):
        return (
            'listen = ( { address = "127.0.0.1"; port = %d; } );\n'
            'auth = { users_file = "users"; plaintext = "%s"; failure_delay = %s; };\n'
            'maildrop = { path = "%s"; };\n'
            'limits = { idle_timeout = %d; max_connections = %d; max_connections_per_ip = %d;%s };\n'
            % (self.port, self.plaintext, repr(float(self.failure_delay)), self.maildrop_template,
               self.idle_timeout, self.max_connections, self.max_connections_per_ip,
               " " + self.limits_extra if self.limits_extra else "")
        ) + self.process_config() + self.extra_config

    def process_config(self):
        """Tests run as root: say so explicitly, as pop3d demands, unless the test has its own."""
        if "process" in self.extra_config or os.geteuid() != 0:
            return ""
        return "process = { allow_root = true; shutdown_grace = 0; };\n"

    def write_files(self):
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        with open(self.users_file, "w") as f:
            if self.users_text is not None:
                f.write(self.users_text.replace("@DIR@", self.dir))
            else:
                for name, pw in self.users.items():
                    f.write("%s:%s\n" % (name, pw))
        os.chmod(self.users_file, 0o600)

    # -- process

    def start(self):
        last = ""
        for _attempt in range(3):   # another process may take the free port before we bind it
            self.port = free_port()
            self.write_files()
            self.lines = []
            self._eof = False
            self.proc = subprocess.Popen([pop3d_path(), "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         cwd="/", env=child_env())
            self._reader = threading.Thread(target=self._read_stderr, daemon=True)
            self._reader.start()
            line = self.wait_log("ready", timeout=READY_TIMEOUT, fail=False)
            if line is not None:
                return self
            self._kill()
            last = self.stderr()
            if "in use" not in last.lower():
                break
        self.stopped = True
        raise DaemonError("pop3d did not print 'ready' within %ss (exit %s); stderr:\n%s"
                          % (READY_TIMEOUT, self.proc.returncode, last))

    def _read_stderr(self):
        f = self.proc.stderr
        for raw in iter(f.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr(self):
        with self._cond:
            return "\n".join(self.lines)

    def count_log(self, substr):
        with self._cond:
            return sum(1 for l in self.lines if substr in l)

    def log_lines(self, substr):
        with self._cond:
            return [l for l in self.lines if substr in l]

    def wait_log(self, substr, count=1, timeout=IO_TIMEOUT, fail=True):
        """Wait until stderr holds at least count lines containing substr; return the last one.
        Returns None (fail=False) or raises on timeout or when stderr closes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [l for l in self.lines if substr in l]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
        if not fail:
            return None
        raise DaemonError("no %d stderr line(s) containing %r within %ss (process %s); stderr:\n%s"
                          % (count, substr, timeout,
                             "exited %s" % self.proc.poll() if self.proc.poll() is not None else "alive",
                             self.stderr()))

    def wait_session_end(self, count, timeout=IO_TIMEOUT):
        return self.wait_log("session end", count=count, timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        if self._reader:
            self._reader.join(STOP_TIMEOUT)
        if self.proc:
            self.proc.stderr.close()

    def stop(self):
        """SIGTERM, wait; raise if it hangs, died from a signal, exited non-zero or printed a
        sanitizer report. Idempotent."""
        if self.stopped or self.proc is None:
            return
        self.stopped = True
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append("did not exit within %ss of SIGTERM" % STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        else:
            problems.append("had already exited (status %s) before stop()" % self.proc.returncode)
        if self._reader:
            self._reader.join(STOP_TIMEOUT)
        self.proc.stderr.close()
        rc = self.proc.returncode
        if rc is not None and rc < 0 and "did not exit" not in " ".join(problems):
            problems.append("died from signal %d" % -rc)
        elif rc:
            problems.append("exited with status %d" % rc)
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                problems.append("stderr contains %r" % marker)
        if problems:
            raise DaemonError("pop3d %s; stderr:\n%s" % ("; ".join(problems), err))

    def cleanup_dir(self):
        if os.environ.get("KEEP_TMP"):
            sys.stderr.write("keeping %s\n" % self.dir)
            return
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- client

class Closed(Exception):
    """The server closed the connection."""


class Client:
    """A raw POP3 line client. Every read has a deadline (IO_TIMEOUT)."""

    def __init__(self, port, timeout=IO_TIMEOUT, greeting=True, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = self.line() if greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed; buffered %r" % bytes(self.buf[:200]))
        self.sock.settimeout(min(left, self.timeout))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed("connection closed; unread %r" % bytes(self.buf[:200]))
        self.buf += chunk

    def line(self, timeout=None):
        """One reply line without its CRLF. The line must end with CRLF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                raw = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                if not raw.endswith(b"\r\n"):
                    raise AssertionError("reply line not terminated by CRLF: %r" % raw)
                return raw[:-2]
            self._fill(deadline)

    def multi_raw(self, timeout=None):
        """The data of a multi-line response up to and including the ".\\r\\n" line, as sent."""
        deadline = time.monotonic() + (timeout or self.timeout)
        pos = 0   # start of the current line in buf
        while True:
            i = self.buf.find(b"\n", pos)
            if i < 0:
                self._fill(deadline)
                continue
            if bytes(self.buf[pos:i + 1]) == b".\r\n":
                raw = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return raw
            pos = i + 1

    def multi(self, timeout=None):
        """The un-stuffed data of a multi-line response."""
        return unstuff(self.multi_raw(timeout))

    def cmd(self, command):
        """Send one command line (CRLF added) and return the status line."""
        self.send(command.encode() + b"\r\n" if isinstance(command, str) else command + b"\r\n")
        return self.line()

    def cmd_multi(self, command):
        """Send a command with a multi-line answer. Returns (status, data or None on -ERR)."""
        st = self.cmd(command)
        if st.startswith(b"+OK"):
            return st, self.multi()
        return st, None

    def login(self, user, password):
        st = self.cmd("USER " + user)
        if not st.startswith(b"+OK"):
            raise AssertionError("USER %s: %r" % (user, st))
        st = self.cmd("PASS " + password)
        if not st.startswith(b"+OK"):
            raise AssertionError("PASS for %s: %r" % (user, st))
        return st

    def wait_closed(self, timeout=None):
        """Read until the server closes; return what arrived meanwhile, and close our side (the
        server may linger after QUIT until the client closes). Raises on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self._fill(deadline)
            except Closed:
                data = bytes(self.buf)
                self.buf.clear()
                self.close()
                return data

    def quit(self):
        """QUIT, expect +OK, then the close."""
        st = self.cmd("QUIT")
        if not st.startswith(b"+OK"):
            raise AssertionError("QUIT: %r" % st)
        self.wait_closed()
        return st


def parse_list(data):
    """'N SIZE' lines (LIST/UIDL scan listings) -> [(int, str)]."""
    out = []
    for line in data.split(b"\r\n"):
        if line:
            n, v = line.split(b" ", 1)
            out.append((int(n), v.decode()))
    return out


def apop_timestamp(greeting):
    m = re.search(rb"(<[^<>]*>)", greeting)
    return m.group(1) if m else None


# ---------------------------------------------------------------- test case base

class Pop3TestCase(unittest.TestCase):
    """Gives daemon() and connect() that clean up after the test."""

    def daemon(self, corpus_for=(), **kw):
        """Start a daemon. corpus_for: users whose maildir gets the corpus (returned in
        d.corpora). Call d.stop() explicitly to check shutdown early; cleanup does it anyway."""
        d = Daemon(**kw)
        self.addCleanup(d.cleanup_dir)
        d.corpora = {u: d.corpus(u) for u in corpus_for}
        self.addCleanup(d.stop)
        d.start()
        return d

    def connect(self, d, **kw):
        c = Client(d.port, **kw)
        self.addCleanup(c.close)
        return c

    def session(self, d, user="alice"):
        c = self.connect(d)
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        c.login(user, d.password(user))
        return c

    def assertOK(self, reply, msg=None):
        self.assertTrue(reply.startswith(b"+OK"), msg or reply)

    def assertERR(self, reply, msg=None):
        self.assertTrue(reply.startswith(b"-ERR"), msg or reply)


def run_tool(argv, home, timeout=60, **kw):
    """Run a client tool with HOME in a temp dir; returns CompletedProcess (text)."""
    return subprocess.run(argv, env=child_env(home=home, **kw.pop("env", {})), cwd=home,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, **kw)


# ---------------------------------------------------------------- real clients: shared pieces

def getmail_dirs(testcase):
    """(dest, home, run_kw) for getmail: a Maildir to deliver into and a HOME for its getmail
    folder, outside the 0700 temp dirs and removed after the test; run_kw for run_tool. getmail
    refuses to write a Maildir as root, so as root everything here belongs to "nobody" and
    run_kw runs getmail itself as nobody (not as root with getmail's destination "user"
    option: getmail then forks a child per message to deliver, and once in a few hundred runs
    such a child hung mid-corpus while pop3d sat idle waiting for the next command)."""
    import pwd
    top = tempfile.mkdtemp(prefix="pop3d-getmail-")
    testcase.addCleanup(shutil.rmtree, top, True)
    os.chmod(top, 0o755)
    dest, home = os.path.join(top, "dest"), os.path.join(top, "home")
    owner, run_kw = None, {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("nobody")
        owner = (pw.pw_uid, pw.pw_gid)
        run_kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    for path in [home, os.path.join(home, "getmail")] + \
            [os.path.join(dest, sub) for sub in ("", "new", "cur", "tmp")]:
        os.makedirs(path, exist_ok=True)
        if owner:
            os.chown(path, *owner)
    return dest, home, run_kw


def getmail_rc(home, run_kw, text):
    """Write HOME/getmail/getmailrc (owned by getmail's user); returns (rc, getmail dir)."""
    gmdir = os.path.join(home, "getmail")
    rc = os.path.join(gmdir, "getmailrc")
    with open(rc, "w") as f:
        f.write(text)
    if run_kw:
        os.chown(rc, run_kw["user"], run_kw["group"])
    return rc, gmdir


# An MDA for fetchmail/mpop tests: stores each message unchanged as OUT/NNNNN.
MDA = r'''#!/usr/bin/env python3
# Test MDA: stores stdin, unchanged, as OUT/NNNNN (the next free number, in delivery order).
import os, sys
out = sys.argv[1]
data = sys.stdin.buffer.read()
for i in range(1, 100000):
    try:
        fd = os.open(os.path.join(out, "%05d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        continue
    os.write(fd, data)
    os.close(fd)
    break
else:
    sys.exit(75)
'''


def message_id(data):
    m = re.search(rb"(?im)^Message-ID: *(<[^>]*>)", data)
    return m.group(1) if m else None


def describe_mismatch(want, candidates):
    """How the fetched message with the same Message-ID (else the nearest size) differs."""
    if not candidates:
        return "nothing left to compare"
    mid = message_id(want)
    same = [c for c in candidates if mid is not None and message_id(c) == mid]
    got = same[0] if same else min(candidates, key=lambda c: abs(len(c) - len(want)))
    i = 0
    while i < min(len(got), len(want)) and got[i] == want[i]:
        i += 1
    return "fetched %d octets%s; first difference at %d: want %r, got %r" % (
        len(got), "" if same else " (nearest size)", i, want[max(0, i - 20):i + 40],
        got[max(0, i - 20):i + 40])
