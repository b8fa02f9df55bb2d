"""Schemathesis hooks for ipg-switch (scripts/contract-fuzz.sh, docs/contracts.md).

Every generated request is made acceptable to the switch's door before it is sent, so
that the fuzzer reaches the handlers instead of stopping at authentication:
- /api/v2/gw/*: an OAuth 2.0 token of the demo's hosted institution (POST /oauth/token)
  and `Signature`, HMAC-SHA256 with its api_key over the raw body (POST, DELETE) or the raw
  query string (GET), which the hook builds itself so that it signs exactly what is sent;
- /api/v2/ch/*: `X-Channel` and `Signature` with the demo channel's key over the raw body;
- /snap/*: SNAP BI's headers as the demo bank's SNAP partner (docs/snap.md): a B2B token
  (service 73, `clientId|X-TIMESTAMP` signed SHA256withRSA by openssl with
  demo/snap/bank_syariah.key), then per call `X-TIMESTAMP`, `X-PARTNER-ID`, a fresh
  `X-EXTERNAL-ID`, `CHANNEL-ID` and `X-SIGNATURE`, HMAC-SHA512 with the client secret over
  `METHOD:path:token:hex(sha256(minified body)):X-TIMESTAMP` (a JSON body is sent minified,
  so the bytes sent are their own minified form).
A request whose signature is dropped on purpose is left to schemathesis's own negative
cases. The money check lives here too (`money_unchanged_when_refused`): a payment or
reversal answered with anything but SUCCESS must leave the institution's balance as it
was.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import random
import subprocess
import urllib.parse
import uuid

import requests
import requests.auth
import schemathesis

BASE = os.environ["FUZZ_BASE"]
INSTITUTION = ("SCH01", "demo-sch01-key")
CHANNEL = ("bank_syariah", "demo-bank-syariah-key")
SNAP_CLIENT = "BANKSYARIAH-SNAP"
SNAP_SECRET = os.environ.get("IPG_DEMO_SNAP_SECRET", "demo-snap-secret")
SNAP_KEY = "demo/snap/bank_syariah.key"
_token = {}
# Bills of the demo institution made for the run (`seed`), and the draws that pick them.
_seed = {}
_draw = random.Random(1)
# The balance before each payment or reversal, by case (Case has slots).
_before = {}


def sign(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def token() -> str:
    if "t" not in _token:
        r = requests.post(
            f"{BASE}/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": INSTITUTION[0],
                "client_secret": INSTITUTION[1],
            },
            timeout=10,
        )
        r.raise_for_status()
        _token["t"] = r.json()["access_token"]
    return _token["t"]


class Signed(requests.auth.AuthBase):
    """Signs the prepared request as sent: its exact body bytes, or for a GET its raw query
    string (the bytes after `?`)."""

    def __init__(self, key: str, headers: dict, query: bool):
        self.key, self.headers, self.query = key, headers, query

    def __call__(self, r):
        if self.query:
            data = urllib.parse.urlsplit(r.url).query.encode()
        else:
            body = r.body or b""
            data = body.encode() if isinstance(body, str) else body
        r.headers["Signature"] = sign(self.key, data)
        r.headers.update(self.headers)
        return r


def balance() -> int:
    q = ""
    r = requests.get(
        f"{BASE}/api/v2/gw/institution/{INSTITUTION[0]}/account",
        headers={
            "Authorization": f"Bearer {token()}",
            "Signature": sign(INSTITUTION[1], q.encode()),
        },
        timeout=10,
    )
    data = r.json().get("data")
    if isinstance(data, list) and data:
        data = data[0]
    return int((data or {}).get("balance", 0))


def seed() -> dict:
    """Bills of the demo institution that generated requests can reach by VA and hash,
    made once at the first use (a fixed-amount bill and a partial one)."""
    if not _seed:
        hashes, vas = [], []
        for i, (kind, amount) in enumerate([("close", 150000), ("partial", 5000000)]):
            body = json.dumps(
                {
                    "institution_code": INSTITUTION[0],
                    "va_number": f"99000000{i:02d}",
                    "prefix": "857499",
                    "type": kind,
                    "name": "Fuzz",
                    "customer_name": "Fuzz",
                    "total_amount": amount,
                    "invoice_number": f"FUZZ/{i}",
                }
            ).encode()
            r = requests.post(
                f"{BASE}/api/v2/gw/bill",
                data=body,
                headers={
                    "Authorization": f"Bearer {token()}",
                    "Signature": sign(INSTITUTION[1], body),
                    "Content-Type": "application/json",
                },
                timeout=10,
            )
            r.raise_for_status()
            bill = r.json()["data"]
            hashes.append(bill["hash"])
            vas.append(bill["va_number"])
        _seed.update(hashes=hashes, vas=vas)
    return _seed


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    """Half the bill hashes drawn are the seeded bills' (the rest exercise 404s)."""
    if path_parameters and "hash" in path_parameters and _draw.random() < 0.5:
        path_parameters["hash"] = _draw.choice(seed()["hashes"])
    return path_parameters


