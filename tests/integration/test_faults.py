"""Fault injection against the real binary (issue 6; tests/fault/README.md).

The LD_PRELOAD shim BUILD/fault/libfault.so (BUILD = the folder of $POP3D; built here with
`make fault BUILD=...` when missing) makes chosen file-system calls fail with ENOSPC, EIO or
EACCES. Each test checks the three things the issue asks for:

- the client gets the right reply: `-ERR [SYS/TEMP]` or `-ERR [SYS/PERM]` where a reply is
  possible; a read that fails mid-RETR (after the +OK) closes the connection instead;
- the daemon logs the cause;
- every message that was not meant to be removed is still there, byte for byte (the maildir is
  compared before and after), and the download state still parses.

Faults covered: the state file write (pop3d.state, written as MAILDIR/tmp/pop3d.state.* then
renamed: the open, a write, the fsync, the rename), the rename of a RETR'd message to cur/ at
UPDATE, the unlink at UPDATE (DELE, and a download under retention "delete"), the folder scan at
login (open, opendir, readdir, a message read when sizes are measured), the open and a read of a
message during RETR, the size cache and the login time at login, and `pop3d --expire` with a
failing unlink, folder scan, state write or state read.

KnownBugTest holds one test per daemon bug these tests found (tests/SECURITY.md, "Fault
injection: findings"). Each sets up its case with ordinary assertions (a broken setup fails);
the final check goes through fixed() (the bug was fixed: the check must hold) or known_bug()
(still open: the test is SKIPPED with "known pop3d bug: ...", visible in the run's output and in
its "(N skipped, ...)" line, never counted as passed; once the bug is fixed it FAILS, asking for
the check to become fixed()).

Skipped, not failed, when the shim cannot be built or loaded, or when $POP3D is not an ELF
program (a wrapper script such as the valgrind one: the shim would land in the wrapper).
"""
import functools
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (REPO, Daemon, Pop3TestCase, child_env, deliver, expected_retr, pop3_size,
                     pop3d_path)
from policyutil import DAY, ExpireRun, contents, message, place, read_state

FAULT_ENV = ("LD_PRELOAD", "POP3D_FAULT", "POP3D_FAULT_LOG")
MAKE_TIMEOUT = 180
EXPIRE_TIMEOUT = 60
SYS_ERR = re.compile(rb"^-ERR \[SYS/(TEMP|PERM)\] ")
STRERROR = {"ENOSPC": "No space left on device", "EIO": "Input/output error",
            "EACCES": "Permission denied"}


# ---------------------------------------------------------------- the shim

def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _asan_runtime(binary):
    """Path of the ASan runtime the binary links, or None. ldd names the one it loads; gcc's
    -print-file-name is the fallback for a build under /san/ (tests/fault/README.md)."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", out, re.M)
    if m:
        return m.group(1)
    if "/san/" in binary:
        try:
            p = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            p = ""
        if os.path.isabs(p) and os.path.exists(p):
            return p
    return None


@functools.lru_cache(maxsize=None)
def shim():
    """(LD_PRELOAD value, None) or (None, why the fault tests must be skipped)."""
    binary = pop3d_path()
    if not _is_elf(binary):
        return None, "%s is not an ELF program (a wrapper?): LD_PRELOAD would not reach pop3d" % binary
    build = os.path.dirname(binary)
    lib = os.path.join(build, "fault", "libfault.so")
    if not os.path.exists(lib):
        # Not the settings of a make that runs us (make check-san passes SAN=... down).
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        try:
            r = subprocess.run(["make", "-C", REPO, "--no-print-directory", "BUILD=" + build,
                                "fault"], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=MAKE_TIMEOUT, env=env)
            why = "exit %d: %s" % (r.returncode, (r.stdout + r.stderr)[-500:])
        except (OSError, subprocess.TimeoutExpired) as e:
            why = repr(e)
        if not os.path.exists(lib):
            return None, "cannot build the fault shim %s (make fault): %s" % (lib, why)
    preload = lib
    asan = _asan_runtime(binary)
    if asan is not None:
        preload = asan + ":" + lib          # the sanitizer runtime must come first
    # Smoke test: the program starts with the shim and a rule that never matches.
    env = child_env(LD_PRELOAD=preload, POP3D_FAULT="open:/no/such/path/at/all:EIO")
    try:
        r = subprocess.run([binary, "--version"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "pop3d --version with the shim: %r" % e
    if r.returncode != 0 or "pop3d-fault" in r.stderr:
        return None, "pop3d does not run with the shim (exit %d): %s" % (r.returncode, r.stderr[-500:])
    return preload, None


def fault_env(rules, log):
    preload, why = shim()
    assert preload is not None, why
    return {"LD_PRELOAD": preload, "POP3D_FAULT": rules, "POP3D_FAULT_LOG": log}


class FaultDaemon(Daemon):
    """A harness Daemon whose process runs with the shim and the rules given. Daemon.start()
    builds the child's environment from os.environ (harness.child_env), so the variables are put
    there for the duration of start() only: nothing else this process starts sees them."""

    def __init__(self, rules, **kw):
        super().__init__(**kw)
        self.rules = rules
        self.fault_log = os.path.join(self.dir, "fault.log")

    def start(self):
        saved = {k: os.environ.get(k) for k in FAULT_ENV}
        os.environ.update(fault_env(self.rules, self.fault_log))
        try:
            return super().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def injected(self):
        """Lines of the shim's log: one per failed call."""
        try:
            with open(self.fault_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []


def run_expire_faulty(conf, rules, log, *args):
    """`pop3d -c conf --expire ARGS` with the shim; an ExpireRun (policyutil)."""
    argv = [pop3d_path(), "-c", conf, "--expire"] + list(args)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=EXPIRE_TIMEOUT, env=child_env(**fault_env(rules, log)), cwd="/")
    return ExpireRun(argv, p, "--json" in args)


