#!/usr/bin/env python3
"""A fault-injecting HTTP file server for the model store's integration tests
(standard library only).

Serves files under --root. The first path segment picks a behaviour; the
rest is the file:
  /plain/F   the file, with Range and If-Range (strong ETag) support
  /cut/F     first request: headers for the whole answer, half the body, then
             the connection is cut; later requests behave like /plain
  /slow/F    10 bytes every 0.5 s, forever (a stalled transfer)
  /stall/F   ranged requests (header reads) at once; a whole-file GET sends
             half of F at once, then 10 bytes every 0.5 s (a download that
             stalls mid-way)
  /flaky/F   503 for the first two requests, then like /plain
  /wrong/F   the right length, wrong bytes
  /etag/F    first request: F with ETag "v1", cut halfway; later requests:
             the file F.v2 with ETag "v2" (If-Range "v1" then gets a 200)
  /huge/F    announces 100 TB, sends F, then cuts the connection
  /chunked/F F in chunked encoding (no size announced), no Range support
A missing file is a 404. Every request is logged to --log as one line:
  METHOD PATH status=N range=R if_range=V auth=A
The chosen port is written to --port-file once the server listens.
"""
import argparse
import hashlib
import http.server
import os
import socketserver
import threading
import time

import loopback

hits = {}
hits_lock = threading.Lock()


def count(path):
    with hits_lock:
        hits[path] = hits.get(path, 0) + 1
        return hits[path]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def log_request_line(self, status):
        with open(self.server.log_path, "a") as log:
            log.write("%s %s status=%d range=%s if_range=%s auth=%s\n" % (
                self.command, self.path, status,
                self.headers.get("Range", "-"), self.headers.get("If-Range", "-"),
                self.headers.get("Authorization", "-")))

    def send_simple(self, status, body=b""):
        self.log_request_line(status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = self.path.split("?")[0].lstrip("/").split("/", 1)
        if len(parts) != 2 or ".." in parts[1]:
            return self.send_simple(404)
        mode, rel = parts
        path = os.path.join(self.server.root, rel)
        n = count(self.path)
        etag = None
        if mode == "etag":
            if n > 1:
                path += ".v2"
                etag = '"v2"'
            else:
                etag = '"v1"'
        if not os.path.isfile(path):
            return self.send_simple(404)
        with open(path, "rb") as f:
            data = f.read()
        if etag is None:
            etag = '"%s"' % hashlib.sha1(data).hexdigest()[:16]
        if mode == "flaky" and n <= 2:
            return self.send_simple(503, b"try again")
        if mode == "wrong":
            data = bytes(b ^ 0x5A for b in data)
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and rng.startswith("bytes=") and (if_range is None or if_range == etag):
            first, _, last = rng[6:].partition("-")
            start = int(first)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                self.log_request_line(416)
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            body = data[start:end + 1]
        else:
            body = data
        if mode == "chunked":
            self.log_request_line(200)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(0, len(data), 65536):
                    piece = data[i:i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            return
        if mode == "huge":
            self.log_request_line(200)
            self.send_response(200)
            self.send_header("Content-Length", str(10 ** 14))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass
            self.close_connection = True
            return
        self.log_request_line(status)
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range",
                             "bytes %d-%d/%d" % (start, start + len(body) - 1, len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if mode == "stall" and status == 200:
            half = len(body) // 2
            try:
                self.wfile.write(body[:half])
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return
            body = body[half:]
        if mode == "slow" or (mode == "stall" and status == 200):
            try:
                for i in range(0, len(body), 10):
                    self.wfile.write(body[i:i + 10])
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            self.close_connection = True
            return
        if (mode == "cut" or mode == "etag") and n == 1:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.root = args.root
    server.log_path = args.log
    loopback.serve(server, args.port_file)


if __name__ == "__main__":
    main()
