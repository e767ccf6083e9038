"""Is the explanation why the model decided? Erasure-based faithfulness of every explanation method, for every
modality: units are tokens of a text, pixel boxes of an image or frames of a recording, taken out by the model's
``remove_units`` (a token or a frame is deleted, the rest closing up; a box is set to the training mean).

For each method, on a seeded sample of inputs (DeYoung et al. 2020, ERASER; Jain & Wallace 2019; Wiegreffe &
Pinter 2019; Petsiuk et al. 2018, RISE, for deletion and insertion over image regions):

- **comprehensiveness** (deletion) ``p(y|x) - p(y|x without the top-k% units)``, averaged over k in {1, 5, 10,
  20, 50} (AOPC): high = the units the method ranks first are the ones the decision needs.
- **sufficiency** ``p(y|x) - p(y|only the top-k% units)``, AOPC over the same k: low = those units alone
  suffice.
- **insertion** ``p(y|only the top-k% units)``: start from the input with every unit removed and add the top-k
  first; AOPC over the same k: high = the units the method ranks first bring the decision back. It is computed
  from the same forward passes as sufficiency (``insertion = p(y|x) - sufficiency`` at each k).
- **decision flip rate**: how often removing the single top unit changes the predicted label.
- **Kendall tau** of the method's ranking against leave-one-out (signed methods against signed LOO, unsigned
  ones against ``|LOO|``) and against the gradient norm (by magnitude), averaged over inputs.

``y`` is the predicted label and ``k`` is rounded (halves up) to at least one unit. AOPC is the mean over the five
bins, as in ERASER's reference code (no 0% bin). Comparisons of attention with Integrated Gradients and with
random (and of Integrated Gradients with random) come with a paired bootstrap 95% interval over inputs, and the
findings only call a difference when the interval excludes 0. Each method sits beside a **random** ranking (same
metrics; any method below it is no better than chance) and a **uniform-attention** check: the model re-run with
every attention pooling layer (:class:`~attnkit.layers.pooling.AttentionPooling`, whatever the model) forced to
uniform weights. If its predictions barely change, the pooling weights cannot be what drives the decision,
whatever they look like.

Dimension legend: ``B`` batch, ``U`` units (``T`` tokens for text, frames for audio), ``K`` erasure fractions.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnkit.explain.methods import (
    METHODS,
    SIGNED,
    check_methods,
    compute_scores,
    plural,
    random_scores,
    target_probabilities,
)
from attnkit.layers.attention import Attention
from attnkit.layers.pooling import AttentionPooling
from attnkit.predictor import Predictor

FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
"""Erasure fractions of the AOPC curves (ERASER's bins)."""


@contextlib.contextmanager
def uniform_pooling(model: nn.Module) -> Iterator[int]:
    """Within the block every :class:`AttentionPooling` of ``model`` uses uniform weights over the real units.

    Any model works (text, image, audio, an ensemble: the pooling layers are found among its modules);
    self-attention layers outside a pooling (a transformer's or ViT's encoder) are left as they are.

    The scorers' outputs are replaced by zeros, so the masked softmax gives ``1 / n`` to each kept position; the
    value path (and, for the multihead scorer, its projections) is unchanged. Yields the number of pooling layers
    patched.
    """
    patched: list[tuple[Attention, Any]] = []  # (core, its original forward)

    def zero_scores(original: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def forward(query: Tensor, key: Tensor) -> Tensor:
            return torch.zeros_like(original(query, key))  # (B, [H,] Q, K)

        return forward

    try:
        for module in model.modules():
            if not isinstance(module, AttentionPooling):
                continue
            for inner in module.attention.modules():
                if isinstance(inner, Attention):
                    patched.append((inner, inner.scorer.forward))
                    inner.scorer.forward = zero_scores(inner.scorer.forward)  # type: ignore[method-assign,assignment]
        yield len(patched)
    finally:
        for inner, _ in reversed(patched):
            del inner.scorer.forward  # drop the instance attribute: the class's forward is back


def top_k_mask(scores: Tensor, unit_mask: Tensor, fraction: float) -> Tensor:
    """``(B, U)`` bool: each row's ``max(1, round(fraction * n))`` highest-scoring real units (halves round up).

    Ties are broken by position (earlier first), so the result is deterministic.
    """
    lengths = unit_mask.sum(dim=1)  # (B,)
    basis_points = round(fraction * 10_000)
    k = torch.clamp((lengths * basis_points + 5_000) // 10_000, min=1)  # (B,) round half up, in integers
    k = torch.minimum(k, lengths)
    ranked = torch.where(unit_mask, scores.float(), torch.full_like(scores.float(), -math.inf))  # (B, U)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, U)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))  # (B, U)
    return (rank < k[:, None]) & unit_mask


def _kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(kendalltau(a, b).statistic)


@dataclass
class MethodFaithfulness:
    """Faithfulness of one method, averaged over the sampled inputs.

    ``comprehensiveness`` is the deletion curve (the drop of ``p(y)`` with the top units removed) and
    ``insertion`` the insertion curve (``p(y)`` with only the top units kept), both by erasure fraction.
    """

    method: str
    comprehensiveness_aopc: float
    sufficiency_aopc: float
    comprehensiveness: dict[str, float]
    sufficiency: dict[str, float]
    decision_flip_rate: float
    kendall_tau_loo: float | None
    kendall_tau_gradient: float | None
    seconds: float
    insertion_aopc: float = math.nan
    insertion: dict[str, float] = field(default_factory=dict)

    @property
    def deletion_aopc(self) -> float:
        """Deletion AOPC: the comprehensiveness AOPC under its image-attribution name."""
        return self.comprehensiveness_aopc


@dataclass
class UniformAttentionCheck:
    """The model's predictions when every attention pooling layer uses uniform weights."""

    pooling_layers: int
    prediction_agreement: float
    mean_abs_change_predicted_probability: float
    accuracy: float | None
    accuracy_uniform: float | None


@dataclass
class FaithfulnessReport:
    """Every method's faithfulness on one sample of a run's inputs.

    Attributes:
        modality: ``text``, ``image`` or ``audio``; ``unit``: what one unit is (``token``, ``patch``, ``cell``,
            ``frame``).
    """

    run_dir: str
    model: str
    source: str
    n: int
    seed: int
    fractions: list[float]
    methods: list[MethodFaithfulness]
    uniform_attention: UniformAttentionCheck | None
    comparisons: list[Comparison] = field(default_factory=list)
    plausibility: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    modality: str = "text"
    unit: str = "token"

    def method(self, name: str) -> MethodFaithfulness:
        for result in self.methods:
            if result.method == name:
                return result
        raise KeyError(name)

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


@dataclass
class Comparison:
    """Paired difference of per-text comprehensiveness AOPC, ``method - other``, with a bootstrap 95% interval."""

    method: str
    other: str
    difference: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "more faithful than"
        if self.high < 0:
            return "less faithful than"
        return "not distinguishable from"


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], seed: int, resamples: int = 2000
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over inputs and its percentile 95% interval from ``resamples`` paired resamples."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # (N,)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diff), size=(resamples, len(diff)))  # (resamples, N)
    means = diff[picks].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


ATTENTION_METHODS = ("attention", "rollout", "attention-value")


#: What the inputs of each modality are called in the report (``{modality}s`` otherwise).
ITEM_NAMES = {"text": "texts", "image": "images", "audio": "recordings"}
#: How each modality's ``remove_units`` takes a unit out, in the findings (``removing`` otherwise).
REMOVAL_VERBS = {"text": "deleting", "audio": "deleting"}


def _item_name(report: FaithfulnessReport) -> str:
    return ITEM_NAMES.get(report.modality, f"{report.modality}s")


def findings(report: FaithfulnessReport) -> list[str]:
    """Plain statements about the report: is attention faithful, compared with what, and how sure that is."""
    notes: list[str] = []
    items, unit = _item_name(report), report.unit
    for c in report.comparisons:
        notes.append(
            f"{c.method} is {c.verdict} {c.other} by comprehensiveness AOPC (difference {c.difference:+.4f}, "
            f"95% CI [{c.low:+.4f}, {c.high:+.4f}] over {items})."
        )
        if c.other == "random" and c.verdict != "more faithful than":
            removing = REMOVAL_VERBS.get(report.modality, "removing")
            notes.append(
                f"{c.method} is NOT faithful: {removing} its top {plural(unit)} lowers the predicted-class probability no "
                f"more than {removing} random {plural(unit)}."
            )
    uniform = report.uniform_attention
    if uniform is not None and uniform.pooling_layers:
        notes.append(
            f"Intervention: forcing the trained model's pooling weights to uniform (no retraining) keeps "
            f"{uniform.prediction_agreement:.1%} of its predictions and moves the predicted-class probability by "
            f"{uniform.mean_abs_change_predicted_probability:.3f} on average. "
            + (
                "The decision barely depends on where the pooling attends."
                if uniform.prediction_agreement >= 0.95
                else "The decision depends on where the pooling attends (which alone does not make the weights "
                "a faithful explanation)."
            )
        )
    return notes


def read_inputs(predictor: Predictor, source: str) -> tuple[list[Any], list[str]]:
    """The raw inputs and gold labels of ``source``, read by the run's task: texts, ``(H, W, C)`` uint8 images, or
    ``(S,)`` float32 waveforms at the run's sample rate (``fsdd:test``, a folder of label folders).

    Raises:
        ValueError: the source cannot be read (a :class:`~attnkit.data.errors.DataError`, naming it).
    """
    task = predictor.task
    examples = task.read_source(source)
    labels = task.labels_in(examples)
    if predictor.modality == "text":
        return [example.text for example in examples], labels
    if predictor.modality == "audio":
        return list(examples.waveforms), labels
    return list(examples.pixels), labels


def faithfulness_report(
    predictor: Predictor,
    texts: Sequence[Any],
    *,
    labels: Sequence[str] | None = None,
    methods: Sequence[str] = ("all",),
    n: int = 500,
    seed: int = 0,
    batch_size: int = 16,
    ig_steps: int = 50,
    source: str = "",
    progress: Callable[[int], None] | None = None,
) -> FaithfulnessReport:
    """Measure the faithfulness of each method on a seeded sample of ``n`` of the inputs.

    Args:
        predictor: the loaded run (any modality).
        texts: candidate inputs, as :meth:`~attnkit.predictor.Predictor.encode_inputs` takes them: texts,
            images (encoded bytes or ``(H, W, C)`` uint8 arrays) or recordings (encoded bytes or ``(S,)`` float
            arrays at the run's sample rate); ``n`` of them are sampled with ``seed`` (all if fewer).
            :func:`read_inputs` reads them from a source.
        labels: gold labels aligned with ``texts``, for the accuracy of the uniform-attention check.
        methods: methods to measure (``all`` = every method); ``random`` is always added, ``rollout`` too for
            models with self-attention when ``attention`` is measured; ``loo`` and ``gradient`` are computed for
            the Kendall tau columns even when not listed.
        progress: called with the number of inputs finished after each batch.

    The result is deterministic for a given seed: sampling, the random baseline and every method are.
    """
    import time

    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of inputs, got one str; wrap it in a list")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"got {len(labels)} labels for {len(texts)} inputs")
    check_methods(list(methods))  # unknown names fail before any work
    indices = sorted(random.Random(seed).sample(range(len(texts)), min(n, len(texts))))
    sample = [texts[i] for i in indices]
    gold = [labels[i] for i in indices] if labels is not None else None
    model = predictor.model

    measured = check_methods(list(methods), model)
    measured.append("random")
    needed = list(dict.fromkeys([*measured, "loo", "gradient"]))

    keys = [f"{f:g}" for f in FRACTIONS]
    comp: dict[str, list[list[float]]] = {m: [] for m in measured}  # per method: rows of (K,)
    suff: dict[str, list[list[float]]] = {m: [] for m in measured}
    ins: dict[str, list[list[float]]] = {m: [] for m in measured}
    flips: dict[str, list[float]] = {m: [] for m in measured}
    tau_loo: dict[str, list[float]] = {m: [] for m in measured}
    tau_grad: dict[str, list[float]] = {m: [] for m in measured}
    seconds: dict[str, float] = dict.fromkeys(needed, 0.0)
    agreement: list[float] = []
    prob_change: list[float] = []
    correct: list[float] = []
    correct_uniform: list[float] = []
    pooling_layers = 0

    done = 0
    for start in range(0, len(sample), batch_size):
        chunk = sample[start : start + batch_size]
        inputs, mask = predictor.encode_inputs(chunk)  # (B, ...), (B, U)
        with torch.no_grad():
            probs = torch.softmax(model(inputs, mask).logits.float(), dim=-1)  # (B, C)
            with uniform_pooling(model) as pooling_layers:
                probs_uniform = torch.softmax(model(inputs, mask).logits.float(), dim=-1)  # (B, C)
        predicted = probs.argmax(dim=-1)  # (B,)
        full = probs.gather(1, predicted[:, None]).squeeze(1)  # (B,)
        agreement += (probs_uniform.argmax(dim=-1) == predicted).float().tolist()
        prob_change += (probs_uniform.gather(1, predicted[:, None]).squeeze(1) - full).abs().tolist()
        if gold is not None:
            gold_ids = torch.tensor(
                [
                    predictor.labels.index(g) if g in predictor.labels else -1
                    for g in gold[start : start + batch_size]
                ]
            )
            correct += (predicted.cpu() == gold_ids).float().tolist()
            correct_uniform += (probs_uniform.argmax(dim=-1).cpu() == gold_ids).float().tolist()

        scores: dict[str, Tensor] = {}
        for method in needed:
            began = time.perf_counter()
            if method == "random":  # seeded per input, so batching does not change the ranking
                scores[method] = random_scores(mask, seed, first_index=start)
                seconds[method] += time.perf_counter() - began
                continue
            scores[method] = compute_scores(
                method, model, inputs, mask, predicted, ig_steps=ig_steps
            ).detach()  # (B, U)
            seconds[method] += time.perf_counter() - began
        real = [torch.nonzero(row).squeeze(1).cpu() for row in mask]  # each row's real units

        for method in measured:
            comp_rows, suff_rows, ins_rows = [], [], []
            for fraction in FRACTIONS:
                top = top_k_mask(scores[method], mask, fraction)  # (B, U)
                without_top, mask_c = model.remove_units(inputs, mask, ~top)
                only_top, mask_s = model.remove_units(inputs, mask, top)
                kept = target_probabilities(model, only_top, mask_s, predicted)  # (B,)
                comp_rows.append(
                    (full - target_probabilities(model, without_top, mask_c, predicted)).tolist()
                )
                suff_rows.append((full - kept).tolist())
                ins_rows.append(kept.tolist())
            comp[method] += [list(row) for row in zip(*comp_rows, strict=True)]
            suff[method] += [list(row) for row in zip(*suff_rows, strict=True)]
            ins[method] += [list(row) for row in zip(*ins_rows, strict=True)]

            top1 = top_k_mask(scores[method], mask, 0.0)  # k = 1
            without_1, mask_1 = model.remove_units(inputs, mask, ~top1)
            with torch.no_grad():
                flipped = model(without_1, mask_1).logits.argmax(dim=-1) != predicted
            flips[method] += flipped.float().tolist()

            for row, positions in enumerate(real):
                own = scores[method][row].cpu()[positions].numpy()
                loo = scores["loo"][row].cpu()[positions].numpy()
                gradient = scores["gradient"][row].cpu()[positions].numpy()
                # Unsigned rankings are compared with |LOO|; against the gradient norm, magnitudes.
                if method != "loo":
                    tau_loo[method].append(_kendall_tau(own, loo if SIGNED[method] else np.abs(loo)))
                if method != "gradient":
                    tau_grad[method].append(_kendall_tau(np.abs(own), gradient))
        done += len(chunk)
        if progress is not None:
            progress(done)

    results = []
    for method in measured:
        comp_curve = np.mean(np.array(comp[method]), axis=0)  # (K,)
        suff_curve = np.mean(np.array(suff[method]), axis=0)  # (K,)
        ins_curve = np.mean(np.array(ins[method]), axis=0)  # (K,)
        results.append(
            MethodFaithfulness(
                method=method,
                comprehensiveness_aopc=float(comp_curve.mean()),
                sufficiency_aopc=float(suff_curve.mean()),
                comprehensiveness=dict(zip(keys, map(float, comp_curve), strict=True)),
                sufficiency=dict(zip(keys, map(float, suff_curve), strict=True)),
                decision_flip_rate=float(np.mean(flips[method])),
                kendall_tau_loo=_mean(tau_loo[method]),
                kendall_tau_gradient=_mean(tau_grad[method]),
                seconds=seconds.get(method, 0.0),
                insertion_aopc=float(ins_curve.mean()),
                insertion=dict(zip(keys, map(float, ins_curve), strict=True)),
            )
        )
    per_input = {
        m: np.mean(np.array(comp[m]), axis=1) for m in measured
    }  # (N,) comprehensiveness AOPC per input
    pairs = [(name, other) for name in ATTENTION_METHODS for other in ("random", "ig")]
    pairs.append(("ig", "random"))
    comparisons = [
        Comparison(name, other, *paired_bootstrap(per_input[name], per_input[other], seed))
        for name, other in pairs
        if name in per_input and other in per_input
    ]
    uniform = UniformAttentionCheck(
        pooling_layers=pooling_layers,
        prediction_agreement=float(np.mean(agreement)),
        mean_abs_change_predicted_probability=float(np.mean(prob_change)),
        accuracy=float(np.mean(correct)) if correct else None,
        accuracy_uniform=float(np.mean(correct_uniform)) if correct_uniform else None,
    )
    report = FaithfulnessReport(
        run_dir=str(predictor.run_dir),
        model=predictor.config.model.label,
        source=source,
        n=len(sample),
        seed=seed,
        fractions=list(FRACTIONS),
        methods=results,
        uniform_attention=uniform,
        comparisons=comparisons,
        modality=predictor.modality,
        unit=model.unit_name,
    )
    report.findings = findings(report)
    return report


def format_report(report: FaithfulnessReport) -> str:
    """A plain-text table of the report with its findings."""
    lines = [
        f"faithfulness of {report.model} ({report.run_dir}) on {report.source or 'the given ' + _item_name(report)}: "
        f"n={report.n}, seed={report.seed}; units: {plural(report.unit)}",
        "",
        f"{'method':<15} {'comp AOPC':>10} {'suff AOPC':>10} {'ins AOPC':>9} {'flip@1':>7} {'tau LOO':>8} "
        f"{'tau grad':>9} {'seconds':>8}",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for m in report.methods:
        lines.append(
            f"{m.method:<15} {m.comprehensiveness_aopc:>10.3f} {m.sufficiency_aopc:>10.3f} "
            f"{m.insertion_aopc:>9.3f} {m.decision_flip_rate:>7.3f} {fmt(m.kendall_tau_loo):>8} "
            f"{fmt(m.kendall_tau_gradient):>9} {m.seconds:>8.1f}"
        )
    lines.append(
        f"(comp = deletion: the drop in p(predicted) with the top {plural(report.unit)} removed, higher = more faithful; "
        f"suff: the drop with only them kept, lower = better; ins = insertion: p(predicted) with only them kept, "
        "higher = better)"
    )
    uniform = report.uniform_attention
    if uniform is not None:
        lines += [
            "",
            f"uniform attention ({uniform.pooling_layers} pooling layer(s) forced uniform): predictions kept "
            f"{uniform.prediction_agreement:.1%}, mean |change| of the predicted probability "
            f"{uniform.mean_abs_change_predicted_probability:.3f}"
            + (
                f", accuracy {uniform.accuracy:.1%} -> {uniform.accuracy_uniform:.1%}"
                if uniform.accuracy is not None and uniform.accuracy_uniform is not None
                else ""
            ),
        ]
    if report.plausibility:
        lines += ["", f"{'plausibility':<11} {'token F1':>10} {'AUPRC':>10}"]
        for row in report.plausibility:
            lines.append(f"{row['method']:<11} {row['token_f1']:>10.3f} {row['auprc']:>10.3f}")
    if report.findings:
        lines += ["", *(f"- {note}" for note in report.findings)]
    return "\n".join(lines)


def plot_report(report: FaithfulnessReport, path: str | Any) -> None:
    """Deletion (comprehensiveness), sufficiency and insertion curves per method, by fraction of units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    percents = [100 * f for f in report.fractions]
    unit = report.unit
    panels = (
        ("comprehensiveness", "comprehensiveness_aopc", "deletion / comprehensiveness (higher = more faithful)",
         f"top {plural(unit)} removed", "drop in predicted-class probability"),
        ("sufficiency", "sufficiency_aopc", "sufficiency (lower = more faithful)",
         f"top {plural(unit)} kept", "drop in predicted-class probability"),
        ("insertion", "insertion_aopc", "insertion (higher = more faithful)",
         f"top {plural(unit)} kept (inserted into the emptied input)", "predicted-class probability"),
    )  # fmt: skip
    for ax, (curve, aopc, title, xlabel, ylabel) in zip(axes, panels, strict=True):
        for m in report.methods:
            values = getattr(m, curve)
            if not values:
                continue
            style = {"linestyle": "--", "color": "grey"} if m.method == "random" else {"marker": "o"}
            ax.plot(percents, list(values.values()), label=f"{m.method} ({getattr(m, aopc):.3f})", **style)
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_xticks(percents, [f"{p:g}%" for p in percents])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="method (AOPC)")
    fig.suptitle(f"{report.model}: faithfulness on {report.source or _item_name(report)} (n={report.n})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "FRACTIONS",
    "METHODS",
    "SIGNED",
    "FaithfulnessReport",
    "MethodFaithfulness",
    "UniformAttentionCheck",
    "faithfulness_report",
    "format_report",
    "plot_report",
    "read_inputs",
    "top_k_mask",
    "uniform_pooling",
]
