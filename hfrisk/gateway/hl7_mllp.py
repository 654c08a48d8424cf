"""``hfrisk gateway hl7``: an MLLP listener that takes HL7 v2 ORU^R01 waveform messages into Kafka.

Each message gets one HL7 original-mode acknowledgement (MSA-1), sent only once its fate is sure:

* ``AA``: the waveform is on the raw topic, every chunk acknowledged by Kafka;
* ``AE`` (application error): a well-formed ORU^R01 whose content cannot be used (no patient id,
  an unknown lead, no unit, no rate, ...); the message is on the dead-letter topic with the reason;
  sending it again will not help;
* ``AR`` (application reject): not an ORU^R01, unparseable, or too big (dead-lettered as well),
  or Kafka did not take the chunks in time (not dead-lettered: nothing is wrong with the message,
  and the sender should send it again). After a block over ``max_message_bytes`` or one without
  its start byte the framing is lost: the AR is sent and the connection closed.

MSA-3 carries the reason code, ERR-8 the detail. The transport is python-hl7's asyncio MLLP
streams (``<VT> message <FS><CR>`` blocks), over TLS when configured.

Example::

    async with await start_hl7_gateway(intake, host="127.0.0.1", port=2575) as server:
        await server.serve_forever()
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import hl7
import hl7.mllp

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.hl7_io import HL7MessageError, oru_to_ecg, parse_oru

from hfrisk.gateway.intake import Intake
from hfrisk.gateway.publisher import PublishError

__all__ = ["MLLPGateway", "start_hl7_gateway", "ack_code"]

log = get_logger(__name__)

# HL7 table 0357 (message error condition codes) for each input error reason.
_ERROR_CODES = {
    InputErrorReason.UNKNOWN_LEAD: ("103", "Table value not found"),
    InputErrorReason.BAD_MESSAGE: ("101", "Required field missing"),
}
_DATA_TYPE_ERROR = ("102", "Data type error")
_INTERNAL_ERROR = ("207", "Application internal error")
_UNSUPPORTED_TYPE = ("200", "Unsupported message type")


def ack_code(ack: bytes | str) -> str:
    """MSA-1 of an acknowledgement: ``AA``, ``AE`` or ``AR``."""
    text = ack.decode() if isinstance(ack, bytes) else ack
    for segment in text.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")[1]
    raise ValueError(f"no MSA segment in {text!r}")


def _escape(text: str) -> str:
    # python-hl7 escapes a field only through a parsed message; the sender's separators are the
    # standard ones for every message taken here.
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def _control_id(raw: bytes) -> str:
    """MSH-10 read from the raw text, for acknowledging a message that does not parse."""
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    fields = first.split("|")
    return fields[9] if first.startswith("MSH") and len(fields) > 9 else ""


def _ack(message: hl7.Message | None, raw: bytes, code: str, error: tuple[str, str] | None = None,
         text: str = "", detail: str = "") -> bytes:
    if message is not None:
        ack = str(message.create_ack(code, application="HFRISK", facility="HFRISK")).rstrip("\r")
    else:
        now = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        ack = f"MSH|^~\\&|HFRISK|HFRISK|||{now}||ACK|{_escape(_control_id(raw))}-ACK|P|2.5\rMSA|{code}|" \
              f"{_escape(_control_id(raw))}"
    if error is not None:
        ack += f"|{_escape(text)[:80]}\rERR|||{error[0]}^{error[1]}^HL70357|E||||{_escape(detail)}"
    return ack.encode("utf-8")


class MLLPGateway:
    """Handles MLLP connections: one acknowledgement per message, in order, per connection."""

    def __init__(self, intake: Intake, *, max_message_bytes: int = 16 * 1024 * 1024):
        self.intake = intake
        self.max_message_bytes = max_message_bytes

    async def handle_message(self, raw: bytes) -> bytes:
        """The acknowledgement of one message (the MLLP block's content), after acting on it."""
        message = None
        try:
            try:
                parsed = parse_oru(raw)
                message = parsed.message
                source = f"hl7:{message['MSH.F10']}"
                await self.intake.accept(oru_to_ecg(parsed, source=source), source=source)
            except HL7MessageError as exc:
                await self.intake.refuse(raw, exc, kind="hl7v2")
                error = _UNSUPPORTED_TYPE if "message type" in exc.detail else _DATA_TYPE_ERROR
                return _ack(message, raw, "AR", error, exc.reason.value, exc.detail)
            except ECGInputError as exc:
                await self.intake.refuse(raw, exc, kind="hl7v2", patient_id=_patient_id(message))
                error = _ERROR_CODES.get(exc.reason, _DATA_TYPE_ERROR)
                return _ack(message, raw, "AE", error, exc.reason.value, exc.detail)
        except PublishError as exc:
            # Neither the chunks nor the dead letter reached Kafka: the sender must send it again.
            log.error("Kafka did not take a message; rejected for a resend", error=str(exc))
            return _ack(message, raw, "AR", _INTERNAL_ERROR, "kafka_unavailable", "Kafka unavailable; send again")
        return _ack(message, raw, "AA")

    async def oversized(self) -> bytes:
        error = ECGInputError(InputErrorReason.OVERSIZED, f"MLLP block over {self.max_message_bytes} bytes")
        try:
            await self.intake.refuse(b"", error, kind="hl7v2")
        except PublishError as exc:
            log.error("Kafka did not take a dead letter", error=str(exc))
        return _ack(None, b"", "AR", _DATA_TYPE_ERROR, error.reason.value, error.detail)

    async def client(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("MLLP client connected", peer=str(peer))
        try:
            while True:
                try:
                    raw = await reader.readblock()
                except asyncio.IncompleteReadError:
                    break  # the client closed the connection (between messages, or mid-block)
                except (ValueError, hl7.mllp.InvalidBlockError) as exc:
                    # Over the size limit (the stream dropped what it had read) or a block without its
                    # start byte: the framing is lost, so the rest of the stream cannot be trusted.
                    # One AR, then the connection is closed; the sender reconnects (as MLLP senders
                    # do) and its next message starts clean.
                    if isinstance(exc, hl7.mllp.InvalidBlockError):
                        ack = _ack(None, b"", "AR", _DATA_TYPE_ERROR, "bad_message", str(exc))
                    else:
                        ack = await self.oversized()
                    writer.writeblock(ack)
                    await writer.drain()
                    break
                ack = await self.handle_message(raw)
                writer.writeblock(ack)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            log.info("MLLP client disconnected", peer=str(peer))


def _patient_id(message: hl7.Message | None) -> str:
    if message is None:
        return ""
    try:
        return str(message["PID.F3.R1.C1"]).strip()
    except (KeyError, IndexError):
        return ""


async def start_hl7_gateway(intake: Intake, *, host: str, port: int, ssl=None,
                            max_message_bytes: int = 16 * 1024 * 1024) -> asyncio.Server:
    """Start listening; the returned server is serving (``port=0`` picks a free port)."""
    gateway = MLLPGateway(intake, max_message_bytes=max_message_bytes)
    server = await hl7.mllp.start_hl7_server(gateway.client, host=host, port=port, ssl=ssl,
                                             limit=max_message_bytes)
    log.info("HL7 MLLP gateway listening", address=[str(s.getsockname()) for s in server.sockets],
             tls=ssl is not None)
    return server
