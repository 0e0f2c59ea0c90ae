"""`python -m mfaplane_gateway verify-audit [--file EXPORT]`: checks the audit log's hash chain.

Without `--file` it reads the gateway's audit_log table; with it, a complete NDJSON export from
GET /v1/audit/events (no filters, no cursor). It prints the first broken link and exits 1, or the
number of records and the head hash, which an auditor can note down: a chain recomputed after an
edit, or cut short, no longer ends in the head noted earlier.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

from mfaplane_eventing import db
from mfaplane_eventing.service import CliCommand
from mfaplane_gateway import audit_log
from mfaplane_gateway.settings import GatewaySettings

Record = tuple[int, str, str, dict]


async def _file_records(path: Path) -> AsyncIterator[Record]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                fields = record["seq"], record["prev_hash"], record["hash"], record["envelope"]
            except (ValueError, KeyError, TypeError) as error:
                raise SystemExit(f"audit chain broken: line {number} is not an audit record ({error!r})") from None
            yield fields


async def verify(records: AsyncIterator[Record]) -> tuple[audit_log.Chain, audit_log.BrokenLink | None]:
    chain = audit_log.Chain()
    async for record in records:
        if broken := chain.check(*record):
            return chain, broken
    return chain, None


async def _run(settings: GatewaySettings, args: argparse.Namespace) -> None:
    if args.file:
        chain, broken = await verify(_file_records(Path(args.file)))
    else:
        pool = await db.create_pool(settings.database_url, settings.database_schema, max_size=1)
        try:
            chain, broken = await verify(audit_log.stored_records(pool))
        finally:
            await pool.close()
    if broken:
        raise SystemExit(f"audit chain broken at record {broken.seq}: {broken.reason}")
    print(f"audit chain intact: {chain.seq} records, head {chain.head}")


COMMAND = CliCommand(
    help="verify the audit log's hash chain (in the database, or an NDJSON export with --file)",
    run=_run,
    arguments=((("--file",), {"metavar": "PATH", "help": "a complete NDJSON export of /v1/audit/events"}),),
)
