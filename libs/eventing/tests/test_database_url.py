"""How a service reads DATABASE_URL's TLS: verify-full unless an sslmode is named (db.verified)."""

from __future__ import annotations

import pytest

from mfaplane_eventing import db


@pytest.fixture(autouse=True)
def _no_pgsslmode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)


def test_a_url_without_sslmode_verifies_the_server() -> None:
    assert db.verified("postgresql://app@db:5432/app") == "postgresql://app@db:5432/app?sslmode=verify-full"
    assert (db.verified("postgresql://app@db/app?sslrootcert=/ca.crt")
            == "postgresql://app@db/app?sslrootcert=/ca.crt&sslmode=verify-full")


@pytest.mark.parametrize("sslmode", ["disable", "require", "verify-ca", "verify-full"])
def test_a_named_sslmode_is_kept(sslmode: str) -> None:
    url = f"postgresql://app@db/app?sslmode={sslmode}"
    assert db.verified(url) == url


def test_pgsslmode_names_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "disable")
    assert db.verified("postgresql://app@db/app") == "postgresql://app@db/app"
