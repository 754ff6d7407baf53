#!/usr/bin/env python3
"""fake_hub.py: a local stand-in for the Hugging Face hub, for tests/pull.test.sh (no internet).

It imitates the routes and headers `nuri pull` relies on, as huggingface.co serves them (facts
about the hub's public API; none of its code):
  GET /api/models/{org}/{repo}/tree/main?recursive=true
        a JSON array of {"type": "file", "path", "size", "oid", "lfs": {"oid", "size",
        "pointerSize"}}, PAGE entries at a time, continued with Link: <url>; rel="next"
  GET /{org}/{repo}/resolve/main/{path}
        a 302 to /cdn/{sha256} on http://localhost:PORT (another host name than the 127.0.0.1
        the client uses, as the hub redirects LFS files to a CDN), with X-Repo-Commit,
        X-Linked-Etag ("the sha256") and X-Linked-Size
  GET /cdn/{sha256}
        the bytes, with Range: bytes=N- (206 + Content-Range; 416 past the end)
  errors: 401 with X-Error-Code RepoNotFound for a missing repository (404 when a token was
        sent), 404 EntryNotFound for a missing file, 401 GatedRepo without a token and 403
        GatedRepo with a wrong one for a gated repository.

The repositories are the directories ROOT/{org}/{repo}/ (files in subdirectories too): the test
fills them with GGUF files written by `nuri mkmodel` (and byte slices of one, named as split parts;
nuri pull does not read what it downloads). ROOT/hub.json, read at every request, adds behaviours:
  {"token": "hf_x",                      the token a gated repository accepts
   "gated": ["org/repo"],
   "wrong_sha": ["org/repo/file"],       the listing and the X-Linked-Etag give another sha256
   "no_lfs": ["org/repo/file"],          the listing has no lfs field (the sha256 comes from the
                                         X-Linked-Etag of the redirect only)
   "drop_once": ["org/repo/file"],       the first download sends half the bytes, then closes
   "slow": ["org/repo/file"],            sent at about 1 MB/s
   "vanish": ["org/repo/file"],          listed, but the resolve route answers 404
   "plain": ["org/repo/file"]}           stored in git, not LFS: no lfs field, no X-Linked-Etag,
                                         served by the resolve route itself (200, no redirect)
Every request is appended to ROOT/requests.log: METHOD PATH range=... auth=yes|no host=...

Usage: fake_hub.py ROOT PORTFILE   (binds 127.0.0.1 on a free port and writes it to PORTFILE)
"""
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

ROOT = os.path.abspath(sys.argv[1])
PAGE = 3  # tree entries per page, small so that every listing is paginated
COMMIT = "0123456789abcdef0123456789abcdef01234567"
lock = threading.Lock()
served_once = set()
sha_cache = {}


