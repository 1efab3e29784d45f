#!/usr/bin/env python3
"""Fleet figures (issue 14), on one machine: etcd, an nginx origin and Holdfast instances,
all on loopback ports chosen here.

  A. 5 instances (heartbeat 500ms, lease 2s), --bake 2s, client load on every instance:
     time from `rollout start` to `done` for a good version (stages canary,10%,50%,100%);
     for a harmful version (a rule blocking /), time from `start` to every instance back on
     the old one, and every non-2xx the clients got (instance, time since start).
  B. Request-path cost of being in a fleet: CPU seconds per request of a plain instance and
     of a fleet member serving the same version, same run (wrk, alternating rounds).

Usage: HOLDFAST_BIN=target/release/holdfast python3 bench/fleet.py   (build it first:
cargo build --release -p holdfast). Needs etcd, nginx and wrk on PATH.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, threading, time, urllib.request

BIN = os.environ.get("HOLDFAST_BIN", "target/release/holdfast")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
N = 5


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, limit=20):
    until = time.time() + limit
    while time.time() < until:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"no answer from {url}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except Exception:
        return 0, b""


tmp = tempfile.mkdtemp(prefix="holdfast-fleet-bench-")
procs = []


def spawn(args, log, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, log), "w"), **kw)
    procs.append(p)
    return p


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def rollout(etcd, *args):
    r = subprocess.run([BIN, "rollout", "--etcd", etcd, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def status(etcd):
    code, out, err = rollout(etcd, "status", "--json")
    return json.loads(out) if code == 0 else {}


def main():
    # etcd
    cp, pp = port(), port()
    etcd = f"http://127.0.0.1:{cp}"
    peer = f"http://127.0.0.1:{pp}"
    spawn(["etcd", "--data-dir", os.path.join(tmp, "etcd"), "--listen-client-urls", etcd,
           "--advertise-client-urls", etcd, "--listen-peer-urls", peer,
           "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"], "etcd.log")
    wait_http(f"{etcd}/health")
    # origin: nginx answering 200 "ok"
    op = port()
    conf = os.path.join(tmp, "nginx.conf")
    open(conf, "w").write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; server {{ listen 127.0.0.1:{op}; location / {{ return 200 "ok\\n"; }} }} }}""")
    spawn(["nginx", "-c", conf, "-p", tmp], "nginx.log")
    wait_http(f"http://127.0.0.1:{op}/")

    def version(name, extra=""):
        path = os.path.join(tmp, name)
        open(path, "w").write(f"""[edge]
access_log = "off"

[[pools]]
name = "app"
servers = ["127.0.0.1:{op}"]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pool = "app"
{extra}""")
        return path

    # instances
    members = []
    for i in range(N):
        d = os.path.join(tmp, f"edge-{i}")
        os.makedirs(d)
        hp, ap = port(), port()
        group = 'group = "canary"' if i == 0 else ""
        open(os.path.join(d, "edge.toml"), "w").write(f"""[fleet]
etcd = ["{etcd}"]
instance = "edge-{i}"
{group}
heartbeat = "500ms"
lease_ttl = "2s"

[edge]
listen = ["127.0.0.1:{hp}"]
threads = 1
state_dir = "state"

[admin]
listen = "127.0.0.1:{ap}"
""")
        p = spawn([BIN, "run", "-c", os.path.join(d, "edge.toml")], f"edge-{i}.log")
        members.append((f"edge-{i}", hp, ap, p))
    for _, _, ap, _ in members:
        wait_http(f"http://127.0.0.1:{ap}/health")

    # client load on every instance, every answer kept
    answers = []
    stop = threading.Event()

    def load(i, hp):
        while not stop.is_set():
            code, _ = get(f"http://127.0.0.1:{hp}/")
            answers.append((time.time(), i, code))
            time.sleep(0.005)

    threads = [threading.Thread(target=load, args=(i, hp), daemon=True) for i, (_, hp, _, _) in enumerate(members)]
    for t in threads:
        t.start()

    flags = ["--bake", "2s", "--min-requests", "20"]
    code, out, err = rollout(etcd, "start", version("v1.toml"), "--stages", "100%", *flags)
    assert code == 0, out + err
    assert rollout(etcd, "wait", "--timeout", "60s")[0] == 0, status(etcd)

    # A. a good version through the default stages
    t0 = time.time()
    code, out, err = rollout(etcd, "start", version("v2.toml"), *flags)
    assert code == 0, out + err
    code, out, _ = rollout(etcd, "wait", "--timeout", "120s")
    good = time.time() - t0
    print(f"A. good version, stages canary,10%,50%,100%, bake 2s, {N} instances: start -> done {good:.1f} s (wait exit {code})")

    # A. a harmful version: a rule that blocks /
    harmful = version("v3.toml", "\n[[rules]]\nid = \"oops\"\nexpr = 'request.path == \"/\"'\naction = \"block\"\n")
    before = len(answers)
    t0 = time.time()
    code, out, err = rollout(etcd, "start", harmful, *flags)
    assert code == 0, out + err
    back = None
    while time.time() - t0 < 120:
        s = status(etcd)
        if s.get("state") == "rolled_back" and all(i.get("version") == 2 for i in s.get("instances", [])):
            back = time.time() - t0
            break
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    s = status(etcd)
    print(f"A. harmful version: start -> rolled back and every instance on version 2: {back:.1f} s" if back else "A. harmful version: NOT rolled back")
    print(f"   reason: {s.get('reason')}")
    bad = [(round(t - t0, 2), members[i][0], c) for (t, i, c) in answers[before:] if not 200 <= c < 300]
    per = {}
    for _, m, _ in bad:
        per[m] = per.get(m, 0) + 1
    total = len(answers) - before
    print(f"   client requests during it: {total}; non-2xx: {len(bad)} {per}")
    if bad:
        print(f"   non-2xx between {bad[0][0]} s and {bad[-1][0]} s after start")

    # B. CPU per request: a plain instance vs a fleet member, the same version, same run.
    hp, ap = port(), port()
    d = os.path.join(tmp, "plain")
    os.makedirs(d)
    open(os.path.join(d, "edge.toml"), "w").write(open(version("v1.toml")).read().replace(
        '[edge]\n', f'[edge]\nlisten = ["127.0.0.1:{hp}"]\nthreads = 1\n') + f'\n[admin]\nlisten = "127.0.0.1:{ap}"\n')
    plain = spawn([BIN, "run", "-c", os.path.join(d, "edge.toml")], "plain.log")
    wait_http(f"http://127.0.0.1:{ap}/health")
    # The fleet member serves version 2, the same text as the plain instance's.
    fleet_name, fleet_port, _, fleet_proc = members[1]
    for _ in range(50):
        get(f"http://127.0.0.1:{fleet_port}/")
        get(f"http://127.0.0.1:{hp}/")

    def cpu(pid):
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    totals = {"plain": [0.0, 0], "fleet": [0.0, 0]}
    for r in range(ROUNDS):
        for name, p, prt in (("plain", plain, hp), ("fleet", fleet_proc, fleet_port)):
            c0 = cpu(p.pid)
            w = subprocess.run(["wrk", "-t1", "-c16", f"-d{DURATION}s", f"http://127.0.0.1:{prt}/"], capture_output=True, text=True).stdout
            c1 = cpu(p.pid)
            reqs = int(next(l for l in w.splitlines() if "requests in" in l).split()[0])
            totals[name][0] += c1 - c0
            totals[name][1] += reqs
    for name, (c, n) in totals.items():
        print(f"B. {name:5}: {n} requests, {c:.2f} CPU s, {c / n * 1e6:.1f} µs CPU per request")


try:
    main()
finally:
    cleanup()
