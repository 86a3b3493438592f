"""Vulnerability data for pip-audit on a machine that reaches only the package index.

pip-audit asks a vulnerability service about each pinned release: the index's per-release JSON
(its "pypi" service) or OSV. Where neither answers (this workplace reaches the index's project
pages, /pypi/<name>/json, and nothing else), this script stands in for OSV's query API on the
loopback interface, answered from those project pages. A project page lists the advisories of
the project's newest release only, so:

- a pin of the newest release gets exactly those advisories;
- an older pin, or a project the index does not know, cannot be audited from it: it is named
  on standard error as "not audited" (a warning, not a finding: a new upstream release must not
  turn CI red on its own), and raising the pin makes it auditable.

    python osv_from_pypi.py probe   prints the service pip-audit can use here: pypi, osv, index or none
    python osv_from_pypi.py serve   serves POST /v1/query on a free local port, printed first
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip._internal.models.index import PyPI  # the index pip uses by default, and its JSON pages

JSON_BASE = os.environ.get("PIP_AUDIT_JSON_BASE", PyPI.pypi_url).rstrip("/")
OSV_URL = "https://api.osv.dev/v1/query"  # pip-audit's default for its "osv" service
TIMEOUT = 30
CONTEXT = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)


def fetch(url: str, body: bytes | None = None) -> dict:
    """A JSON document from the index (or OSV); urllib's errors pass through."""
    request = urllib.request.Request(url, data=body, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=CONTEXT) as response:
        return json.load(response)


def answers(url: str, body: bytes | None = None) -> bool:
    try:
        fetch(url, body)
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors; bad JSON a ValueError
        return False
    return True


def probe() -> str:
    """The first vulnerability service that answers from this machine."""
    if answers(f"{JSON_BASE}/pip-audit/2.10.1/json"):
        return "pypi"
    if answers(OSV_URL, json.dumps({"package": {"name": "pip-audit", "ecosystem": "PyPI"}}).encode()):
        return "osv"
    if answers(f"{JSON_BASE}/pip-audit/json"):
        return "index"
    return "none"


def fixed_range(name: str, fixed: list[str]) -> list[dict]:
    events: list[dict] = [{"introduced": "0"}, *({"fixed": version} for version in fixed)]
    return [
        {"package": {"name": name, "ecosystem": "PyPI"}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}
    ]


def unaudited(name: str, version: str, why: str) -> list[dict]:
    """No advisories can be known for this pin here: say so, and answer none."""
    print(f"not audited: {name} {version} ({why})", file=sys.stderr, flush=True)
    return []


def advisories(name: str, version: str) -> list[dict]:
    """OSV entries for one pinned release, from its project's page on the index."""
    try:
        page = fetch(f"{JSON_BASE}/{name}/json")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return unaudited(name, version, "the index does not know this project")
        raise
    newest = page["info"]["version"]
    try:
        same = Version(version) == Version(newest)
    except InvalidVersion:
        same = version == newest
    if not same:
        why = f"the index publishes advisories for its newest release only ({newest})"
        return unaudited(name, version, why)
    return [
        {
            "id": entry["id"],
            "aliases": entry.get("aliases") or [],
            "summary": entry.get("summary") or entry.get("details") or "N/A",
            "withdrawn": entry.get("withdrawn"),
            "affected": fixed_range(name, entry.get("fixed_in") or []),
        }
        for entry in page.get("vulnerabilities") or []
    ]


class Query(BaseHTTPRequestHandler):
    """POST /v1/query with {"package": {"name", "ecosystem": "PyPI"}, "version"}, as OSV takes it."""

    def do_POST(self) -> None:
        try:
            query = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            name = canonicalize_name(query["package"]["name"])
            vulns = advisories(name, str(query["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            return self.answer(400, {"error": f"not an OSV query: {exc}"})
        except OSError as exc:  # the index did not answer: pip-audit fails, as it should
            return self.answer(502, {"error": f"the index did not answer: {exc}"})
        return self.answer(200, {"vulns": vulns} if vulns else {})

    def answer(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # pip-audit's own output says enough
        pass


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Query)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "probe":
        print(probe())
    elif command == "serve":
        serve()
    else:
        sys.exit(__doc__)