def config():
    try:
        with open(os.path.join(ROOT, "hub.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def sha256_of(path):
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sha_cache[key] = h.hexdigest()
    return sha_cache[key]


def repo_files(org, repo):
    base = os.path.join(ROOT, org, repo)
    out = []
    for d, _, files in os.walk(base):
        for name in files:
            full = os.path.join(d, name)
            out.append(os.path.relpath(full, base).replace(os.sep, "/"))
    return sorted(out)


def published_sha(cfg, key, full):
    sha = sha256_of(full)
    if key in cfg.get("wrong_sha", []):
        sha = hashlib.sha256(b"not this file").hexdigest()
    return sha


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def log_request_line(self):
        with lock, open(os.path.join(ROOT, "requests.log"), "a") as f:
            f.write("%s %s range=%s auth=%s host=%s\n" % (
                self.command, self.path, self.headers.get("Range", "-"),
                "yes" if self.headers.get("Authorization") else "no",
                self.headers.get("Host", "-")))

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send(status, body, [("Content-Type", "application/json"), ("X-Error-Code", code),
                                 ("X-Error-Message", message)])

    def access(self, cfg, org, repo):
        """None when the request may see the repository, else the error already sent."""
        token = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:]
        if not os.path.isdir(os.path.join(ROOT, org, repo)):
            if token:
                return self.error(404, "RepoNotFound", "Repository not found") or True
            return self.error(401, "RepoNotFound", "Invalid username or password.") or True
        if "%s/%s" % (org, repo) in cfg.get("gated", []):
            if not token:
                return self.error(401, "GatedRepo", "Access to model %s/%s is restricted. You "
                                  "must have access to it and be authenticated to access it. "
                                  "Please log in." % (org, repo)) or True
            if token != cfg.get("token"):
                return self.error(403, "GatedRepo", "Access to model %s/%s is restricted and "
                                  "you are not in the authorized list." % (org, repo)) or True
        return None

    def do_GET(self):
        self.log_request_line()
        cfg = config()
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
            return self.tree(cfg, parts[2], parts[3], parse_qs(url.query))
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            return self.resolve(cfg, parts[0], parts[1], "/".join(parts[4:]))
        if len(parts) == 2 and parts[0] == "cdn":
            return self.cdn(cfg, parts[1])
        self.error(404, "EntryNotFound", "no such route")

    def do_HEAD(self):
        # the resolve route only, as clients ask it for X-Linked-Etag without following
        self.log_request_line()
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/")[1:]]
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            return self.resolve(config(), parts[0], parts[1], "/".join(parts[4:]))
        self.error(404, "EntryNotFound", "no such route")

    def tree(self, cfg, org, repo, query):
        if self.access(cfg, org, repo):
            return
        entries = []
        for path in repo_files(org, repo):
            full = os.path.join(ROOT, org, repo, path)
            key = "%s/%s/%s" % (org, repo, path)
            size = os.path.getsize(full)
            e = {"type": "file", "oid": hashlib.sha1(key.encode()).hexdigest(), "size": size,
                 "path": path}
            if path.endswith(".gguf") and key not in cfg.get("no_lfs", []) + cfg.get("plain", []):
                e["lfs"] = {"oid": published_sha(cfg, key, full), "size": size,
                            "pointerSize": 134}
            entries.append(e)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + PAGE]
        headers = [("Content-Type", "application/json")]
        if start + PAGE < len(entries):
            nxt = "http://%s/api/models/%s/%s/tree/main?recursive=true&cursor=%d" % (
                self.headers.get("Host"), quote(org), quote(repo), start + PAGE)
            headers.append(("Link", '<%s>; rel="next"' % nxt))
        self.send(200, json.dumps(page).encode(), headers)

    def resolve(self, cfg, org, repo, path):
        if self.access(cfg, org, repo):
            return
        full = os.path.join(ROOT, org, repo, path)
        key = "%s/%s/%s" % (org, repo, path)
        if not os.path.isfile(full) or key in cfg.get("vanish", []):
            return self.error(404, "EntryNotFound", "Entry not found")
        if key in cfg.get("plain", []):
            with open(full, "rb") as f:
                data = f.read()
            return self.send(200, data, [("ETag", '"%s"' % hashlib.sha1(data).hexdigest()),
                                         ("X-Repo-Commit", COMMIT)])
        sha = published_sha(cfg, key, full)
        # remember which file a CDN address serves (the wrong-sha address serves the real bytes)
        with lock:
            Hub.cdn_files[sha + ":" + key] = full
        port = self.server.server_address[1]
        self.send(302, b"", [
            ("Location", "http://localhost:%d/cdn/%s" % (port, quote(sha + ":" + key, safe=""))),
            ("X-Repo-Commit", COMMIT),
            ("X-Linked-Etag", '"%s"' % sha),
            ("X-Linked-Size", str(os.path.getsize(full))),
            ("ETag", '"%s"' % hashlib.sha1(key.encode()).hexdigest())])

    def cdn(self, cfg, name):
        with lock:
            full = Hub.cdn_files.get(name)
        if not full:
            return self.error(404, "EntryNotFound", "no such object")
        key = name.split(":", 1)[1]
        size = os.path.getsize(full)
        start = 0
        rng = self.headers.get("Range")
        if rng:
            if not rng.startswith("bytes=") or not rng[6:].rstrip("-").isdigit():
                return self.send(400, b"bad range")
            start = int(rng[6:].rstrip("-"))
            if start >= size:
                return self.send(416, b"", [("Content-Range", "bytes */%d" % size)])
        with open(full, "rb") as f:
            f.seek(start)
            data = f.read()
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
                   ("Content-Length", str(len(data)))]
        self.send_response(206 if rng else 200)
        if rng:
            headers.append(("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        drop = False
        with lock:
            if key in cfg.get("drop_once", []) and key not in served_once:
                served_once.add(key)
                drop = True
        if drop:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if key in cfg.get("slow", []):
            for i in range(0, len(data), 32768):
                self.wfile.write(data[i:i + 32768])
                self.wfile.flush()
                time.sleep(0.03)
            return
        self.wfile.write(data)


Hub.cdn_files = {}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that goes away midway (killed, disk full) is part of the tests, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Hub)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, sys.argv[2])
    server.serve_forever()
