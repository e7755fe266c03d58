"""Refusals under load: every refused request is audited, and refusing never stalls the server.

A refusal's audit row is written in a transaction of its own (the request itself rolls back). It
used to be written on the event loop, waiting for one of the process's few pooled connections,
which the requests in flight could not give back while the loop was blocked: about eight
concurrent 403s froze a server for the pool timeout and lost most of their audit rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from carepool.catalog import actions as catalog_actions
from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.auth import Principal, Role
from tests.conftest import Tokens
from tests.factories import small_catalog

N = 40


async def _flood(app: Any, refused: dict[str, str], n: int) -> tuple[list[int], list[int]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def refuse(i: int) -> int:
            # the refusal comes after the row was read: the request holds a connection
            response = await client.patch(
                "/api/v1/resources/hosp-ct1", json={"status": "closed"}, headers=refused
            )
            return response.status_code

        async def health() -> int:
            await asyncio.sleep(0.05)
            response = await client.get("/health")
            return response.status_code

        results = await asyncio.wait_for(
            asyncio.gather(*(refuse(i) for i in range(n)), health(), health()), timeout=60
        )
    return list(results[:n]), list(results[n:])


@pytest.mark.slow
def test_concurrent_refusals_are_all_audited_without_stalling(app: Any, tokens: Tokens) -> None:
    with app.state.sessions() as session, session.begin():
        catalog_actions.do_import_catalog(
            session, actor=Principal.system_actor("test"), raw=small_catalog()
        )
    clinic_admin = tokens.headers(Role.MEMBER_ADMIN, "clinic")
    statuses, healths = asyncio.run(_flood(app, clinic_admin, N))
    assert statuses == [403] * N
    assert healths == [200, 200]
    with app.state.sessions() as session:
        denied = session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.outcome == AuditOutcome.DENIED, AuditRecord.entity_type == "http")
        )
    assert denied == N
