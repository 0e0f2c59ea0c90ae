from __future__ import annotations

import signal
from pathlib import Path

import asyncpg

from mfaplane_devstack import Supervisor, ensure_tls, start_postgres


async def test_postgres_answers_a_query(supervisor: Supervisor, tmp_path: Path) -> None:
    url = start_postgres(supervisor, tmp_path / "postgres", ensure_tls(tmp_path / "pki"), durable=False)

    connection = await asyncpg.connect(url)
    try:
        assert await connection.fetchval("select current_setting('server_version_num')::int") >= 180000
        assert await connection.fetchval("show max_connections") == "200"
        assert await connection.fetchval("select upper('élan')") == "ÉLAN"  # UTF8, Unicode-aware
        assert await connection.fetchval("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    finally:
        await connection.close()


async def test_data_survives_a_crash_and_a_new_server_on_the_same_folder(supervisor: Supervisor,
                                                                          tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    url = start_postgres(supervisor, pgdata, ensure_tls(tmp_path / "pki"), durable=False)
    await _execute(url, "create table kept (id int); insert into kept values (1)")

    supervisor.kill("postgres", signal.SIGKILL)
    supervisor.restart("postgres")
    assert await _fetch(url, "select count(*) from kept") == 1

    supervisor.stop("postgres")
    # as `make run` does on its next run: no initdb
    url = start_postgres(supervisor, pgdata, ensure_tls(tmp_path / "pki"))
    assert await _fetch(url, "select count(*) from kept") == 1


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _fetch(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()
