"""The domain errors every ragward package raises.

Packages raise these (or subclasses) and never import the web framework; the
HTTP layer maps them to the contract's error JSON in one place
(:mod:`ragward.http_errors`)::

    RagwardError                      500 internal
    ├── BadRequest                    400 bad_request
    ├── ValidationFailed              422 validation_error   (.field)
    ├── Unauthenticated               401 invalid_token
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found
    ├── PayloadTooLarge               413 payload_too_large
    ├── QuotaExceeded                 429 quota_exceeded     (.retry_after, .limit, ...)
    ├── UpstreamError                 502 upstream_error     (retriable)
    │   ├── UpstreamUnavailable       503 upstream_unavailable
    │   └── UpstreamTimeout           504 upstream_timeout
    ├── Overloaded                    503 overloaded
    └── DependencyUnavailable         503 dependency_unavailable
    ConfigError                       (start-up only; never reaches a client)

``status`` is the HTTP status the contract assigns; ``retriable`` tells callers
whether trying again may succeed, so retry logic reads an attribute, not text.
"""

from __future__ import annotations


class RagwardError(Exception):
    code: str = "internal"
    status: int = 500
    retriable: bool = False
    default_message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """Extra response headers the contract asks for with this error."""
        return {}


class BadRequest(RagwardError):
    code, status, default_message = "bad_request", 400, "malformed request"


class ValidationFailed(RagwardError):
    code, status, default_message = "validation_error", 422, "invalid request"

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(RagwardError):
    code, status, default_message = "invalid_token", 401, "missing or invalid bearer token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(RagwardError):
    code, status, default_message = "forbidden", 403, "the token's roles do not allow this"


class NotFound(RagwardError):
    code, status, default_message = "not_found", 404, "not found"


class PayloadTooLarge(RagwardError):
    code, status, default_message = "payload_too_large", 413, "request body too large"


class QuotaExceeded(RagwardError):
    code, status, default_message = "quota_exceeded", 429, "quota exceeded"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int,
        limit: int,
        remaining: int,
        reset: int,
    ) -> None:
        super().__init__(message)
        self.retry_after, self.limit, self.remaining, self.reset = (
            retry_after, limit, remaining, reset,
        )

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, self.retry_after)),
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset),
        }


class UpstreamError(RagwardError):
    code, status, default_message = "upstream_error", 502, "the RAG service failed"
    retriable = True


class UpstreamUnavailable(UpstreamError):
    code, status, default_message = "upstream_unavailable", 503, "the RAG service is unavailable"


class UpstreamTimeout(UpstreamError):
    code, status = "upstream_timeout", 504
    default_message = "the RAG service did not answer in time"


class Overloaded(RagwardError):
    code, status, default_message = "overloaded", 503, "too many requests in flight; retry shortly"
    retriable = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class DependencyUnavailable(RagwardError):
    code, status, default_message = (
        "dependency_unavailable", 503, "a required dependency is unavailable",
    )
    retriable = True


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""
