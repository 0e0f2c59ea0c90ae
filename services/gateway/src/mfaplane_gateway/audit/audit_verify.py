"""`python -m mfaplane_gateway verify-audit [--file EXPORT]`: checks the audit log's hash chain and
that the service owning each event signed it.

Without `--file` it reads the gateway's audit_log table; with it, a complete NDJSON export from
GET /v1/audit/events (no filters, read from the start to its end, in one response or resumed with
cursors). It prints the first broken link and exits 1, or the number of records and the head hash,
which an auditor can note down: a chain recomputed after an edit, or cut short, no longer ends in
the head noted earlier.

The chain runs in seq order and an export lists the records in story order (audit_order.py), so the
file's records are checked in seq order: each one waits, by its place in the file, until those
before it in the chain have been checked. Memory grows with how far out of seq order the file is
(the events that crossed in flight), not with its length. Lines in any order verify; a record
missing, changed or added does not.

The hash chain shows that nothing stored was changed; the signatures show who emitted each event
(event_signing.py): a record counts only if the service that owns its event type's topic signed
it, under a key in SERVICE_PUBLIC_KEYS. An auditor keeps retired public keys in that set, since
history signed with them stays. Records stored before events were signed carry no signature; the
chain still covers them, and they are valid only before the first signed record: an unsigned
record after it is a forgery. Someone able to rewrite the whole table could also strip every
signature and compute the chain again; `--signed-from SEQ` (the first record after the upgrade
that brought signing, which an auditor notes once) makes every record from SEQ on need one, and the
tool says how many records are unsigned whenever there are any.

It reads only what it uses: SERVICE_PUBLIC_KEYS, and DATABASE_URL (with DATABASE_SCHEMA) when it
reads the table, so an auditor with read access needs nothing else.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mfaplane_chassis.service import CliCommand
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_eventing import db, event_signing
from mfaplane_eventing.service_keys import TrustedKeys, UntrustedSignature
from mfaplane_gateway.audit import audit_log

Record = tuple[int, str, str, dict]


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_public_keys: str
    database_url: str | None = Field(default=None, repr=False)
    database_schema: str = "gateway"


class Signatures:
    """Checks each record's signature in chain order, counting those stored before signing began."""

    def __init__(self, keys: TrustedKeys, signed_from: int | None = None) -> None:
        self.keys = keys
        self.signed_from = signed_from
        self.unsigned = 0
        self.signed = 0

    def check(self, seq: int, envelope: dict[str, Any]) -> audit_log.BrokenLink | None:
        if envelope.get("signature") is None:
            if self.signed:
                return audit_log.BrokenLink(seq, "unsigned, after signed records")
            if self.signed_from is not None and seq >= self.signed_from:
                return audit_log.BrokenLink(seq, f"unsigned, though every record from {self.signed_from} is signed")
            self.unsigned += 1
            return None
        payload_type = EVENT_TYPES.get(envelope.get("type", ""))
        if payload_type is None:
            return audit_log.BrokenLink(seq, f"unknown event type {envelope.get('type')!r}")
        try:
            event_signing.check(envelope, payload_type.topic, self.keys)
        except UntrustedSignature as refusal:
            return audit_log.BrokenLink(seq, f"signature not valid ({refusal.reason}): {refusal}")
        self.signed += 1
        return None


def _record(line: bytes, number: int) -> Record:
    try:
        record = json.loads(line)
        fields = record["seq"], record["prev_hash"], record["hash"], record["envelope"]
        if not isinstance(fields[0], int):
            raise TypeError(f"seq {fields[0]!r} is not a number")
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"audit chain broken: line {number} is not an audit record ({error!r})") from None
    return fields


def _read_at(file: IO[bytes], offset: int, number: int) -> Record:
    file.seek(offset)
    return _record(file.readline(), number)


async def _file_records(path: Path) -> AsyncIterator[Record]:
    """The file's records in seq order; those read before their turn wait as (seq, line number, offset)."""
    waiting: list[tuple[int, int, int]] = []
    turn, offset = 1, 0
    with path.open("rb") as lines, path.open("rb") as again:
        for number, line in enumerate(lines, 1):
            record = _record(line, number)
            if record[0] == turn:
                yield record
                turn += 1
            else:
                heapq.heappush(waiting, (record[0], number, offset))
            offset += len(line)
            while waiting and waiting[0][0] <= turn:
                seq, number_then, offset_then = heapq.heappop(waiting)
                yield _read_at(again, offset_then, number_then)
                turn = max(turn, seq + 1)
        while waiting:
            _, number_then, offset_then = heapq.heappop(waiting)
            yield _read_at(again, offset_then, number_then)


async def verify(records: AsyncIterator[Record], keys: TrustedKeys, signed_from: int | None = None
                 ) -> tuple[audit_log.Chain, Signatures, audit_log.BrokenLink | None]:
    chain, signatures = audit_log.Chain(), Signatures(keys, signed_from)
    async for record in records:
        if broken := chain.check(*record) or signatures.check(record[0], record[3]):
            return chain, signatures, broken
    return chain, signatures, None


async def _run(settings: AuditSettings, args: argparse.Namespace) -> None:
    keys = TrustedKeys.from_json(settings.service_public_keys)
    if args.file:
        chain, signatures, broken = await verify(_file_records(Path(args.file)), keys, args.signed_from)
    else:
        if not settings.database_url:
            raise SystemExit("configuration error: DATABASE_URL is needed to read the audit log (or give --file)")
        pool = await db.create_pool(settings.database_url, settings.database_schema, max_size=1)
        try:
            chain, signatures, broken = await verify(audit_log.stored_records(pool), keys, args.signed_from)
        finally:
            await pool.close()
    if broken:
        raise SystemExit(f"audit chain broken at record {broken.seq}: {broken.reason}")
    if signatures.unsigned:
        print(f"warning: records 1 to {signatures.unsigned} carry no signature; they are trusted only as far as "
              "the head hash noted before (see --signed-from)", file=sys.stderr)
    print(f"audit chain intact: {chain.seq} records ({signatures.signed} signed by their topic's owner, "
          f"{signatures.unsigned} stored before events were signed), head {chain.head}")


COMMAND = CliCommand(
    help="verify the audit log's hash chain and signatures (in the database, or an NDJSON export with --file)",
    run=_run,
    arguments=((("--file",), {"metavar": "PATH", "help": "a complete NDJSON export of /v1/audit/events"}),
               (("--signed-from",), {"metavar": "SEQ", "type": int,
                                     "help": "every record from this one on must be signed (the first record "
                                             "after the upgrade that brought event signing)"})),
    settings_type=AuditSettings,
)
