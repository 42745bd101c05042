"""When and how long to wait before repeating a failed HTTP request.

Rate limits (429), server errors (5xx) and lost connections are usually transient; anything else
(a bad request, a wrong key) fails the same way again, so it is not retried.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after_seconds(headers) -> float | None:
    """The server's requested wait from `Retry-After` (seconds or an HTTP date), or None."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        if retry_after is not None:
            # The server knows its own limits better than our guess, but an hour's wait is not worth it.
            return min(retry_after, self.backoff_max_s)
        # Exponential with jitter, so that workers hitting one limit together do not retry together.
        base = min(self.backoff_s * 2 ** retry, self.backoff_max_s)
        return base * random.uniform(0.5, 1.0)
