"""Whether a challenger in shadow has earned the champion's place, from labelled runs.

One labelled run is one paired observation: the champion's and the challenger's run verdicts (the
majority vote of their row predictions) against the run's label. Only the runs where exactly one of
the two is right say anything about which is better; an exact McNemar test (a two-sided binomial
test of those discordant runs against even odds) says whether the split is more than chance. Rows
are not the unit: the rows of one run are near-duplicates, and counting them as independent
overstates the evidence by orders of magnitude (``docs/promotion.md``).

Pure: no registry, no store. The caller gathers the verdicts and moves the aliases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy.stats import binomtest

from cncwear.core.schema import LABELS, THRESHOLD
from cncwear.core.settings import Settings
from cncwear.data.runs.records import ShadowRows

LABEL_NAMES = {number: name for name, number in LABELS.items()}
MAX_WINS_LOOKED_FOR = 10_000
"""How far :attr:`ShadowDecision.wins_needed` looks: beyond it, it says None (out of reach)."""


class ShadowOutcome(StrEnum):
    """What the evidence so far says about the challenger."""

    PROMOTE = "promote"
    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RunVerdicts:
    """One labelled run, as both models judged it. A verdict is a label number (``LABELS``), or
    None when the model's row predictions were split evenly (no majority: counted as wrong)."""

    run: str
    label: int
    champion: int | None
    challenger: int | None

    @property
    def champion_right(self) -> bool:
        return self.champion == self.label

    @property
    def challenger_right(self) -> bool:
        return self.challenger == self.label


def majority_verdict(predicted: Iterable[int] | np.ndarray) -> int | None:
    """The label most of a run's rows were predicted as; None for an even split or no rows."""
    labels = np.asarray(list(predicted) if not isinstance(predicted, np.ndarray) else predicted)
    if labels.size == 0:
        return None
    worn = int((labels == LABELS["worn"]).sum())
    unworn = labels.size - worn
    if worn == unworn:
        return None
    return LABELS["worn"] if worn > unworn else LABELS["unworn"]


