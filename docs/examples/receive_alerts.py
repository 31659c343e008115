#!/usr/bin/env python3
"""A receiver for integration-health's signed alert webhooks, in the standard library alone.

Each request is verified as the Standard Webhooks specification says: an HMAC-SHA256, under the
destination's secret, of "{webhook-id}.{webhook-timestamp}.{body}", compared with every
"v1,<base64>" in webhook-signature (two while a secret is rotated), and a timestamp no more
than five minutes from this clock. A verified alert is printed as one line and answered 204;
anything else gets 400 or 401, which the service does not retry.

    WEBHOOK_SECRET=whsec_... python3 receive_alerts.py 8080
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whsec_"))
TOLERANCE_SECONDS = 5 * 60


def verified(headers, body):
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not timestamp or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(signature.removeprefix("v1,"), expected)
        for signature in signatures.split()
    )


class Alerts(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verified(self.headers, body):
            self.send_response(401)
            self.end_headers()
            return
        alert = json.loads(body)
        print(
            "verified",
            self.headers["webhook-id"],
            alert["state"],
            alert["tenant_id"],
            alert["rule"],
            alert["integration_name"],
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Alerts).serve_forever()
