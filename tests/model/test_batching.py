"""The batch scheduler with the real tiny model: same vectors as unbatched, order kept
under concurrency, one bad input failing only its own call, bounded queue, a lone
call dispatched at once, texts bucketed by length."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from recommender.errors import InvalidArgument, Overloaded
from service.embedding.batching import BUCKET_BATCHES, BatchPolicy, BatchScheduler, ModelBatchFailed
from tests.conftest import png

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "gray", (10, 200, 30), (200, 20, 120)]


@pytest.fixture
def pools():
    model, preprocess = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    yield model, preprocess
    model.shutdown()
    preprocess.shutdown()


def run(coroutine_factory, embedder, pools, **policy):
    """Run `coroutine_factory(scheduler)` on a fresh loop with a fresh scheduler."""
    async def main():
        scheduler = BatchScheduler(embedder, BatchPolicy(**policy), *pools)
        try:
            return await coroutine_factory(scheduler), scheduler
        finally:
            await scheduler.close()
    return asyncio.run(main())


@contextlib.asynccontextmanager
async def model_busy(scheduler, model_pool):
    """The inference thread held by other work: the first call's batch waits on it, later calls stay queued."""
    release = threading.Event()
    model_pool.submit(release.wait)
    pacer = asyncio.create_task(scheduler.embed_texts(["pacer"]))
    while not (scheduler.outstanding("text") == 1 and scheduler.queued() == 0):  # taken into a batch
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        release.set()
        await pacer


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_concurrent_single_inputs_are_batched_and_equal_unbatched_vectors_in_order(tiny_embedder, pools):
    texts = [f"a {color} {shape} number {n}" for n, (color, shape) in
             enumerate(zip(map(str, COLORS), ["circle", "square"] * 5))] + ["x", "a much longer caption " * 9]
    images = [png(color, size=(40 + 3 * n, 50), shape="circle" if n % 2 else "square")
              for n, color in enumerate(COLORS)]

    async def calls(scheduler):
        text_calls = [scheduler.embed_texts([text]) for text in texts]
        image_calls = [scheduler.embed_images([image]) for image in images]
        return await asyncio.gather(*text_calls, *image_calls)

    results, scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=0.05)
    got_texts = np.vstack(results[:len(texts)])
    got_images = np.vstack(results[len(texts):])
    # The reference: each input alone, at batch 1, through the same model.
    want_texts = np.vstack([tiny_embedder.embed_texts([text]) for text in texts])
    want_images = np.vstack([tiny_embedder.embed_images([image]) for image in images])
    assert cosines(got_texts, want_texts).min() >= 0.99999
    assert cosines(got_images, want_images).min() >= 0.99999
    assert scheduler.stats.mean_batch("text") > 1 and scheduler.stats.mean_batch("image") > 1
    assert scheduler.stats.inputs == {"text": len(texts), "image": len(images)}
    assert max(scheduler.stats.batches.values()) < len(texts)
    assert scheduler.queued() == 0


def test_multi_input_calls_keep_their_own_order_when_batches_mix_calls(tiny_embedder, pools):
    groups = [[f"group {g} text {i}" for i in range(g + 1)] for g in range(7)]

    async def calls(scheduler):
        return await asyncio.gather(*(scheduler.embed_texts(group) for group in groups))

    results, scheduler = run(calls, tiny_embedder, pools, max_batch=5, max_wait_s=0.05)
    for group, got in zip(groups, results):
        np.testing.assert_allclose(got, tiny_embedder.embed_texts(group), atol=1e-5)
    assert scheduler.stats.batches["text"] < len(groups)


def test_a_bad_image_fails_only_its_own_call(tiny_embedder, pools):
    async def calls(scheduler):
        return await asyncio.gather(
            scheduler.embed_images([png("red")]),
            scheduler.embed_images([png("blue"), b"not an image"], "images"),
            scheduler.embed_images([png("green")]),
            scheduler.embed_texts(["still fine"]),
            return_exceptions=True)

    (red, broken, green, text), scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=0.05)
    assert isinstance(broken, InvalidArgument) and str(broken).startswith("images[1]")
    np.testing.assert_allclose(red[0], tiny_embedder.embed_images([png("red")])[0], atol=1e-5)
    np.testing.assert_allclose(green[0], tiny_embedder.embed_images([png("green")])[0], atol=1e-5)
    assert text.shape == (1, tiny_embedder.dim)
    assert scheduler.stats.inputs["image"] == 2  # the failed call's good image never reached the model
    assert scheduler.queued() == 0


