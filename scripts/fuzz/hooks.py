"""Schemathesis hooks for ipg-switch (scripts/contract-fuzz.sh, docs/contracts.md).

Every generated request is made acceptable to the switch's door before it is sent, so
that the fuzzer reaches the handlers instead of stopping at authentication:
- /api/v2/gw/*: an OAuth 2.0 token of the demo's hosted institution (POST /oauth/token)
  and `Signature`, HMAC-SHA256 with its api_key over the raw body (POST, DELETE) or the raw
  query string (GET), which the hook builds itself so that it signs exactly what is sent;
- /api/v2/ch/*: `X-Channel` and `Signature` with the demo channel's key over the raw body.
A request whose signature is dropped on purpose is left to schemathesis's own negative
cases. The money check lives here too (`money_unchanged_when_refused`): a payment or
reversal answered with anything but SUCCESS must leave the institution's balance as it
was.
"""

import hashlib
import hmac
import json
import os
import urllib.parse

import requests
import requests.auth
import schemathesis

BASE = os.environ["FUZZ_BASE"]
INSTITUTION = ("SCH01", "demo-sch01-key")
CHANNEL = ("bank_syariah", "demo-bank-syariah-key")
_token = {}
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


@schemathesis.hook
def before_call(ctx, case, kwargs):
    path = case.operation.path
    if path.startswith("/api/v2/gw"):
        kwargs["auth"] = Signed(
            INSTITUTION[1],
            {"Authorization": f"Bearer {token()}"},
            query=case.method.upper() == "GET",
        )
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
