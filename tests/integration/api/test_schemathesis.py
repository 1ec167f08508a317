"""Property-based run of the whole OpenAPI schema: no input may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from fixtures.api import ADMIN, build_api
from hypothesis import HealthCheck, given, settings

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
def app(database_url, redis_url, signing_key, tmp_path):
    app, r, engine, _settings, _clock = build_api(database_url, redis_url, signing_key, tmp_path)
    with TestClient(app):  # runs the lifespan (revocation list)
        yield app
    r.close()
    engine.dispose()


def test_no_server_errors(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[tuple] = []
    for operation in operations:
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {ADMIN}"})
            if response.status_code >= 500:
                failures.append((case.operation.label, response.status_code,
                                 response.text[:300], case.as_curl_command()))

        check()
    assert not failures, failures
