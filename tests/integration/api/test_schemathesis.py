"""Contract checks of the whole OpenAPI schema against a running ``facegrid server``.

Every operation gets generated requests, valid and invalid, with the admin
token; each reply must be no server error, a status the operation declares,
a declared content type, declared headers, a body matching the declared
schema (errors included: the one ErrorOut shape), and invalid data must be
refused.  The store holds a few rows of each kind so that reads of existing
ids answer 200 too, not only 404.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from fixtures.api_server import start_server, stop_server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    FailureGroup,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
EXAMPLES = 25


@pytest.fixture
def server(database_url, redis_url, tmp_path):
    live = start_server(tmp_path, redis_url, database_url=database_url)
    try:
        _seed(live)
        yield live
    finally:
        stop_server(live)


def _seed(live) -> None:
    with httpx.Client(base_url=f"{live.url}{API_PREFIX}", headers=live.admin, timeout=10) as c:
        sched = c.post("/schedules", json={
            "name": "office", "timezone": "Europe/Berlin",
            "shifts": [{"weekday": d, "start": "08:00", "end": "16:00"} for d in range(5)]})
        sched.raise_for_status()
        group = c.post("/groups", json={"name": "team", "schedule_id": sched.json()["id"]})
        group.raise_for_status()
        for i in range(3):
            p = c.post("/people", json={"name": f"Person {i}"})
            p.raise_for_status()
            c.put(f"/groups/{group.json()['id']}/members/{p.json()['id']}").raise_for_status()
        c.post("/closures", json={"day": "2026-12-24", "name": "Christmas Eve"}).raise_for_status()
        c.post("/api-tokens", json={"name": "viewer-1", "role": "viewer"}).raise_for_status()


def _fuzz(operation, mode: GenerationMode, server, failures: dict[str, str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, headers=server.admin))
    def check(case):
        try:
            case.call_and_validate(base_url=server.url, checks=CHECKS)
        except (AssertionError, FailureGroup) as e:
            failures.setdefault(f"{operation.label} [{mode.value}]",
                                f"{str(e)[:1500]}\n{case.as_curl_command()}")

    try:
        check()
    except Unsatisfiable:
        # No parameters and no body: nothing can be invalid.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_contract_checks(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 60
    failures: dict[str, str] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, server, failures)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in sorted(failures.items()))
