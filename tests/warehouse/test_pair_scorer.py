"""Linkage pairs scored in the build's forked process equal in-process scoring."""

from __future__ import annotations

import multiprocessing

import pytest

from tests.warehouse.test_linkage import _invented_sites
from warehouse.linkage import score_pairs
from warehouse.pair_scorer import PairScorer, ScoringProcessDied, pair_scorer


def test_forked_scoring_equals_in_process_scoring() -> None:
    records, _ = _invented_sites()
    with pair_scorer() as score:
        assert isinstance(score, PairScorer)
        forked = score(records)
    assert len(forked) > 0
    assert forked.equals(score_pairs(records))
    assert not score._process.is_alive()


def test_nothing_to_score_lets_the_process_exit() -> None:
    with pair_scorer() as score:
        process = score._process
        assert process.is_alive()
    assert not process.is_alive() and process.exitcode == 0


def test_an_error_in_the_process_is_raised_in_the_build() -> None:
    records, _ = _invented_sites()
    with pair_scorer() as score, pytest.raises(KeyError, match="name_key"):
        score(records.drop(columns=["name_key"]))


def test_a_killed_process_is_a_clear_error() -> None:
    records, _ = _invented_sites()
    with pair_scorer() as score:
        score._process.kill()
        score._process.join()
        with pytest.raises(ScoringProcessDied, match="ended without a result .exit code -9."):
            score(records)


def _daemon(queue: multiprocessing.Queue) -> None:
    with pair_scorer() as score:
        queue.put(score is score_pairs)


def test_a_daemonic_process_scores_in_process() -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_daemon, args=(queue,), daemon=True)
    process.start()
    assert queue.get(timeout=30) is True
    process.join()
