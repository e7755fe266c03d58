"""MLLP listener (asyncio): HL7 v2 messages over TCP, each ingested and answered ACK or NACK.

Framing is MLLP: `<VT> message <FS><CR>`. Every message is one ingest run for the listener's
member (the same path as files: idempotent, counted, dead-lettered), and the answer follows
HL7 v2 original acknowledgement mode: `AA` when every record was stored or already known,
`AE` when some records went to the dead-letter store (the sender need not resend: nothing was
lost), `AR` when the message was refused as a whole (not HL7, unknown member, no permission).

The listener reads frames itself (not `StreamReader.readuntil`, whose 64 KiB buffer refused
every report with an embedded PDF): a frame may be up to `max_message` bytes. What it refuses —
a frame over the maximum, bytes outside a frame, a frame cut by the next start byte or by the
connection closing — is answered AR saying why (when the sender is still there) and kept as a
dead letter with its bytes (`actions.do_dead_letter_frame`; of a frame over the maximum the first
`max_message` bytes). A frame's bytes go to the HL7 v2 connector as received, so MSH-18, the
listener's declared encoding or detection decide the character set, never UTF-8 with
replacement characters.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from carepool.core.auth import Principal
from carepool.core.errors import CarepoolError
from carepool.ingest import actions
from carepool.ingest.connectors.charset import CharsetError
from carepool.ingest.connectors.hl7v2 import _utf16, split_message_bytes

logger = logging.getLogger(__name__)

__all__ = ["END", "MAX_MESSAGE", "START", "MllpServer", "ack", "frame"]

START = b"\x0b"
END = b"\x1c\r"
MAX_MESSAGE = 16 * 1024 * 1024


def frame(message: bytes | str) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START + data + END


def ack(message: str, code: str, text: str = "") -> str:
    """An ACK for `message` (original mode): MSH with sender and receiver swapped, MSA, ERR."""
    header = message.lstrip("\ufeff").split("\r", 1)[0].split("\n", 1)[0]
    fields = header.split(header[3]) if header.startswith("MSH") and len(header) > 3 else []

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


_BLANK = b" \t\r\n"
_FS = b"\x1c"


def _header(data: bytes) -> str:
    """A frame's first segment as text (MSH is ASCII; UTF-16 is decoded), for the ACK."""
    wide = _utf16(data)
    text = data.decode(wide, errors="replace") if wide else data[:4096].decode("latin-1")
    return text.lstrip("\ufeff").split("\r", 1)[0].split("\n", 1)[0]


