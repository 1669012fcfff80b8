"""Parallel segments: which turns of a profile run together, concurrently, inside a thread.

The rule (docs/specs/parallel-segments.md): walk the turns in ``seq`` order and put each
turn in the current segment unless it reads the output of a turn already in it; then it
opens the next segment. A segment's turns therefore never depend on each other, directly or
transitively (a turn reads only outputs of earlier turns, the loader checks it), and every
turn of a segment has a lower ``seq`` than every turn of the next one: segments keep the
profile's order, and only the order within one segment is left to the scheduler.

Two turns that both read only ``context`` form one segment (a fork); a turn that reads
both their outputs opens the next (the join).
"""

from __future__ import annotations

from wf_pipeline.profiles.schema import Profile, TurnSpec


def turn_segments(profile: Profile) -> tuple[tuple[TurnSpec, ...], ...]:
    """The profile's turns grouped into segments, in order; each segment's turns in ``seq`` order.

    Args:
        profile: a loaded profile (its input refs resolve to earlier turns).

    Returns:
        A tuple of non-empty tuples of `TurnSpec`; a profile whose turns each read the one
        before has one turn per segment. Raises nothing.
    """
    segments: list[list[TurnSpec]] = []
    current_outputs: set[str] = set()
    for turn in profile.ordered_turns():
        if not segments or current_outputs & set(turn.input_refs):
            segments.append([])
            current_outputs = set()
        segments[-1].append(turn)
        current_outputs.add(turn.output_type)
    return tuple(tuple(segment) for segment in segments)


def parallel_segment(profile: Profile, turn_id: str) -> int | None:
    """The index of the parallel segment ``turn_id`` runs in, or None when it runs alone.

    Args:
        profile: the profile.
        turn_id: one of its turns.

    Returns:
        The segment's index in `turn_segments` when the segment holds more than one turn
        (its turns run concurrently, and their turn records say so), else None (also for a
        turn the profile does not have). Raises nothing.
    """
    for index, segment in enumerate(turn_segments(profile)):
        if any(turn.turn_id == turn_id for turn in segment):
            return index if len(segment) > 1 else None
    return None
