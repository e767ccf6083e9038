"""The article's classifier built in Keras 3 (TensorFlow backend), trained and timed on ids attnkit wrote.

Runs in its own environment (Keras is not a dependency of attnkit); ``benchmarks/article_model.py`` starts it
with that environment's Python beside attnkit's run. Model, as the article prints it, made runnable:
``Embedding(10000, 16) -> Bidirectional(LSTM(32, return_sequences=True)) -> attention pooling (score
h_t^T W q, softmax over the 500 steps, weighted sum) -> Dense(1, sigmoid)``, Adam, binary cross-entropy, the
reviews pre-padded to 500 ids as ``pad_sequences`` does. (The article's ``tf.keras.layers.Attention()`` inside a
``Sequential`` does not run: that layer needs a query and a value.)

    /path/to/keras-env/bin/python benchmarks/keras_article_model.py --data ids.npz --out keras.json \
        --save-weights keras.weights.h5
    /path/to/keras-env/bin/python benchmarks/keras_article_model.py --data ids.npz --out round.json \
        --predict-only keras.weights.h5      # inference again, for rounds alternating with attnkit's
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, help="npz with train_ids, train_labels, test_ids, test_labels"
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--vocab-size", type=int, default=10000)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-weights", help="write the trained weights here (.weights.h5)")
    parser.add_argument("--predict-only", metavar="WEIGHTS", help="load these weights, time inference only")
    args = parser.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(args.seed)
    data = np.load(args.data)
    train_x, train_y = data["train_ids"], data["train_labels"].astype("float32")
    test_x, test_y = data["test_ids"], data["test_labels"].astype("float32")
    length = train_x.shape[1]

    class AttentionPooling(layers.Layer):
        """``h (B, T, D)`` -> ``sum_t softmax_t(h_t^T W q) h_t (B, D)``: the article's general score."""

        def build(self, input_shape):
            dim = input_shape[-1]
            self.w = self.add_weight(shape=(dim, dim), initializer="glorot_uniform", name="w")
            self.q = self.add_weight(shape=(dim, 1), initializer="glorot_uniform", name="q")

        def call(self, h):
            scores = ops.matmul(ops.matmul(h, self.w), self.q)  # (B, T, 1)
            weights = ops.softmax(scores, axis=1)  # (B, T, 1)
            return ops.sum(weights * h, axis=1)  # (B, D)

    inputs = keras.Input(shape=(length,), dtype="int32")
    x = layers.Embedding(args.vocab_size, args.embed_dim)(inputs)
    x = layers.Bidirectional(layers.LSTM(args.units, return_sequences=True))(x)
    x = AttentionPooling()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])

    def time_inference() -> tuple[dict[int, float], Any]:
        rates, probs = {}, None
        for size in args.eval_batch_sizes:
            start = time.perf_counter()
            probs = model.predict(test_x, batch_size=size, verbose=0)[:, 0]
            rates[size] = len(test_x) / (time.perf_counter() - start)
        return rates, probs

    if args.predict_only:
        model.load_weights(args.predict_only)
        rates, _ = time_inference()
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"inference_by_batch_size": rates, "load_average_end": list(os.getloadavg())}, f)
        return

    class BatchClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    clock = BatchClock()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(train_x, train_y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[clock])
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # Steady state: batches after the first 20 (graph tracing happens in the first).
    steady = None
    if len(clock.times) > 40:
        span = clock.times[-1] - clock.times[20]
        steady = (len(clock.times) - 21) * args.batch_size / span
    by_batch_size, probs = time_inference()
    if args.save_weights:
        model.save_weights(args.save_weights)
    accuracy = float(np.mean((probs >= 0.5) == (test_y >= 0.5)))
    result = {
        "framework": f"keras {keras.__version__} (tensorflow {tf.__version__}, CPU)",
        "threads": args.threads,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "length": int(length),
        "train_examples": len(train_x),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "train_examples_per_second": args.epochs * len(train_x) / train_seconds,
        "train_examples_per_second_steady": steady,
        "test_accuracy": accuracy,
        "inference_by_batch_size": by_batch_size,
        "inference_examples_per_second": max(by_batch_size.values()),
        "parameters": int(model.count_params()),
        "load_average_end": list(os.getloadavg()),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
