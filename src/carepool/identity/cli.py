"""`carepool identity ...`: run matching, work the review queue, merge, unmerge, show persons.

`carepool identity link [--db URL] [--json]` matches every patient record of the consortium
(schedule it, e.g. nightly, to re-train the model); `carepool identity relink [ID...]`
re-evaluates links of records a feed changed and matches them again (after an ingest run);
`carepool identity review list|show|accept|reject` works the review queue;
`carepool identity merge|unmerge|detach` correct the index by hand; `carepool identity person ID`
shows a person (or the person of a patient record) with its records and history.
The command line acts as the system (consortium-wide), like every other `carepool` command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from carepool.core.cli import (
    CLI_ACTOR,
    DbOption,
    JsonOption,
    cli_session,
    command_session,
    exit_on_error,
    fail,
    migrated_url,
    print_result,
    print_rows,
    progress_bar,
    session_factory,
    status_filter,
)
from carepool.core.errors import InvalidInput
from carepool.identity import actions, matching, service
from carepool.identity.models import CandidateStatus
from carepool.records.consent import service as consent_service

app = typer.Typer(
    help=(
        "Master patient index: link each member's patient records to one person "
        "(probabilistic matching with splink), review doubtful pairs, merge and unmerge."
    ),
    no_args_is_help=True,
)
review_app = typer.Typer(help="The review queue: pairs that may be one person.")
app.add_typer(review_app, name="review")

CandidateArg = Annotated[int, typer.Argument(help="Candidate pair id")]
NoteOption = Annotated[str, typer.Option("--note", help="Why")]
ReasonOption = Annotated[str, typer.Option("--reason")]


def _run_text(run: dict[str, Any]) -> str:
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in run["timings"].items())
    return (
        f"run {run['run_id']} ({run['status']}): {run['records']} records, "
        f"{run['pairs']} pairs scored, {run['auto_links']} linked automatically, "
        f"{run['review']} to review, {run['excluded']} kept apart; "
        f"{run['persons']} persons ({run['new_persons']} new)\n"
        f"  model: {run['model'].get('training')}  time: {timings}"
    )


@app.command("link")
def link(
    db: DbOption = None,
    auto_link: Annotated[
        float, typer.Option("--auto", help="Link automatically at or above this probability")
    ] = 0.99,
    review: Annotated[
        float, typer.Option("--review", help="Queue for review at or above this probability")
    ] = 0.5,
    training: Annotated[
        str, typer.Option("--training", help="auto, priors, u (sample u) or em (u and EM for m)")
    ] = "auto",
    population: Annotated[
        int, typer.Option("--population", help="People the consortium serves (the prior)")
    ] = matching.DEFAULT_POPULATION,
    as_json: JsonOption = False,
) -> None:
    """Match every patient record: link, queue for review, or leave apart."""
    try:
        thresholds = matching.Thresholds(auto_link=auto_link, review=review)
        options = matching.ModelOptions(training=training, population=population)
    except matching.TrainingError as exc:
        raise fail(InvalidInput(str(exc)), as_json=as_json) from exc
    url = migrated_url(db)  # before the run opens its own transactions
    progress = progress_bar("identity", quiet=as_json)
    with exit_on_error(as_json=as_json), session_factory(url) as factory, progress:
        task = progress.add_task("load", total=1.0)
        run = actions.do_link(
            factory,
            actor=CLI_ACTOR,
            thresholds=thresholds,
            options=options,
            channel="cli",
            progress=lambda phase, done: progress.update(task, description=phase, completed=done),
        )
    print_result(run, _run_text(run), as_json=as_json)


@app.command("relink")
def relink(
    patients: Annotated[
        list[str] | None, typer.Argument(help="Patient record ids (default: every linked one)")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate links whose records changed since, then match those records again."""
    with command_session(db, as_json=as_json) as session:
        out = actions.do_relink_changed(
            session, actor=CLI_ACTOR, patient_ids=patients or None, channel="cli"
        )
    text = (
        f"{out['changed']} changed record(s): {len(out['detached'])} taken out of their "
        f"person, {len(out['linked'])} linked, {out['review']} pair(s) to review"
    )
    print_result(out, text, as_json=as_json)


@app.command("runs")
def runs(db: DbOption = None, limit: int = 20, as_json: JsonOption = False) -> None:
    """List link runs, newest first."""
    with cli_session(db) as session:
        items, _total = service.get_runs(session, limit=limit)
        rows = [service.run_to_dict(r) for r in items]
    print_rows(rows, _run_text, as_json=as_json)


@review_app.command("list")
def review_list(
    db: DbOption = None,
    status: Annotated[
        str, typer.Option("--status", help="open, accepted, rejected, superseded or all")
    ] = "open",
    limit: int = 50,
    as_json: JsonOption = False,
) -> None:
    """List candidate pairs, most likely first."""
    wanted = status_filter(CandidateStatus, status, as_json=as_json)
    with cli_session(db) as session:
        items, total = service.get_candidates(session, status=wanted, limit=limit)
        records = service.patient_summaries(
            session, patient_ids=[p for c in items for p in (c.patient_a, c.patient_b)]
        )
        rows = [service.candidate_to_dict(c, records) for c in items]
    print_rows(rows, _candidate_line, as_json=as_json, total=total, noun="pair(s)")