class MllpServer:
    """Listens on host:port and ingests every message as member `institution_id`; frames of up
    to `max_message` bytes."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        actor: Principal,
        institution_id: str,
        host: str = "127.0.0.1",
        port: int = 2575,
        max_message: int = MAX_MESSAGE,
        encoding: str | None = None,
        link: bool = True,
    ) -> None:
        self.factory = factory
        self.encoding = encoding  # the sender's character set when MSH-18 says none
        self.link = link  # match the message's patient against the index on arrival
        self.actor = actor
        self.institution_id = institution_id
        self.host = host
        self.port = port
        self.max_message = max_message
        self._server: asyncio.Server | None = None
        self.handled = 0
        self.refused = 0

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
            async for data, refusal, open_ in self._frames(reader):
                if refusal:
                    reply = await self._refuse(data, name, refusal)
                else:
                    reply = await self._handle(data, name)
                if not open_:
                    return
                writer.write(frame(reply))
                await writer.drain()
        finally:
            writer.close()

    async def _frames(self, reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, str, bool]]:
        """(bytes, why they are refused or "", whether the sender can still be answered)."""
        limit = self.max_message
        buf = bytearray()
        skipped = 0  # bytes of an oversized frame dropped after its first `limit`
        kept = b""
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                if skipped:
                    yield kept, self._too_large(skipped), False
                elif buf.strip(_BLANK):
                    body = bytes(buf[1:]) if buf[:1] == START else bytes(buf)
                    yield body, "the connection closed inside a frame (no end bytes 1C 0D)", False
                return
            if skipped:  # inside an oversized frame: drop bytes until its end
                end = chunk.find(_FS)
                if end < 0:
                    skipped += len(chunk)
                    continue
                skipped += end
                yield kept, self._too_large(skipped), True
                skipped, kept = 0, b""
                chunk = chunk[end + 1 :]
            buf += chunk
            while buf:
                start = buf.find(START)
                if start != 0:
                    junk = bytes(buf if start < 0 else buf[:start])
                    del buf[: len(junk)]
                    if junk.strip(_BLANK):
                        yield junk, "bytes outside an MLLP frame (no start byte 0B)", True
                    if start < 0:
                        break
                end = buf.find(_FS, 1)
                again = buf.find(START, 1)
                if again >= 0 and (end < 0 or again < end):
                    cut = bytes(buf[1:again])
                    del buf[:again]
                    yield cut, "a new frame began before this one ended (no end bytes 1C 0D)", True
                    continue
                if end < 0:
                    if len(buf) - 1 > limit:
                        kept = bytes(buf[1 : limit + 1])
                        skipped = len(buf) - 1
                        buf.clear()
                    break
                body = bytes(buf[1:end])
                del buf[: end + 2 if buf[end + 1 : end + 2] == b"\r" else end + 1]
                if len(body) > limit:
                    kept, skipped = body[:limit], len(body)
                    yield kept, self._too_large(skipped), True
                    skipped, kept = 0, b""
                    continue
                yield body, "", True

    def _too_large(self, size: int) -> str:
        return (
            f"a frame of {size} bytes or more is over the maximum of {self.max_message} bytes "
            f"(the first {self.max_message} are kept)"
        )

    async def _refuse(self, data: bytes, name: str, reason: str) -> str:
        self.refused += 1
        loop = asyncio.get_running_loop()
        run = functools.partial(
            actions.do_dead_letter_frame,
            self.factory,
            actor=self.actor,
            institution_id=self.institution_id,
            source=name,
            raw=data,
            reason=reason,
        )
        try:
            letter = await loop.run_in_executor(None, run)
        except Exception as exc:  # the database is down: say so, the sender must resend
            return ack(_header(data), "AR", f"{reason}; not kept, resend: {type(exc).__name__}")
        return ack(_header(data), "AR", f"{reason}; kept as dead letter {letter}")

    async def _handle(self, data: bytes, name: str) -> str:
        try:
            messages = split_message_bytes(data)
        except CharsetError:
            messages = []  # undecodable UTF-16: the connector says why
            one = True
        else:
            one = len(messages) == 1 and messages[0].raw.lstrip(b"\xef\xbb\xbf").startswith(b"MSH")
        if not one:
            return await self._refuse(
                data, name, "one HL7 v2 message starting with MSH is expected per frame"
            )
        header = _header(data)
        loop = asyncio.get_running_loop()
        run = functools.partial(
            actions.do_ingest,
            self.factory,
            actor=self.actor,
            institution_id=self.institution_id,
            inputs=[actions.Input(name=name, data=data, format="hl7v2")],
            encoding=self.encoding,
            channel="mllp",
        )
        try:
            summary = await loop.run_in_executor(None, run)
        except CarepoolError as exc:
            return ack(header, "AR", exc.detail)
        except Exception as exc:  # the database is down: the sender must resend
            return ack(header, "AR", f"not stored, resend later: {type(exc).__name__}")
        self.handled += 1
        if self.link and summary.status == "succeeded":
            # the message is stored whatever linking does; a failure here leaves the record
            # for the next full run (`carepool identity link`), it is not the sender's to resend
            link = functools.partial(actions.do_link_run, self.factory, run_id=summary.run_id)
            try:
                await loop.run_in_executor(None, link)
            except Exception:
                logger.exception("linking the patients of run %s failed", summary.run_id)
        if summary.rejected:
            return ack(
                header,
                "AE",
                f"{summary.rejected} of {summary.received} records kept as dead letters "
                f"{', '.join(str(i) for i in summary.dead_letters)}",
            )
        return ack(header, "AA")