def run_expire_clean(conf, *args):
    args = list(args)
    if "--at" in args and "--dry-run" not in args:   # the test moves the clock on purpose
        args.append("--force")
    argv = [pop3d_path(), "-c", conf, "--expire"] + args
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=EXPIRE_TIMEOUT, env=child_env(), cwd="/")
    return ExpireRun(argv, p, "--json" in args)


# ---------------------------------------------------------------- helpers

def policy(text):
    return "policy = { %s };\n" % text


def write_state(md, records, last_login=0):
    """pop3d.state as maildrop/state.h describes it: {uidl: (first_download, promised_days)}."""
    with open(os.path.join(md, "pop3d.state"), "w") as f:
        f.write("pop3d-state 1\nlast_login %d\n" % last_login)
        for uidl, (t, days) in records.items():
            f.write("%s %d %d\n" % (uidl, int(t), days))


def state_bytes(md):
    try:
        with open(os.path.join(md, "pop3d.state"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def name(i):
    return "1700000000.M%d.fault" % i


class FaultCase(Pop3TestCase):

    @classmethod
    def setUpClass(cls):
        preload, why = shim()
        if preload is None:
            raise unittest.SkipTest(why)

    def fault_daemon(self, rules, **kw):
        d = FaultDaemon(rules, **kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        d.start()
        return d

    def fill(self, md, n, mtime=None):
        """n small messages NAME(0..n-1), oldest first; returns {uidl: bytes}."""
        base = time.time() - 100 if mtime is None else mtime
        for i in range(n):
            deliver(md, message("fault-%d" % i), name=name(i), mtime=base + i)
        return contents(md)

    def assertFired(self, d, what=None):
        lines = d.injected()
        self.assertTrue(lines, "the fault never fired (rules %r); daemon log:\n%s"
                        % (d.rules, d.stderr()))
        if what is not None:
            self.assertTrue(any(what in l for l in lines), lines)
        return lines

    def assertSysErr(self, reply, kinds=("TEMP", "PERM")):
        m = SYS_ERR.match(reply)
        self.assertTrue(m is not None and m.group(1).decode() in kinds,
                        "want -ERR [SYS/%s], got %r" % ("|".join(kinds), reply))

    def assertKept(self, md, before, removed=()):
        """Every message of before is still there byte for byte, except those in removed."""
        after = contents(md)
        want = {u: b for u, b in before.items() if u not in removed}
        self.assertEqual(sorted(after), sorted(want), "messages in the maildir")
        for u in want:
            self.assertEqual(after[u], want[u], "content of %s" % u)

    def assertNoLitter(self, md):
        tmp = os.listdir(os.path.join(md, "tmp"))
        self.assertEqual([n for n in tmp if n.startswith("pop3d.")], [], "temporary files left")
        self.assertEqual([n for n in os.listdir(md) if n.startswith("pop3d.state.bad")], [],
                         "state file set aside")
        read_state(md)      # parses (or is absent)

    def login(self, d, user="alice"):
        c = self.connect(d)
        self.assertOK(c.greeting)
        c.login(user, d.password(user))
        return c

    def retr(self, c, n, data):
        st, body = c.cmd_multi("RETR %d" % n)
        self.assertOK(st)
        self.assertEqual(body, expected_retr(data))

    def quit(self, d, c):
        """QUIT, wait for the close and the session's end line; returns the reply."""
        ends = d.count_log("session end") + 1
        st = c.cmd("QUIT")
        c.wait_closed()
        d.wait_session_end(ends)
        return st


# ---------------------------------------------------------------- UPDATE

class UpdateStateWriteTest(FaultCase):
    """The state file cannot be written at UPDATE."""

    # (rule, strerror): the temp file's open, a write, its fsync, the rename over pop3d.state
    CASES = (
        ("openw:tmp/pop3d.state:ENOSPC:*", STRERROR["ENOSPC"]),
        ("openw:tmp/pop3d.state:EACCES:*", STRERROR["EACCES"]),
        ("write:tmp/pop3d.state:ENOSPC:*", STRERROR["ENOSPC"]),
        ("fsync:tmp/pop3d.state:EIO:*", STRERROR["EIO"]),
        ("rename:Maildir/pop3d.state:EIO:*", STRERROR["EIO"]),
    )

    def test_delete_policy_keeps_policy_removals_and_honours_dele(self):
        """README "Retention policies", maildrop/update.c: without the state written only what
        the client DELE'd goes; what the policy alone would remove stays."""
        for rules, _err in self.CASES:
            with self.subTest(rules=rules):
                d = self.fault_daemon(rules, extra_config=policy('retention = "delete";'))
                md = d.maildir("alice")
                before = self.fill(md, 5)
                now = time.time()
                # M0: downloaded 5 days ago with a promise of 0 days (due); M4: promised 30 days
                # (stays). M1 has no record: its download must be recorded before it goes
                # (maildrop/update.c), and that write fails.
                write_state(md, {name(0): (now - 5 * DAY, 0), name(4): (now - DAY, 30)})
                state0 = state_bytes(md)
                c = self.login(d)
                self.retr(c, 1, before[name(0)])
                self.retr(c, 2, before[name(1)])
                self.retr(c, 5, before[name(4)])
                self.assertOK(c.cmd("DELE 3"))
                st = self.quit(d, c)
                self.assertFired(d)
                self.assertEqual(st, b"-ERR [SYS/TEMP] 2 messages could not be removed")
                self.assertKept(md, before, removed={name(2)})       # only the DELE'd one
                self.assertEqual(state_bytes(md), state0, "state file changed")
                self.assertNoLitter(md)
                self.assertIn(" removed=1 failed=2 ", d.wait_log("update id="))
                self.assertIn(" removed=1 ", d.log_lines("session end")[-1])
                # The next session: M1 (1, 2, 3, 4 = M0, M1, M3, M4) still has no record, and
                # the rule fails every state write ('*'): still no policy removal. M0 has a
                # record already (promise 0), so its removal needs no write and goes.
                c = self.login(d)
                self.retr(c, 2, before[name(1)])
                self.assertEqual(self.quit(d, c), b"-ERR [SYS/TEMP] 1 message could not be removed")
                c = self.login(d)
                self.retr(c, 1, before[name(0)])
                self.assertEqual(self.quit(d, c), b"+OK bye, 1 message removed")
                self.assertKept(md, before, removed={name(0), name(2)})
                self.assertEqual(state_bytes(md), state0, "state file changed")
                d.stop()

    def test_keep_policy_loses_nothing(self):
        """keep_days: the first download cannot be recorded. The message stays; a sweep a month
        later keeps it (in doubt: seen without a record) rather than guessing."""
        for rules, _err in self.CASES[:3]:
            with self.subTest(rules=rules):
                d = self.fault_daemon(rules, extra_config=policy("keep_days = 5;"))
                md = d.maildir("alice")
                before = self.fill(md, 3)
                c = self.login(d)
                self.retr(c, 1, before[name(0)])
                st = self.quit(d, c)
                self.assertFired(d)
                # The promise could not be recorded (it used to be +OK: KnownBugTest, F3).
                self.assertSysErr(st, ("TEMP",))
                self.assertKept(md, before)
                self.assertNoLitter(md)
                state = read_state(md)
                self.assertTrue(state is None or name(0) not in state[1], state)
                r = run_expire_clean(d.conf, "--user", "alice", "--at", "+30d")
                self.assertEqual(r.rc, 0, r.describe())
                self.assertEqual(r.removed(), {}, r.describe())
                self.assertGreaterEqual(int(r.user("alice")["kept_doubt"]), 1, r.describe())
                self.assertKept(md, before)
                d.stop()


class UpdateRenameTest(FaultCase):
    """A RETR'd message cannot be moved to cur/ with the S flag at UPDATE."""

    def test_rename_to_cur_fails(self):
        for err in ("EIO", "ENOSPC", "EACCES"):
            with self.subTest(errno=err):
                d = self.fault_daemon("rename:/cur/%s:%s:*" % (name(0), err))
                md = d.maildir("alice")
                before = self.fill(md, 3)
                c = self.login(d)
                self.retr(c, 1, before[name(0)])
                self.retr(c, 2, before[name(1)])
                st = self.quit(d, c)
                self.assertFired(d, "/cur/" + name(0))
                # Nothing the client asked for failed: +OK today (a [SYS/...] -ERR would do too).
                self.assertTrue(st.startswith(b"+OK") or SYS_ERR.match(st), st)
                self.assertKept(md, before)
                self.assertTrue(os.path.exists(os.path.join(md, "new", name(0))))
                self.assertTrue(os.path.exists(os.path.join(md, "cur", name(1) + ":2,S")))
                self.assertNoLitter(md)
                _last, recs = read_state(md)
                self.assertEqual(sorted(recs), [name(0), name(1)])   # both downloads recorded
                self.assertIn(" seen=1", d.wait_log("update id="))
                d.stop()


class UpdateUnlinkTest(FaultCase):
    """A removal at UPDATE fails."""

    def test_dele_then_quit_unlink_fails(self):
        for err in ("EIO", "EACCES", "ENOSPC"):
            with self.subTest(errno=err):
                d = self.fault_daemon("unlink:/new/%s:%s:*" % (name(0), err))
                md = d.maildir("alice")
                before = self.fill(md, 3)
                c = self.login(d)
                self.assertOK(c.cmd("DELE 1"))
                self.assertOK(c.cmd("DELE 2"))
                st = self.quit(d, c)
                self.assertFired(d, name(0))
                # EACCES will recur until an admin fixes the maildir: RFC 3206 SYS/PERM.
                code = b"PERM" if err == "EACCES" else b"TEMP"
                self.assertEqual(st, b"-ERR [SYS/" + code + b"] 1 message could not be removed")
                self.assertKept(md, before, removed={name(1)})
                self.assertNoLitter(md)
                self.assertIn(" removed=1 failed=1 ", d.wait_log("update id="))
                self.assertIn(" removed=1 ", d.log_lines("session end")[-1])
                d.stop()

    def test_download_under_delete_unlink_fails_once(self):
        """retention "delete": the download's removal fails once; the message stays, and the
        next download removes it."""
        d = self.fault_daemon("unlink:/new/%s:EIO:1" % name(0),
                              extra_config=policy('retention = "delete";'))
        md = d.maildir("alice")
        before = self.fill(md, 2)
        c = self.login(d)
        self.retr(c, 1, before[name(0)])
        st = self.quit(d, c)
        self.assertFired(d)
        self.assertEqual(st, b"-ERR [SYS/TEMP] 1 message could not be removed")
        self.assertKept(md, before)
        c = self.login(d)
        self.retr(c, 1, before[name(0)])
        self.assertEqual(self.quit(d, c), b"+OK bye, 1 message removed")
        self.assertKept(md, before, removed={name(0)})


# ---------------------------------------------------------------- login: the scan

class LoginScanTest(FaultCase):
    """The maildir cannot be listed (or a message measured) at login."""

    # rule, the codes allowed, the strerror logged. A directory open refused with EACCES will
    # stay refused: [SYS/PERM]; EIO is [SYS/TEMP]. fdopendir and readdir failures are all TEMP
    # in maildrop/maildir.c (neither can really return EACCES).
    CASES = (
        ("open:Maildir/new:EACCES:1", ("PERM",), STRERROR["EACCES"]),
        ("open:Maildir/cur:EIO:1", ("TEMP",), STRERROR["EIO"]),
        ("opendir:Maildir/new:EIO:1", ("TEMP",), STRERROR["EIO"]),
        ("opendir:Maildir/cur:EACCES:1", ("TEMP", "PERM"), STRERROR["EACCES"]),
        ("readdir:Maildir/new:EIO:1", ("TEMP",), STRERROR["EIO"]),
        ("readdir:Maildir/cur:EACCES:1", ("TEMP", "PERM"), STRERROR["EACCES"]),
        ("readdir:Maildir/new:ENOSPC:1", ("TEMP",), STRERROR["ENOSPC"]),
        # no size cache and no ,W=: the login reads each message once to measure it
        ("read:/new/" + name(1) + ":EIO:1", ("TEMP",), STRERROR["EIO"]),
    )

    def test_scan_fails_then_login_again(self):
        for rules, kinds, err in self.CASES:
            with self.subTest(rules=rules):
                d = self.fault_daemon(rules)
                md = d.maildir("alice")
                before = self.fill(md, 3)
                c = self.connect(d)
                self.assertOK(c.cmd("USER alice"))
                st = c.cmd("PASS " + d.password("alice"))
                self.assertFired(d)
                self.assertSysErr(st, kinds)
                line = d.wait_log("maildrop open failed")
                self.assertIn(err, line)
                self.assertKept(md, before)
                # still in AUTHORIZATION, lock released: the same connection logs in now
                c.login("alice", d.password("alice"))
                self.assertEqual(c.cmd("STAT"), b"+OK 3 %d" % sum(pop3_size(b) for b in before.values()))
                self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
                self.assertKept(md, before)
                d.stop()

    def test_message_that_may_not_be_read_is_left_out(self):
        """EACCES on one message at login: that message is left out of the session (with a
        note), the others are served, nothing is removed, and the next login lists it again."""
        d = self.fault_daemon("openr:/new/" + name(1) + ":EACCES:1")
        md = d.maildir("alice")
        before = self.fill(md, 3)
        c = self.login(d)
        self.assertFired(d)
        others = [b for u, b in sorted(before.items()) if u != name(1)]
        self.assertEqual(c.cmd("STAT"), b"+OK 2 %d" % sum(pop3_size(b) for b in others))
        self.assertOK(c.cmd("DELE 1"))
        self.assertOK(c.cmd("RSET"))
        self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
        self.assertIn("first: new/%s" % name(1), d.wait_log("cannot be read"))
        self.assertKept(md, before)
        c = self.login(d)
        self.assertEqual(c.cmd("STAT"), b"+OK 3 %d" % sum(pop3_size(b) for b in before.values()))
        self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")

    def test_record_of_an_unlisted_message_survives_update(self):
        """A message left out of the session (it may not be read, or it vanished from its name
        while the login listed it: an IMAP server setting a flag renames it) keeps its download
        record when UPDATE writes the state: it still exists, and so does its promise."""
        now = int(time.time())
        for rule in ("openr:/new/" + name(1) + ":EACCES:1", "openr:/new/" + name(1) + ":ENOENT:1"):
            with self.subTest(rule=rule):
                d = self.fault_daemon(rule, extra_config=policy("keep_days = 30;"))
                md = d.maildir("alice")
                self.fill(md, 3)
                write_state(md, {name(1): (now - 2 * 86400, 30)})
                c = self.login(d)
                self.assertFired(d)
                self.assertEqual(c.cmd("STAT").split()[1], b"2")
                self.assertOK(c.cmd_multi("RETR 1")[0])
                self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
                recs = read_state(md)[1]
                self.assertEqual(recs.get(name(1)), (now - 2 * 86400, 30), recs)
                self.assertIn(name(0), recs)
                d.stop()

    def test_state_not_read_again_is_not_replaced(self):
        """Keeping an unlisted message's record needs the state file read again at UPDATE; when
        that read fails, the state is not replaced (it would lose the record) and QUIT says the
        download could not be recorded."""
        now = int(time.time())
        d = self.fault_daemon("openr:/new/" + name(1) + ":EACCES:1;openr:pop3d.state:EIO:2",
                              extra_config=policy("keep_days = 30;"))
        md = d.maildir("alice")
        before = self.fill(md, 3)
        write_state(md, {name(1): (now - 2 * 86400, 30)})
        state = state_bytes(md)
        c = self.login(d)
        self.assertOK(c.cmd_multi("RETR 1")[0])
        st = self.quit(d, c)
        self.assertFired(d, "pop3d.state")
        self.assertSysErr(st, ("TEMP",))
        self.assertEqual(state_bytes(md), state)
        self.assertIn("could not be read again", d.stderr())
        self.assertKept(md, before)

    def test_size_cache_write_fails(self):
        """The size cache is a cache: the login goes on with the sizes it measured."""
        d = self.fault_daemon("openw:tmp/pop3d.cache:ENOSPC:*")
        md = d.maildir("alice")
        before = self.fill(md, 3)
        c = self.login(d)
        self.assertFired(d)
        st, data = c.cmd_multi("LIST")
        self.assertOK(st)
        self.assertEqual(data, b"".join(b"%d %d\r\n" % (i + 1, pop3_size(before[name(i)]))
                                        for i in range(3)))
        self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
        self.assertKept(md, before)
        self.assertNoLitter(md)

    def test_login_time_cannot_be_recorded(self):
        """login_delay: the login time goes into the state file; when it cannot be written the
        login still succeeds and the cause is logged."""
        d = self.fault_daemon("openw:tmp/pop3d.state:ENOSPC:1",
                              extra_config=policy("login_delay = 60;"))
        md = d.maildir("alice")
        before = self.fill(md, 2)
        c = self.login(d)
        self.assertFired(d)
        line = d.wait_log("cannot record login time")
        self.assertIn(STRERROR["ENOSPC"], line)
        self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
        self.assertKept(md, before)
        self.assertNoLitter(md)


# ---------------------------------------------------------------- RETR

class RetrFaultTest(FaultCase):
    """A message cannot be opened, or a read fails after the +OK."""

    def big(self, md):
        body = b"Subject: big\n\n" + b"".join(b"line %06d of a long message\n" % i
                                              for i in range(12000))
        # ",W=" gives the size without reading: the login's scan does not touch the file, so
        # the first read of it is RETR's.
        n = "1700000000.M9.fault,W=%d" % pop3_size(body)
        deliver(md, body, name=n)
        return n, body

    def test_read_fails_mid_retr(self):
        for rules_fmt, which in (("read:%s:EIO:2", "second chunk"), ("read:%s:EIO:1", "first chunk"),
                                 ("read:%s:EACCES:3", "third chunk")):
            with self.subTest(which=which):
                d = self.fault_daemon(rules_fmt % "/new/1700000000.M9.fault",
                                      extra_config=policy('retention = "delete";'))
                md = d.maildir("alice")
                n, body = self.big(md)
                before = contents(md)
                c = self.login(d)
                ends = d.count_log("session end") + 1
                # QUIT pipelined behind the RETR: it must never run (no UPDATE, nothing removed)
                c.send(b"RETR 1\r\nQUIT\r\n")
                st = c.line()
                self.assertEqual(st, b"+OK %d octets" % pop3_size(body))
                rest = c.wait_closed()
                self.assertFired(d, n)
                self.assertLess(len(rest), pop3_size(body))
                self.assertFalse(rest.endswith(b"\r\n.\r\n"), "terminated although a read failed")
                self.assertTrue(expected_retr(body).startswith(rest.replace(b"\r\n..", b"\r\n.")))
                end = d.wait_session_end(ends)
                self.assertIn('reason="message read error"', end)
                self.assertIn(" retr=0 ", end)
                self.assertIn("message read failed", d.stderr())
                self.assertEqual(d.log_lines("update id="), [])
                self.assertKept(md, before)
                # the fault is gone: a new session downloads it whole, and QUIT removes it
                c = self.login(d)
                self.retr(c, 1, body)
                self.assertEqual(self.quit(d, c), b"+OK bye, 1 message removed")
                self.assertEqual(contents(md), {})
                d.stop()

    def test_open_fails_at_retr(self):
        for err in ("EACCES", "EIO"):
            with self.subTest(errno=err):
                d = self.fault_daemon("openr:/new/1700000000.M9.fault:%s:1" % err)
                md = d.maildir("alice")
                n, body = self.big(md)
                before = contents(md)
                c = self.login(d)
                st = c.cmd("RETR 1")
                self.assertFired(d, n)
                self.assertEqual(st, b"-ERR [SYS/%s] cannot read message 1"
                                 % (b"PERM" if err == "EACCES" else b"TEMP"))
                self.assertIn(STRERROR[err], d.wait_log("cannot open message"))
                self.retr(c, 1, body)                     # the session goes on; a retry works
                self.assertEqual(self.quit(d, c), b"+OK bye, 0 messages removed")
                self.assertKept(md, before)
                d.stop()


# ---------------------------------------------------------------- pop3d --expire

class ExpireFaultTest(FaultCase):
    """One sweep (`pop3d --expire --user alice`) with a fault. keep_days = 3, unread_days = 2:
    u-old (unread 10 days) and d-due (downloaded 10 days ago, promised 3) are due; u-new (unread
    1 day) and d-keep (promised 30) stay."""

    DUE = {"u-old", "d-due"}

    def prepare(self):
        """A fresh setup (config, users, one maildir): --expire is a process of its own."""
        self.d = Daemon(extra_config=policy("keep_days = 3; unread_days = 2;"))
        self.addCleanup(self.d.cleanup_dir)
        self.d.port = 1100          # written into the config, never bound
        self.d.write_files()
        self.md = self.d.maildir("alice")
        now = time.time()
        place(self.md, "u-old", message("u-old"), now - 10 * DAY)
        place(self.md, "u-new", message("u-new"), now - DAY)
        place(self.md, "d-due", message("d-due"), now - 20 * DAY, sub="cur", info=":2,S")
        place(self.md, "d-keep", message("d-keep"), now - 20 * DAY, sub="cur", info=":2,S")
        write_state(self.md, {"d-due": (now - 10 * DAY, 3), "d-keep": (now - 10 * DAY, 30)})
        self.before = contents(self.md)
        self.state0 = state_bytes(self.md)

    def expire(self, rules):
        log = os.path.join(self.d.dir, "fault.log")
        r = run_expire_faulty(self.d.conf, rules, log, "--user", "alice")
        self.assertTrue(os.path.exists(log), "the fault never fired:\n" + r.describe())
        return r

    def assertFailedLine(self, r, err):
        failed = r.of("failed")
        self.assertEqual(len(failed), 1, r.describe())
        self.assertIn(err, failed[0]["reason"], r.describe())
        self.assertEqual(r.rc, 1, r.describe())
        self.assertEqual(r.summary()["failed"], "1", r.describe())

    def assertCleanSweepFinishes(self, left_due):
        """A sweep without the fault removes what is still due, and nothing else."""
        r = run_expire_clean(self.d.conf, "--user", "alice")
        self.assertEqual(r.rc, 0, r.describe())
        self.assertEqual(set(r.removed()), set(left_due), r.describe())
        self.assertKept(self.md, self.before, removed=self.DUE)
        self.assertNoLitter(self.md)

    def test_unlink_fails(self):
        for victim, path in (("u-old", "/new/u-old"), ("d-due", "/cur/d-due")):
            for err in ("EIO", "EACCES", "ENOSPC"):
                with self.subTest(victim=victim, errno=err):
                    self.prepare()
                    r = self.expire("unlink:%s:%s:*" % (path, err))
                    self.assertFailedLine(r, STRERROR[err])
                    self.assertEqual(set(r.removed()), self.DUE - {victim}, r.describe())
                    self.assertEqual(r.user("alice")["failed"], "1", r.describe())
                    self.assertKept(self.md, self.before, removed=self.DUE - {victim})
                    self.assertNoLitter(self.md)
                    recs = read_state(self.md)[1]
                    self.assertIn("d-keep", recs)
                    self.assertEqual("d-due" in recs, victim == "d-due", recs)  # kept: record too
                    self.assertCleanSweepFinishes({victim})

    def test_scan_fails(self):
        for rules, err in (("readdir:Maildir/new:EIO:1", STRERROR["EIO"]),
                           ("readdir:Maildir/cur:EACCES:1", STRERROR["EACCES"]),
                           ("opendir:Maildir/cur:EIO:1", STRERROR["EIO"]),
                           ("open:Maildir/new:EACCES:1", STRERROR["EACCES"])):
            with self.subTest(rules=rules):
                self.prepare()
                r = self.expire(rules)
                self.assertFailedLine(r, err)
                self.assertEqual(r.removed(), {}, r.describe())
                self.assertKept(self.md, self.before)
                self.assertEqual(state_bytes(self.md), self.state0)
                self.assertCleanSweepFinishes(self.DUE)

    def test_state_write_fails_after_the_removals(self):
        """The sweep removes first and drops the records after; a failed write leaves records
        of gone messages (harmless) and the old file in place."""
        for rules, err in (("openw:tmp/pop3d.state:ENOSPC:*", STRERROR["ENOSPC"]),
                           ("fsync:tmp/pop3d.state:EIO:*", STRERROR["EIO"]),
                           ("rename:Maildir/pop3d.state:EACCES:*", STRERROR["EACCES"])):
            with self.subTest(rules=rules):
                self.prepare()
                r = self.expire(rules)
                self.assertFailedLine(r, err)
                self.assertEqual(set(r.removed()), self.DUE, r.describe())
                self.assertKept(self.md, self.before, removed=self.DUE)
                self.assertEqual(state_bytes(self.md), self.state0)
                self.assertNoLitter(self.md)
                self.assertCleanSweepFinishes(set())

    def test_state_read_fails(self):
        """An unreadable state file puts every time rule in doubt: nothing is removed, and the
        sweep of that user failed (exit 1, a `failed` line with the reason): the job was not
        done, and a cron wrapper must hear of it."""
        self.prepare()
        r = self.expire("openr:Maildir/pop3d.state:EIO:1")
        self.assertFailedLine(r, STRERROR["EIO"])
        self.assertEqual(r.of("note"), [], r.describe())
        self.assertEqual(r.removed(), {}, r.describe())
        self.assertEqual(r.user("alice")["kept_doubt"], "4", r.describe())
        self.assertKept(self.md, self.before)
        self.assertEqual(state_bytes(self.md), self.state0)
        self.assertNoLitter(self.md)
        self.assertCleanSweepFinishes(self.DUE)


# ---------------------------------------------------------------- bugs found here

class KnownBugTest(FaultCase):
    """One test per bug found (tests/SECURITY.md, "Fault injection: findings", F1-F5). The
    setup uses plain assertions; the check itself goes through fixed() (must hold) or, for a
    bug still open, known_bug(): skipped while the bug is there, a failure once it is fixed
    (then make it fixed())."""

    def known_bug(self, ok, what):
        if ok:
            self.fail("fixed in pop3d? %s now holds: make it a plain assertion" % what)
        self.skipTest("known pop3d bug: " + what)

    def fixed(self, ok, what):
        """Once a known bug: must hold now (the text says what used to go wrong)."""
        self.assertTrue(ok, "regressed: " + what)

    def update_with(self, rules, cmds, n=3, extra_config="", state=None):
        d = self.fault_daemon(rules, extra_config=extra_config)
        md = d.maildir("alice")
        before = self.fill(md, n)
        if state is not None:
            write_state(md, state)
        c = self.login(d)
        for x in cmds:
            st = c.cmd(x)
            self.assertOK(st)
            if x.startswith("RETR"):
                c.multi()
        st = self.quit(d, c)
        self.assertFired(d)
        return d, md, before, st

    def daemon_log(self, d):
        return "\n".join(l for l in d.stderr().splitlines() if "pop3d-fault" not in l)

    def test_update_logs_state_write_cause(self):
        d, md, before, st = self.update_with(
            "openw:tmp/pop3d.state:ENOSPC:*", ["RETR 1", "DELE 2"],
            extra_config=policy('retention = "delete";'))
        self.assertEqual(st, b"-ERR [SYS/TEMP] 1 message could not be removed")
        self.assertKept(md, before, removed={name(1)})
        self.fixed(STRERROR["ENOSPC"] in self.daemon_log(d),
                   "UPDATE does not log why the state file could not be written")

    def test_keep_policy_state_failure_reply(self):
        d, md, before, st = self.update_with("openw:tmp/pop3d.state:ENOSPC:*", ["RETR 1"],
                                             extra_config=policy("keep_days = 5;"))
        self.assertKept(md, before)
        self.assertTrue(os.path.exists(os.path.join(md, "cur", name(0) + ":2,S")))
        self.fixed(SYS_ERR.match(st) is not None,
                   "keep_days: QUIT answers +OK although the first download (its promise) "
                   "was not recorded; the message is marked seen anyway, so sweeps keep it "
                   "forever in doubt")

    def test_update_logs_unlink_cause(self):
        d, md, before, st = self.update_with("unlink:/new/%s:EACCES:*" % name(0), ["DELE 1"])
        self.assertEqual(st, b"-ERR [SYS/PERM] 1 message could not be removed")
        self.assertKept(md, before)
        self.fixed(STRERROR["EACCES"] in self.daemon_log(d),
                   "UPDATE does not log why an unlink failed")

    def test_no_remove_line_for_a_kept_message(self):
        d, md, before, st = self.update_with("unlink:/new/%s:EIO:*" % name(0), ["DELE 1"])
        self.assertKept(md, before)
        d.stop()
        counters = d.log_lines("counters ")
        self.fixed(d.log_lines("remove id=") == [] and
                   all(" deleted_dele=0 " in l for l in counters),
                   "a message whose unlink failed at UPDATE still gets a `remove ... "
                   "cause=dele` line and is counted in deleted_dele")

    def test_update_logs_rename_cause(self):
        d, md, before, st = self.update_with("rename:/cur/%s:EIO:*" % name(0), ["RETR 1"])
        self.assertOK(st)
        self.assertKept(md, before)
        self.fixed(STRERROR["EIO"] in self.daemon_log(d),
                   "UPDATE does not log why a message could not be moved to cur/")

    def test_login_logs_state_doubt(self):
        d, md, before, st = self.update_with("openr:Maildir/pop3d.state:EIO:1", ["RETR 1"],
                                             extra_config=policy("keep_days = 5;"),
                                             state={name(2): (time.time() - DAY, 30)})
        self.assertKept(md, before)
        self.assertTrue(SYS_ERR.match(st), st)            # the first download was not recorded
        # An I/O error says nothing against the file: it is neither set aside nor replaced.
        bad = [n for n in os.listdir(md) if n.startswith("pop3d.state.bad-")]
        self.assertEqual(bad, [], os.listdir(md))
        self.assertEqual(read_state(md)[1][name(2)][1], 30)
        self.assertNotIn(name(0), read_state(md)[1])
        self.fixed(STRERROR["EIO"] in self.daemon_log(d) and
                   "state not written" in self.daemon_log(d),
                   "notes from the login's maildrop_open (state file unreadable) and the "
                   "refused write at UPDATE are never logged")

    def test_promise_survives_a_transient_state_read_error(self):
        """(1) UPDATE cannot move a RETR'd message to cur/: it stays in new/ without the S flag,
        its 30-day promise recorded. (2) The next login cannot read pop3d.state (one EIO): the
        state is in doubt, and that session's UPDATE sets the healthy file aside and starts a
        fresh one without the promise. (3) The next sweep sees an unread message older than
        unread_days and removes it, on the day of its download."""
        conf = policy("keep_days = 30; unread_days = 2;")
        d = self.fault_daemon("rename:/cur/%s:EIO:*" % name(0), extra_config=conf)
        md = d.maildir("alice")
        before = self.fill(md, 3, mtime=time.time() - 10 * DAY)
        c = self.login(d)
        self.retr(c, 1, before[name(0)])
        self.assertOK(self.quit(d, c))
        self.assertFired(d)
        self.assertEqual(read_state(md)[1][name(0)][1], 30)
        self.assertTrue(os.path.exists(os.path.join(md, "new", name(0))))
        d.stop()
        d.rules = "openr:Maildir/pop3d.state:EIO:1"
        d.stopped = False
        d.start()
        c = self.login(d)
        self.retr(c, 2, before[name(1)])
        self.assertTrue(SYS_ERR.match(self.quit(d, c)))   # this download was not recorded
        self.assertFired(d, "pop3d.state")
        r = run_expire_clean(d.conf, "--user", "alice")
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn(name(2), r.removed())          # never downloaded, 10 days old: due
        self.fixed(name(0) not in r.removed(),
                   "F5: a transient EIO reading pop3d.state at login made UPDATE set the file "
                   "aside; a message downloaded with a 30-day promise but left in new/ (its "
                   "rename to cur/ failed) then went by unread_days the same day")
        self.assertEqual(read_state(md)[1][name(0)][1], 30)


if __name__ == "__main__":
    unittest.main()
