"""Salesforce's error answers: a JSON array of ``{"message", "errorCode", "fields"?}`` objects
("Status Codes and Error Responses",
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
Inside sObject Collections results the same codes appear as ``statusCode`` (see ``values.FieldProblem``).
"""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None,
                 body=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self._body = body
        self.headers = headers or {}

    def body(self):
        if self._body is not None:
            return self._body
        item = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def malformed_query(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", message)


def invalid_field(message: str, fields: list[str] | None = None) -> ApiError:
    return ApiError(400, "INVALID_FIELD", message, fields)


def bad_json(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message)
