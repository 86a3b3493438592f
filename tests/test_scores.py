"""NPS and CSAT by their standard definitions, on hand-computed examples."""

from __future__ import annotations

import pytest

from insights.scores import csat, distribution, nps


def test_nps_of_a_hand_computed_example():
    # 4 promoters (9, 10, 10, 9), 3 passives (7, 8, 8), 3 detractors (0, 5, 6): (4 − 3) / 10 = +10.
    result = nps([9, 10, 10, 9, 7, 8, 8, 0, 5, 6])
    assert (result.responses, result.promoters, result.passives, result.detractors) == (10, 40.0, 30.0, 30.0)
    assert result.score == 10.0


def test_nps_bounds_and_boundaries():
    assert nps([10, 9]).score == 100.0
    assert nps([6, 0]).score == -100.0
    assert nps([6, 7, 8, 9]).score == 0.0  # 6 detracts, 9 promotes, 7–8 are passive


def test_all_passives_give_zero():
    result = nps([7, 8, 7])
    assert result.score == 0.0 and result.passives == 100.0


def test_no_answers_give_no_score_rather_than_zero():
    assert nps([]).score is None and nps([]).responses == 0
    assert csat([]).score is None


def test_csat_is_the_share_of_fours_and_fives():
    result = csat([5, 4, 3, 2, 1, 5, 4, 4])
    assert (result.responses, result.satisfied, result.score) == (8, 5, 62.5)


@pytest.mark.parametrize("scorer, bad", [(nps, [11]), (nps, [-1]), (csat, [0]), (csat, [6])])
def test_out_of_range_answers_are_refused(scorer, bad):
    with pytest.raises(ValueError):
        scorer(bad)


def test_distribution_lists_every_value():
    assert distribution([1, 5, 5], 1, 5) == [(1, 1), (2, 0), (3, 0), (4, 0), (5, 2)]
