"""Offline evaluation of recommendation strategies on simulated users: lab tooling.

Simulated users have a few latent tastes -- attribute combinations such as
(colour, shape) -- that the recommender never sees: it only gets their events,
as a real one would. Because the tastes are known, the evaluation can ask
questions a logged dataset cannot answer: did a list cover every taste, and
did it show items of a taste the user rejected?

    simulate   the world's tastes and the users' event histories
    split      one global point in time: history before it, test items after
    metrics    per-list measures and `evaluate`, which asks a recommender for every user
    oracle     the reference row that knows each user's tastes
    bootstrap  paired intervals for ratios between strategies
    report     the targets, tables and the JSON record

Pure numpy: no model, no vector store. Recommendations come in through a
callable, so the same code measures an in-process engine or a remote one.

This package is not part of the runtime: only `service/evaluate.py` (the
`lookalike eval` command) imports it; tests/unit/test_evaluation.py checks that.
"""
