"""Self-contained HTML run report: metrics, curves, confusion matrix and attended examples (no CDN)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from attnkit.atomic import write_text
from attnkit.explain import Explanation
from attnkit.explain.render import tokens_html
from attnkit.runs import MEMBERS_DIR


def _image_tag(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _training_summary(metrics: dict[str, Any]) -> str:
    """One sentence on how the model was trained: epochs and selection, or an ensemble's members."""
    seconds = float(metrics.get("train_seconds", 0.0))
    members = metrics.get("members")
    if members:
        seeds = ", ".join(str(m.get("seed", "?")) for m in members)
        best = ", ".join(str(m.get("best_epoch", "?")) for m in members)
        return html.escape(
            f"An ensemble of {len(members)} runs (seeds {seeds}), its logits their mean; each run selected its "
            f"epoch by validation accuracy (best epochs {best}); {seconds:.1f} s of training in all."
        )
    return html.escape(
        f"Trained {metrics.get('epochs_run', '?')} epochs in {seconds:.1f} s; best epoch "
        f"{metrics.get('best_epoch', '?')} by validation accuracy."
    )


def _curves(run_dir: Path, metrics: dict[str, Any]) -> str:
    """The run's training curves, or each ensemble member's."""
    members = metrics.get("members")
    if not members:
        return _image_tag(run_dir / "curves.png", "training curves")
    return "".join(
        f"<h3>Member {m['member']} (seed {html.escape(str(m.get('seed', '?')))})</h3>"
        + _image_tag(
            run_dir / MEMBERS_DIR / str(m["member"]) / "curves.png", f"training curves, member {m['member']}"
        )
        for m in members
    )


def _metrics_table(name: str, metrics: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for label, m in metrics["per_class"].items()
    )
    return (
        f"<h3>{html.escape(name)}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece']:.4f} (n = {metrics['n']})</h3>"
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        f"{rows}</table>"
    )


def _comparison(metrics: dict[str, Any], baseline: dict[str, Any]) -> str:
    test = metrics["test"]
    verdict = "matches or beats" if test["accuracy"] >= baseline["accuracy"] else "is below"
    return (
        "<h3>Against a strong baseline on the same test split</h3><table>"
        "<tr><th>model</th><th>test accuracy</th><th>n</th><th>training s</th></tr>"
        f"<tr><td>this run</td><td>{test['accuracy']:.4f}</td><td>{test['n']}</td>"
        f"<td>{metrics.get('train_seconds', 0):.1f}</td></tr>"
        f"<tr><td>{html.escape(baseline['name'])}</td><td>{baseline['accuracy']:.4f}</td><td>{baseline['n']}</td>"
        f"<td>{baseline['train_seconds']:.1f}</td></tr></table>"
        f"<p>The model {verdict} the baseline (fitted on train + validation).</p>"
    )


#: What the report says about text examples shaded by ``attention-value`` (each token's exact signed share).
CONTRIBUTION_EXAMPLES_NOTE = (
    "Each token is shaded by its attention-value score: its exact share of the decision (attention weight times "
    "the token's evidence for the predicted class; red supports it, blue speaks against it). This model's "
    "attention itself is close to uniform: its evidence sits in the character n-grams each token ends."
)

#: What the report says about text examples (each token shaded by its attention).
TEXT_EXAMPLES_NOTE = (
    "Each token is shaded by its attention-pooling weight (darkest = most attended). Attention shows where the "
    "model looked; whether that is why it decided is measured separately."
)


def write_report(
    run_dir: Path,
    metrics: dict[str, Any],
    examples: list[Explanation],
    title: str,
    *,
    examples_html: str | None = None,
    examples_note: str = TEXT_EXAMPLES_NOTE,
    baseline: dict[str, Any] | None = None,
    method: str = "attention",
) -> Path:
    """Write ``report.html`` into ``run_dir`` and return its path.

    Args:
        examples: text explanations, each shown with its tokens shaded by attention.
        examples_html: the examples section ready made instead (an image run's heatmaps).
        examples_note: the paragraph above the examples.
        baseline: a baseline's ``name``, ``accuracy``, ``n`` and ``train_seconds`` on the same test split,
            shown beside the model's.
        method: the explanation method the text examples are shaded by (one the examples hold).
    """
    sections = [_metrics_table(split, metrics[split]) for split in ("val", "test") if split in metrics]
    if baseline is not None and "test" in metrics:
        sections.insert(0, _comparison(metrics, baseline))
    example_rows = (
        examples_html
        if examples_html is not None
        else "".join(
            f"<div class='ex'><div class='pred'>predicted <b>{html.escape(item.prediction.label)}</b> "
            f"({max(item.prediction.probabilities.values()):.3f})</div>"
            f"<div class='text'>{tokens_html(item.to_json_dict(), method)}</div></div>"
            for item in examples
        )
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
.ex {{ border-bottom: 1px solid #eee; padding: 0.6em 0; }}
.pred {{ font-size: 0.9em; color: #555; }}
.tok {{ border-radius: 3px; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{_training_summary(metrics)} Test data was not used for model selection.</p>
<h2>Metrics</h2>{"".join(sections)}
<h2>Training curves</h2>{_curves(run_dir, metrics)}
<h2>Confusion matrix</h2>{_image_tag(run_dir / "confusion.png", "confusion matrix")}
<h2>What the model attends to</h2>
<p>{html.escape(examples_note)}</p>
{example_rows}
</body></html>
"""
    path = run_dir / "report.html"
    write_text(path, page)  # atomically, like every run-directory file
    return path
