"""The MLLP listener over loopback: framed messages in, ACK / NACK out, records stored."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.mllp import END, START, MllpServer, ack, frame
from carepool.ingest.models import DeadLetter
from carepool.records.models import Observation, Patient
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM
from tests.ingest.hostile import hl7 as hostile


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


def _letters(members: sessionmaker[Session]) -> list[DeadLetter]:
    with members() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_a_report_over_64_kib_passes_under_the_configured_maximum(
    members: sessionmaker[Session],
) -> None:
    pdf = "JVBERi0xLjQK" + "A" * 300_000  # an embedded PDF (base64) of about 300 kB
    message = hostile.message(
        hostile.msh("PDF1"),
        hostile.pid("MPDF"),
        hostile.obr("FPDF"),
        hostile.obx(1, "HGB", "140"),
        f"OBX|2|ED|PDF^Report^L||^AP^PDF^Base64^{pdf}||||||F",
    )
    server = MllpServer(members, actor=SYSTEM, institution_id="clinic", port=0)
    (reply,) = asyncio.run(_exchange(server, [frame(message)]))
    assert _msa(reply)[1] == "AA"
    with members() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 2


def test_refused_frames_are_answered_ar_and_dead_lettered(members: sessionmaker[Session]) -> None:
    big = frame(hostile.cbc("BIG", "M1", "F1") + "NTE|1||" + "x" * 5000)
    server = MllpServer(members, actor=SYSTEM, institution_id="clinic", port=0, max_message=2000)
    replies = asyncio.run(
        _exchange(
            server,
            [big, b"junk before a frame" + frame(hostile.cbc("OK1", "M2", "F2")), frame("hi")],
        )
    )
    assert [_msa(r)[1] for r in replies] == ["AR", "AR", "AA", "AR"][: len(replies)]
    assert "over the maximum of 2000 bytes" in replies[0] and "dead letter" in replies[0]
    assert "outside an MLLP frame" in replies[1]
    letters = _letters(members)
    assert [len(d.raw) for d in letters][:2] == [2000, len(b"junk before a frame")]
    assert letters[0].raw == big[1:2001] and letters[1].raw == b"junk before a frame"
    assert all(d.reason for d in letters)


def test_gbk_over_mllp_lands_decoded_never_replaced(members: sessionmaker[Session]) -> None:
    server = MllpServer(members, actor=SYSTEM, institution_id="clinic", port=0)
    replies = asyncio.run(
        _exchange(server, [frame(hostile.gbk_detected()), frame(hostile.gb18030_declared())])
    )
    assert [_msa(r)[1] for r in replies] == ["AA", "AA"]
    with members() as s:
        names = sorted(s.scalars(select(Patient.name)))
    assert names == sorted(["欧阳娜娜", "张三丰"])


def test_undecodable_text_over_mllp_is_not_acknowledged_aa(members: sessionmaker[Session]) -> None:
    server = MllpServer(members, actor=SYSTEM, institution_id="clinic", port=0)
    (reply,) = asyncio.run(_exchange(server, [frame(hostile.unknown_msh18())]))
    assert _msa(reply)[1] == "AE" and "dead letters" in reply
    (letter,) = _letters(members)
    assert letter.raw == hostile.unknown_msh18().rstrip(b"\r") + b"\r"
    assert "KLINGON-8" in letter.reason
