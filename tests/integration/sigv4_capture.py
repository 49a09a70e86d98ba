#!/usr/bin/env python3
"""Captures one signed S3 request for the SigV4 check (standard library only):
answers every GET/HEAD with a small body and appends the request's method,
path and headers as one JSON line to --out. The port goes to --port-file."""
import argparse
import http.server
import json

import loopback


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        with open(self.server.out, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": [[k, v] for k, v in self.headers.items()]}) + "\n")
        body = b"signed hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.out = args.out
    loopback.serve(server, args.port_file)


if __name__ == "__main__":
    main()
