#!/usr/bin/env python3
"""`make bench`: pop3d beside Dovecot on the same maildirs, same users, same machine.

Generates users and maildirs in a temporary folder, writes a pop3d config and a
private Dovecot instance (its own base_dir, state_dir, log and config; the
system's /etc/dovecot and any running Dovecot are never touched), runs the
load generator (tests/bench/loadgen.c) against one server after the other,
repeats each figure and prints a table of medians with the ratio
pop3d / Dovecot, server CPU (from /proc: utime+stime of the server's whole
process tree, plus the reaped children) and server RSS.

Usage: bench.py --loadgen PATH --pop3d PATH [--quick] [--out DIR] [--keep]
Environment: BENCH_QUICK=1 (smoke run, well under a minute), BENCH_REPEATS=N,
BENCH_IDLE=N (sessions held by the idle scenario), BENCH_NO_DOVECOT=1,
BENCH_ONLY=login,retr,idle,huge,workers (some scenarios only; default all).

Every loop is bounded: each loadgen run has a duration and a session count and
is killed past its deadline, each server start and stop has a deadline.
"""
import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "benchpw"
# Owner of the maildirs, and the user both servers serve as: Debian's `mail`
# (Dovecot refuses mail access as root, pop3d refuses to serve as root).
MAIL_USER = "mail"
try:
    import pwd
    _pw = pwd.getpwnam(MAIL_USER)
    MAIL_UID, MAIL_GID = _pw.pw_uid, _pw.pw_gid
except (ImportError, KeyError):
    MAIL_UID = MAIL_GID = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
DOVECOT = "/usr/sbin/dovecot"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- parameters

ONLY = {x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}


def wanted(scenario):
    return not ONLY or scenario in ONLY


def params(quick):
    if quick:
        return dict(repeats=1, warmup=0.3, login_c=8, login_d=1.0, login_users=8,
                    retr_c=2, retr_d=1.0, retr_1m_msgs=3, retr_20k_msgs=10,
                    idle_n=200, idle_hold=2.0, idle_noop=0.5, idle_repeats=1,
                    huge_msgs=2000, huge_repeats=1, workers_d=1.0)
    return dict(repeats=3, warmup=2.0, login_c=64, login_d=8.0, login_users=64,
                retr_c=8, retr_d=6.0, retr_1m_msgs=10, retr_20k_msgs=100,
                idle_n=10000, idle_hold=10.0, idle_noop=5.0, idle_repeats=1,
                huge_msgs=100000, huge_repeats=3, workers_d=6.0)


# ---------------------------------------------------------------- data

WORDS = ("mail pop3 server client message inbox maildir session retrieve delete "
         "update quota folder header body line octet protocol transaction").split()


def make_message(size, seed):
    """An RFC 5322 message of about `size` octets, LF line ends (as maildirs store them),
    with lines that need dot-stuffing and 'From ' lines, ending with a line break."""
    rnd = random.Random(seed)
    head = ("Return-Path: <sender%d@example.net>\n"
            "Received: from mx.example.net by bench.example.org; Tue, 1 Oct 2024 10:00:00 +0000\n"
            "From: Sender %d <sender%d@example.net>\n"
            "To: user@example.org\n"
            "Subject: benchmark message %d\n"
            "Date: Tue, 1 Oct 2024 10:00:%02d +0000\n"
            "Message-ID: <%d.bench@example.net>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=us-ascii\n\n") % (seed, seed, seed, seed, seed % 60, seed)
    out = [head]
    total = len(head)
    n = 0
    while total < size:
        n += 1
        if n % 17 == 0:
            line = "." * (1 + n % 3) + " a line that starts with a dot"
        elif n % 23 == 0:
            line = "From the desk of the benchmark"
        elif n % 29 == 0:
            line = ""
        else:
            line = " ".join(rnd.choice(WORDS) for _ in range(11))
        line = line[:max(0, size - total - 1)] + "\n"
        out.append(line)
        total += len(line)
    return "".join(out).encode()


