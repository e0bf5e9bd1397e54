"""Tiffin's own log lines: text with a [deployment/Service] prefix, or one JSON object per line."""

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from tiffin.server.logconfig import JsonFormatter, TextFormatter, configure


def record(message: str, level: int = logging.INFO, **fields: str) -> logging.LogRecord:
    made = logging.LogRecord("tiffin.events", level, __file__, 1, message, (), None)
    made.created = 1_800_000_000.25  # 2027-01-15T08:00:00.250Z
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def test_text_lines_name_the_deployment_and_service() -> None:
    line = TextFormatter().format(record("Replica r1 is ready.", deployment="demo", service="Echo"))

    assert line == "2027-01-15T08:00:00.250Z INFO    tiffin.events [demo/Echo] Replica r1 is ready."


def test_text_lines_without_a_deployment_have_no_prefix() -> None:
    line = TextFormatter().format(record("Listening.", level=logging.WARNING))

    assert line.endswith("WARNING tiffin.events Listening.")


def test_json_lines_carry_the_fields_as_keys() -> None:
    line = JsonFormatter().format(record("Replica r1 failed: boom.", logging.WARNING, deployment="demo"))

    assert json.loads(line) == {
        "time": "2027-01-15T08:00:00.250Z",
        "level": "warning",
        "logger": "tiffin.events",
        "message": "Replica r1 failed: boom.",
        "deployment": "demo",
    }


def test_json_lines_include_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("tiffin", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())

    entry = json.loads(JsonFormatter().format(failed))

    assert entry["message"] == "oops" and "ValueError: bad" in entry["exception"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("uvicorn.access", "tiffin.access"):
        logging.getLogger(name).disabled = False


def test_configure_sets_the_level_and_turns_access_logs_off(
    restore_logging: object, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("warning", "json", access_log=False)

    logging.getLogger("tiffin.events").info("not shown")
    logging.getLogger("tiffin.events").warning("shown", extra={"deployment": "demo"})
    logging.getLogger("tiffin.access").warning("an access line")

    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["shown"]


def test_access_logs_can_be_turned_on(restore_logging: object, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text", access_log=True)

    logging.getLogger("tiffin.access").info('127.0.0.1 "GET / HTTP/1.1" 200')

    assert 'tiffin.access 127.0.0.1 "GET / HTTP/1.1" 200' in capsys.readouterr().err
