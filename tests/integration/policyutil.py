"""Helpers for test_policy.py: run `pop3d --expire`, parse what it prints, read the download state,
fill maildirs quickly, restart or SIGKILL a harness Daemon.

The state file format is the one maildrop/state.h documents ("pop3d-state 1", "last_login <unix>",
"<uidl> <first_download_unix> <promised_days>"). Nothing here sleeps for a guessed time.
"""
import calendar
import ctypes
import json
import os
import re
import signal
import subprocess
import time

from harness import IO_TIMEOUT, child_env, pop3d_path

EXPIRE_TIMEOUT = 60.0
DAY = 86400

KV = re.compile(r'([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def iso(t):
    """--at form of a unix time: YYYY-MM-DDTHH:MM:SSZ."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def at_midnight(date):
    """Unix time of YYYY-MM-DD 00:00:00 UTC."""
    return calendar.timegm(time.strptime(date, "%Y-%m-%d"))


def parse_text_line(line):
    """One text line of `pop3d --expire` ("expire EVENT k=v ..." or "expire k=v ..." for the
    per-user summary) -> dict with "event" and every key; quoted values lose their quotes."""
    if not line.startswith("expire "):
        raise AssertionError("not an expire line: %r" % line)
    rest = line[len("expire "):]
    first = rest.split(" ", 1)[0]
    out = {"event": "user" if "=" in first else first}
    for k, v in KV.findall(rest):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1]
        out[k] = v
    return out


class ExpireRun:
    """The result of one `pop3d --expire` run: rc, stdout, stderr, and parsed events."""

    def __init__(self, argv, proc, json_mode):
        self.argv = argv
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.events = []
        for line in self.stdout.splitlines():
            if not line:
                continue
            if json_mode:
                ev = json.loads(line)
            elif line.startswith("expire: "):           # "expire: unknown user NAME"
                ev = {"event": "error", "text": line[len("expire: "):]}
            elif line.startswith("expire "):
                ev = parse_text_line(line)
            else:
                raise AssertionError("unexpected --expire output line %r in:\n%s"
                                     % (line, self.describe()))
            self.events.append(ev)

    def describe(self):
        return "argv %s exit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(self.argv), self.rc, self.stdout, self.stderr)

    def of(self, event):
        return [e for e in self.events if e.get("event") == event]

    def removed(self):
        """UIDLs removed (or that would be, with --dry-run) -> cause."""
        return {e["uidl"]: e["cause"] for e in self.events
                if e.get("event") in ("removed", "would_remove")}

    def summary(self):
        s = [e for e in self.events if e.get("event") in ("done", "summary")]
        if len(s) != 1:
            raise AssertionError("expected one summary line:\n%s" % self.describe())
        return s[0]

    def user(self, name):
        u = [e for e in self.events if e.get("event") == "user" and e.get("user") == name]
        if len(u) != 1:
            raise AssertionError("expected one summary for user %s:\n%s" % (name, self.describe()))
        return u[0]


def run_expire(conf, *args, timeout=EXPIRE_TIMEOUT, force=True):
    """`pop3d -c conf --expire ARGS...`; returns an ExpireRun. The tests move the clock with
    --at, so a real run with --at gets --force (pop3d refuses a future --at without it) unless
    force is False."""
    args = list(args)
    if force and "--at" in args and "--dry-run" not in args:
        args.append("--force")
    argv = [pop3d_path(), "-c", conf, "--expire"] + args
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, env=child_env(), cwd="/")
    return ExpireRun(argv, p, "--json" in args)


def read_state(maildir):
    """(last_login, {uidl: (first_download, promised_days)}) from MAILDIR/pop3d.state, or None
    when there is none. Raises AssertionError when the file does not follow state.h."""
    path = os.path.join(maildir, "pop3d.state")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    lines = data.decode("ascii").split("\n")
    if lines[-1] != "" or lines[0] != "pop3d-state 1":
        raise AssertionError("pop3d.state does not parse: %r" % data[:300])
    m = re.fullmatch(r"last_login (0|[1-9][0-9]*)", lines[1])
    if not m:
        raise AssertionError("pop3d.state line 2: %r" % lines[1])
    last_login = int(m.group(1))
    recs = {}
    for line in lines[2:-1]:
        m = re.fullmatch(r"([\x21-\x7e]{1,70}) (0|[1-9][0-9]*) (-1|0|[1-9][0-9]*)", line)
        if not m or m.group(1) in recs:
            raise AssertionError("pop3d.state record does not parse: %r" % line)
        recs[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return last_login, recs


def tree(root):
    """{relative path: (bytes, mtime_ns, mode)} of every file under root (the whole maildir,
    pop3d.state, pop3d.cache and pop3d.lock included), plus every folder as path/ -> None."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = None
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            with open(p, "rb") as f:
                out[os.path.join(rel, name)] = (f.read(), st.st_mtime_ns, st.st_mode)
    return out


def place(maildir, name, data, mtime, sub="new", info=""):
    """Write one message straight into sub/ (no fsync: bulk test data). Returns the base name."""
    path = os.path.join(maildir, sub, name + info)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))
    return name