def test_per_item_images_report_each_failure_and_embed_the_rest(tiny_embedder, pools):
    async def call(scheduler):
        return await scheduler.embed_images_each([(png("red"), "items[0].image"), (b"junk", "items[1].image"),
                                                  (b"", "items[2].image"), (png("blue"), "items[3].image")])

    results, scheduler = run(call, tiny_embedder, pools)
    assert [type(result).__name__ for result in results] == ["ndarray", "InvalidArgument", "InvalidArgument",
                                                             "ndarray"]
    assert str(results[1]).startswith("items[1].image") and str(results[2]).startswith("items[2].image")
    np.testing.assert_allclose(results[3], tiny_embedder.embed_images([png("blue")])[0], atol=1e-5)
    assert scheduler.queued() == 0


def test_a_full_queue_refuses_interactive_calls_and_holds_bulk_ones(tiny_embedder, pools):
    async def calls(scheduler):
        async with model_busy(scheduler, pools[0]):
            first = asyncio.create_task(scheduler.embed_texts(["one", "two", "three"]))
            while scheduler.queued("text") < 3:  # queued, and held there while the model is busy
                await asyncio.sleep(0.01)
            with pytest.raises(Overloaded):
                await scheduler.embed_texts(["refused"])
            bulk = asyncio.create_task(scheduler.embed_texts(["waits for room"], bulk=True))
            await asyncio.sleep(0.05)
            assert not bulk.done()
        return await first, await bulk

    (first, bulk), scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=2.0, max_queue=3)
    assert first.shape == (3, tiny_embedder.dim) and bulk.shape == (1, tiny_embedder.dim)
    assert scheduler.stats.rejected == 1
    assert scheduler.queued() == 0


def test_a_call_larger_than_the_queue_still_runs_when_the_queue_is_empty(tiny_embedder, pools):
    texts = [f"text {n}" for n in range(10)]

    async def call(scheduler):
        return await scheduler.embed_texts(texts)

    vectors, _ = run(call, tiny_embedder, pools, max_batch=4, max_queue=2)
    np.testing.assert_allclose(vectors, tiny_embedder.embed_texts(texts), atol=1e-5)


def test_a_cancelled_caller_leaves_the_queue_and_never_reaches_the_model(tiny_embedder, pools):
    async def calls(scheduler):
        async with model_busy(scheduler, pools[0]):
            doomed = asyncio.create_task(scheduler.embed_texts(["cancel me", "and me"]))
            while scheduler.queued("text") < 2:
                await asyncio.sleep(0.01)
            doomed.cancel()
            await asyncio.gather(doomed, return_exceptions=True)
        return await scheduler.embed_texts(["after"])

    vector, scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=2.0)
    assert vector.shape == (1, tiny_embedder.dim)
    assert scheduler.stats.inputs["text"] == 2  # the pacer and "after"
    assert scheduler.queued() == 0


def test_observers_see_every_batch(tiny_embedder, pools):
    seen = []

    async def calls(scheduler):
        scheduler.observers.append(lambda tower, size, waited, ran: seen.append((tower, size, waited >= 0, ran > 0)))
        await asyncio.gather(*(scheduler.embed_texts([f"t{n}"]) for n in range(6)),
                             scheduler.embed_images([png("red")]))

    run(calls, tiny_embedder, pools, max_batch=4, max_wait_s=0.05)
    assert sum(size for tower, size, *_ in seen if tower == "text") == 6
    assert sum(size for tower, size, *_ in seen if tower == "image") == 1
    assert all(ok_wait and ok_run for *_, ok_wait, ok_run in seen)


# -- when an idle model waits for company ------------------------------------------

def test_a_lone_call_is_dispatched_at_once_not_after_max_wait(tiny_embedder, pools):
    async def calls(scheduler):
        for n in range(3):  # one caller in a closed loop, like an interactive client
            await scheduler.embed_texts([f"alone {n}"])
            await scheduler.embed_images([png(COLORS[n])])

    _, scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=60.0)
    assert scheduler.stats.batches == {"text": 3, "image": 3}
    # Waiting for company would have cost 60 s a batch; what is left is the hop to the dispatcher.
    assert scheduler.stats.queue_wait_s["text"] < 6.0 and scheduler.stats.queue_wait_s["image"] < 6.0


def test_concurrent_calls_still_share_a_batch_while_others_are_being_prepared(tiny_embedder, pools):
    texts = [f"together {n}" for n in range(8)]
    images = [png(color) for color in COLORS[:5]]

    async def calls(scheduler):
        return await asyncio.gather(*(scheduler.embed_texts([text]) for text in texts),
                                    *(scheduler.embed_images([image]) for image in images))

    results, scheduler = run(calls, tiny_embedder, pools, max_batch=16, max_wait_s=60.0)
    # The images decode on the pool one by one; the batch waits for the ones still decoding.
    assert scheduler.stats.batches == {"text": 1, "image": 1}
    np.testing.assert_allclose(np.vstack(results[len(texts):]), tiny_embedder.embed_images(images), atol=1e-5)


