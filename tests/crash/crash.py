#!/usr/bin/env python3
"""Crash tester: SIGKILL pop3d during UPDATE and during expiry sweeps, restart, check no mail is lost.

    python3 tests/crash/crash.py [--pop3d PATH] [--trials N] [--seconds S] [--seed SEED]
                                 [--messages M] [--scenario NAME[,NAME]] [--trial-seed X]
                                 [--keep-going] [--out DIR] [-v]

Scenarios (each a daemon with its own policy, one maildrop wiped and refilled every trial):
  update-delete    retention "delete": a session RETRs, TOPs and DELEs, then QUIT; the daemon
                   is killed while it runs UPDATE
  update-keep      retention "keep" (forever): the same
  update-keepdays  retention "keep", keep_days = 5: the same
  expire           keep_days = 3, unread_days = 2: `pop3d -c CONF --expire --user U` over
                   hundreds of due messages (unread and downloaded ones) is killed mid-sweep
Every maildrop also holds messages downloaded earlier (in cur/ with the S flag and a record in
pop3d.state written by this script) with promises that are due, not yet due, and forever.

How the kill is placed (chosen per trial):
  delay        SIGKILL after a random delay (microsecond busy-wait) drawn from 0 .. 1.3 times the
               duration of an unkilled calibration run of the scenario
  step-gone    step the process with SIGSTOP/SIGCONT (every thread) and SIGKILL it, while
               stopped, right after one randomly chosen file of the removal/rename loop is gone
  step-tmp     the same, as soon as a tmp/pop3d.state.* temporary file exists
  step-state   the same, as soon as pop3d.state was replaced (before the first unlink of UPDATE,
               after the last one of a sweep)

After every trial (the daemon restarted when it was the one killed) the invariant is checked:
  - every message is present, byte for byte under its own name, or is in the ledger of what was
    allowed to go (DELE'd before QUIT; RETR'd before QUIT under "delete" unless an older
    promise protects it; due by the policy at the sweep);
  - no message is present twice (in new/ and cur/, or twice in cur/), no unknown file appears,
    the server lists every present message once under its UIDL (no UIDL twice);
  - pop3d.state parses (strictly, as maildrop/state.h defines it), nothing was set aside as
    pop3d.state.bad-*, and `pop3d --expire --dry-run --json` exits 0 with no "note" or "failed"
    event (a state in doubt is reported as a note "state in doubt: ...") and kept_doubt no
    larger than the messages this trial legitimately left seen-without-record;
  - the download records of every kept message are exactly as before (promises are never lost
    or changed), first downloads of this session are recorded all or none, with the policy's
    days, and none is in cur/ (seen) without its record;
  - a client that got "+OK" to QUIT had its whole UPDATE done;
  - the dry run plans, and a real sweep then removes, only messages of the ledger; the sweep
    leaves no tmp/pop3d.state.* or tmp/pop3d.cache.* behind, and (expire scenario) finishes
    the job: every due message is gone.

Each kill is classified by what is left: before (nothing done), state-only (UPDATE's state file
written, no file touched yet), inside (some but not all files of the loop removed/renamed),
unlinked (sweep: every due file gone, state not yet rewritten), after (all done). The summary
counts them; exit status 1 on any violation, or when no kill landed inside the loop.
Python 3 standard library only.
"""
import argparse
import ctypes
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

from harness import (IO_TIMEOUT, SANITIZER_MARKERS, Client, Daemon, child_env,  # noqa: E402
                     expected_retr, pop3d_path)
from policyutil import (DAY, kill9, message, pipeline, read_state, restart,  # noqa: E402
                        run_expire, stop_now, uidl_map)

USER = "crash"
PASSWORD = "crash-pw"
STEP_TIMEOUT = 30.0
STRATEGIES = ("ptrace", "delay", "poll-gone", "step-gone", "step-tmp", "step-state")
STRATEGY_WEIGHTS = (35, 15, 15, 15, 10, 10)
INSIDE_PHASES = ("inside",)


class Violation(Exception):
    pass


# ---------------------------------------------------------------- maildir helpers

def reset_maildir(md):
    shutil.rmtree(md, ignore_errors=True)
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, sub))


def scan(md):
    """{base: [relative paths]} over new/ and cur/ (dot files ignored)."""
    out = {}
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(md, sub)):
            if name.startswith("."):
                continue
            out.setdefault(name.split(":", 1)[0], []).append(sub + "/" + name)
    return out


def tmp_leftovers(md):
    return sorted(n for n in os.listdir(os.path.join(md, "tmp"))
                  if n.startswith("pop3d.state.") or n.startswith("pop3d.cache."))


def state_id(md):
    try:
        st = os.stat(os.path.join(md, "pop3d.state"))
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


