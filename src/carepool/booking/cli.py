"""`carepool patients register ...`: register a walk-in patient at a member (decision 0013).

The same action as `POST /api/v1/patients` (`records.actions.do_register_patient`), as the
system actor: the member is named with `--member`. Prints the patient's FHIR id, which bookings
name as `patient_ref` (`Patient/<id>`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from carepool.core.cli import CLI_ACTOR, DbOption, JsonOption, command_session, print_result
from carepool.records import actions as records_actions

app = typer.Typer(
    help="Patients the booking pool names: register a walk-in at a member.",
    no_args_is_help=True,
)


@app.command("register")
def register(
    mrn: Annotated[str, typer.Argument(help="The member's medical record number")],
    member: Annotated[str, typer.Option("--member", help="The member (institution id)")],
    name: Annotated[str, typer.Option("--name")] = "",
    sex: Annotated[str, typer.Option("--sex", help="male, female, other or unknown")] = "unknown",
    birth_date: Annotated[str | None, typer.Option("--birth-date", help="YYYY-MM-DD")] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", help="the MRN's assigning authority (default: the member id)"),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a patient (an MRN already known is answered as it is)."""
    with command_session(db, as_json=as_json) as session:
        born = date.fromisoformat(birth_date) if birth_date else None
        patient, created = records_actions.do_register_patient(
            session,
            actor=CLI_ACTOR,
            institution_id=member,
            local_id=mrn,
            system=system,
            name=name,
            sex=sex,
            birth_date=born,
        )
        data = {
            "id": patient.id,
            "reference": f"Patient/{patient.id}",
            "institution_id": patient.institution_id,
            "local_id": patient.local_id,
            "name": patient.name,
            "created": created,
        }
    verb = "registered" if created else "already registered"
    print_result(data, f"Patient/{data['id']} ({verb} at {member}: {mrn})", as_json=as_json)
