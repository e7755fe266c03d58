"""No patient data leaves without its committed audit row: the request's transaction (with the
read audit) commits before the response is sent, so a commit that fails — a database that dies
or refuses mid-request — becomes an error answer, never a delivered record without a trace."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from carepool.core.audit import AuditRecord
from tests.conftest import Tokens
from tests.identity.conftest import Fed, fed

__all__ = ["fed"]


def test_a_read_whose_audit_cannot_commit_delivers_nothing(
    app: Any, tokens: Tokens, fed: Fed
) -> None:
    admin = tokens.admin()
    path = f"/fhir/Patient/{fed.zhang_hosp}"
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get(path, headers=admin).status_code == 200  # the read works

        def refuse(_conn: Any) -> None:
            raise RuntimeError("the database went away before the commit")

        event.listen(app.state.engine, "commit", refuse)
        try:
            response = client.get(path, headers=admin)
        finally:
            event.remove(app.state.engine, "commit", refuse)
    assert response.status_code == 500
    assert "张" not in response.text and fed.zhang_hosp not in response.text
    with app.state.sessions() as session:
        reads = session.scalars(
            select(AuditRecord).where(AuditRecord.entity_id == fed.zhang_hosp)
        ).all()
    assert len([r for r in reads if r.action.value == "R"]) == 1  # only the first read


def test_answers_are_sent_after_the_commit(app: Any, tokens: Tokens) -> None:
    """The order of events inside one request: commit, then the first byte of the answer."""
    seen: list[str] = []
    event.listen(app.state.engine, "commit", lambda _c: seen.append("commit"))
    admin = tokens.admin()

    async def recorder(scope: Any, receive: Any, send: Any) -> None:
        async def tracked(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.append("response")
            await send(message)

        await inner(scope, receive, tracked)

    inner = app.build_middleware_stack()
    app.middleware_stack = recorder
    with TestClient(app) as client:
        client.get("/fhir/Patient", headers=admin)
    assert seen[:2] == ["commit", "response"], seen
