"""The transition table, pinned edge by edge (pure: no database)."""

from __future__ import annotations

import itertools

import pytest
from voicetrace.service.sessions.state import (
    OPEN_STATES,
    TRANSITIONS,
    SessionState,
    can_transition,
    is_terminal,
    sources_of,
    transition_message,
)

S = SessionState
EXPECTED_EDGES = {
    (S.IDLE, S.CONNECTING),
    (S.CONNECTING, S.LIVE),
    (S.CONNECTING, S.ENDED),
    (S.LIVE, S.PAUSED),
    (S.LIVE, S.ENDED),
    (S.PAUSED, S.LIVE),
    (S.PAUSED, S.ENDED),
}


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(S, S)))
def test_exactly_the_designed_edges_are_allowed(current: S, requested: S) -> None:
    assert can_transition(current, requested) is ((current, requested) in EXPECTED_EDGES)


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(S)


def test_ended_is_the_only_terminal_state() -> None:
    assert [s for s in S if is_terminal(s)] == [S.ENDED]


def test_no_state_transitions_to_itself() -> None:
    assert not any(can_transition(s, s) for s in S)


def test_sources_of_is_the_inverse_of_the_table() -> None:
    for requested in S:
        expected = {current for current, target in EXPECTED_EDGES if target == requested}
        assert sources_of(requested) == expected
    assert sources_of(S.IDLE) == frozenset()


def test_open_states_are_the_ones_that_can_still_end() -> None:
    assert sources_of(S.ENDED) == OPEN_STATES


@pytest.mark.parametrize(
    ("current", "requested", "message"),
    [
        (S.ENDED, S.PAUSED, "cannot pause a session in state ENDED"),
        (S.PAUSED, S.PAUSED, "cannot pause a session in state PAUSED"),
        (S.LIVE, S.LIVE, "cannot resume a session in state LIVE"),
        (S.ENDED, S.ENDED, "cannot end a session in state ENDED"),
    ],
)
def test_refusal_messages_name_the_action_and_the_current_state(
    current: S, requested: S, message: str
) -> None:
    assert transition_message(current, requested) == message
