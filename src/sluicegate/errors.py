"""One exception hierarchy for the whole gateway, rendered once at the edge.

    SluicegateError                      (500 api_error)
    ├── InvalidRequest                   400 invalid_request_error   a bad body; names the field
    │   └── ContentPolicyViolation       400 content_policy_violation; names the check
    ├── AuthenticationFailed             401 authentication_error
    ├── PermissionDenied                 403 permission_error
    ├── NotFound                         404 not_found_error
    │   └── ModelNotFound                404 model_not_found; lists the models
    ├── MethodNotAllowed                 405
    ├── Conflict                         409 the thing exists already, or changed meanwhile
    ├── PayloadTooLarge                  413
    ├── RateLimited                      429 rate_limit_exceeded; carries Retry-After
    ├── UpstreamError                    502 the upstream failed or answered nonsense
    │   └── UpstreamRejected             4xx about the request itself: status and reason pass
    ├── ServiceUnavailable               503 no healthy deployment, or shutting down
    └── UpstreamTimeout                  504 connect, first byte, stream idle or total deadline

Providers turn transport and upstream errors into the most specific class here
(``raise ... from exc``); ``server.errors`` turns any of them into the OpenAI
error body ``{"error": {"message", "type", "param", "code"}}`` with the request id.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "ContentPolicyViolation",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServiceUnavailable",
    "SluicegateError",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamTimeout",
]


class SluicegateError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-style body."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = headers or {}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(SluicegateError):
    status = 400
    type = "invalid_request_error"


class ContentPolicyViolation(InvalidRequest):
    """400: a guardrail blocked the request; names the check, nothing that helps evade it."""

    code = "content_policy_violation"

    def __init__(self, check: str) -> None:
        super().__init__(f"The request was blocked by the '{check}' check.")
        self.check = check


class AuthenticationFailed(SluicegateError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(SluicegateError):
    status = 403
    type = "permission_error"


class NotFound(SluicegateError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        listed = ", ".join(available) if available else "none configured"
        super().__init__(
            f"The model '{model}' does not exist. Available models: {listed}.", param="model"
        )


class MethodNotAllowed(SluicegateError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(SluicegateError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(SluicegateError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(SluicegateError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float, code: str | None = None, hinted: bool = True
    ) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, headers={"retry-after": str(seconds)})
        self.retry_after = retry_after
        #: False when the upstream gave no Retry-After and ``retry_after`` is our guess.
        self.hinted = hinted


class UpstreamError(SluicegateError):
    status = 502
    type = "upstream_error"
    code: str | None = "bad_gateway"


class UpstreamRejected(UpstreamError):
    """The upstream answered 4xx about the request itself; its verdict is the client's."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, headers=headers)
        self.status = status
        self.type = type
        self.code = code  # the upstream's own, even when it gave none


class ServiceUnavailable(SluicegateError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamTimeout(SluicegateError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
