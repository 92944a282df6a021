"""Batches of labelled sequences bucketed by length (`data.bucket_by_length`): each batch holds
sequences of one length bucket and is padded at the end only to that bucket's bound, so the
recurrent layers compute far fewer padded steps than with one global length.

Each batch is padded to its bucket's bound, not to its own longest member: under XLA (on by
default on CPUs) every new batch shape is a new compilation (about 1.5 s for a 32-unit LSTM on
this project's CPU), and padding to the batch's longest makes a shape of nearly every length a
long tail holds. With bounds there are at most two shapes per bucket (full batches and the
bucket's last, smaller one), the same every epoch (scripts/bench_bucketing.py).

Our own rather than `tf.data.Dataset.bucket_by_sequence_length`: that groups example by example
inside the input pipeline, which took 50 ms an epoch on JapaneseVowels against 8 ms unbucketed
and made a bucketed epoch 0.58x as fast; slicing the already padded arrays per bucket and mixing
them with `choose_from_datasets` costs 5 ms against 4 ms.
"""

from __future__ import annotations

import numpy as np

# The most buckets; each adds up to two XLA compilations of the training step and of the
# evaluation step. On the benchmark's long-tailed lengths (lognormal, 20-400 steps: 81% of the
# steps padding with one length) eight buckets leave 16% padding, four 31%, two 54%, and an
# epoch took 0.55 s, 0.60 s and 0.79 s (one length: 2.6 s) after warm-ups of 64 s, 45 s and
# 26 s (one length: 13 s; 2026-12-02, 2 CPU cores): four keep nearly all of eight's speed for
# two thirds of its compiling.
MAX_BUCKETS = 4

# Candidate bounds the search considers (quantiles of the lengths): keeps it quick for any
# number of distinct lengths.
CANDIDATES = 512


def bucket_bounds(lengths: np.ndarray, batch_size: int, max_buckets: int | None = None) -> list:
    """Each bucket's padded length, shortest first: the bounds that leave the fewest padded
    steps in the training sequences, each bucket holding at least one full batch where the
    lengths allow. The last bound is the longest length.

    Exact (dynamic programming over the sorted candidate bounds) rather than quantiles: equal
    shares put the long tail in one bucket padded to the longest, leaving 49% of the steps
    padding instead of 31% for lengths like the benchmark's, in four buckets.
    """
    max_buckets = max_buckets or MAX_BUCKETS  # read when called: the benchmark sets it
    lengths = np.asarray(lengths)
    quantiles = np.linspace(0.0, 1.0, CANDIDATES + 1)
    ends = np.unique(np.quantile(lengths, quantiles, method="higher").astype(int))
    # below[j]: sequences no longer than ends[j - 1] (below[0] = 0).
    below = np.concatenate([[0], np.searchsorted(np.sort(lengths), ends, side="right")])
    n = len(ends)
    # cost[b, j]: fewest padded-to steps for the sequences up to ends[j - 1] in b buckets;
    # start[b, j]: where that last bucket starts.
    cost = np.full((max_buckets + 1, n + 1), np.inf)
    cost[0, 0] = 0.0
    start = np.zeros((max_buckets + 1, n + 1), dtype=int)
    for b in range(1, max_buckets + 1):
        for j in range(1, n + 1):
            size = below[j] - below[:j]
            total = cost[b - 1, :j] + ends[j - 1] * size
            total[size < min(batch_size, len(lengths))] = np.inf
            start[b, j] = int(np.argmin(total))
            cost[b, j] = total[start[b, j]]
    buckets = 1 + int(np.argmin(cost[1:, n]))  # the fewest buckets among equal costs
    bounds, j = [], n
    for b in range(buckets, 0, -1):
        bounds.append(int(ends[j - 1]))
        j = start[b, j]
    return bounds[::-1]


def padding_share(lengths: np.ndarray, bounds: list) -> float:
    """Share of the steps computed that are padding when each sequence is padded to its
    bucket's bound (the first bound at least its length)."""
    lengths = np.asarray(lengths)
    padded = np.asarray(bounds)[np.searchsorted(bounds, lengths)]
    return float(1.0 - lengths.sum() / padded.sum())


def bucketed_pipeline(x, lengths, y, batch_size: int, bounds: list, **options):
    """A batched, prefetched tf.data pipeline whose batches each hold one length bucket's
    sequences, cut from `x` (padded at the end to one length) to the bucket's bound, so they
    stay padded at the end. Sequences longer than the last bound get a bucket of `x`'s length.

    Options as to_tf_dataset's: `shuffle` (seeded by `seed`, every epoch: the sequences within
    each bucket and the order of all the batches) and `cache`.

    Not `tf.data.Dataset.bucket_by_sequence_length`: it cuts and pads every sequence on its own
    and builds a dataset per batch (`group_by_window`): the JapaneseVowels training pipeline
    alone took 50 ms an epoch that way against 8 ms with one length, which made a bucketed
    epoch of a small LSTM slower (0.58x) than a padded one. This way it takes 1.5-3x the
    one-length pipeline's time, and the bucketed epoch ran 1.26x as fast.
    """
    import tensorflow as tf

    bounds = list(bounds)
    if x.shape[1] > bounds[-1]:  # a split's sequences may be longer than training's longest
        bounds.append(x.shape[1])
    bucket = np.searchsorted(bounds, lengths)
    seed, shuffle = options.get("seed"), options.get("shuffle")
    parts, schedule = [], []  # each bucket's batches; which bucket each batch comes from
    for i, bound in enumerate(bounds):
        rows = np.flatnonzero(bucket == i)
        if len(rows) == 0:
            continue
        part = tf.data.Dataset.from_tensor_slices((x[rows, :bound], y[rows]))
        if options.get("cache"):
            part = part.cache()
        if shuffle:
            shift = None if seed is None else seed + i
            part = part.shuffle(len(rows), seed=shift, reshuffle_each_iteration=True)
        parts.append(part.batch(batch_size))
        schedule += [len(parts) - 1] * -(-len(rows) // batch_size)
    order = tf.data.Dataset.from_tensor_slices(np.array(schedule, dtype=np.int64))
    if shuffle:
        order = order.shuffle(len(schedule), seed=seed, reshuffle_each_iteration=True)
    ds = tf.data.Dataset.choose_from_datasets(parts, order)
    # Choosing hides the number of batches from tf.data; without it Keras cannot size an
    # epoch and warns that the input "ran out of data" at the end of every first pass.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(schedule)))
    return ds.prefetch(tf.data.AUTOTUNE)
