"""search.summary: what the study prints when it ends."""

import numpy as np
import pytest
from helpers import gain_study

from search import summary


@pytest.mark.parametrize("gain_is_clear", [False, True])
def test_summary_offers_the_baseline_export_only_when_the_gain_is_not_significant(in_tmp, capsys, gain_is_clear):
    groups = np.repeat(np.arange(30), 4)
    base = np.random.default_rng(4).integers(2, 6, size=120)
    best = np.zeros(120, int) if gain_is_clear else base - (np.arange(120) < 3)
    summary.summarize(gain_study(best, base, groups), "sqlite:///studies/cells.db", 2)
    out = capsys.readouterr().out
    assert "export: python -m search.export --study-name cells" in out
    assert ("--trial 0" in out) is not gain_is_clear
