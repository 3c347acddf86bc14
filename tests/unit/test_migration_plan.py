"""The order of the upgrade steps, and the refusal of newer data reaching the command line as one line."""

from __future__ import annotations

import pytest
from crowdseg.errors import SchemaTooNew
from crowdseg.migrations import SCHEMA_VERSION, UNVERSIONED, Step, plan
from crowdseg.preflight import _within

pytestmark = pytest.mark.unit

STEPS = [Step(version, f"to {version}", None) for version in range(UNVERSIONED + 1, SCHEMA_VERSION + 1)]


def test_the_steps_above_the_stored_version_run_in_order() -> None:
    assert plan(STEPS, UNVERSIONED, where="here") == STEPS
    assert plan(STEPS, SCHEMA_VERSION, where="here") == []


def test_newer_data_are_refused_with_what_wrote_them() -> None:
    with pytest.raises(SchemaTooNew) as refused:
        plan(STEPS, SCHEMA_VERSION + 1, where="the database x", written_by="9.0.0")
    message = str(refused.value)
    assert message.startswith(f"the database x holds schema version {SCHEMA_VERSION + 1} (written by crowdseg 9.0.0)")
    assert "\n" not in message


def test_steps_that_do_not_lead_to_this_schema_are_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        plan([*STEPS, Step(SCHEMA_VERSION + 2, "a gap", None)], UNVERSIONED, where="here")


async def test_preflight_passes_the_refusal_on_as_it_is() -> None:
    """Not "MongoDB ... is unreachable": it answered, with data too new for this code."""

    async def open_store() -> None:
        raise SchemaTooNew("the database x holds schema version 99")

    with pytest.raises(SchemaTooNew, match=r"^the database x holds schema version 99$"):
        await _within("MongoDB at mongodb://h:1", 5, open_store())
