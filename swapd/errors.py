"""Errors swapd raises on purpose.

SwapdError
├── ConfigError            invalid configuration; carries every problem found
├── ProcessStartError      a model's child failed to become ready
└── SwapdHttpError         anything answered to an HTTP client; knows its status and body
    ├── BadRequest (400), Unauthorized (401), ModelNotFound (404), PayloadTooLarge (413)
    ├── ConcurrencyLimited (429), UpstreamError (502), ModelUnavailable (503)
"""

from __future__ import annotations

from typing import Any, ClassVar


class SwapdError(Exception):
    """Base for every error swapd raises on purpose."""


class ConfigError(SwapdError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}")


class ProcessStartError(SwapdError):
    """A child exited before it was ready, or did not become ready in time."""


_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class SwapdHttpError(SwapdError):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        error_type = _ERROR_TYPES.get(self.status, "server_error")
        return {
            "error": {"message": str(self), "type": error_type, "code": self.code, "param": None}
        }


class BadRequest(SwapdHttpError):
    status, code = 400, "bad_request"


class Unauthorized(SwapdHttpError):
    status, code = 401, "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="swapd"'}


class ModelNotFound(SwapdHttpError):
    status, code = 404, "model_not_found"


class MethodNotAllowed(SwapdHttpError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(SwapdHttpError):
    status, code = 413, "payload_too_large"


class ConcurrencyLimited(SwapdHttpError):
    status, code = 429, "concurrency_limit"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class UpstreamError(SwapdHttpError):
    status, code = 502, "upstream_error"


class ModelUnavailable(SwapdHttpError):
    status, code = 503, "model_unavailable"
