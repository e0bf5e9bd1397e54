"""Turns every error a user can cause into a 4xx JSON body with one sentence, never a traceback."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tiffin.core.errors import TiffinError
from tiffin.core.ids import new_uid

log = logging.getLogger("tiffin.api")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TiffinError, _tiffin_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": status_code}, status_code=status_code)


async def _tiffin_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TiffinError)
    return error_response(exc.status_code, exc.message)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, describe_validation_error(exc))


def describe_validation_error(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON: send a JSON object."
    return f"The field `{where or 'body'}` is invalid: {first.get('msg', 'bad value')}."


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"There is no endpoint {request.method} {request.url.path} on this Tiffin server."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with a trace id that the bentoml client shows to the user."""
    trace_id = new_uid()
    log.error("trace %s: %s %s failed", trace_id, request.method, request.url.path, exc_info=exc)
    response = error_response(500, f"Tiffin hit an internal error (trace ID {trace_id}); please report it.")
    response.headers["x-trace-id"] = trace_id
    return response
