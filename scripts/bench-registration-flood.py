#!/usr/bin/env python3
"""Sign-in latency while one address floods registrations (issue 8's measurement).
usage: scripts/bench-registration-flood.py BINARY [extra serve args, e.g. --dev-mailbox]"""
import json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request

binary, extra = os.path.abspath(sys.argv[1]), sys.argv[2:]
work = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", f"sqlite://{work}/b.db", *extra],
                        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"RAMPART_LOG": "error", "PATH": "/usr/bin:/bin"})
base = f"http://127.0.0.1:{port}"
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r: return r.status
    except urllib.error.HTTPError as e: return e.code
for _ in range(200):
    try: urllib.request.urlopen(base + "/healthz", timeout=1); break
    except Exception: time.sleep(0.1)
PW = "Tr0ub4dor&3-horse-staple-battery"
post("/api/v1/accounts", {"email": "owner@example.com", "password": PW})
time.sleep(1.5)
page = urllib.request.urlopen(base + "/dev/mailbox").read().decode()
code = re.search(r"confirmation code is (\d{6})", page).group(1)
assert post("/api/v1/accounts/confirm", {"email": "owner@example.com", "code": code}) == 200
def signins(n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); st = post("/api/v1/sessions", {"email": "owner@example.com", "password": PW}); out.append((time.perf_counter() - t) * 1000)
        assert st == 200, st
    return out
quiet = statistics.median(signins(15))
statuses = []
def flood(i):
    statuses.append(post("/api/v1/accounts", {"email": f"flood{i}@example.com", "password": PW}))
# 16 clients keep registering until 168 are sent, while the owner signs in.
todo = list(range(168)); lock = threading.Lock()
def worker():
    while True:
        with lock:
            if not todo: return
            i = todo.pop()
        flood(i)
threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads: t.start()
time.sleep(0.3)
loaded = statistics.median(signins(15))
for t in threads: t.join()
proc.terminate(); proc.wait()
print(f"{binary}: sign-in median quiet {quiet:.0f} ms, during 168 registrations {loaded:.0f} ms; registrations answered: "
      + ", ".join(f"{c}x{statuses.count(c)}" for c in sorted(set(statuses))))
