#!/usr/bin/env python3
"""Stand-ins for the two AWS services that hand out temporary credentials
(standard library only), on loopback:

  GET  /container/creds   the ECS / EKS Pod Identity container endpoint: the
                          Authorization header must be --container-auth;
                          answers the JSON the agents send.
  POST /                  STS AssumeRoleWithWebIdentity: the form must say
                          Action=AssumeRoleWithWebIdentity, Version=2011-06-15,
                          RoleArn=--role-arn, WebIdentityToken=the content of
                          --web-token-file, and a RoleSessionName; answers
                          STS's XML.

Both hand out --access-key / --secret with --token (+ "-sts" for STS), valid
for --expires-in seconds. A refused request gets the service's error format.
Each request appends "METHOD PATH ok" or "METHOD PATH refused: WHY" to --log.
The port goes to --port-file."""
import argparse
import datetime
import http.server
import json
import urllib.parse

import loopback


def expiration(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def note(self, what):
        with open(self.server.args.log, "a") as f:
            f.write(f"{self.command} {self.path} {what}\n")

    def answer(self, status, body, ctype):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        a = self.server.args
        if self.path != "/container/creds":
            self.note("refused: unknown path")
            return self.answer(404, '{"code": "NotFound", "message": "no such path"}',
                               "application/json")
        if self.headers.get("Authorization") != a.container_auth:
            self.note("refused: bad Authorization")
            return self.answer(401, '{"code": "AccessDenied", "message": "bad token"}',
                               "application/json")
        self.note("ok")
        self.answer(200, json.dumps({
            "AccessKeyId": a.access_key, "SecretAccessKey": a.secret, "Token": a.token,
            "Expiration": expiration(a.expires_in),
            "RoleArn": "arn:aws:iam::123456789012:role/container"}), "application/json")

    def sts_error(self, status, code, message):
        self.note(f"refused: {code}: {message}")
        self.answer(status, (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"),
            "text/xml")

    def do_POST(self):
        a = self.server.args
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True,
                                     strict_parsing=True)
        one = {k: v[0] for k, v in form.items() if len(v) == 1}
        with open(a.web_token_file) as f:
            want_token = f.read().strip()
        if self.path != "/":
            return self.sts_error(404, "NotFound", "no such path")
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return self.sts_error(400, "InvalidParameterValue", "not a form")
        if one.get("Action") != "AssumeRoleWithWebIdentity" or one.get("Version") != "2011-06-15":
            return self.sts_error(400, "InvalidAction", "wrong Action or Version")
        if one.get("RoleArn") != a.role_arn:
            return self.sts_error(403, "AccessDenied",
                                  "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        if one.get("WebIdentityToken") != want_token:
            return self.sts_error(400, "InvalidIdentityToken", "token does not match")
        if not one.get("RoleSessionName"):
            return self.sts_error(400, "ValidationError", "no RoleSessionName")
        self.note(f"ok session={one['RoleSessionName']}")
        self.answer(200, (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
            "  <AssumeRoleWithWebIdentityResult>\n"
            "    <SubjectFromWebIdentityToken>system:serviceaccount:ml:memfit"
            "</SubjectFromWebIdentityToken>\n"
            "    <Credentials>\n"
            f"      <SessionToken>{a.token}-sts</SessionToken>\n"
            f"      <SecretAccessKey>{a.sts_secret}</SecretAccessKey>\n"
            f"      <Expiration>{expiration(a.expires_in)}</Expiration>\n"
            f"      <AccessKeyId>{a.sts_access_key}</AccessKeyId>\n"
            "    </Credentials>\n"
            "  </AssumeRoleWithWebIdentityResult>\n"
            "</AssumeRoleWithWebIdentityResponse>\n"), "text/xml")


def main():
    p = argparse.ArgumentParser()
    for name in ("port-file", "log", "access-key", "secret", "sts-access-key", "sts-secret",
                 "token", "container-auth", "role-arn", "web-token-file"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--expires-in", type=int, default=3600)
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.args = args
    loopback.serve(server, args.port_file)


if __name__ == "__main__":
    main()
