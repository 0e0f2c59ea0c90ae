"""Token buckets in front of the public sign-in routes of both portals: per client address and overall.

A refused request gets `429 rate_limited` with `Retry-After` before anything else runs: no API key
check, no call to identity or mfa, so no password is hashed for it.

Two groups of routes have buckets of their own: the password steps (`sign-in`, a password change, a
system agent's decision by email and password: each an argon2 hash in identity) and the steps that carry
a challenge or a token (`verify`, `dismiss-prompt`, `setup/*`, `password-reset`).
Each group has a bucket per client address and one for every address together. A bucket holds a
minute's worth of requests and refills continuously, so a source may spend a minute's allowance at
once, then one request per 60/N seconds.

Why in the gateway process and not in PostgreSQL: a shared bucket would cost a database write per
request before anything is refused, so a flood would load the database in order to be turned away.
Buckets here cost no I/O; the price is that they count per replica, so N gateway replicas behind
the Ingress let a source make N times the configured rate (docs/operations.md sizes them). What must
hold across replicas is held in identity's database: failed passwords per email and per source.

The client address is the socket's peer, unless that peer is one of TRUSTED_PROXIES: then it is the
rightmost X-Forwarded-For hop that is not a trusted proxy. Each proxy appends the address it got the
request from, so the hops left of the first untrusted one are whatever the client chose to send.
IPv6 addresses count per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from mfaplane_eventing.aggregate import Refusal, Rejected

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_PREFIX = 64
# Buckets kept per group; the least recently used goes first. A bucket left alone for a minute is
# full again, the same as none, so only a source rotating through more addresses than this within a
# minute regains tokens early, and the overall bucket still holds it.
MAX_SOURCES = 50_000
RATE_LIMITED = "rate_limited"
RATE_LIMITED_RESPONSE: dict[int | str, dict[str, Any]] = {429: {
    "description": "Too many requests from this client, or from all clients together; retry after Retry-After "
                   "seconds (problem+json, `rate_limited`; `server_busy` when identity's password hashing is full)",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}}


@dataclass(slots=True)
class TokenBucket:
    size: float
    per_second: float
    tokens: float
    at: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> TokenBucket:
        return cls(per_minute, per_minute / 60, per_minute, now)

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: there is one now)."""
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second

    def take(self) -> None:
        self.tokens -= 1


class Buckets:
    """One bucket per source, at most MAX_SOURCES of them."""

    def __init__(self, per_minute: int, max_sources: int = MAX_SOURCES) -> None:
        self._per_minute = per_minute
        self._max = max_sources
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def of(self, source: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket.full(self._per_minute, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return bucket


class RouteLimit:
    """The buckets of one group of routes: one per source and one for all sources together."""

    def __init__(self, per_source_per_minute: int, overall_per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Monotonic, not the services' clock: a rate is real time, and the fake clock of the tests
        # jumps by days.
        self._clock = clock
        self._sources = Buckets(per_source_per_minute)
        self._overall = TokenBucket.full(overall_per_minute, clock())

    def admit(self, source: str) -> None:
        """Takes a token from both buckets, or from neither and refuses with the longer wait."""
        now = self._clock()
        buckets = (self._sources.of(source, now), self._overall)
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise Rejected(RATE_LIMITED, f"Too many sign-in requests; retry in {retry_after} seconds.",
                           Refusal.THROTTLED,
                           retry_after=retry_after)
        for bucket in buckets:
            bucket.take()


class RateLimits:
    """What the gateway holds for the sign-in routes: the trusted proxies and each group's buckets."""

    def __init__(self, trusted_proxies: Sequence[IPNetwork], sign_in: RouteLimit, challenge: RouteLimit) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        self.groups = {"sign_in": sign_in, "challenge": challenge}

    @classmethod
    def from_settings(cls, s: Any) -> RateLimits:
        return cls(s.trusted_proxies, RouteLimit(s.sign_in_per_minute_per_source, s.sign_in_per_minute),
                   RouteLimit(s.challenge_per_minute_per_source, s.challenge_per_minute))


def client_address(peer: str, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]) -> str:
    """The source a request is counted against: the peer, or behind trusted proxies the rightmost
    X-Forwarded-For hop that is not one of them. A hop that is not an address stops the walk at the
    proxy that passed it on, so garbage groups requests together instead of setting them apart."""
    address = _address(peer)
    if address is None:
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while hops and any(address in network for network in trusted_proxies):
        hop = _address(hops.pop())
        if hop is None:
            break
        address = hop
    return _source(address)


def _address(text: str) -> IPAddress | None:
    """An address from an X-Forwarded-For hop or a peer: bare, or `v4:port`, or `[v6]` with a port."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _source(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


async def client_source(request: Request) -> str:
    limits: RateLimits = request.app.state.rate_limits
    peer = request.client.host if request.client else ""
    return client_address(peer, request.headers.getlist("x-forwarded-for"), limits.trusted_proxies)


ClientSource = Annotated[str, Depends(client_source)]


def admit(request: Request, group: str, source: str) -> None:
    """Takes a request of `group` from `source`'s bucket and the overall one, or refuses it (429)."""
    limit: RouteLimit = request.app.state.rate_limits.groups[group]  # typed: the API docs follow it (api_docs.py)
    limit.admit(source)


class _Limited:
    def __init__(self, group: str) -> None:
        self.group = group

    async def __call__(self, request: Request, source: ClientSource) -> None:
        admit(request, self.group, source)


# For a route's `dependencies`, which run before its parameters' (the API key check among them).
SIGN_IN_LIMIT = Depends(_Limited("sign_in"))
CHALLENGE_LIMIT = Depends(_Limited("challenge"))