def _candidate_line(r: dict[str, Any]) -> str:
    a, b = r["records"]
    return (
        f"{r['id']:>6}  p={r['match_probability']:.4f}  {r['status']:<10} "
        f"{a['institution_id']}:{a['name']} {a['birth_date']}  ~  "
        f"{b['institution_id']}:{b['name']} {b['birth_date']}  ({r['reason']})"
    )


@review_app.command("show")
def review_show(
    id: CandidateArg,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a candidate pair: both records and the evidence per field."""
    with command_session(db, as_json=as_json) as session:
        row = service.get_candidate(session, id=id)
        records = service.patient_summaries(session, patient_ids=[row.patient_a, row.patient_b])
        out = service.candidate_to_dict(row, records)
    lines = [
        f"pair {out['id']} ({out['status']}): probability {out['match_probability']:.6f}, "
        f"weight {out['match_weight']}; {out['reason']}",
        *("  " + "  ".join(f"{k}={v}" for k, v in rec.items() if v) for rec in out["records"]),
        *(
            f"  {name:<8} {hit['level'] or 'missing':<32} {hit['weight']:+.2f}"
            for name, hit in out["fields"].items()
        ),
    ]
    print_result(out, "\n".join(lines), as_json=as_json)


@review_app.command("accept")
def review_accept(
    id: CandidateArg,
    db: DbOption = None,
    note: NoteOption = "",
    as_json: JsonOption = False,
) -> None:
    """The pair is one person: merge their persons."""
    with command_session(db, as_json=as_json) as session:
        row, event = actions.do_accept_candidate(
            session, actor=CLI_ACTOR, id=id, note=note, source="cli"
        )
        out = {
            "candidate": service.candidate_to_dict(row),
            "merge": service.history_to_dict(event) if event else None,
            "person_id": service.person_of(session, patient_id=row.patient_a),
        }
    print_result(out, f"pair {id} accepted: person {out['person_id']}", as_json=as_json)


@review_app.command("reject")
def review_reject(
    id: CandidateArg,
    db: DbOption = None,
    note: NoteOption = "",
    as_json: JsonOption = False,
) -> None:
    """The pair are different people: never link them."""
    with command_session(db, as_json=as_json) as session:
        row = actions.do_reject_candidate(session, actor=CLI_ACTOR, id=id, note=note, source="cli")
        out = service.candidate_to_dict(row)
    print_result(out, f"pair {id} rejected", as_json=as_json)


@app.command("merge")
def merge(
    survivor: Annotated[str, typer.Argument(help="The person that remains")],
    other: Annotated[str, typer.Argument(help="The person merged into it")],
    db: DbOption = None,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
) -> None:
    """Merge two persons by hand."""
    with command_session(db, as_json=as_json) as session:
        event = actions.do_merge_persons(
            session,
            actor=CLI_ACTOR,
            survivor_id=survivor,
            other_id=other,
            reason=reason,
            source="cli",
        )
        out = service.history_to_dict(event)
    text = f"merge {out['id']}: {other} into {survivor} ({len(out['patient_ids'])} records)"
    print_result(out, text, as_json=as_json)


@app.command("unmerge")
def unmerge(
    history_id: Annotated[int, typer.Argument(help="The merge's history id")],
    db: DbOption = None,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
) -> None:
    """Undo a merge: the records it moved go back to their own person."""
    with command_session(db, as_json=as_json) as session:
        event = actions.do_unmerge(
            session, actor=CLI_ACTOR, history_id=history_id, reason=reason, source="cli"
        )
        out = service.history_to_dict(event)
    text = f"unmerge {out['id']}: {len(out['patient_ids'])} record(s) back to {out['other_id']}"
    print_result(out, text, as_json=as_json)


@app.command("detach")
def detach(
    patient_id: Annotated[str, typer.Argument(help="The patient record to take out")],
    db: DbOption = None,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
) -> None:
    """Take one record out of its person into a person of its own."""
    with command_session(db, as_json=as_json) as session:
        event = actions.do_detach_record(
            session, actor=CLI_ACTOR, patient_id=patient_id, reason=reason, source="cli"
        )
        out = service.history_to_dict(event)
    text = f"detach {out['id']}: {patient_id} is now person {out['other_id']}"
    print_result(out, text, as_json=as_json)


@app.command("person")
def person(
    id: Annotated[str, typer.Argument(help="A person id (psn-...) or a patient record id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a person: every member's record of them, the consent and the history."""
    with command_session(db, as_json=as_json) as session:
        person_id = id if id.startswith("psn-") else service.person_of(session, patient_id=id)
        if person_id is None:
            raise InvalidInput(f"{id} is not a person id nor a linked patient record")
        found = service.resolve(session, person_id=person_id)
        out = service.person_to_dict(session, found)
        out["consent"] = consent_service.to_dict(
            found.id, consent_service.get(session, person_id=found.id)
        )
    lines = [
        f"person {out['person_id']} ({out['status']}), sharing {out['consent']['sharing']}",
        *(
            f"  {r['patient_id']}  {r.get('institution_id')}:{r.get('local_id')}  "
            f"{r.get('name')}  {r.get('sex')}  {r.get('birth_date')}  via {r['link']['source']}"
            for r in out["records"]
        ),
        *(
            f"  #{h['id']} {h['at'][:19]} {h['action']} {h['other_id']} -> {h['person_id']} "
            f"({h['cause']}, {len(h['patient_ids'])} records)"
            + (f" undone by #{h['undone_by']}" if h["undone_by"] else "")
            for h in out["history"]
        ),
    ]
    print_result(out, "\n".join(lines), as_json=as_json)
