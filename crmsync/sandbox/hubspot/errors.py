"""HubSpot-shaped API errors: raised where a problem is detected, rendered by the app (§6.4)."""
from __future__ import annotations


class ApiError(Exception):
    """An error the sandbox answers with HubSpot's JSON body: status, category, message, context."""

    def __init__(self, status: int, category: str, message: str, context: dict | None = None,
                 errors: list | None = None, extra: dict | None = None, headers: list | None = None):
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.context = context
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or []

    def body(self, correlation_id: str) -> dict:
        out = {"status": "error", "message": self.message, "correlationId": correlation_id}
        if self.context is not None:
            out["context"] = self.context
        if self.errors is not None:
            out["errors"] = self.errors
        out["category"] = self.category
        out.update(self.extra)
        return out


def validation(message: str, **kw) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, **kw)


def not_found(object_id: str) -> ApiError:
    return ApiError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                    context={"id": [str(object_id)]})


def property_errors(problems: list[tuple[str, str, str]]) -> ApiError:
    """problems: (property name, code, message) -> HubSpot's 'Property values were not valid' 400."""
    import json

    inner = [{"isValid": False, "message": msg, "error": code, "name": name} for name, code, msg in problems]
    return validation(
        "Property values were not valid: " + json.dumps(inner, separators=(",", ":")),
        errors=[{"message": msg, "code": code, "context": {"propertyName": [name]}} for name, code, msg in problems],
    )