class Data:
    """Users and maildirs. Messages are hard links to a few templates, so ten thousand
    maildirs cost seconds to make; every message file is still a separate directory entry."""

    def __init__(self, root, p):
        self.root = root
        self.p = p
        self.tpl = os.path.join(root, "tpl")
        self.mail = os.path.join(root, "mail")
        self.users_file = os.path.join(root, "users")
        self.old = int(time.time()) - 2 * 86400  # pop3d hides mail from the current second
        self.lines = []

    def template(self, name, size, seed):
        path = os.path.join(self.tpl, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(make_message(size, seed))
            os.chown(path, MAIL_UID, MAIL_GID)
            os.utime(path, (self.old, self.old))
        return path

    def maildir(self, user, templates, count):
        home = os.path.join(self.mail, user)
        md = os.path.join(home, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        cur = os.path.join(md, "cur")
        for i in range(count):
            name = "%d.M%06dP4242.bench:2," % (self.old - 100000 + i, i)
            os.link(templates[i % len(templates)], os.path.join(cur, name))
        for d in (home, md, cur, os.path.join(md, "new"), os.path.join(md, "tmp")):
            os.chown(d, MAIL_UID, MAIL_GID)
        self.lines.append("%s:{PLAIN}%s:%d:%d::%s::" % (user, PASSWORD, MAIL_UID, MAIL_GID, home))
        return md

    def build(self):
        p = self.p
        os.makedirs(self.tpl)
        os.makedirs(self.mail)
        os.chown(self.mail, MAIL_UID, MAIL_GID)
        small = [self.template("s%02d" % i, 1000 + 350 * i, i) for i in range(20)]
        t1m = [self.template("m%d" % i, 1000000 + 1000 * i, 100 + i) for i in range(4)]
        t20k = [self.template("k%d" % i, 20000 + 100 * i, 200 + i) for i in range(10)]
        tiny = [self.template("h%02d" % i, 900 + 60 * i, 300 + i) for i in range(50)]
        nusers = max(p["idle_n"] if wanted("idle") else 0, p["login_users"])
        for i in range(nusers):
            self.maildir("u%05d" % i, small, 20)
        for i in range(p["retr_c"]):
            self.maildir("m%03d" % i, t1m, p["retr_1m_msgs"])
            self.maildir("k%03d" % i, t20k, p["retr_20k_msgs"])
        self.huge_md = self.maildir("huge", tiny, p["huge_msgs"] if wanted("huge") else 1)
        with open(self.users_file, "w") as f:
            f.write("\n".join(self.lines) + "\n")
        os.chmod(self.users_file, 0o644)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(root):
    cert, key = os.path.join(root, "cert.pem"), os.path.join(root, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)  # Dovecot reads it as root anyway; the folder is private to the run
    return cert, key


# ---------------------------------------------------------------- /proc accounting

def proc_children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(pid):
    kids = proc_children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cpu(pid):
    """utime+stime+cutime+cstime in seconds: own threads plus reaped children."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rindex(")") + 2:].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_mem(pid):
    """(RSS kB, PSS kB) of one process."""
    rss = pss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_busy():
    """Busy CPU seconds of the whole machine so far (all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK


class Server:
    name = "?"
    proc = None

    def tree(self):
        return proc_tree(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def cpu(self):
        return sum(proc_cpu(p) for p in self.tree())

    def mem(self):
        """(RSS MB, PSS MB, processes) summed over the server's processes."""
        rss = pss = n = 0
        for p in self.tree():
            r, s = proc_mem(p)
            rss += r
            pss += s
            n += 1
        return rss / 1024.0, pss / 1024.0, n

    def wait_port(self, port, deadline=20.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = ""
                try:
                    with open(self.logpath, errors="replace") as f:
                        tail = " / ".join(f.read().strip().split("\n")[-3:])
                except OSError:
                    pass
                raise RuntimeError("%s exited (status %s) during startup: %s"
                                   % (self.name, self.proc.returncode, tail))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("%s did not listen on %d within %.0fs" % (self.name, port, deadline))

    def stop(self):
        if self.proc is None:
            return
        pids = self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Anything of its tree still there (a Dovecot child that missed the master's exit).
        end = time.monotonic() + 10
        for p in pids[1:]:
            while time.monotonic() < end and os.path.exists("/proc/%d" % p):
                try:
                    with open("/proc/%d/stat" % p) as f:
                        if ") Z" in f.read():
                            break
                except OSError:
                    break
                time.sleep(0.05)
            if os.path.exists("/proc/%d" % p) and time.monotonic() >= end:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self.proc = None


def raise_nofile():
    """In the child before exec: as many descriptors as we may (root may raise the hard limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        want = max(hard, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Pop3d(Server):
    name = "pop3d"

    def __init__(self, binary, root, cert, key, users_file, workers_key=None):
        self.binary = binary
        self.root = root
        self.port, self.tls_port = free_port(), free_port()
        self.cert, self.key, self.users_file = cert, key, users_file
        self.workers_key = workers_key
        self.process = True  # serve as MAIL_USER (dropped by probe() for builds without it)
        self.logpath = os.path.join(root, "pop3d.log")

    def config(self, workers=None):
        w = ""
        if workers is not None and self.workers_key == "top":
            w = "workers = %d;\n" % workers
        lim = ""
        if workers is not None and self.workers_key == "limits":
            lim = " workers = %d;" % workers
        pw = ""
        if workers is not None and self.workers_key == "process":
            pw = " workers = %d;" % workers
        if self.process:
            w += 'process = { user = "%s"; group = "%s";%s };\n' % (MAIL_USER, MAIL_USER, pw)
        elif pw:
            w += "process = {%s };\n" % pw
        return ("""listen = (
  { address = "127.0.0.1"; port = %d; tls = "none"; },
  { address = "127.0.0.1"; port = %d; tls = "implicit"; }
);
%sauth = { users_file = "%s"; plaintext = "always"; };
maildrop = { path = "%%h/Maildir"; };
limits = { idle_timeout = 600; max_connections = 30000; max_connections_per_ip = 30000;%s };
tls = { certificate = "%s"; key = "%s"; };
policy = { expire_interval = 604800; };
""" % (self.port, self.tls_port, w, self.users_file, lim, self.cert, self.key))

    def write_config(self, workers=None):
        path = os.path.join(self.root, "pop3d.conf")
        with open(path, "w") as f:
            f.write(self.config(workers))
        return path

    def probe(self):
        """Whether this build has `process.user`, and where it takes `workers`, if anywhere."""
        self.workers_key = None
        r = subprocess.run([self.binary, "-c", self.write_config(), "-t"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.process = False
            r = subprocess.run([self.binary, "-c", self.write_config(), "-t"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("pop3d -t refused the bench config:\n" + r.stdout + r.stderr)
            log("this pop3d has no process.user: it serves as root")
        for key in ("process", "top", "limits"):
            self.workers_key = key
            r = subprocess.run([self.binary, "-c", self.write_config(2), "-t"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                return key
        self.workers_key = None
        return None

    def start(self, workers=None):
        conf = self.write_config(workers)
        r = subprocess.run([self.binary, "-c", conf, "-t"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("pop3d -t refused the bench config:\n" + r.stdout + r.stderr)
        self.logf = open(self.logpath, "a")
        self.proc = subprocess.Popen([self.binary, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, preexec_fn=raise_nofile)
        self.wait_port(self.port)
        self.wait_port(self.tls_port)

    def stop(self):
        Server.stop(self)
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def clear_cache(self, maildir):
        for f in os.listdir(maildir):
            if f.startswith("pop3d.cache"):
                os.unlink(os.path.join(maildir, f))


class Dovecot(Server):
    name = "dovecot"

    def __init__(self, root, cert, key, users_file):
        self.root = os.path.join(root, "dovecot")
        os.makedirs(os.path.join(self.root, "run"))
        os.makedirs(os.path.join(self.root, "state"))
        self.port, self.tls_port = free_port(), free_port()
        self.logpath = os.path.join(self.root, "dovecot.log")
        self.conf = os.path.join(self.root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write("""# Private Dovecot instance for `make bench` (nothing of /etc/dovecot is read).
instance_name = pop3bench%(pid)d
base_dir = %(d)s/run
state_dir = %(d)s/state
log_path = %(d)s/dovecot.log
protocols = pop3
listen = 127.0.0.1
shutdown_clients = yes

ssl = yes
ssl_cert = <%(cert)s
ssl_key = <%(key)s
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login

# The same users as pop3d, {PLAIN} passwords, one mail uid.
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(users)s
}
userdb {
  driver = passwd-file
  args = %(users)s
}
first_valid_uid = %(uid)d
first_valid_gid = %(gid)d
mail_location = maildir:~/Maildir
pop3_uidl_format = %%f

# Limits raised for 10,000 sessions.
default_process_limit = 12000
default_client_limit = 30000
default_vsz_limit = 2G
protocol pop3 {
  mail_max_userip_connections = 1000
}

# High-performance login processes (LoginProcess wiki), mail processes reused
# (PerformanceTuning wiki: service_count 1 -> 100 with a single mail uid).
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %(port)d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %(tls_port)d
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
  process_limit = 100
}
service pop3 {
  service_count = 100
  process_limit = 12000
}
""" % dict(pid=os.getpid(), d=self.root, cert=cert, key=key, users=users_file, uid=MAIL_UID, gid=MAIL_GID,
                port=self.port, tls_port=self.tls_port))

    def start(self):
        r = subprocess.run(["doveconf", "-c", self.conf, "-n"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("doveconf refused the bench config:\n" + r.stderr)
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile)
        self.wait_port(self.port)
        self.wait_port(self.tls_port)
        # Let the login processes of process_min_avail come up before measuring.
        end = time.monotonic() + 5
        while time.monotonic() < end and len(self.tree()) < 5:
            time.sleep(0.05)

    def clear_cache(self, maildir):
        for f in os.listdir(maildir):
            if f.startswith("dovecot"):
                os.unlink(os.path.join(maildir, f))


def ensure_dovecot():
    if os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/pop3"):
        return True
    if os.geteuid() != 0:
        log("Dovecot is missing and we are not root: Dovecot columns stay empty")
        return False
    log("installing dovecot-pop3d and dovecot-core with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "dovecot-pop3d", "dovecot-core"],
                       check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as e:
        log("could not install Dovecot (%s): Dovecot columns stay empty" % e)
        return False
    return os.path.exists(DOVECOT)


# ---------------------------------------------------------------- running loadgen

class Loadgen:
    def __init__(self, path):
        self.path = path

    def run(self, server, port, scenario, args, limit, tls=False, on_ready=None,
            allow_errors=False):
        """Runs loadgen once; returns its result fields plus server and loadgen CPU.
        Any error fails the run, unless allow_errors (idle: how many got in is the figure)."""
        cmd = [self.path, "-s", scenario, "-p", str(port), "-w", PASSWORD] + args
        if tls:
            cmd.append("-T")
        ru0 = os.times()
        busy0 = cpu_busy()
        cpu0 = server.cpu()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=raise_nofile)
        res, ready = None, None
        deadline = t0 + limit
        try:
            for line in proc.stdout:
                if line.startswith("ready "):
                    ready = kv(line)
                    if on_ready:
                        ready.update(on_ready())
                elif line.startswith("result "):
                    res = kv(line)
                if time.monotonic() > deadline:
                    break
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("loadgen %s did not finish within %.0fs" % (scenario, limit))
        err = proc.stderr.read()
        cpu1 = server.cpu()
        busy1 = cpu_busy()
        ru1 = os.times()
        if res is None or (proc.returncode != 0 and not (allow_errors and ready)):
            raise RuntimeError("loadgen %s against %s failed (exit %s):\n%s" % (
                scenario, server.name, proc.returncode, err.strip()))
        res["server_cpu_s"] = cpu1 - cpu0
        res["loadgen_cpu_s"] = (ru1.children_user + ru1.children_system
                                - ru0.children_user - ru0.children_system)
        res["wall_s"] = time.monotonic() - t0
        # What the rest of the machine burnt meanwhile (other people's jobs on a shared box).
        res["other_cores"] = max(0.0, (busy1 - busy0 - res["server_cpu_s"] - res["loadgen_cpu_s"])
                                 / res["wall_s"])
        res["first_error"] = err.strip().split("\n")[0] if err.strip() else ""
        if ready:
            res["ready"] = ready
        return res


def kv(line):
    out = {}
    for tok in line.split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


# ---------------------------------------------------------------- scenarios

class Bench:
    def __init__(self, args, p):
        self.args = args
        self.p = p
        self.lg = Loadgen(args.loadgen)
        self.results = {}  # (figure, server) -> list of dicts
        self.notes = []

    def add(self, fig, server, res):
        self.results.setdefault((fig, server), []).append(res)

    def login(self, srv, fig="login", reps=None):
        p = self.p
        a = ["-c", str(p["login_c"]), "-u", "u%05d", "-m", "20", "-t", "1", "-x", "30"]
        self.lg.run(srv, srv.port, "login", a + ["-d", str(p["warmup"])], 60)
        for _ in range(reps or p["repeats"]):
            r = self.lg.run(srv, srv.port, "login", a + ["-d", str(p["login_d"])],
                            p["login_d"] + 60)
            r["rss_mb"], r["pss_mb"], r["procs"] = srv.mem()
            self.add(fig, srv.name, r)

    def retr(self, srv, kind, tls):
        p = self.p
        fig = "retr_%s_%s" % (kind, "tls" if tls else "plain")
        prefix, msgs = ("m%03d", p["retr_1m_msgs"]) if kind == "1m" else ("k%03d", p["retr_20k_msgs"])
        a = ["-c", str(p["retr_c"]), "-u", prefix, "-m", str(msgs), "-t", "1", "-x", "60"]
        port = srv.tls_port if tls else srv.port
        self.lg.run(srv, port, "retr", a + ["-d", str(p["warmup"])], 120, tls=tls)
        for _ in range(p["repeats"]):
            r = self.lg.run(srv, port, "retr", a + ["-d", str(p["retr_d"])], p["retr_d"] + 120,
                            tls=tls)
            r["rss_mb"], r["pss_mb"], r["procs"] = srv.mem()
            self.add(fig, srv.name, r)

    def idle(self, srv):
        p = self.p
        n = p["idle_n"]
        a = ["-c", str(n), "-u", "u%05d", "-m", "20", "-d", "240", "-x", "60", "-R", "200",
             "-L", str(p["idle_hold"]), "-I", str(p["idle_noop"])]

        def sample():
            # Once every session is in, after the first NOOPs: the steady state.
            time.sleep(min(3.0, p["idle_hold"] / 2))
            rss, pss, procs = srv.mem()
            return {"rss_mb": rss, "pss_mb": pss, "procs": procs}

        for _ in range(p["idle_repeats"]):
            base = srv.mem()
            r = self.lg.run(srv, srv.port, "idle", a, 240 + p["idle_hold"] + 120,
                            on_ready=sample, allow_errors=True)
            rd = r["ready"]
            held = int(rd.get("sessions", 0))
            if held < n:
                self.notes.append("idle: %s held %d of %d sessions; the others failed: %s" % (
                    srv.name, held, n, r["first_error"] or "?"))
            if held == 0:
                raise RuntimeError("idle: no session got in")
            r.update(rss_mb=rd["rss_mb"], pss_mb=rd["pss_mb"], procs=rd["procs"],
                     rss_base_mb=base[0], ramp_s=rd.get("ramp_s", 0), held=held)
            r["kb_per_session"] = (rd["rss_mb"] - base[0]) * 1024 / held
            r["pss_kb_per_session"] = (rd["pss_mb"] - base[1]) * 1024 / held
            r["logins_per_s"] = n / rd["ramp_s"] if rd.get("ramp_s") else 0
            self.add("idle", srv.name, r)

    def huge(self, srv, start, maildir):
        p = self.p
        a = ["-c", "1", "-N", "1", "-u", "huge", "-o", "0", "-m", str(p["huge_msgs"]),
             "-d", "1", "-x", "300"]
        for _ in range(p["huge_repeats"]):
            srv.stop()
            srv.clear_cache(maildir)
            start()
            for fig in ("huge_first", "huge_second"):
                r = self.lg.run(srv, srv.port, "huge", a, 400)
                r["rss_mb"], r["pss_mb"], r["procs"] = srv.mem()
                self.add(fig, srv.name, r)

    def step(self, srv, start, what, fn, fresh=False):
        """One scenario; a failure is noted in the table and the next one goes on."""
        log("%s: %s" % (srv.name, what))
        t0 = time.monotonic()
        try:
            if fresh or srv.proc is None or srv.proc.poll() is not None:
                srv.stop()
                start()
            fn()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            log("%s: %s FAILED: %s" % (srv.name, what, e))
            self.notes.append("%s: %s failed: %s" % (srv.name, what,
                                                     str(e).strip().replace("\n", " / ")[:300]))
            srv.stop()
        log("%s: %s took %.0fs" % (srv.name, what, time.monotonic() - t0))

    def run_server(self, srv, start):
        try:
            if wanted("login"):
                self.step(srv, start, "login", lambda: self.login(srv))
            for kind in ("1m", "20k") if wanted("retr") else ():
                for tls in (False, True):
                    self.step(srv, start, "retr %s %s" % (kind, "tls" if tls else "plain"),
                              lambda: self.retr(srv, kind, tls))
            # A clean process for the memory figure.
            if wanted("idle"):
                self.step(srv, start, "idle (%d sessions)" % self.p["idle_n"],
                          lambda: self.idle(srv), fresh=True)
            if wanted("huge"):
                self.step(srv, start, "huge (%d messages)" % self.p["huge_msgs"],
                          lambda: self.huge(srv, start, self.huge_md))
        finally:
            srv.stop()


# ---------------------------------------------------------------- the table

def med(rs, key):
    vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def per_k_sessions(rs):
    vals = [r["server_cpu_s"] * 1000 / r["sessions"] for r in rs if r.get("sessions")]
    return statistics.median(vals) if vals else None


def per_gb(rs):
    vals = [r["server_cpu_s"] / (r["retr_mb"] / 1000) for r in rs if r.get("retr_mb")]
    return statistics.median(vals) if vals else None


def lg_share(rs):
    vals = [r["loadgen_cpu_s"] / r["wall_s"] for r in rs if r.get("wall_s")]
    return statistics.median(vals) if vals else None


ROWS = [
    # (figure, label, function of the result list, unit, better: "hi" or "lo")
    ("login", "login: sessions/s", lambda rs: med(rs, "sessions_per_s"), "/s", "hi"),
    ("login", "login: p50 latency", lambda rs: med(rs, "p50_ms"), "ms", "lo"),
    ("login", "login: p99 latency", lambda rs: med(rs, "p99_ms"), "ms", "lo"),
    ("login", "login: server CPU per 1,000 sessions", per_k_sessions, "s", "lo"),
    ("login", "login: server RSS", lambda rs: med(rs, "rss_mb"), "MB", "lo"),
    ("retr_1m_plain", "retr 1 MB plain: throughput", lambda rs: med(rs, "mb_per_s"), "MB/s", "hi"),
    ("retr_1m_plain", "retr 1 MB plain: p99 session", lambda rs: med(rs, "p99_ms"), "ms", "lo"),
    ("retr_1m_plain", "retr 1 MB plain: server CPU per GB", per_gb, "s", "lo"),
    ("retr_1m_tls", "retr 1 MB TLS: throughput", lambda rs: med(rs, "mb_per_s"), "MB/s", "hi"),
    ("retr_1m_tls", "retr 1 MB TLS: p99 session", lambda rs: med(rs, "p99_ms"), "ms", "lo"),
    ("retr_1m_tls", "retr 1 MB TLS: server CPU per GB", per_gb, "s", "lo"),
    ("retr_20k_plain", "retr 20 KB plain: throughput", lambda rs: med(rs, "mb_per_s"), "MB/s", "hi"),
    ("retr_20k_plain", "retr 20 KB plain: sessions/s", lambda rs: med(rs, "sessions_per_s"), "/s", "hi"),
    ("retr_20k_plain", "retr 20 KB plain: server CPU per GB", per_gb, "s", "lo"),
    ("retr_20k_tls", "retr 20 KB TLS: throughput", lambda rs: med(rs, "mb_per_s"), "MB/s", "hi"),
    ("retr_20k_tls", "retr 20 KB TLS: sessions/s", lambda rs: med(rs, "sessions_per_s"), "/s", "hi"),
    ("retr_20k_tls", "retr 20 KB TLS: server CPU per GB", per_gb, "s", "lo"),
    ("idle", "idle: server RSS, all sessions in", lambda rs: med(rs, "rss_mb"), "MB", "lo"),
    ("idle", "idle: server PSS, all sessions in", lambda rs: med(rs, "pss_mb"), "MB", "lo"),
    ("idle", "idle: RSS per session", lambda rs: med(rs, "kb_per_session"), "KB", "lo"),
    ("idle", "idle: server processes", lambda rs: med(rs, "procs"), "", "lo"),
    ("idle", "idle: logins/s while ramping", lambda rs: med(rs, "logins_per_s"), "/s", "hi"),
    ("idle", "idle: NOOP p99", lambda rs: med(rs, "noop_p99_ms"), "ms", "lo"),
    ("idle", "idle: server CPU per 1,000 sessions", per_k_sessions, "s", "lo"),
    ("huge_first", "huge: first login (STAT+UIDL+LIST)", lambda rs: med(rs, "p50_ms"), "ms", "lo"),
    ("huge_first", "huge: first login server CPU", lambda rs: med(rs, "server_cpu_s"), "s", "lo"),
    ("huge_second", "huge: second login (STAT+UIDL+LIST)", lambda rs: med(rs, "p50_ms"), "ms", "lo"),
    ("huge_second", "huge: second login server CPU", lambda rs: med(rs, "server_cpu_s"), "s", "lo"),
    ("huge_second", "huge: server RSS after", lambda rs: med(rs, "rss_mb"), "MB", "lo"),
]


def fmt(v):
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    if abs(v) >= 1:
        return "%.2f" % v
    return "%.3f" % v


def table(b):
    out = ["| figure | unit | pop3d | Dovecot | pop3d / Dovecot | better |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for fig, label, fn, unit, better in ROWS:
        a = b.results.get((fig, "pop3d"))
        d = b.results.get((fig, "dovecot"))
        va = fn(a) if a else None
        vd = fn(d) if d else None
        ratio = "%.2f" % (va / vd) if va is not None and vd else "n/a"
        out.append("| %s | %s | %s | %s | %s | %s |" % (label, unit or "-", fmt(va), fmt(vd), ratio,
                                                     "higher" if better == "hi" else "lower"))
    bg = []
    for srv in ("pop3d", "dovecot"):
        vals = [r["other_cores"] for (fig, s), rs in b.results.items() if s == srv for r in rs
                if "other_cores" in r]
        bg.append(statistics.median(vals) if vals else None)
    out.append("| other processes' CPU during the runs (noise) | cores | %s | %s | - | lower |"
               % (fmt(bg[0]), fmt(bg[1])))
    w1, w2 = b.results.get(("login_w1", "pop3d")), b.results.get(("login_w2", "pop3d"))
    if w1 and w2:
        for label, fn, unit in (("login: sessions/s", lambda rs: med(rs, "sessions_per_s"), "/s"),
                                ("login: server CPU per 1,000 sessions", per_k_sessions, "s"),
                                ("login: loadgen CPU share", lg_share, "cores")):
            v1, v2 = fn(w1), fn(w2)
            out.append("| %s, workers=2 vs workers=1 | %s | %s | %s | %s | (2 / 1) |" % (
                label, unit, fmt(v2), fmt(v1), "%.2f" % (v2 / v1) if v1 and v2 else "n/a"))
    return "\n".join(out)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores (%s), %s" % (platform.node() or "?", os.cpu_count() or 0, cpu,
                                      platform.release())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--pop3d", required=True)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    ap.add_argument("--out", default="build/bench", help="where results.md and results.json go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: run as root (the maildirs belong to uid %d, as Dovecot requires)" % MAIL_UID)
    p = params(args.quick)
    if os.environ.get("BENCH_REPEATS"):
        p["repeats"] = p["huge_repeats"] = max(1, int(os.environ["BENCH_REPEATS"]))
    if os.environ.get("BENCH_IDLE"):
        p["idle_n"] = max(1, int(os.environ["BENCH_IDLE"]))
    have_dovecot = os.environ.get("BENCH_NO_DOVECOT") != "1" and ensure_dovecot()

    t_start = time.monotonic()
    root = tempfile.mkdtemp(prefix="pb", dir="/tmp")
    os.chmod(root, 0o755)
    servers = []
    try:
        log("generating data in %s (%d users, a %d-message maildrop)"
            % (root, max(p["idle_n"], p["login_users"]) + 2 * p["retr_c"] + 1, p["huge_msgs"]))
        cert, key = make_cert(root)
        data = Data(root, p)
        data.build()
        b = Bench(args, p)
        b.huge_md = data.huge_md
        log("data ready in %.1fs" % (time.monotonic() - t_start))

        pop = Pop3d(os.path.abspath(args.pop3d), root, cert, key, data.users_file)
        servers.append(pop)
        wkey = pop.probe()
        b.run_server(pop, lambda: pop.start())
        if wkey and wanted("workers"):
            for w in (1, 2):
                b.step(pop, lambda: pop.start(workers=w), "login with workers=%d" % w,
                       lambda: b.login(pop, fig="login_w%d" % w), fresh=True)
                pop.stop()
        else:
            b.notes.append("this pop3d has no `workers` setting: the 1-vs-2-worker figure is "
                           "not measured")
        if have_dovecot:
            dc = Dovecot(root, cert, key, data.users_file)
            servers.append(dc)
            b.run_server(dc, dc.start)
        else:
            b.notes.append("Dovecot not available: its column is empty")

        tab = table(b)
        summary = [
            "pop3d vs Dovecot, %s, %s" % (time.strftime("%Y-%m-%d %H:%M %Z"), machine()),
            "%s run: %d repeat(s) per figure (median shown); login %d concurrent on 20-message "
            "maildrops; retr %d concurrent, %d x 1 MB or %d x 20 KB per session; idle %d sessions; "
            "huge %d messages; TLS: %s. Wall time %.0fs." % (
                "quick" if args.quick else "full", p["repeats"], p["login_c"], p["retr_c"],
                p["retr_1m_msgs"], p["retr_20k_msgs"], p["idle_n"], p["huge_msgs"],
                first_cipher(b), time.monotonic() - t_start),
        ] + ["Note: " + n for n in b.notes]
        print()
        print("\n".join(summary))
        print()
        print(tab)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write("\n".join(summary) + "\n\n" + tab + "\n")
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"params": p, "machine": machine(), "notes": b.notes,
                       "runs": {"%s/%s" % k: v for k, v in b.results.items()}}, f, indent=1)
        log("results in %s/results.md and results.json" % args.out)
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def first_cipher(b):
    for (fig, _), rs in b.results.items():
        for r in rs:
            if r.get("cipher") not in (None, "-"):
                return r["cipher"]
    return "-"


if __name__ == "__main__":
    main()
