"""Ids that are credentials (study links, invitations)."""

from __future__ import annotations

import pytest
from crowdseg.domain import new_secret_id

pytestmark = pytest.mark.unit


def test_a_secret_id_never_begins_with_a_dash() -> None:
    """Bug pinned: a link id beginning with "-" came out of the ledger CSV as "'-…" (the formula
    escape), so the ledger's link_id did not match the link (a fresh-clone make test met one)."""
    ids = [new_secret_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids) and all(len(i) == 24 for i in ids)
