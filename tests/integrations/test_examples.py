"""The examples, in process (Flask, FastAPI) and through Django's manage.py check."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import meterstream
from helpers.recorded import sent

ROOT = Path(__file__).resolve().parents[2]


def import_example(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module(name)


def drive_example(http: Any) -> None:
    ok = http.get("/search", params={"q": "red shoes"}, headers={"X-Api-Key": "key_alice"})
    assert ok.status_code == 200
    assert ok.json()["customer"] == "cus_alice"
    done = http.post("/complete", json={"prompt": "hi there"}, headers={"X-Customer-Id": "cus_b"})
    assert done.json()["usage"]["total_tokens"] == 2 + 8
    assert (
        http.get("/search", params={"q": "x"}, headers={"X-Api-Key": "stolen"}).status_code == 401
    )


EXPECTED = [
    ("ai_search_api", "cus_alice", "1"),
    ("api_requests", "cus_alice", "1"),
    ("api_requests", "cus_b", "1"),
    ("llm_tokens", "cus_b", "10"),
]


def test_the_flask_example_bills_searches_tokens_and_requests(
    client: meterstream.MeterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    example = import_example("examples.flask_app.app", monkeypatch)
    http = example.create_app().test_client()

    class Http:  # Flask's test client, spoken like httpx
        def get(self, path: str, params: Any, headers: Any) -> Any:
            return Reply(http.get(path, query_string=params, headers=headers))

        def post(self, path: str, json: Any, headers: Any) -> Any:
            return Reply(http.post(path, json=json, headers=headers))

    class Reply:
        def __init__(self, response: Any) -> None:
            self.status_code = response.status_code
            self.json = lambda: response.get_json()

    drive_example(Http())
    assert sorted(sent(client)) == EXPECTED


def test_the_fastapi_example_bills_searches_tokens_and_requests(
    client: meterstream.MeterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient
    example = import_example("examples.fastapi_app.app", monkeypatch)
    with TestClient(example.app) as http:
        drive_example(http)
    assert sorted(sent(client)) == EXPECTED


def manage_py_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "django_app" / "manage.py"), "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_the_django_example_passes_manage_py_check_and_a_wrong_setting_fails_it() -> None:
    pytest.importorskip("django")
    good = manage_py_check({"METERSTREAM_EXPORTER": "none"})
    assert good.returncode == 0, good.stderr
    bad = manage_py_check({"METERSTREAM_BATCH_SIZE": "500"})
    assert bad.returncode != 0
    assert "(meterstream.E001) METERSTREAM_BATCH_SIZE: must be between 1 and 100" in bad.stderr
