"""A task whose rationale is known: the label is decided by planted cue words among distractors.

Use it to measure *plausibility* (does a method point at the tokens that decide the label?) where a real
dataset has no annotated rationales: train on ``train.jsonl``, then score each method's token ranking against the
planted cue spans of ``test.jsonl`` with token-F1 and AUPRC.

Each text is 12-60 distractor words (from 200) with ``k`` cue words of its label's class (``1 <= k <= 3``) and fewer cue
words of another class mixed in (decoys), so the label is the class with the most cues. The planted cues of the
label's class are the rationale; decoys are not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnkit.data.errors import DataError

CUE_FIELD = "cues"

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "hi", "jo", "wa")


def _pseudo_words(rng: random.Random, count: int, syllables: int) -> list[str]:
    possible = len(_SYLLABLES) ** syllables
    if count > possible:
        raise ValueError(f"asked for {count} distinct {syllables}-syllable words; only {possible} exist")
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(syllables)))
    return sorted(words)


@dataclass(frozen=True)
class CueExample:
    """A synthetic text, its label and the character spans of the cue words that decide it."""

    text: str
    label: str
    cues: list[tuple[int, int]]

    def to_json_dict(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, CUE_FIELD: [list(span) for span in self.cues]}


def make_cue_task(
    n: int,
    *,
    seed: int = 0,
    num_classes: int = 2,
    cues_per_class: int = 8,
    distractors: int = 200,
    min_words: int = 12,
    max_words: int = 60,
) -> list[CueExample]:
    """``n`` examples with balanced labels ``class0 ... class{C-1}``; the vocabulary depends only on ``seed``.

    Cue and distractor words are pronounceable pseudo-words (cues have 3 syllables, distractors 2), so no
    pretrained knowledge helps and the planted cues are the only signal.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    vocab_rng = random.Random(f"cue-vocabulary-{seed}")
    cue_words = _pseudo_words(vocab_rng, num_classes * cues_per_class, syllables=3)
    vocab_rng.shuffle(cue_words)
    cues = [cue_words[c * cues_per_class : (c + 1) * cues_per_class] for c in range(num_classes)]
    filler = _pseudo_words(vocab_rng, distractors, syllables=2)
    rng = random.Random(f"cue-examples-{seed}")  # the first k examples do not depend on n
    examples = []
    for i in range(n):
        label = i % num_classes
        words = [rng.choice(filler) for _ in range(rng.randint(min_words, max_words))]
        planted = rng.randint(1, 3)
        decoys = rng.randint(0, planted - 1)
        other = rng.choice([c for c in range(num_classes) if c != label])
        inserts = [(w, True) for w in rng.choices(cues[label], k=planted)]
        inserts += [(w, False) for w in rng.choices(cues[other], k=decoys)]
        tagged = [(w, False) for w in words]
        for item in inserts:
            tagged.insert(rng.randint(0, len(tagged)), item)
        text_parts: list[str] = []
        spans: list[tuple[int, int]] = []
        position = 0
        for word, is_cue in tagged:
            if text_parts:
                position += 1
            if is_cue:
                spans.append((position, position + len(word)))
            text_parts.append(word)
            position += len(word)
        examples.append(CueExample(text=" ".join(text_parts), label=f"class{label}", cues=spans))
    return examples


def write_cue_task(
    out_dir: str | Path, *, train: int = 4000, test: int = 500, seed: int = 0, num_classes: int = 2
) -> dict[str, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` (fields ``text``, ``label``, ``cues``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    every = make_cue_task(train + test, seed=seed, num_classes=num_classes)
    rng = random.Random(seed)
    rng.shuffle(every)
    for split, rows in (("train", every[:train]), ("test", every[train:])):
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r.to_json_dict()) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


def read_cue_task(path: str | Path) -> list[CueExample] | None:
    """The examples of a JSON Lines file whose records have a ``cues`` field, else ``None``."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return None
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if CUE_FIELD not in record:
            return None
        spans = record[CUE_FIELD]
        if not isinstance(spans, list) or not all(isinstance(s, list) and len(s) == 2 for s in spans):
            raise DataError(f"{path}: line {number}: '{CUE_FIELD}' must be a list of [start, end] spans")
        examples.append(
            CueExample(str(record["text"]), str(record["label"]), [(int(a), int(b)) for a, b in spans])
        )
    return examples


def token_rationale(offsets: Sequence[tuple[int, int]], cues: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token span, whether it overlaps a cue span."""
    return [any(s < ce and cs < e for cs, ce in cues) for s, e in offsets]


def token_f1(scores: Sequence[float], gold: Sequence[bool]) -> float:
    """F1 of the top-``k`` tokens against the gold rationale, with ``k`` = the number of gold tokens.

    Ties are broken by position. With ``k`` equal to the gold size, precision and recall (and F1) coincide.
    """
    k = sum(gold)
    if k == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    hits = sum(1 for i in order if gold[i])
    return hits / k


def auprc(scores: Sequence[float], gold: Sequence[bool]) -> float:
    """Area under the precision-recall curve of the token ranking against the gold rationale, as average precision
    (scikit-learn's step-wise definition, not ERASER's trapezoid)."""
    from sklearn.metrics import average_precision_score

    if not any(gold):
        return float("nan")
    if all(gold):
        return 1.0
    return float(average_precision_score(np.array(gold, dtype=int), np.array(scores, dtype=float)))


def plausibility(
    predictor: Any,
    examples: Sequence[CueExample],
    methods: Sequence[str] = ("all",),
    *,
    n: int = 500,
    seed: int = 0,
    ig_steps: int = 50,
) -> list[dict[str, Any]]:
    """Token-F1 and AUPRC of each method's ranking against the planted cues, on ``n`` sampled examples.

    Scores explain each text's gold label (the planted cues are its rationale); a seeded ``random`` ranking is the
    chance baseline. Decoy cues of another class are real counter-evidence: unsigned methods (attention, gradient)
    may rank them high and lose precision for it, signed methods should rank them last. Returns one row
    ``{"method", "token_f1", "auprc", "n"}`` per method.
    """
    import torch

    from attnkit.explain.explanation import explain
    from attnkit.explain.methods import random_scores

    picked = sorted(random.Random(seed).sample(range(len(examples)), min(n, len(examples))))
    sample = [examples[i] for i in picked]
    # The planted cues are the rationale of the gold label, so each text is explained for its gold label.
    explanations: list[Any] = [None] * len(sample)
    for label in sorted({e.label for e in sample}):
        rows = [i for i, e in enumerate(sample) if e.label == label]
        for i, explanation in zip(
            rows,
            explain(predictor, [sample[i].text for i in rows], methods, target=label, ig_steps=ig_steps),
            strict=True,
        ):
            explanations[i] = explanation
    names = list(explanations[0].methods) if explanations else []
    rows_by_method: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in [*names, "random"]}
    for index, (example, explanation) in enumerate(zip(sample, explanations, strict=True)):
        gold = token_rationale([(t.start, t.end) for t in explanation.tokens], example.cues)
        noise = random_scores(torch.ones(1, len(gold), dtype=torch.bool), seed, first_index=index)[0].tolist()
        for method in [*names, "random"]:
            scores = noise if method == "random" else explanation.scores(method)
            rows_by_method[method][0].append(token_f1(scores, gold))
            rows_by_method[method][1].append(auprc(scores, gold))
    return [
        {
            "method": method,
            "token_f1": float(np.nanmean(f1)) if f1 else float("nan"),
            "auprc": float(np.nanmean(ap)) if ap else float("nan"),
            "n": len(f1),
        }
        for method, (f1, ap) in rows_by_method.items()
    ]
