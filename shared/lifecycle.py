"""The person lifecycle, defined once (SPEC §3): `prospect | active → ended → passive →
erased | marketing`, with reactivation before disposition.

Contacts owns the states and moves a person through them; retention keeps the deadlines and
timers and follows the states contacts confirms (its own view uses these same rules). Pure
functions of values: no I/O.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    prospect = "prospect"
    active = "active"
    ended = "ended"
    passive = "passive"
    erased = "erased"
    marketing = "marketing"


FINAL_STATES = frozenset({State.erased, State.marketing})


def on_connection_started(state: State, kind: str) -> State:
    """A relationship or assignment began. Prospects become active with a customer
    relationship or an assignment; ended or passive persons are reactivated (SPEC §3)."""
    if state in (State.ended, State.passive):
        return State.active
    if state is State.prospect and kind != "prospect":
        return State.active
    return state


def is_reactivation(before: State, after: State) -> bool:
    return before in (State.ended, State.passive) and after is State.active


def on_connection_ended(state: State, open_connections: int) -> State:
    """The last open relationship or assignment ended: the person's connection ended (R5, R6)."""
    if open_connections == 0 and state in (State.prospect, State.active):
        return State.ended
    return state


class CommandOutcome(StrEnum):
    apply = "apply"          # do it, then confirm
    confirm_only = "confirm_only"  # already done: confirm again, change nothing
    stale = "stale"          # the person became active again: ignore the command


def passivation_outcome(state: State | None) -> CommandOutcome:
    """R6: only a person whose connection ended is passivated; a reactivated one is not.
    `None`: a person never held here, so nothing to do and the command is confirmed (see
    `disposition_outcome`)."""
    if state is None:
        return CommandOutcome.confirm_only
    if state is State.ended:
        return CommandOutcome.apply
    if state in (State.passive, State.erased, State.marketing):
        return CommandOutcome.confirm_only
    return CommandOutcome.stale


def disposition_outcome(state: State | None, action: str, *, erasure_decided: bool = False) -> CommandOutcome:
    """R7: erase or transfer a person who is no longer active; repeated commands confirm again.
    A person whose erasure request the register owner decided `erase` is erased even while a
    relationship lasts (GDPR Art. 17, issue 14).

    `None` is a person never held here: holding nothing of them is what the command asks, so it
    is confirmed. A refusal never completes the evidence, and retention re-sends an
    unconfirmed command for ever."""
    if state is None:
        return CommandOutcome.confirm_only
    done = State.erased if action == "erase" else State.marketing
    if state is done:
        return CommandOutcome.confirm_only
    if state is State.erased:
        return CommandOutcome.confirm_only  # nothing left to transfer
    if action == "erase" and state is State.marketing:
        return CommandOutcome.apply  # the marketing register's own data may be erased too
    if state in (State.ended, State.passive):
        return CommandOutcome.apply
    if erasure_decided and action == "erase":
        return CommandOutcome.apply
    return CommandOutcome.stale


def after_spans(state: State, open_connections: int, any_connection: bool) -> State:
    """The state a set of relationships and assignments gives: reactivated while one is open,
    ended once every one has ended (R5, R6). Final and passive-without-change states stay."""
    if open_connections > 0:
        return on_connection_started(state, "customer") if state in (State.ended, State.passive) else state
    if any_connection:
        return on_connection_ended(state, 0)
    return state