def message(token, extra=b""):
    """A small message whose body names token (so every file can be told apart by content)."""
    return (b"Return-Path: <sender@example.net>\nMessage-ID: <%s@test.invalid>\n"
            b"Subject: %s\n\nbody of %s\n%s" % (token.encode(), token.encode(), token.encode(),
                                                extra))


def fill(maildir, prefix, n, mtime):
    """n messages named MTIME.PREFIX-NNNN.test (base name = UIDL) with the given mtime, all hard
    links of one file beside the maildir (creating an inode costs up to a millisecond on some
    test machines; a link costs 20 us). Returns {uidl: bytes}."""
    data = message(prefix)
    template = os.path.join(os.path.dirname(os.path.abspath(maildir)), ".fill-%s" % prefix)
    with open(template, "wb") as f:
        f.write(data)
    os.utime(template, (mtime, mtime))
    out = {}
    for i in range(n):
        name = "%d.%s-%04d.test" % (int(mtime), prefix, i)
        os.link(template, os.path.join(maildir, "new", name))
        out[name] = data
    os.unlink(template)
    return out


def by_base(maildir):
    """{base name: [relative paths]} over new/ and cur/ (a base under two paths is a duplicate)."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        for name in os.listdir(d):
            if name.startswith("."):
                continue
            out.setdefault(name.split(":", 1)[0], []).append(sub + "/" + name)
    return out


def contents(maildir):
    """{base name: bytes} for every message file; raises on a base name present twice."""
    out = {}
    for base, paths in by_base(maildir).items():
        if len(paths) != 1:
            raise AssertionError("message %s is in the maildir twice: %s" % (base, paths))
        with open(os.path.join(maildir, paths[0]), "rb") as f:
            out[base] = f.read()
    return out


def count_files(maildir):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(maildir, sub)))
        except FileNotFoundError:
            pass
    return n


# ---------------------------------------------------------------- daemon life cycle

def kill9(d):
    """SIGKILL the daemon and reap it; the harness object may then be start()ed again."""
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
    d.proc.wait(IO_TIMEOUT)
    reader = getattr(d, "_reader", None)
    if reader is not None:
        reader.join(IO_TIMEOUT)
    d.proc.stderr.close()
    d.stopped = True


def restart(d, extra_config=None):
    """Stop (checked: clean exit, no sanitizer report) or, after kill9, just start again, with
    new extra_config if given. Same temp dir, maildirs and state; a new port."""
    if not d.stopped:
        d.stop()
    if extra_config is not None:
        d.extra_config = extra_config
    d.stopped = False
    d.start()
    return d


try:
    _tgkill = ctypes.CDLL(None, use_errno=True).tgkill      # glibc >= 2.30
except (AttributeError, OSError):
    _tgkill = None


def stop_now(pid):
    """SIGSTOP pid with the least delay: sent to each of its threads, so that a thread running
    on another CPU takes it at its next return from the kernel (a signal sent to the process
    waits until one sleeping thread is woken and scheduled)."""
    if _tgkill is not None:
        try:
            tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        except OSError:
            tids = []
        for tid in tids:
            _tgkill(pid, tid, signal.SIGSTOP)
    os.kill(pid, signal.SIGSTOP)


def kill_midway(proc, watch, timeout=IO_TIMEOUT):
    """Step proc (a Popen) in tiny slices, SIGCONT then SIGSTOP, and SIGKILL it, while stopped,
    as soon as the file watch is gone (or it exited, or the time is up). The kill lands at one
    instant of the removal loop, as a crash would. Returns True when watch was gone."""
    pid = proc.pid
    deadline = time.monotonic() + timeout
    try:
        while True:
            stop_now(pid)
            _, status = os.waitpid(pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):            # it exited meanwhile: we reaped it
                proc.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                   else os.WEXITSTATUS(status))
                return not os.path.exists(watch)
            gone = not os.path.exists(watch)
            if gone or time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                return gone
            os.kill(pid, signal.SIGCONT)
    finally:
        if proc.returncode is None:
            proc.wait(IO_TIMEOUT)


def stop_while_open(proc, path, without=None, timeout=IO_TIMEOUT):
    """Step proc (a Popen) in tiny slices, SIGCONT then SIGSTOP, and leave it stopped as soon as
    one of its descriptors is open on path (a folder it is reading, say) and none on without.
    Returns True then; False when it exited first (reaped) or the time ran out (left running)."""
    pid = proc.pid
    want = os.path.realpath(path)
    avoid = os.path.realpath(without) if without else None
    deadline = time.monotonic() + timeout
    while True:
        stop_now(pid)
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            proc.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                               else os.WEXITSTATUS(status))
            return False
        fds = "/proc/%d/fd" % pid
        links = set()
        for fd in os.listdir(fds):
            try:
                links.add(os.readlink(os.path.join(fds, fd)))
            except OSError:
                pass
        if want in links and avoid not in links:
            return True
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            return False


# ---------------------------------------------------------------- client helpers

def capa(c):
    """CAPA -> list of lines (str)."""
    st, data = c.cmd_multi("CAPA")
    if not st.startswith(b"+OK"):
        raise AssertionError("CAPA: %r" % st)
    return [l.decode() for l in data.split(b"\r\n") if l]


def capa_policy(c):
    """The EXPIRE and LOGIN-DELAY lines of CAPA ([] when absent)."""
    return [l for l in capa(c) if l.split(" ", 1)[0] in ("EXPIRE", "LOGIN-DELAY")]


def uidl_map(c):
    """UIDL -> {uidl: number}; raises when a UIDL is listed twice."""
    st, data = c.cmd_multi("UIDL")
    if not st.startswith(b"+OK"):
        raise AssertionError("UIDL: %r" % st)
    out = {}
    for line in data.split(b"\r\n"):
        if line:
            n, u = line.split(b" ", 1)
            u = u.decode()
            if u in out:
                raise AssertionError("UIDL %s listed twice" % u)
            out[u] = int(n)
    return out


def pipeline(c, commands):
    """Send commands in one write; return [(status, data or None)] (multi-line for +OK of
    RETR/TOP/UIDL/LIST without argument)."""
    c.send(b"".join(x.encode() + b"\r\n" for x in commands))
    out = []
    for x in commands:
        st = c.line()
        multi = st.startswith(b"+OK") and (x.split(" ")[0].upper() in ("RETR", "TOP")
                                           or x.upper() in ("UIDL", "LIST", "CAPA"))
        out.append((st, c.multi() if multi else None))
    return out