def test_callers_in_a_closed_loop_keep_sharing_batches_when_their_next_calls_straggle(tiny_embedder, pools):
    callers, rounds = 6, 3

    async def caller(scheduler, number):
        vectors = []
        for round_number in range(rounds):
            if round_number:  # the answer went out; the next call comes back a little later
                await asyncio.sleep(0.005 * number)
            vectors.append(await scheduler.embed_texts([f"caller {number} round {round_number}"]))
        return vectors

    async def calls(scheduler):
        return await asyncio.gather(*(caller(scheduler, number) for number in range(callers)))

    results, scheduler = run(calls, tiny_embedder, pools, max_batch=16, max_wait_s=60.0)
    # Six were outstanding when each batch finished, so the idle model waits for six again.
    assert scheduler.stats.batches["text"] == rounds
    assert scheduler.stats.inputs["text"] == callers * rounds
    want = tiny_embedder.embed_texts([f"caller 2 round {n}" for n in range(rounds)])
    np.testing.assert_allclose(np.vstack(results[2]), want, atol=1e-5)


# -- texts bucketed by length ------------------------------------------------------

@pytest.fixture
def text_batches(tiny_embedder, monkeypatch):
    """The token rows of every text batch the model runs, in order (the real encoder runs them)."""
    assert tiny_embedder.text_tower.trims
    seen: list[list[tuple[int, ...]]] = []
    encode = tiny_embedder.encode_texts

    def recording(tokens):
        seen.append([tuple(row.tolist()) for row in tokens])
        return encode(tokens)

    monkeypatch.setattr(tiny_embedder, "encode_texts", recording)
    return seen


def test_texts_beyond_one_batch_are_bucketed_by_length_and_keep_their_order(tiny_embedder, pools, text_batches):
    short = [f"{color}" for color in map(str, COLORS[:8])]
    long = [f"a long and detailed caption about a {color} object on a plain table, photographed from above"
            for color in map(str, COLORS[:8])]
    mixed = [text for pair in zip(short, long) for text in pair]  # short, long, short, long, ...
    callers = [mixed[:10], mixed[10:]]

    async def calls(scheduler):
        return await asyncio.gather(*(scheduler.embed_texts(texts) for texts in callers))

    results, _ = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=0.05)
    batches = list(text_batches)
    lengths = tiny_embedder.text_tower.lengths
    long_length = min(lengths(torch.stack(tiny_embedder.prepare_texts(long))))
    assert max(lengths(torch.stack(tiny_embedder.prepare_texts(short)))) < long_length
    # In arrival order both batches would mix the two kinds and run at the long texts' length.
    kinds = [{length >= long_length for length in lengths(torch.tensor(batch))} for batch in batches]
    assert kinds == [{False}, {True}]
    for texts, got in zip(callers, results):
        np.testing.assert_allclose(got, tiny_embedder.embed_texts(texts), atol=1e-5)


def test_the_oldest_text_runs_in_the_first_round_however_long_it_is(tiny_embedder, pools, text_batches):
    max_batch = 4
    texts = ["the oldest text is a long caption about a red square drawn on a white sheet of paper"]
    texts += [f"short {n}" for n in range(3 * BUCKET_BATCHES * max_batch)]

    async def call(scheduler):
        return await scheduler.embed_texts(texts)

    vectors, _ = run(call, tiny_embedder, pools, max_batch=max_batch, max_wait_s=0.05)
    index = {tuple(row.tolist()): n for n, row in enumerate(tiny_embedder.prepare_texts(texts))}
    ran = [[index[row] for row in batch] for batch in text_batches]
    np.testing.assert_allclose(vectors, tiny_embedder.embed_texts(texts), atol=1e-5)
    assert 0 in ran[0], "the batch holding the oldest text runs first"
    first_round = sorted(n for batch in ran[:BUCKET_BATCHES] for n in batch)
    assert first_round == list(range(BUCKET_BATCHES * max_batch)), "a round takes the oldest texts, no later one"


# -- a failed model batch ------------------------------------------------------------

def test_a_failed_model_batch_fails_each_of_its_calls_and_is_logged_once(tiny_embedder, pools, monkeypatch,
                                                                         caplog):
    def broken(tokens):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(tiny_embedder, "encode_texts", broken)
    caplog.set_level(logging.INFO)

    async def calls(scheduler):
        return await asyncio.gather(*(scheduler.embed_texts([f"doomed {n}"]) for n in range(3)),
                                    scheduler.embed_images([png("red")]), return_exceptions=True)

    (*doomed, image), scheduler = run(calls, tiny_embedder, pools, max_batch=8, max_wait_s=0.05)
    assert all(isinstance(error, ModelBatchFailed) for error in doomed)
    assert image.shape == (1, tiny_embedder.dim), "the other tower is not affected"
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1 and "the model broke" in logging.Formatter().format(logged[0])
    assert scheduler.queued() == 0 and scheduler.outstanding("text") == 0
