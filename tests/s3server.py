"""A real S3 server on loopback (moto's backend behind werkzeug), with a request tally.

moto holds its state in the process, so the server can be stopped (an outage) and started again
on the same port with the uploads it knew. `MotoProcess` runs one in a child process (its threads
then never take the GIL from a test's event loop) and asks it for the same hooks over stdin. The
tally counts the part and object PUTs the server received, which is how the crash test measures
what was sent again. moto does not check access keys, so the wrapper answers requests signed with
any other key id than the configured one (or a temporary key from moto's own STS, with its
session token) with the 403 InvalidAccessKeyId a real S3 gives. moto does not check the request
time either: with `max_skew_seconds` set, the wrapper answers a request whose X-Amz-Date is
further than that from its own clock with AWS's 403 RequestTimeTooSkewed (off by default: tests
that fake the daemon's clock for other reasons upload).
"""

from __future__ import annotations

import calendar
import io
import json
import logging
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

ACCESS_KEY = "edgedtestkey"
SECRET_KEY = "edgedtestsecret1234"
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")
REPO = Path(__file__).resolve().parents[1]
TALLY_COMMAND = "total_part_puts"
RESET_COMMAND = "reset"

StartResponse = Callable[..., Any]

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
    b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message>"
    b"</Error>"
)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


SKEWED = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code>'
    "<Message>The difference between the request time and the current time is too large.</Message>"
    "<RequestTime>{request}</RequestTime><ServerTime>{server}</ServerTime>"
    "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>"
)


def skew_refusal(amz_date: str, max_skew: float, now: float) -> bytes | None:
    """AWS's RequestTimeTooSkewed body when `amz_date` (20240101T120000Z) is too far from now."""
    try:
        stamp = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None
    if abs(stamp - now) <= max_skew:
        return None
    server = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return SKEWED.format(request=amz_date, server=server).encode()