def write_state(md, recs):
    lines = ["pop3d-state 1", "last_login 0"]
    lines += ["%s %d %d" % (u, t, days) for u, (t, days) in sorted(recs.items())]
    path = os.path.join(md, "pop3d.state")
    with open(path + ".new", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(path + ".new", path)


def busy_wait(seconds):
    end = time.perf_counter() + seconds
    if seconds > 0.002:
        time.sleep(seconds - 0.001)
    while time.perf_counter() < end:
        pass


def records_of(md):
    """Records of pop3d.state, or raise Violation when it does not parse."""
    try:
        r = read_state(md)
    except (AssertionError, UnicodeDecodeError) as e:
        raise Violation("pop3d.state does not parse: %s" % e)
    return None if r is None else r[1]


# ---------------------------------------------------------------- stepping

def step_until(proc, predicate, done, timeout=STEP_TIMEOUT, rng=None):
    """Run proc (a Popen) in slices, SIGSTOP (every thread) then SIGCONT, until predicate() holds
    while it is stopped, done() holds (nothing more to wait for) or it exited; SIGKILL it while
    stopped. Returns "hit", "done", "exited" or "timeout"."""
    pid = proc.pid
    deadline = time.monotonic() + timeout
    try:
        while True:
            stop_now(pid)
            _, status = os.waitpid(pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                proc.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                   else os.WEXITSTATUS(status))
                return "exited"
            if predicate():
                os.kill(pid, signal.SIGKILL)
                return "hit"
            if done():
                os.kill(pid, signal.SIGKILL)
                return "done"
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                return "timeout"
            os.kill(pid, signal.SIGCONT)
            if rng is not None and rng.random() < 0.5:
                busy_wait(rng.uniform(0, 40e-6))
    finally:
        if proc.returncode is None:
            try:
                proc.wait(IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass


def poll_until(proc, predicate, done, timeout=STEP_TIMEOUT):
    """Let proc run and poll predicate() in a tight loop; SIGKILL proc the moment it holds (the
    kill lands a few microseconds later: a few files further in a removal loop). done() and the
    exit are checked every 64 polls. Returns "hit", "done", "exited" or "timeout"."""
    deadline = time.monotonic() + timeout
    n = 0
    try:
        while True:
            if predicate():
                os.kill(proc.pid, signal.SIGKILL)
                return "hit"
            n += 1
            if n % 64 == 0:
                if proc.poll() is not None:
                    return "exited"
                if done():
                    os.kill(proc.pid, signal.SIGKILL)
                    return "done"
                if time.monotonic() > deadline:
                    os.kill(proc.pid, signal.SIGKILL)
                    return "timeout"
    finally:
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------- ptrace: kill at the k-th mutation

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_TRACEME, PTRACE_SYSCALL = 0, 24
PTRACE_SETOPTIONS, PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4200, 0x4206, 0x4207
PTRACE_GET_SYSCALL_INFO = 0x420e
PTRACE_O_TRACESYSGOOD, PTRACE_O_TRACECLONE, PTRACE_O_EXITKILL = 0x1, 0x8, 0x100000
PTRACE_OPTS = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL
WALL = 0x40000000
# unlink, unlinkat, rename, renameat, renameat2 by AUDIT_ARCH
MUTATIONS = {0xc000003e: {87, 263, 82, 264, 316},      # x86_64
             0xc00000b7: {35, 38, 276}}                # aarch64


class _SyscallInfo(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("ip", ctypes.c_uint64), ("sp", ctypes.c_uint64), ("nr", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


def _pt(req, tid, addr=None, data=None):
    r = _libc.ptrace(req, tid, addr, data)
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, "ptrace(%#x, %d): %s" % (req, tid, os.strerror(e)))
    return r


def ptrace_me():
    """preexec_fn: the child stops at exec, traced by us."""
    _libc.ptrace(PTRACE_TRACEME, 0, None, None)


def ptrace_seize(pid):
    """Trace every thread of a running process (and the threads it creates); they go on
    running, stopping at each syscall. Returns the set of traced thread ids."""
    tids = set(int(t) for t in os.listdir("/proc/%d/task" % pid))
    for tid in tids:
        _pt(PTRACE_SEIZE, tid, None, PTRACE_OPTS)
        _pt(PTRACE_INTERRUPT, tid)
    for tid in tids:
        os.waitpid(tid, WALL)
        _pt(PTRACE_SYSCALL, tid)
    return tids


def ptrace_kill_at(proc, k, done, timeout=STEP_TIMEOUT, started=True):
    """proc runs traced (ptrace_seize, or ptrace_me and started=False: stopped at exec). SIGKILL
    it at the entry of its k-th unlink/rename syscall (in any thread), so that exactly k-1
    of them happened. Returns "hit", "done" (done() held first), "exited" or "timeout"; proc
    is reaped either way."""
    pid = proc.pid
    info = _SyscallInfo()
    if not started:
        os.waitpid(pid, WALL)
        _pt(PTRACE_SETOPTIONS, pid, None, PTRACE_OPTS)
        _pt(PTRACE_SYSCALL, pid)
    n = 0
    deadline = time.monotonic() + timeout
    outcome = None
    while outcome is None:
        try:
            tid, st = os.waitpid(-1, WALL | os.WNOHANG)
        except ChildProcessError:
            outcome = "exited"
            break
        if tid == 0:
            if done():
                outcome = "done"
            elif time.monotonic() > deadline:
                outcome = "timeout"
            else:
                time.sleep(0.0002)
            continue
        if not os.WIFSTOPPED(st):
            if tid == pid:
                proc.returncode = -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
                return "exited"
            continue
        sig = os.WSTOPSIG(st)
        inject = 0
        if sig == signal.SIGTRAP | 0x80:
            _pt(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), ctypes.addressof(info))
            if info.op == 1 and info.nr in MUTATIONS.get(info.arch, ()):
                n += 1
                if n == k:
                    outcome = "hit"
                    break
        elif (st >> 16) == 0 and sig != signal.SIGTRAP:
            inject = sig                       # a real signal: deliver it
        try:
            _pt(PTRACE_SYSCALL, tid, None, inject)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
    os.kill(pid, signal.SIGKILL)
    # reap: the leader's status is ours (proc is our child); the threads' exits come too
    while proc.returncode is None:
        try:
            tid, st = os.waitpid(-1, WALL)
        except ChildProcessError:
            proc.returncode = -signal.SIGKILL
            break
        if tid == pid and not os.WIFSTOPPED(st):
            proc.returncode = -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
    return outcome


def target_pred(md, strategy, m, sid):
    """The kill condition of a step-*/poll-* strategy."""
    if strategy.endswith("-gone"):
        path = os.path.join(md, m.sub, m.uidl + m.info)
        return lambda: not os.path.exists(path)
    if strategy == "step-tmp":
        tmp = os.path.join(md, "tmp")
        return lambda: any(n.startswith("pop3d.state.") for n in os.listdir(tmp))
    return lambda: state_id(md) != sid


# ---------------------------------------------------------------- scenarios

class Msg:
    __slots__ = ("uidl", "data", "kind", "record", "mtime", "sub", "info")

    def __init__(self, uidl, data, kind, record, mtime, sub, info=""):
        self.uidl, self.data, self.kind, self.record = uidl, data, kind, record
        self.mtime, self.sub, self.info = mtime, sub, info


def period_max(a, b):
    return -1 if a < 0 or b < 0 else max(a, b)


class Scenario:
    """One daemon with one policy; a fixed set of messages (templates with unique contents and
    fixed mtimes, hard-linked into the maildrop every trial) and their records."""

    name = None
    policy = None
    rule_days = None       # keep period of the rule: -1 forever, 0 delete, N days
    unread_days = 0

    def __init__(self, messages, t0, log):
        self.t0 = t0
        self.log = log
        self.daemon = Daemon(users={USER: "{PLAIN}" + PASSWORD},
                             extra_config="policy = { %s };\n" % self.policy)
        self.md = self.daemon.maildir(USER)
        self.templates = os.path.join(self.daemon.dir, "templates")
        os.makedirs(self.templates)
        self.msgs = {}
        self.build(messages, random.Random(zlib.crc32(self.name.encode())))
        for m in self.msgs.values():
            path = os.path.join(self.templates, m.uidl)
            with open(path, "wb") as f:
                f.write(m.data)
            os.utime(path, (m.mtime, m.mtime))
        self.estimate = None    # seconds from trigger to completion, from calibration
        self.daemon.start()

    def add(self, kind, n, mtime_lo, mtime_hi, record=None, sub="new", rng=None):
        for i in range(n):
            mt = int(rng.uniform(mtime_lo, mtime_hi))
            uidl = "%d.%s-%04d.crash" % (mt, kind, i)
            info = ":2,S" if sub == "cur" else ""
            self.msgs[uidl] = Msg(uidl, message(uidl), kind, record, mt, sub, info)

    def due_at_sweep(self, m, now, rec):
        """Model of the sweep's rule (README), used with wide margins only."""
        if rec is not None:
            p = period_max(rec[1], self.rule_days)
            return p >= 0 and now - rec[0] >= p * DAY
        if m.sub == "cur" or m.info:
            return False
        return self.unread_days > 0 and now - m.mtime >= self.unread_days * DAY

    def fill(self):
        reset_maildir(self.md)
        for m in self.msgs.values():
            os.link(os.path.join(self.templates, m.uidl),
                    os.path.join(self.md, m.sub, m.uidl + m.info))
        write_state(self.md, {m.uidl: m.record for m in self.msgs.values() if m.record})

    def close(self, keep_dir=False):
        try:
            self.daemon.stop()
        finally:
            if not keep_dir:
                shutil.rmtree(self.daemon.dir, ignore_errors=True)


class UpdateScenario(Scenario):
    first_download_days = None   # promise recorded for a first download

    def build(self, n, rng):
        t = self.t0
        fresh = max(4, n * 4 // 5)
        pre = max(3, n - fresh)
        self.add("fresh", fresh, t - 3 * DAY, t - 2 * DAY, rng=rng)
        self.add("predue", pre // 3, t - 3 * DAY, t - 2 * DAY, (t - 10 * DAY, 3), "cur", rng)
        self.add("prepromise", pre // 3, t - 3 * DAY, t - 2 * DAY, (t - 10 * DAY, 30), "cur", rng)
        self.add("preforever", pre - 2 * (pre // 3), t - 3 * DAY, t - 2 * DAY,
                 (t - 10 * DAY, -1), "cur", rng)

    def plan(self, rng):
        names = sorted(self.msgs)
        retr = set(u for u in names if rng.random() < 0.6)
        top = set(u for u in names if rng.random() < 0.1)
        dele = set(u for u in names if rng.random() < 0.2)
        return retr, top, dele

    def removed_at_update(self, retr, dele, now):
        gone = set(dele)
        if self.rule_days == 0:
            for u in retr:
                rec = self.msgs[u].record
                p = None if rec is None else period_max(rec[1], 0)
                if rec is None or (p >= 0 and now - rec[0] >= p * DAY):
                    gone.add(u)
        return gone

    def run_trial(self, trial, rng, strategy):
        d = self.daemon
        md = self.md
        self.fill()
        pre_recs = records_of(md)
        retr, top, dele = self.plan(rng)
        c = Client(d.port)
        try:
            c.login(USER, PASSWORD)
            num = uidl_map(c)
            by_num = {v: k for k, v in num.items()}
            if set(num) != set(self.msgs):
                raise Violation("listing before the trial differs from the maildrop: %s"
                                % sorted(set(num) ^ set(self.msgs))[:5])
            cmds = ["RETR %d" % num[u] for u in sorted(retr, key=lambda u: num[u])]
            cmds += ["TOP %d 0" % num[u] for u in sorted(top)]
            rng.shuffle(cmds)
            cmds += ["DELE %d" % num[u] for u in sorted(dele)]
            for cmd, (st, body) in zip(cmds, pipeline(c, cmds)):
                if not st.startswith(b"+OK"):
                    raise Violation("%s: %r" % (cmd, st))
                if cmd.startswith("RETR"):
                    u = by_num[int(cmd.split()[1])]
                    if body != expected_retr(self.msgs[u].data):
                        raise Violation("RETR of %s sent other bytes" % u)
            t_quit = time.time()
            allowed_update = self.removed_at_update(retr, dele, t_quit)
            # the loop's work: unlinks, and renames of retrieved mail still in new/
            moves = set(u for u in retr - allowed_update if self.msgs[u].sub == "new")
            work = sorted(allowed_update | moves)
            updates = d.count_log("update id=")
            ends = d.count_log("session end")
            sid = state_id(md)
            target = rng.choice(work) if work else None
            # ptrace: kill at the k-th unlink/rename (1: the state file's rename, if any)
            kth = (rng.randint(3, max(3, len(work))) if strategy == "ptrace-mid"
                   else rng.randint(1, len(work) + 2))
            if strategy.startswith("ptrace"):
                ptrace_seize(d.proc.pid)
            start = time.perf_counter()
            c.send(b"QUIT\r\n")
            killed, how = self.kill_daemon(strategy, rng, target, updates, sid, start, kth)
            reply = self.drain(c)
        finally:
            c.close()
        elapsed = time.perf_counter() - start
        if killed:
            kill9(d)
            restart(d)
        else:
            d.wait_session_end(ends + 1)
            if not reply.startswith(b"+OK"):
                raise Violation("unkilled UPDATE answered %r" % reply)
        info = dict(scenario=self.name, strategy=strategy, how=how, target=target,
                    retr=len(retr), dele=len(dele), top=len(top), work=len(work))
        now = time.time()
        allowed = set(allowed_update)
        allowed |= set(u for u, m in self.msgs.items() if self.due_at_sweep(m, now, m.record))
        phase, obs = self.check_update(trial, info, pre_recs, retr, dele, allowed_update, moves,
                                       allowed, reply, t_quit)
        info.update(phase=phase, obs=obs, seconds=round(elapsed, 6))
        if not killed and self.estimate is None:
            self.estimate = elapsed
        return info

    def kill_daemon(self, strategy, rng, target, updates, sid, start, kth):
        """Kill the daemon in UPDATE per strategy. (killed, how)."""
        d = self.daemon
        md = self.md
        done = lambda: d.count_log("update id=") > updates   # noqa: E731
        if strategy == "none":
            d.wait_log("update id=", count=updates + 1)
            return False, "none"
        if strategy == "delay":
            delay = rng.uniform(0, 1.3 * (self.estimate or 0.01))
            busy_wait(delay - (time.perf_counter() - start))
            os.kill(d.proc.pid, signal.SIGKILL)
            return True, "delay=%.6f" % delay
        if strategy.startswith("ptrace"):
            return True, "k=%d:%s" % (kth, ptrace_kill_at(d.proc, kth, done))
        if target is None and strategy.endswith("-gone"):
            strategy = "step-state"
        pred = target_pred(md, strategy, self.msgs.get(target), sid)
        if strategy.startswith("poll"):
            return True, poll_until(d.proc, pred, done)
        return True, step_until(d.proc, pred, done, rng=rng)

    @staticmethod
    def drain(c):
        """What the server sent after QUIT before it died (b"" if nothing)."""
        out = bytes(c.buf)
        c.sock.settimeout(0.2)
        try:
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
        return out

    def check_update(self, trial, info, pre_recs, retr, dele, allowed_update, moves, allowed,
                     reply, t_quit):
        md = self.md
        d = self.daemon
        obs = {}
        present = scan(md)
        post_recs = records_of(md)
        if post_recs is None:
            raise Violation("pop3d.state is gone")
        common_checks(md, self.msgs, present, allowed)
        gone_work = set(u for u in allowed_update if u not in present)
        moved = set(u for u in moves if u in present and present[u][0].startswith("cur/"))
        for u, paths in present.items():
            m = self.msgs[u]
            p = paths[0]
            if m.sub == "cur" and p != "cur/" + u + m.info:
                raise Violation("%s was in cur/ with S, is now %s" % (u, p))
            if m.sub == "new" and p != "new/" + u and not (u in retr and p == "cur/" + u + ":2,S"):
                raise Violation("%s is at %s (retrieved: %s)" % (u, p, u in retr))
        # download records
        # Every message retrieved in the session without an earlier record is a first
        # download, recorded (all or none) before any unlink -- also one UPDATE then
        # removes, so that a kill before its unlink leaves it decided, not in doubt.
        first = sorted(u for u in retr if u in present and u not in pre_recs)
        firsts_recorded = [u for u in first if u in post_recs]
        for u in present:
            pre = pre_recs.get(u)
            post = post_recs.get(u)
            if pre is not None:
                if post != pre and not (u in allowed_update and post is None):
                    raise Violation("record of kept message %s changed: %s -> %s" % (u, pre, post))
            elif u in retr:
                if post is not None and (post[1] != self.first_download_days
                                         or not int(t_quit) - 1 <= post[0] <= time.time() + 1):
                    raise Violation("first download of %s recorded as %s (quit at %d, days %s)"
                                    % (u, post, t_quit, self.first_download_days))
                if u in moved and post is None:
                    raise Violation("%s moved to cur/ (seen) without a download record" % u)
            elif post is not None:
                raise Violation("unexpected record for %s: %s" % (u, post))
        if self.first_download_days is not None and firsts_recorded and \
                len(firsts_recorded) != len(first):
            raise Violation("first downloads recorded in part: %d of %d"
                            % (len(firsts_recorded), len(first)))
        recs_changed = any(pre_recs.get(u) != post_recs.get(u) for u in self.msgs)
        total = len(allowed_update) + len(moves)
        done = len(gone_work) + len(moved)
        if reply.startswith(b"+OK") and done != total:
            raise Violation("QUIT answered %r but UPDATE did %d of %d" % (reply, done, total))
        info["ops"] = done + bool(recs_changed)     # unlinks/renames done, the state's included
        if total == 0:
            phase = "after" if recs_changed or not first else "before"
        elif done == 0:
            phase = "state-only" if recs_changed else "before"
        elif done < total:
            phase = "inside"
        else:
            phase = "after"
        # seen without record: allowed messages whose record UPDATE dropped before the unlink
        doubt_ok = sum(1 for u in present if present[u][0].startswith("cur/")
                       and u not in post_recs and u in allowed)
        if doubt_ok:
            obs["seen_without_record_kept"] = doubt_ok
        if self.first_download_days is None:
            kept = sum(1 for u in retr & allowed_update if u in present
                       and self.msgs[u].record is None)
            if kept:
                obs["downloaded_under_delete_kept_without_record"] = kept
        sweep_checks(self, d, md, present, allowed, doubt_ok, obs)
        return phase, obs


class UpdateDelete(UpdateScenario):
    name = "update-delete"
    policy = 'retention = "delete";'
    rule_days = 0
    first_download_days = 0      # recorded with promise 0 before the unlink


class UpdateKeep(UpdateScenario):
    name = "update-keep"
    policy = 'retention = "keep";'
    rule_days = -1
    first_download_days = -1


class UpdateKeepDays(UpdateScenario):
    name = "update-keepdays"
    policy = 'retention = "keep"; keep_days = 5;'
    rule_days = 5
    first_download_days = 5


class Expire(Scenario):
    name = "expire"
    policy = "keep_days = 3; unread_days = 2;"
    rule_days = 3
    unread_days = 2

    def build(self, n, rng):
        t = self.t0
        lo, hi = t - 12 * DAY, t - 11 * DAY
        k = max(1, n // 20)
        self.add("unreadold", n * 9 // 20, lo, hi, rng=rng)
        self.add("recdue", n * 5 // 20, lo, hi, (t - 10 * DAY, 3), "cur", rng)
        self.add("recdue0", k, lo, hi, (t - 10 * DAY, 0), "cur", rng)
        self.add("unreadyoung", 2 * k, t - 1 * DAY, t - 0.5 * DAY, rng=rng)
        self.add("recpromise", k, lo, hi, (t - 10 * DAY, 30), "cur", rng)
        self.add("recforever", k, lo, hi, (t - 10 * DAY, -1), "cur", rng)
        self.add("recyoung", k, lo, hi, (t - 1 * DAY, 3), "cur", rng)
        self.add("reczero", k, lo, hi, (t - 1 * DAY, 0), "cur", rng)   # today's 3 days win

    def fill(self):
        Scenario.fill(self)
        # records of messages that are gone: harmless, kept or dropped
        recs = {m.uidl: m.record for m in self.msgs.values() if m.record}
        for i in range(5):
            recs["%d.gone-%d.crash" % (self.t0 - 20 * DAY, i)] = (int(self.t0 - 15 * DAY), 3)
        write_state(self.md, recs)

    def run_trial(self, trial, rng, strategy):
        md = self.md
        self.fill()
        pre_recs = records_of(md)
        now = time.time()
        due = set(u for u, m in self.msgs.items() if self.due_at_sweep(m, now, m.record))
        work = sorted(due)
        target = rng.choice(work)
        sid = state_id(md)
        out = tempfile.TemporaryFile()
        argv = [pop3d_path(), "-c", self.daemon.conf, "--expire", "--json", "--user", USER]
        start = time.perf_counter()
        traced = strategy.startswith("ptrace")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             env=child_env(), cwd="/", preexec_fn=ptrace_me if traced else None)
        how = strategy
        if traced:
            # the k-th unlink/rename: the due files, then the state file's rename
            kth = (rng.randint(3, len(work)) if strategy == "ptrace-mid"
                   else rng.randint(1, len(work) + 2))
            how = "k=%d:%s" % (kth, ptrace_kill_at(p, kth, lambda: False, started=False))
        elif strategy == "none":
            p.wait(60)
        elif strategy == "delay":
            delay = rng.uniform(0, 1.3 * (self.estimate or 0.02))
            busy_wait(delay - (time.perf_counter() - start))
            p.kill()
            how = "delay=%.6f" % delay
        else:
            pred = target_pred(md, strategy, self.msgs[target], sid)
            if strategy.startswith("poll"):
                how = poll_until(p, pred, lambda: False)
            else:
                how = step_until(p, pred, lambda: False, rng=rng)
        p.wait(60)
        elapsed = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        out.close()
        if strategy == "none":
            if p.returncode != 0:
                raise Violation("unkilled sweep exited %s:\n%s" % (p.returncode, text))
            if self.estimate is None:
                self.estimate = elapsed
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise Violation("sweep printed %r:\n%s" % (marker, text))
        info = dict(scenario=self.name, strategy=strategy, how=how, target=target,
                    due=len(due), rc=p.returncode)
        phase, obs = self.check_expire(pre_recs, due, info)
        info.update(phase=phase, obs=obs, seconds=round(elapsed, 6))
        return info

    def check_expire(self, pre_recs, due, info):
        md = self.md
        obs = {}
        present = scan(md)
        post_recs = records_of(md)
        if post_recs is None:
            raise Violation("pop3d.state is gone")
        common_checks(md, self.msgs, present, due)
        for u, paths in present.items():
            m = self.msgs[u]
            if paths[0] != m.sub + "/" + u + m.info:
                raise Violation("%s moved: %s" % (u, paths[0]))
            if post_recs.get(u) != pre_recs.get(u):
                raise Violation("record of present message %s changed: %s -> %s"
                                % (u, pre_recs.get(u), post_recs.get(u)))
        extra = set(post_recs) - set(pre_recs)
        if extra:
            raise Violation("records appeared: %s" % sorted(extra)[:3])
        gone = set(u for u in due if u not in present)
        stale = [u for u in gone if u in post_recs]
        info["ops"] = len(gone) + (post_recs != pre_recs)   # the state's rename comes last
        if not gone:
            phase = "before"
        elif len(gone) < len(due):
            phase = "inside"
        elif stale:
            phase = "unlinked"
        else:
            phase = "after"
        if tmp_leftovers(md):
            obs["tmp_left"] = len(tmp_leftovers(md))
        sweep_checks(self, self.daemon, md, present, due, 0, obs, finish=due)
        return phase, obs


SCENARIOS = {c.name: c for c in (UpdateDelete, UpdateKeep, UpdateKeepDays, Expire)}


# ---------------------------------------------------------------- shared checks

def common_checks(md, msgs, present, allowed):
    """Duplicates, unknown files, contents, lost mail, set-aside state."""
    dups = {u: p for u, p in present.items() if len(p) > 1}
    if dups:
        raise Violation("present twice: %s" % sorted(dups.items())[:3])
    unknown = sorted(set(present) - set(msgs))
    if unknown:
        raise Violation("unknown message files: %s" % unknown[:5])
    for u, paths in present.items():
        with open(os.path.join(md, paths[0]), "rb") as f:
            if f.read() != msgs[u].data:
                raise Violation("%s changed its contents" % paths[0])
    lost = sorted(set(msgs) - set(present) - set(allowed))
    if lost:
        raise Violation("LOST %d message(s) not allowed to go: %s" % (len(lost), lost[:10]))
    bad = [n for n in os.listdir(md) if n.startswith("pop3d.state.bad")]
    if bad:
        raise Violation("state set aside as %s" % bad)


def expire_when_free(conf, *args, timeout=IO_TIMEOUT):
    """run_expire, again while the maildrop is locked: the daemon logs "session end" before a
    thread-pool job closes the maildrop and releases its lock (server/pop3.c), so a sweep right
    after a session may find it in use and skip it, as it should."""
    deadline = time.monotonic() + timeout
    while True:
        r = run_expire(conf, *args)
        if not any(e.get("reason") == "in-use" for e in r.of("skipped")) \
                or time.monotonic() > deadline:
            return r
        time.sleep(0.01)


def check_expire_run(r, what):
    if r.rc != 0:
        raise Violation("%s exited %s:\n%s" % (what, r.rc, r.describe()))
    for marker in SANITIZER_MARKERS:
        if marker in r.stderr:
            raise Violation("%s printed %r:\n%s" % (what, marker, r.describe()))
    bad = r.of("note") + r.of("failed") + r.of("skipped") + r.of("error")
    if bad:
        raise Violation("%s reported %s" % (what, bad))


def sweep_checks(sc, d, md, present, allowed, doubt_ok, obs, finish=()):
    """The dry run, a listing through the server, a real sweep."""
    r = expire_when_free(d.conf, "--dry-run", "--json", "--user", USER)
    check_expire_run(r, "dry run")
    u = r.user(USER)
    if u["kept_doubt"] > doubt_ok:
        raise Violation("dry run keeps %d message(s) in doubt (%s), expected at most %d"
                        % (u["kept_doubt"], u["doubt"], doubt_ok))
    if u["kept_doubt"]:
        obs["kept_doubt"] = u["kept_doubt"]
    plan = set(r.removed())
    if plan - set(allowed):
        raise Violation("dry run would remove messages not due: %s" % sorted(plan - set(allowed))[:5])
    # the server lists each present message once (uidl_map raises on a repeat)
    ends = d.count_log("session end")
    c = Client(d.port)
    try:
        c.login(USER, PASSWORD)
        try:
            listed = set(uidl_map(c))
        except AssertionError as e:
            raise Violation("server listing: %s" % e)
    finally:
        c.close()
    d.wait_session_end(ends + 1)
    if listed != set(present):
        raise Violation("server lists %s, maildir holds %s"
                        % (sorted(listed ^ set(present))[:5], "the rest"))
    r = expire_when_free(d.conf, "--json", "--user", USER)
    check_expire_run(r, "sweep after the crash")
    removed = set(r.removed())
    if removed - set(allowed):
        raise Violation("the next sweep removed messages not due: %s"
                        % sorted(removed - set(allowed))[:5])
    left = tmp_leftovers(md)
    if left:
        raise Violation("temporary files left after a sweep: %s" % left)
    now = scan(md)
    lost = sorted(set(sc.msgs) - set(now) - set(allowed))
    if lost:
        raise Violation("LOST after the next sweep: %s" % lost[:10])
    kept = len(set(allowed) & set(now))
    if kept:
        obs["allowed_but_kept_after_next_sweep"] = kept
    unfinished = sorted(set(finish) & set(now))
    if unfinished:
        raise Violation("the next sweep left %d due message(s): %s"
                        % (len(unfinished), unfinished[:5]))
    records_of(md)


# ---------------------------------------------------------------- driver

class Result:
    def __init__(self, seed):
        self.seed = seed
        self.trials = []
        self.violations = []
        self.seconds = 0.0

    def count(self, **kw):
        return sum(1 for t in self.trials if all(t.get(k) == v for k, v in kw.items()))

    @property
    def inside(self):
        return sum(1 for t in self.trials if t.get("phase") in INSIDE_PHASES)

    def report(self):
        lines = ["seed %d: %d trials in %.1f s, %d kill(s) inside the removal loop, %d violation(s)"
                 % (self.seed, len(self.trials), self.seconds, self.inside, len(self.violations))]
        phases = ("before", "state-only", "inside", "unlinked", "after")
        lines.append("  %-16s %6s  %s" % ("scenario", "trials", "  ".join("%10s" % p for p in phases)))
        for name in SCENARIOS:
            n = self.count(scenario=name)
            if n:
                lines.append("  %-16s %6d  %s" % (name, n, "  ".join(
                    "%10d" % self.count(scenario=name, phase=p) for p in phases)))
        lines.append("  by strategy: " + ", ".join(
            "%s %d (inside %d)" % (s, self.count(strategy=s),
                                   self.count(strategy=s, phase="inside"))
            for s in ("none", "ptrace-mid") + STRATEGIES if self.count(strategy=s)))
        obs = {}
        for t in self.trials:
            for k, v in (t.get("obs") or {}).items():
                obs.setdefault(k, [0, 0])
                obs[k][0] += 1
                obs[k][1] += v
        hits = [t for t in self.trials if ":hit" in str(t.get("how")) and "ops" in t]
        off = [t for t in hits if t["ops"] != int(t["how"][2:].split(":")[0]) - 1]
        if hits:
            lines.append("  ptrace kills at the k-th unlink/rename: %d; the state left shows k-1 done"
                         " in %d (%s)" % (len(hits), len(hits) - len(off), "all" if not off else
                                          "off: " + ", ".join("trial %d k=%s ops=%d" % (
                                              t["trial"], t["how"], t["ops"]) for t in off[:5])))
        for k, (n, v) in sorted(obs.items()):
            lines.append("  observed %s: %d trial(s), %d message(s)" % (k, n, v))
        for v in self.violations:
            lines.append("VIOLATION " + json.dumps(v, sort_keys=True))
        return "\n".join(lines)


def run(trials=300, seconds=300.0, seed=None, messages=400, scenarios=None, trial_seed=None,
        keep_going=False, out_dir=None, verbose=False, log=None, strategy=None):
    """Run the crash test; returns a Result."""
    log = log or (lambda s: print(s, flush=True))
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    names = scenarios or list(SCENARIOS)
    res = Result(seed)
    log("crash test: seed %d, at most %d trials / %.0f s, %d messages per maildrop, pop3d %s"
        % (seed, trials, seconds, messages, pop3d_path()))
    master = random.Random(seed)
    t_start = time.monotonic()
    t0 = int(time.time())
    scs = {}
    try:
        for name in names:
            scs[name] = SCENARIOS[name](messages, t0, log)
        # one unkilled calibration run each: checks the model, measures the duration
        for name in names:
            info = scs[name].run_trial(-1, random.Random(0), "none")
            info.update(trial=-1, seed=0)
            res.trials.append(info)
            if info["phase"] != "after":
                raise Violation("unkilled %s run ended in phase %s" % (name, info["phase"]))
            if verbose:
                log("calibration %s" % json.dumps(info, sort_keys=True))
        k = 0
        while k < trials and time.monotonic() - t_start < seconds:
            tseed = master.getrandbits(32) if trial_seed is None else trial_seed
            name = names[k % len(names)]
            rng = random.Random(tseed)
            # the strategy from its own stream (so --strategy does not change the plan); the
            # first killed trial of each scenario steps to a file mid-loop
            how = strategy or ("ptrace-mid" if k < len(names) and trial_seed is None else
                               random.Random(tseed ^ 0x5eed).choices(STRATEGIES,
                                                                     STRATEGY_WEIGHTS)[0])
            sc = scs[name]
            try:
                info = sc.run_trial(k, rng, how)
            except Violation as e:
                v = dict(trial=k, seed=seed, trial_seed=tseed, scenario=name, strategy=how,
                         error=str(e))
                res.violations.append(v)
                log("VIOLATION trial %d (seed %d, trial seed %d, %s, %s): %s"
                    % (k, seed, tseed, name, how, e))
                log("  re-run: python3 tests/crash/crash.py --scenario %s --trial-seed %d "
                    "--strategy %s --trials 1" % (name, tseed, how))
                if out_dir:
                    dest = os.path.join(out_dir, "trial-%d-%s" % (k, name))
                    shutil.copytree(sc.md, dest, symlinks=True)
                    with open(os.path.join(dest, "VIOLATION.json"), "w") as f:
                        json.dump(v, f, indent=1)
                    log("  maildrop copied to %s" % dest)
                if not keep_going:
                    break
                if not sc.daemon.alive():
                    kill9(sc.daemon)
                    restart(sc.daemon)
                k += 1
                continue
            info.update(trial=k, seed=tseed)
            res.trials.append(info)
            if verbose:
                log("trial %s" % json.dumps(info, sort_keys=True))
            k += 1
    except Violation as e:
        res.violations.append(dict(trial=-1, seed=seed, error=str(e)))
    finally:
        for sc in scs.values():
            try:
                sc.close(keep_dir=bool(res.violations) and bool(os.environ.get("KEEP_TMP")))
            except AssertionError as e:
                res.violations.append(dict(trial=-1, seed=seed, error="daemon: %s" % e))
        res.seconds = time.monotonic() - t_start
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pop3d", help="the binary (default: $POP3D or build/pop3d)")
    ap.add_argument("--trials", type=int, default=400, help="at most this many killed trials")
    ap.add_argument("--seconds", type=float, default=300, help="start no trial after this")
    ap.add_argument("--seed", type=int, help="master seed (default: random, printed)")
    ap.add_argument("--messages", type=int, default=400, help="messages per maildrop")
    ap.add_argument("--scenario", help="comma-separated subset of: " + ", ".join(SCENARIOS))
    ap.add_argument("--trial-seed", type=int, help="give every trial this seed (re-run one)")
    ap.add_argument("--strategy", choices=STRATEGIES + ("ptrace-mid",),
                    help="use only this kill placement")
    ap.add_argument("--keep-going", action="store_true", help="go on after a violation")
    ap.add_argument("--out", help="copy the maildrop of a failed trial here")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per trial")
    a = ap.parse_args()
    if a.pop3d:
        os.environ["POP3D"] = os.path.abspath(a.pop3d)
    names = a.scenario.split(",") if a.scenario else None
    for n in names or ():
        if n not in SCENARIOS:
            ap.error("unknown scenario %s" % n)
    out_dir = a.out
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="pop3d-crash-")
    res = run(a.trials, a.seconds, a.seed, a.messages, names, a.trial_seed, a.keep_going,
              out_dir, a.verbose, strategy=a.strategy)
    print(res.report())
    if not res.violations and not os.listdir(out_dir) and a.out is None:
        os.rmdir(out_dir)
    if res.violations:
        return 1
    killed = len([t for t in res.trials if t["strategy"] != "none"])
    if killed and res.inside == 0 and a.trial_seed is None and a.strategy is None:
        print("no kill landed inside the removal loop: the run proves nothing")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
