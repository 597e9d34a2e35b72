"""How boxes of one event prove to each other that they hold the event's peer secret, without
ever sending it (review 19, finding 1): a request carries an HMAC over its method, path, Range,
a timestamp and a random nonce, keyed from the secret; the answer (a listing, a manifest)
carries an HMAC over the request's nonce and the body's digest, so a responder without the
secret can neither collect it nor pose as a peer. Pure, except `new_nonce` and the clock passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict

SCHEME = "EdgedPeer"
ANSWER_HEADER = "X-Edged-Peer-Mac"
TIME_HEADER = "X-Edged-Peer-Time"  # a peer's clock, stated when it refuses a request's time
SKEW_SECONDS = 300.0  # a request's timestamp may differ this much from this box's clock
NONCES_HELD = 8192  # nonces remembered within the window; more fresh ones: refused (a flood)
_INFO = b"edged peer v1"
_HEADER = re.compile(r"^EdgedPeer t=(\d{1,12}),n=([0-9a-f]{32}),m=([0-9a-f]{64})$")


def peer_key(secret: str) -> bytes:
    """The key every MAC uses: HKDF-SHA256 (RFC 5869, one block) of the secret; the secret
    itself never leaves the box."""
    prk = hmac.new(b"edged peers", secret.encode("utf-8", "surrogateescape"), "sha256").digest()
    return hmac.new(prk, _INFO + b"\x01", "sha256").digest()


def secret_weakness(secret: str, minimum: int = 16) -> str:
    """Why `secret` is too weak to be the event's peer secret, or "": at least `minimum`
    characters, of at least two kinds (lower case, upper case, digits, others) and at least
    8 different ones ("galagalagalagala" is refused). Random bytes pass: head -c 32 /dev/urandom
    | base64."""
    kinds = {
        "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other"
        for c in secret
    }
    if len(secret) < minimum:
        return f"shorter than {minimum} characters"
    if len(kinds) < 2 or len(set(secret)) < 8:
        return "too simple (one kind of character, or fewer than 8 different ones)"
    return ""


def new_nonce() -> str:
    return secrets.token_hex(16)


def _request_mac(key: bytes, method: str, path: str, range_: str, stamp: int, nonce: str) -> str:
    message = "\n".join(("request", method.upper(), path, range_, str(stamp), nonce))
    return hmac.new(key, message.encode("utf-8", "surrogateescape"), "sha256").hexdigest()


def authorization(key: bytes, method: str, path: str, range_: str, now: float, nonce: str) -> str:
    """The Authorization header of one request (path with its query, as sent)."""
    stamp = int(now)
    return f"{SCHEME} t={stamp},n={nonce},m={_request_mac(key, method, path, range_, stamp, nonce)}"


def answer_mac(key: bytes, nonce: str, body: bytes) -> str:
    """The answer's proof: the request's nonce and the body's sha256, under the key."""
    message = b"answer\n" + nonce.encode() + b"\n" + hashlib.sha256(body).digest()
    return hmac.new(key, message, "sha256").hexdigest()


def clock_offset(stated: str, now: float) -> float | None:
    """How far a peer's clock (TIME_HEADER of its refusal) is ahead of ours; None when it
    states none. A box without NTP then signs with the peer's time: the peer still checks the
    MAC, the window and the nonce (a wrong offset only makes that peer refuse again)."""
    try:
        return float(int(stated)) - now
    except ValueError:
        return None


def answer_verifies(key: bytes, nonce: str, body: bytes, presented: str) -> bool:
    return hmac.compare_digest(answer_mac(key, nonce, body), presented.strip())


class RequestVerifier:
    """Checks requests' MACs: constant time, a timestamp within SKEW_SECONDS, each nonce once."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> when it may be forgotten

    def check(
        self, method: str, path: str, range_: str, header: str, now: float
    ) -> tuple[str, str]:
        """(nonce, "") when the request is a peer's; ("", reason) otherwise. A reason of
        "missing" means no peer credentials at all."""
        if not header.startswith(SCHEME + " "):
            return "", "missing"
        found = _HEADER.match(header.strip())
        if found is None:
            return "", "malformed"
        stamp, nonce, presented = int(found[1]), found[2], found[3]
        expected = _request_mac(self._key, method, path, range_, stamp, nonce)
        if not hmac.compare_digest(expected, presented):
            return "", "wrong"
        if abs(now - stamp) > SKEW_SECONDS:
            return "", "stale"
        return (nonce, "") if self._remember(nonce, now) else ("", "replayed")

    def _remember(self, nonce: str, now: float) -> bool:
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if nonce in self._seen or len(self._seen) >= NONCES_HELD:
            return False
        self._seen[nonce] = now + 2 * SKEW_SECONDS
        return True


class WrongTries:
    """Requests without a valid MAC, per client: `burst` at once, then one per `interval`
    seconds; a client past that is refused before its MAC is even looked at. It remembers
    `max_clients` addresses; the least recent is forgotten first."""

    def __init__(self, burst: int = 10, interval: float = 30.0, max_clients: int = 4096) -> None:
        self._burst = float(burst)
        self._interval = interval
        self._max_clients = max_clients
        self._tries: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> left, when

    def _left(self, client: str, now: float) -> float:
        left, updated = self._tries.get(client, (self._burst, now))
        return min(self._burst, left + (now - updated) / self._interval)

    def blocked(self, client: str, now: float) -> bool:
        return self._left(client, now) < 1.0

    def failed(self, client: str, now: float) -> None:
        left = self._left(client, now)
        self._tries.pop(client, None)
        self._tries[client] = (max(0.0, left - 1.0), now)
        while len(self._tries) > self._max_clients:
            self._tries.popitem(last=False)