class S3Server:
    """start() / stop() / start() again on the same port; `part_puts` counts PUTs per part."""

    def __init__(self, access_key: str = ACCESS_KEY, host: str = "127.0.0.1") -> None:
        self.access_key = access_key
        self.host = host
        # Fault injection: rewrite the ETag of HEAD answers (an S3 whose ETags are opaque).
        self.head_etag: Callable[[str], str] | None = None
        # Fault injection: refuse requests signed further than this from the server's clock.
        self.max_skew_seconds: float | None = None
        self.clock_offset_seconds = 0.0  # the server's clock against this machine's
        self.skew_refusals = 0
        self.sts_policies: list[str] = []  # the session policy of every AssumeRole asked for
        self.port = 0
        self.part_puts: Counter[tuple[str, int]] = Counter()
        self.gets: list[tuple[str, str]] = []  # (path, Range header) of every object GET
        self.heads: list[str] = []  # the path of every HEAD
        self.requests = 0
        # Fault injection: let this many more part PUTs through, then hold each next one until
        # release_held(), which answers it 503 (None: no limit). A crash test kills the client
        # while a PUT is held: at a point chosen by events, not by how fast the machine is.
        self.part_put_allowance: int | None = None
        self.held_puts = 0
        self._releases = 0
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            self.requests += 1
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        # Temporary keys from moto's STS start with ASIA and must come with their session token.
        temporary = bool(
            match and match.group(1).startswith("ASIA") and environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
        )
        if match and match.group(1) != self.access_key and not temporary:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [DENIED]
        if self.max_skew_seconds is not None:
            refusal = skew_refusal(
                environ.get("HTTP_X_AMZ_DATE", ""),
                self.max_skew_seconds,
                time.time() + self.clock_offset_seconds,
            )
            if refusal is not None:
                with self._lock:
                    self.skew_refusals += 1
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [] if environ["REQUEST_METHOD"] == "HEAD" else [refusal]
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/":
            self._note_assume_role(environ)
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].count("/") >= 2:
            with self._lock:
                self.gets.append((environ["PATH_INFO"], environ.get("HTTP_RANGE", "")))
        if environ["REQUEST_METHOD"] == "PUT":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            number = int(query["partNumber"][0]) if "partNumber" in query else 0
            with self._lock:
                self.part_puts[(environ["PATH_INFO"], number)] += 1
                held = number > 0 and self._hold()
            if held:
                start_response("503 Service Unavailable", [("Content-Type", "application/xml")])
                return [SLOW_DOWN]
        if environ["REQUEST_METHOD"] == "HEAD":
            with self._lock:
                self.heads.append(environ["PATH_INFO"])
        if environ["REQUEST_METHOD"] == "HEAD" and self.head_etag is not None:
            return self._app(environ, self._rewrite_etag(start_response, self.head_etag))
        return self._app(environ, start_response)

    def _hold(self) -> bool:
        """Whether this part PUT was held (called with the lock taken; waits while held)."""
        if self.part_put_allowance is None:
            return False
        if self.part_put_allowance > 0:
            self.part_put_allowance -= 1
            return False
        releases = self._releases
        self.held_puts += 1
        self._gate.notify_all()
        self._gate.wait_for(lambda: self._releases != releases, timeout=60)
        self.held_puts -= 1
        self._gate.notify_all()
        return True

    def release_held(self) -> None:
        """Answer every held part PUT with a 503, and wait until they are answered."""
        with self._gate:
            self._releases += 1
            self._gate.notify_all()
            self._gate.wait_for(lambda: self.held_puts == 0, timeout=10)

    def _note_assume_role(self, environ: dict[str, Any]) -> None:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") == ["AssumeRole"]:
            with self._lock:
                self.sts_policies.append(form.get("Policy", [""])[0])

    @staticmethod
    def _rewrite_etag(
        start_response: StartResponse, rewrite: Callable[[str], str]
    ) -> StartResponse:
        def rewritten(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            headers = [
                (name, rewrite(value) if name.lower() == "etag" else value)
                for name, value in headers
            ]
            return start_response(status, headers, *args)

        return rewritten

    def start(self) -> None:
        if self._server is not None:
            return
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def total_part_puts(self, path_suffix: str) -> int:
        with self._lock:
            return sum(n for (path, _), n in self.part_puts.items() if path.endswith(path_suffix))

    def reset(self) -> None:
        """As new, on the same port: serving, every fault hook off, every tally at zero, no PUT
        held (moto's buckets and objects: its /moto-api/reset)."""
        with self._gate:
            self.part_put_allowance = None
        self.release_held()
        with self._lock:
            self.head_etag = None
            self.max_skew_seconds = None
            self.clock_offset_seconds = 0.0
            self.skew_refusals = 0
            self.sts_policies = []
            self.part_puts = Counter()
            self.gets = []
            self.heads = []
            self.requests = 0
        self.start()


class MotoProcess:
    """An S3Server in a child python, whose threads take their own GIL, not this process's: the
    upload tests' event loop stays responsive while the server copies parts. start() runs the
    child (or serves again on the same port), stop() stops serving (an outage: the child keeps
    its objects and the port), close() ends the child. The fault hooks and tallies of S3Server
    are asked of the child over its stdin, one command and one JSON answer a line (`answer`)."""

    def __init__(self, *, wrapper: Sequence[str] = (), host: str = "127.0.0.1") -> None:
        self.access_key = ACCESS_KEY  # the child's S3Server() default
        self.port = 0
        self.host = host  # the address it listens on
        self._wrapper = tuple(wrapper)  # a command the child runs under (`ip netns exec NS`)
        self._process: subprocess.Popen[str] | None = None
        self._child_port = 0  # where the child serves (a test may point `port` elsewhere)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if self._process is not None:
            self._ask("start")
            return
        self._process = subprocess.Popen(
            [*self._wrapper, sys.executable, "-m", "tests.s3server", self.host],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port = self._process.stdout.readline().strip()
        if not port.isdigit():
            self.close()
            raise RuntimeError(f"the moto child did not say its port: {port!r}")
        self.port = self._child_port = int(port)

    def stop(self) -> None:
        """Stop serving; start() serves the same objects again on the same port."""
        if self._process is not None:
            self._ask("stop")

    def _ask(self, command: str) -> Any:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        with self._lock:
            process.stdin.write(command + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the moto child ended before answering {command!r}")
        reply = json.loads(line)
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"the moto child refused {command!r}: {reply['error']}")
        return reply

    def configure(self, **faults: float | str | None) -> None:
        """Set fault hooks in the child (SETTABLE); `head_etag` is the ETag every HEAD answers."""
        self._ask(f"set {json.dumps(faults)}")

    def total_part_puts(self, path_suffix: str) -> int:
        return int(self._ask(f"{TALLY_COMMAND} {path_suffix}"))

    def release_held(self) -> None:
        self._ask("release_held")

    @property
    def skew_refusals(self) -> int:
        return int(self._ask("get skew_refusals"))

    @property
    def held_puts(self) -> int:
        return int(self._ask("get held_puts"))

    @property
    def sts_policies(self) -> list[str]:
        return [str(policy) for policy in self._ask("get sts_policies")]

    @property
    def gets(self) -> list[tuple[str, str]]:
        return [(str(path), str(ranges)) for path, ranges in self._ask("get gets")]

    @property
    def heads(self) -> list[str]:
        return [str(path) for path in self._ask("get heads")]

    def reset(self) -> None:
        """The child as new for the next test (S3Server.reset; its objects: forget_moto_state),
        answers a test that timed out left unread skipped, `port` the child's again; a child
        that ended started again."""
        if self._process is None or self._process.poll() is not None:
            self.close()
            self.start()
            return
        self.port = self._child_port
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        token = secrets.token_hex(8)
        with self._lock:
            process.stdin.write(f"{RESET_COMMAND} {token}\n")
            process.stdin.flush()
            while (line := process.stdout.readline()) and json.loads(line) != token:
                pass
        if not line:
            raise RuntimeError("the moto child ended before it was reset")

    def close(self) -> None:
        """End the child and its objects."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()  # the child's cue to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


SETTABLE = frozenset({"max_skew_seconds", "clock_offset_seconds", "part_put_allowance"})
READABLE = frozenset({"skew_refusals", "held_puts", "sts_policies", "gets", "heads", "requests"})


def constant_etag(etag: str) -> Callable[[str], str]:
    return lambda _: etag


def configure(server: S3Server, faults: dict[str, Any]) -> None:
    """Apply a MotoProcess.configure() in the child."""
    unknown = set(faults) - SETTABLE - {"head_etag"}
    if unknown:
        raise ValueError(f"not a fault hook: {sorted(unknown)}")
    with server._lock:
        for name, value in faults.items():
            if name == "head_etag":
                server.head_etag = None if value is None else constant_etag(str(value))
            else:
                setattr(server, name, value)


def answer(server: S3Server, line: str) -> Any:
    """The child's JSON-able answer to one command line from MotoProcess."""
    command, _, argument = line.strip().partition(" ")
    if command == TALLY_COMMAND:
        return server.total_part_puts(argument)
    if command == RESET_COMMAND:
        server.reset()
        return argument  # the token MotoProcess.reset reads up to
    if command == "stop":
        server.stop()
    elif command == "start":
        server.start()
    elif command == "release_held":
        server.release_held()
    elif command == "set":
        configure(server, json.loads(argument))
    elif command == "get" and argument in READABLE:
        with server._lock:
            value = getattr(server, argument)
            return list(value) if isinstance(value, list) else value  # a copy, taken locked
    else:
        raise ValueError(f"unknown command {line.strip()!r}")
    return None


def main() -> None:
    """Run a server in its own process (benchmarks, MotoProcess): prints the port, answers each
    command line on stdin (`answer`) with a JSON line, stops when stdin closes."""
    server = S3Server(host=sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1")
    server.start()
    print(server.port, flush=True)
    for line in sys.stdin:
        try:
            reply = answer(server, line)
        except (ValueError, TypeError, OSError) as error:
            reply = {"error": str(error)}
        print(json.dumps(reply), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
