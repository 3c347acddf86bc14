"""Schema versions of the stores, and the ordered steps that upgrade stored data to this code's.

Each store records the schema version of its data (SQLite: the ``meta`` table; MongoDB: the
``schema`` document of ``_meta``) and the release that recorded it. Opening a store compares:

* no data at all: the current layout is created and :data:`SCHEMA_VERSION` recorded;
* data without a recorded version: the first release's layout (crowdseg 0.1.0, schema 1);
* an older version: every step above it runs in order, then the new version is recorded;
* a newer version: :class:`~crowdseg.errors.SchemaTooNew` before anything is written.

Steps are idempotent (a step interrupted, or raced by another process opening the same data, may
run again) and each is logged. A release that changes what is stored adds one step per store with
the next version number and raises :data:`SCHEMA_VERSION`; it also commits a data directory made
by the previous release (``tests/fixtures/make_data_dir.py``) for the upgrade test.

    schema 1  crowdseg 0.1.0 (no version recorded)
    schema 2  crowdseg 0.2.0
    schema 3  rater quality is agreement in 0–1 (crowdseg.consensus.quality), with references
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import crowdseg
from crowdseg.errors import SchemaTooNew

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
UNVERSIONED = 1
"""The schema of data that record no version: the first release's (0.1.0)."""

CONSENSUS_RECONCILED = "consensus.reconciled"
"""The consensus service's reconciliation watermark (crowdseg.watermark): an upgrade that changes how
consensus documents are scored removes it, so the next pass looks at every image and recomputes the
ones scored by an older ``Consensus.scoring``."""

Run = TypeVar("Run")


@dataclass(frozen=True)
class Step(Generic[Run]):
    """What brings stored data from schema ``version - 1`` to ``version``."""

    version: int
    description: str
    run: Run


def plan(steps: Sequence[Step[Run]], found: int, *, where: str, written_by: str | None = None) -> list[Step[Run]]:
    """The steps that bring data of schema ``found`` (in ``where``) to :data:`SCHEMA_VERSION`, in order.

    Raises :class:`SchemaTooNew` if the data are newer than this code.
    """
    if [step.version for step in steps] != list(range(UNVERSIONED + 1, SCHEMA_VERSION + 1)):
        raise AssertionError(f"the migration steps of {where} do not lead to schema {SCHEMA_VERSION}")
    if found > SCHEMA_VERSION:
        by = f" (written by crowdseg {written_by})" if written_by else ""
        raise SchemaTooNew(
            f"{where} holds schema version {found}{by}, but crowdseg {crowdseg.__version__} understands schema "
            f"{SCHEMA_VERSION} at most: upgrade crowdseg to use it (nothing was changed)"
        )
    return [step for step in steps if step.version > found]


def announce(step: Step[Run], where: str) -> None:
    log.info("upgrading %s to schema %d: %s", where, step.version, step.description)
