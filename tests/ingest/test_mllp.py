"""The MLLP listener over loopback: framed messages in, ACK / NACK out, records stored."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.mllp import END, START, MllpServer, ack, frame
from carepool.records.models import Observation
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM


async def _exchange(server: MllpServer, messages: list[bytes]) -> list[str]:
    host, port = await server.start()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        replies = []
        for message in messages:
            writer.write(message)
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(START), 30)
            replies.append((await asyncio.wait_for(reader.readuntil(END), 30))[:-2].decode())
        writer.close()
        await writer.wait_closed()
        return replies
    finally:
        await server.close()


def _msa(reply: str) -> list[str]:
    return next(s for s in reply.split("\r") if s.startswith("MSA")).split("|")


def test_messages_over_mllp_are_acknowledged_and_stored(members: sessionmaker[Session]) -> None:
    server = MllpServer(members, actor=SYSTEM, institution_id="clinic", host="127.0.0.1", port=0)
    broken_message = feeds.HL7_BROKEN.split("\r", 1)[1]  # a message with one bad OBX
    replies = asyncio.run(
        _exchange(
            server,
            [
                frame(feeds.HL7_CBC),
                frame(feeds.HL7_CBC),  # the same again: nothing new, still AA
                frame(broken_message),
                frame("hello, not HL7"),
            ],
        )
    )
    assert [_msa(r)[1] for r in replies] == ["AA", "AA", "AE", "AR"]
    assert _msa(replies[0])[2] == "MSG0001" and replies[0].startswith("MSH|^~\\&|CAREPOOL|")
    assert "ACK^R01^ACK" in replies[0]
    assert "dead letters" in replies[2] and "ERR|" in replies[2]
    with members() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 9
    assert server.handled == 3


def test_unknown_member_is_refused_with_ar(members: sessionmaker[Session]) -> None:
    server = MllpServer(members, actor=SYSTEM, institution_id="atlantis", port=0)
    (reply,) = asyncio.run(_exchange(server, [frame(feeds.HL7_CBC)]))
    assert _msa(reply)[1] == "AR" and "atlantis" in reply


def test_ack_swaps_sender_and_receiver() -> None:
    reply = ack(feeds.HL7_CBC, "AA")
    msh = reply.split("\r")[0].split("|")
    assert (msh[2], msh[3], msh[4], msh[5]) == ("CAREPOOL", "CAREPOOL", "LIS", "TOWNSHIP")
