"""MLLP listener (asyncio): HL7 v2 messages over TCP, each ingested and answered ACK or NACK.

Framing is MLLP: `<VT> message <FS><CR>`. Every message is one ingest run for the listener's
member (the same path as files: idempotent, counted, dead-lettered), and the answer follows
HL7 v2 original acknowledgement mode: `AA` when every record was stored or already known,
`AE` when some records went to the dead-letter store (the sender need not resend: nothing was
lost), `AR` when the message was refused as a whole (not HL7, unknown member, no permission).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from carepool.core.auth import Principal
from carepool.core.errors import CarepoolError
from carepool.ingest import actions
from carepool.ingest.connectors.hl7v2 import split_messages

__all__ = ["END", "START", "MllpServer", "ack", "frame"]

START = b"\x0b"
END = b"\x1c\r"
MAX_MESSAGE = 16 * 1024 * 1024


def frame(message: bytes | str) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START + data + END


def ack(message: str, code: str, text: str = "") -> str:
    """An ACK for `message` (original mode): MSH with sender and receiver swapped, MSA, ERR."""
    fields = message.split("\r", 1)[0].split("|") if message.startswith("MSH") else []

    def f(n: int) -> str:  # MSH-n (MSH-1 is the separator, so MSH-n is fields[n - 1])
        return fields[n - 1] if len(fields) >= n else ""

    event = f(9).split("^")[1] if "^" in f(9) else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    clean = text.replace("|", "/").replace("\r", " ").replace("\n", " ")[:200]
    segments = [
        "|".join(
            [
                "MSH",
                f(2) or "^~\\&",
                f(5) or "CAREPOOL",
                f(6) or "CAREPOOL",
                f(3),
                f(4),
                now,
                "",
                f"ACK^{event}^ACK" if event else "ACK",
                uuid.uuid4().hex[:20],
                f(11) or "P",
                f(12) or "2.5.1",
            ]
        ),
        f"MSA|{code}|{f(10)}|{clean}",
    ]
    if code != "AA":
        severity = "E" if code == "AR" else "W"
        segments.append(f"ERR||||{severity}||||{clean}")
    return "\r".join(segments) + "\r"


class MllpServer:
    """Listens on host:port and ingests every message as member `institution_id`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        actor: Principal,
        institution_id: str,
        host: str = "127.0.0.1",
        port: int = 2575,
    ) -> None:
        self.factory = factory
        self.actor = actor
        self.institution_id = institution_id
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.handled = 0

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"mllp:{peer[0]}:{peer[1]}" if peer else "mllp"
        try:
            while True:
                try:
                    await reader.readuntil(START)
                    data = await reader.readuntil(END)
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(frame(ack("", "AR", "message too large")))
                    await writer.drain()
                    return
                reply = await self._handle(data[: -len(END)], name)
                writer.write(frame(reply))
                await writer.drain()
        finally:
            writer.close()

    async def _handle(self, data: bytes, name: str) -> str:
        text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
        messages = split_messages(text)
        if len(messages) != 1 or not messages[0][0].startswith("MSH"):
            return ack(text, "AR", "one HL7 v2 message starting with MSH is expected per frame")
        message = "\r".join(messages[0])
        loop = asyncio.get_running_loop()
        run = functools.partial(
            actions.do_ingest,
            self.factory,
            actor=self.actor,
            institution_id=self.institution_id,
            inputs=[actions.Input(name=name, data=message.encode("utf-8"), format="hl7v2")],
            channel="mllp",
        )
        try:
            summary = await loop.run_in_executor(None, run)
        except CarepoolError as exc:
            return ack(message, "AR", exc.detail)
        except Exception as exc:  # the database is down: the sender must resend
            return ack(message, "AR", f"not stored, resend later: {type(exc).__name__}")
        self.handled += 1
        if summary.rejected:
            return ack(
                message,
                "AE",
                f"{summary.rejected} of {summary.received} records kept as dead letters "
                f"{', '.join(str(i) for i in summary.dead_letters)}",
            )
        return ack(message, "AA")