@dataclass(frozen=True)
class ShadowPolicy:
    """The thresholds of the decision (``CNCWEAR_SHADOW_*``)."""

    min_runs: int
    """Labelled runs, of both labels, before a promotion is possible."""
    alpha: float
    """Significance level of the McNemar test, for a win as for a loss."""
    max_age_seconds: float
    """Past this in shadow, a challenger that has not won is rejected."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ShadowPolicy:
        return cls(
            min_runs=settings.shadow_min_runs,
            alpha=settings.shadow_alpha,
            max_age_seconds=settings.shadow_max_age_seconds,
        )


@dataclass(frozen=True)
class ShadowDecision:
    outcome: ShadowOutcome
    reason: str
    runs: int
    """Labelled runs compared."""
    runs_by_label: dict[str, int]
    challenger_wins: int
    """Runs the challenger got right and the champion wrong."""
    champion_wins: int
    """Runs the champion got right and the challenger wrong."""
    p_value: float
    """Exact McNemar test on the discordant runs (1.0 with none)."""
    needs: list[str] = field(default_factory=list)
    """What the next decision needs to promote, when inconclusive (people read it)."""
    runs_needed: int = 0
    """More labelled runs before :attr:`ShadowPolicy.min_runs` is reached."""
    labels_missing: list[str] = field(default_factory=list)
    """Labels no compared run has yet."""
    wins_needed: int | None = 0
    """More challenger wins (with no more champion wins) before the win is significant; None when
    out of reach."""

    @property
    def moves(self) -> bool:
        return self.outcome is not ShadowOutcome.INCONCLUSIVE


def mcnemar_p_value(challenger_wins: int, champion_wins: int) -> float:
    """Exact (binomial) McNemar test, two-sided: are the discordant runs split unevenly?"""
    discordant = challenger_wins + champion_wins
    if discordant == 0:
        return 1.0
    return float(binomtest(challenger_wins, discordant, 0.5, alternative="two-sided").pvalue)


def wins_needed(challenger_wins: int, champion_wins: int, alpha: float) -> int | None:
    """The fewest further challenger wins, with no further champion win, that make the win
    significant; None when more than :data:`MAX_WINS_LOOKED_FOR` would be needed."""
    for more in range(MAX_WINS_LOOKED_FOR + 1):
        wins = challenger_wins + more
        if wins > champion_wins and mcnemar_p_value(wins, champion_wins) < alpha:
            return more
    return None


def decide_shadow(
    runs: Sequence[RunVerdicts], policy: ShadowPolicy, *, age_seconds: float
) -> ShadowDecision:
    """Promote, reject or wait, in this order:

    - promote when at least ``min_runs`` runs, of both labels, are compared and the challenger wins
      the discordant ones with p < alpha (evidence beats the clock: a win whose deciding run came
      in after the max age still counts);
    - reject when the champion wins them with p < alpha, whatever the number of runs;
    - reject when the challenger has been in shadow for ``max_age_seconds`` or longer;
    - otherwise inconclusive: nothing moves, and :attr:`ShadowDecision.needs` says what is missing.
    """
    challenger = sum(1 for r in runs if r.challenger_right and not r.champion_right)
    champion = sum(1 for r in runs if r.champion_right and not r.challenger_right)
    p_value = mcnemar_p_value(challenger, champion)
    by_label = {name: sum(1 for r in runs if r.label == n) for n, name in LABEL_NAMES.items()}
    missing = [name for name, count in by_label.items() if count == 0]
    runs_needed = max(0, policy.min_runs - len(runs))
    needed = wins_needed(challenger, champion, policy.alpha)
    significant = p_value < policy.alpha
    tally = (
        f"{len(runs)} labelled run(s); challenger right where the champion was wrong on "
        f"{challenger}, the reverse on {champion}; McNemar p = {p_value:.4g}"
    )

    def decision(
        outcome: ShadowOutcome, reason: str, needs: list[str] | None = None
    ) -> ShadowDecision:
        return ShadowDecision(
            outcome=outcome,
            reason=f"{reason} ({tally})",
            runs=len(runs),
            runs_by_label=by_label,
            challenger_wins=challenger,
            champion_wins=champion,
            p_value=p_value,
            needs=needs or [],
            runs_needed=runs_needed,
            labels_missing=missing,
            wins_needed=needed,
        )

    if significant and challenger > champion and not runs_needed and not missing:
        return decision(ShadowOutcome.PROMOTE, f"the challenger wins with p < {policy.alpha}")
    if significant and champion > challenger:
        return decision(ShadowOutcome.REJECT, f"the challenger loses with p < {policy.alpha}")
    if age_seconds >= policy.max_age_seconds:
        return decision(
            ShadowOutcome.REJECT,
            f"in shadow for {age_seconds:.0f} s, past the max age of "
            f"{policy.max_age_seconds:.0f} s, without a significant win",
        )
    needs = []
    if runs_needed:
        needs.append(f"{runs_needed} more labelled run(s) (at least {policy.min_runs})")
    if missing:
        needs.append(f"a labelled run of each label: none is {' or '.join(missing)} yet")
    if needed is None:
        needs.append("a win that is out of reach of any number of further runs")
    elif needed:
        needs.append(
            f"at least {needed} more run(s) the challenger gets right and the champion wrong "
            f"(and none the other way) for p < {policy.alpha}"
        )
    left = max(0.0, policy.max_age_seconds - age_seconds)
    needs.append(f"or else rejection after {left:.0f} s ({_duration(left)}) more in shadow")
    return decision(ShadowOutcome.INCONCLUSIVE, "inconclusive: nothing moves", needs)


@dataclass(frozen=True)
class ShadowComparison:
    """Champion and challenger on the labelled runs both scored: the run verdicts the decision
    takes, and the row figures people read (accuracy of each over the rows it scored, agreement
    over the rows both scored). None where there is no row to count."""

    runs: list[RunVerdicts]
    champion_accuracy: float | None
    challenger_accuracy: float | None
    agreement: float | None
    rows_compared: int
    """Rows both models scored."""


def compare_runs(scored: Sequence[ShadowRows]) -> ShadowComparison:
    """Each run's verdicts by majority vote of the rows each model scored (``THRESHOLD``), and the
    row figures."""
    verdicts: list[RunVerdicts] = []
    right = {"champion": [0, 0], "challenger": [0, 0]}  # rows right, rows scored
    agree = both = 0
    for run in scored:
        worn: dict[str, np.ndarray] = {}
        for role, probability in (("champion", run.champion), ("challenger", run.challenger)):
            seen = np.isfinite(probability)
            labels = (probability[seen] >= THRESHOLD).astype(int)
            worn[role] = np.where(seen, probability >= THRESHOLD, False)
            right[role][0] += int((labels == run.label).sum())
            right[role][1] += int(labels.size)
        together = np.isfinite(run.champion) & np.isfinite(run.challenger)
        both += int(together.sum())
        agree += int((worn["champion"][together] == worn["challenger"][together]).sum())
        verdicts.append(
            RunVerdicts(
                run=run.run,
                label=run.label,
                champion=majority_verdict(
                    (run.champion[np.isfinite(run.champion)] >= THRESHOLD).astype(int)
                ),
                challenger=majority_verdict(
                    (run.challenger[np.isfinite(run.challenger)] >= THRESHOLD).astype(int)
                ),
            )
        )
    return ShadowComparison(
        runs=verdicts,
        champion_accuracy=_share(*right["champion"]),
        challenger_accuracy=_share(*right["challenger"]),
        agreement=_share(agree, both),
        rows_compared=both,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _duration(seconds: float) -> str:
    """Seconds as an operator reads them: the largest unit of s, min, h, d that is at least one."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
