"""``facegrid api-token create|list|revoke`` on the server's store; the API honours the result."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from facegrid.cli import app

pytestmark = pytest.mark.integration


def run(*args: str):
    result = CliRunner().invoke(app, ["api-token", *args])
    return result


def test_cli_tokens_work_in_the_api_until_revoked(api):
    url = api.settings.database_url
    created = run("create", "hr-reports", "--role", "viewer", "--expires-in", "7d",
                  "--database-url", url)
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("fgk_")
    headers = {"Authorization": f"Bearer {token}"}
    me = api.client.get("/api/v1/auth/me", headers=headers).json()
    assert (me["name"], me["role"]) == ("hr-reports", "viewer") and me["expires_at"]
    assert api.client.get("/api/v1/attendance", headers=headers).status_code == 200
    assert api.client.post("/api/v1/people", headers=headers,
                           json={"name": "X"}).status_code == 403

    listed = run("list", "--database-url", url)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["role"], r["created_by"].startswith("cli:")) for r in rows] == [
        ("hr-reports", "viewer", True)]
    assert token not in listed.stdout

    dup = run("create", "hr-reports", "--database-url", url)
    assert dup.exit_code == 1 and "already exists" in dup.output
    bad = run("create", "x", "--role", "root", "--database-url", url)
    assert bad.exit_code == 1 and "root" in bad.output

    revoked = run("revoke", "hr-reports", "--database-url", url)
    assert revoked.exit_code == 0, revoked.output
    assert api.client.get("/api/v1/attendance", headers=headers).status_code == 401
    assert run("list", "--database-url", url).stdout.strip() == ""
    assert "hr-reports" in run("list", "--all", "--database-url", url).stdout
    assert run("revoke", "nobody", "--database-url", url).exit_code == 1
