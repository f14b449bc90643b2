"""Rate limiting of the fake Discord REST API: per-route buckets, a global limit and injected faults.

Headers and 429 bodies follow https://discord.com/developers/docs/topics/rate-limits; discord.py 2.7
(`discord/http.py`, `HTTPClient.request`) reads `X-RateLimit-*` to pre-empt exhausted buckets, takes
`retry_after` from the 429 JSON body, and treats a 429 without a `Via` header as a Cloudflare ban
(it raises instead of retrying), so every 429 here carries `Via: 1.1 google`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from dataclasses import dataclass, field

# What Discord's edge adds to API responses; discord.py checks its presence on 429s (see module docstring).
VIA_HEADER = "1.1 google"
RATE_LIMITED_MESSAGE = "You are being rate limited."


@dataclass(frozen=True)
class BucketRule:
    """`limit` requests per fixed window of `window_s` seconds."""

    limit: int
    window_s: float


@dataclass(frozen=True)
class RateLimitConfig:
    """Bucket sizes of the fake. Real Discord announces them in headers; these are its observed values.

    Edits and creates in one channel each share a bucket of 5 per 5 s (the figure FACTS.md and the issue use);
    the global limit is 50 requests/s with interaction callbacks and follow-ups exempt
    (https://discord.com/developers/docs/topics/rate-limits#global-rate-limit).
    """

    edit_message: BucketRule = BucketRule(5, 5.0)
    create_message: BucketRule = BucketRule(5, 5.0)
    default: BucketRule = BucketRule(50, 1.0)
    global_limit: BucketRule = BucketRule(50, 1.0)


@dataclass
class _Window:
    remaining: int
    resets_at: float  # time.monotonic()
    reset_epoch: float  # time.time(), for X-RateLimit-Reset


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float
    is_global: bool


@dataclass(frozen=True)
class Verdict:
    """What to answer: `status` None means serve the request normally with `headers` added."""

    headers: dict[str, str]
    status: int | None = None
    body: dict[str, object] | None = None


@dataclass
class RateLimiter:
    config: RateLimitConfig = field(default_factory=RateLimitConfig)
    served_429: int = 0
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _global_times: deque[float] = field(default_factory=deque)
    _faults: dict[str, _Fault] = field(default_factory=dict)

    def inject(self, route: str, *, status: int, count: int, retry_after: float, is_global: bool) -> None:
        """The next `count` requests on `route` ("PATCH /channels/{channel_id}/messages/{message_id}") fail."""
        self._faults[route] = _Fault(status, count, retry_after, is_global)

    def rule_for(self, bucket: str) -> BucketRule:
        rule = getattr(self.config, bucket, None)
        return rule if isinstance(rule, BucketRule) else self.config.default

    def check(self, *, route: str, bucket: str, major: str, exempt_from_global: bool) -> Verdict:
        fault = self._faults.get(route)
        if fault is not None and fault.remaining > 0:
            fault.remaining -= 1
            if fault.status == 429:
                return self._too_many(fault.retry_after, bucket=bucket, is_global=fault.is_global, headers={})
            return Verdict(headers={"Via": VIA_HEADER}, status=fault.status, body={"message": "500: Internal Server Error", "code": 0})

        now = time.monotonic()
        if not exempt_from_global:
            limit = self.config.global_limit
            while self._global_times and now - self._global_times[0] >= limit.window_s:
                self._global_times.popleft()
            if len(self._global_times) >= limit.limit:
                retry = limit.window_s - (now - self._global_times[0])
                return self._too_many(retry, bucket=bucket, is_global=True, headers={})
            self._global_times.append(now)

        rule = self.rule_for(bucket)
        window = self._windows.get((bucket, major))
        if window is None or now >= window.resets_at:
            window = _Window(rule.limit, now + rule.window_s, time.time() + rule.window_s)
            self._windows[(bucket, major)] = window
        reset_after = max(window.resets_at - now, 0.0)
        if window.remaining <= 0:
            return self._too_many(reset_after, bucket=bucket, is_global=False, headers=self._headers(rule, window, bucket, reset_after))
        window.remaining -= 1
        return Verdict(headers=self._headers(rule, window, bucket, reset_after))

    def _headers(self, rule: BucketRule, window: _Window, bucket: str, reset_after: float) -> dict[str, str]:
        return {
            "Via": VIA_HEADER,
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": f"{window.reset_epoch:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(bucket),
        }

    def _too_many(self, retry_after: float, *, bucket: str, is_global: bool, headers: dict[str, str]) -> Verdict:
        self.served_429 += 1
        retry_after = round(max(retry_after, 0.001), 3)
        headers = {
            **headers,
            "Via": VIA_HEADER,
            # Retry-After is whole seconds in Discord's header; the body's float is what clients should use.
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body: dict[str, object] = {"message": RATE_LIMITED_MESSAGE, "retry_after": retry_after, "global": is_global}
        return Verdict(headers=headers, status=429, body=body)


def bucket_hash(bucket: str) -> str:
    """An opaque, stable bucket id like Discord's `X-RateLimit-Bucket`."""
    return hashlib.sha1(bucket.encode()).hexdigest()[:32]