@schemathesis.hook
def map_body(ctx, body):
    """Half the Payment Channel bodies name a seeded bill's VA."""
    path = ctx.operation.path
    if (
        isinstance(body, dict)
        and path.startswith("/api/v2/ch")
        and "va_number" in body
        and _draw.random() < 0.5
    ):
        body["va_number"] = _draw.choice(seed()["vas"])
    return body


def snap_now() -> str:
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=7))).isoformat(
        timespec="seconds"
    )


def snap_token() -> str:
    if "snap" not in _token:
        ts = snap_now()
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", SNAP_KEY],
            input=f"{SNAP_CLIENT}|{ts}".encode(),
            capture_output=True,
            check=True,
        ).stdout
        r = requests.post(
            f"{BASE}/snap/v1.0/access-token/b2b",
            json={"grantType": "client_credentials"},
            headers={
                "X-TIMESTAMP": ts,
                "X-CLIENT-KEY": SNAP_CLIENT,
                "X-SIGNATURE": base64.b64encode(sig).decode(),
            },
            timeout=10,
        )
        r.raise_for_status()
        _token["snap"] = r.json()["accessToken"]
    return _token["snap"]


class SnapSigned(requests.auth.AuthBase):
    """SNAP BI's headers over the prepared request as sent (see the module)."""

    def __call__(self, r):
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        try:
            body = json.dumps(
                json.loads(body), separators=(",", ":"), ensure_ascii=False
            ).encode()
            r.body = body
            r.headers["Content-Length"] = str(len(body))
        except ValueError:
            pass
        token = snap_token()
        ts = snap_now()
        path = urllib.parse.urlsplit(r.url)
        endpoint = path.path + (f"?{path.query}" if path.query else "")
        digest = hashlib.sha256(body).hexdigest()
        text = f"{r.method}:{endpoint}:{token}:{digest}:{ts}"
        mac = hmac.new(SNAP_SECRET.encode(), text.encode(), hashlib.sha512).digest()
        r.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "X-TIMESTAMP": ts,
                "X-PARTNER-ID": SNAP_CLIENT,
                "X-EXTERNAL-ID": uuid.uuid4().hex[:32],
                "CHANNEL-ID": "95221",
                "X-SIGNATURE": base64.b64encode(mac).decode(),
            }
        )
        return r


@schemathesis.hook
def before_call(ctx, case, kwargs):
    path = case.operation.path
    if path.startswith("/api/v2/gw"):
        kwargs["auth"] = Signed(
            INSTITUTION[1],
            {"Authorization": f"Bearer {token()}"},
            query=case.method.upper() == "GET",
        )
    elif path.startswith("/snap/") and not path.endswith("/access-token/b2b"):
        kwargs["auth"] = SnapSigned()
    elif path.startswith("/api/v2/ch"):
        kwargs["auth"] = Signed(CHANNEL[1], {"X-Channel": CHANNEL[0]}, query=False)
        if path.endswith(("/payment", "/reversal")):
            _before[id(case)] = balance()


@schemathesis.check
def money_unchanged_when_refused(ctx, response, case):
    """A payment or reversal answered with anything but SUCCESS changed no money."""
    before = _before.pop(id(case), None)
    if before is None:
        return None
    try:
        rc = response.json().get("rc")
    except Exception:
        rc = None
    if rc == "SUCCESS":
        return None
    after = balance()
    if after != before:
        raise AssertionError(
            f"refused ({response.status_code}, rc {rc}) yet the balance moved {before} -> {after}"
        )
    return None
