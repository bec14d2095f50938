"""Replay every request in tests/requests through the parser, in many chunkings.

A sans-IO parser sees whatever the socket happens to deliver, so the same bytes must give the
same requests (or the same error) however they are split: whole, byte by byte, line by line,
at seeded random points, and, for short cases, cut in two at every position. Randomness is
seeded from the case name, so a failure always reproduces. Valid cases are compared with their
``.expect`` (only the keys written there); invalid cases must raise the named error with its
status code after exactly ``requests_before`` complete requests, and keep raising it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))
import corpus

CASES = corpus.load()
SHORT = 200  # cases shorter than this are also cut in two at every position
RANDOM_SEEDS = 3


def whole(data: bytes, name: str) -> list[list[bytes]]:
    return [[data]]


def bytewise(data: bytes, name: str) -> list[list[bytes]]:
    return [[data[i : i + 1] for i in range(len(data))]]


def linewise(data: bytes, name: str) -> list[list[bytes]]:
    return [corpus.split_at(data, [i + 1 for i, byte in enumerate(data) if byte == 0x0A])]


def seeded_random(data: bytes, name: str) -> list[list[bytes]]:
    out = []
    for seed in range(RANDOM_SEEDS):
        rng = random.Random(f"{name}:{seed}")
        count = rng.randint(1, max(1, min(len(data) - 1, 24)))
        out.append(
            corpus.split_at(data, [rng.randrange(1, max(2, len(data))) for _ in range(count)])
        )
    return out


def every_split(data: bytes, name: str) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(1, len(data))]


STRATEGIES: dict[str, Callable[[bytes, str], list[list[bytes]]]] = {
    "whole": whole,
    "bytes": bytewise,
    "lines": linewise,
    "random": seeded_random,
    "every_split": every_split,
}


def _params() -> list[object]:
    params = []
    for case in CASES:
        for strategy in STRATEGIES:
            if strategy == "every_split" and len(case.data) >= SHORT:
                continue
            params.append(pytest.param(case, strategy, id=f"{case.name}-{strategy}"))
    return params


def _describe(outcome: corpus.Outcome) -> str:
    if outcome.error is not None:
        return f"{outcome.error_name}({outcome.error.code}) after {len(outcome.requests)} requests"
    return f"{len(outcome.requests)} requests, no error"


def check_valid(case: corpus.Case, outcome: corpus.Outcome, how: str) -> None:
    assert outcome.error is None, f"{how}: unexpected {outcome.error!r}"
    assert not outcome.partial, f"{how}: a request was left incomplete"
    if case.eof:
        assert outcome.saw_eof, f"{how}: EOF not reported after the last request"
    expected = case.expect["requests"]
    assert len(outcome.requests) == len(expected), f"{how}: {_describe(outcome)}"
    for i, (got, want) in enumerate(zip(outcome.requests, expected, strict=True)):
        got_subset = {k: got[k] for k in want}
        assert got_subset == want, f"{how}: request #{i}"


def check_invalid(case: corpus.Case, outcome: corpus.Outcome, how: str) -> None:
    exp = case.expect
    assert outcome.error is not None, f"{how}: expected {exp['error']}, got {_describe(outcome)}"
    assert (outcome.error_name, outcome.error.code, len(outcome.requests)) == (
        exp["error"],
        exp["status"],
        exp["requests_before"],
    ), f"{how}: {outcome.error!r}"
    assert str(outcome.error), "errors carry a message"


def test_corpus_is_big_enough() -> None:
    kinds = [c.kind for c in CASES]
    assert kinds.count("valid") >= 60
    assert kinds.count("invalid") >= 90


@pytest.mark.parametrize(("case", "strategy"), _params())
def test_case(case: corpus.Case, strategy: str) -> None:
    check = check_valid if case.kind == "valid" else check_invalid
    for n, pieces in enumerate(STRATEGIES[strategy](case.data, case.name)):
        assert b"".join(pieces) == case.data
        how = f"{strategy}#{n} ({len(pieces)} pieces)"
        check(case, corpus.replay(pieces, case.limits, eof=case.eof), how)
