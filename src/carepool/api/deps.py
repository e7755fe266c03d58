"""Request dependencies: one database session per request, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from carepool.core import auth
from carepool.core.errors import Unauthenticated


def session_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def get_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the endpoint returns and rolls back on error.

    Used with `scope="function"` (below): the commit happens before the response is sent, so
    no answer leaves before its writes — the read audit of patient data included — are durable,
    and a commit that fails becomes an error answer instead of a success already delivered.
    (FastAPI's default runs the code after `yield` once the response has been sent.)"""
    session = session_factory(request)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_session, scope="function")]


async def current_principal(request: Request) -> auth.Principal:
    """The caller behind `Authorization: Bearer <token>`; 401 without a valid token.

    Principals are cached per process for a few seconds (`auth.PrincipalCache`, decision 0009);
    a hit is answered on the event loop, a miss reads the database on a worker thread.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "send an Authorization: Bearer <token> header "
            "(get a token with `carepool auth token --user NAME`)"
        )
    principal = auth.principals.cached(token.strip())
    if principal is None:
        principal = await run_in_threadpool(
            auth.principals.authenticate, session_factory(request), token.strip()
        )
    request.state.principal = principal
    return principal


Caller = Annotated[auth.Principal, Depends(current_principal)]
