"""Which round is running: the federation advances a clock, the round callback and progress bar read a view."""

from __future__ import annotations


class RoundClock:
    """The federation's round counter (round 0 before the first round).

    Args:
        total_rounds: R, the number of rounds the run may take.
    """

    def __init__(self, total_rounds: int) -> None:
        self._round = 0
        self._total_rounds = total_rounds
        self.view = RoundView(self)

    def start(self, round_idx: int) -> None:
        """Round ``round_idx`` begins."""
        self._round = round_idx


class RoundView:
    """A read-only view of a :class:`RoundClock`: what the clients' callbacks are given."""

    __slots__ = ("_clock",)

    def __init__(self, clock: RoundClock) -> None:
        self._clock = clock

    @property
    def round(self) -> int:
        """The current round, from 1 (0 before the first)."""
        return self._clock._round

    @property
    def total_rounds(self) -> int:
        """R."""
        return self._clock._total_rounds
