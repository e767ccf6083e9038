"""Terminal rendering of attended texts (rich)."""

from __future__ import annotations

from rich.text import Text

from attnkit.predictor import AttendedText


def terminal_highlight(item: AttendedText, top_k: int = 5) -> Text:
    """The text with its ``top_k`` most-attended tokens in bold reverse red, the label in front."""
    top = set(sorted(range(len(item.weights)), key=lambda i: -item.weights[i])[:top_k])
    prob = item.prediction.probabilities[item.prediction.label]
    text = Text(f"[{item.prediction.label} {prob:.2f}] ", style="bold")
    cursor = 0
    for i, (start, end) in enumerate(item.offsets):
        text.append(item.text[cursor:start])
        text.append(item.text[start:end], style="bold white on red" if i in top else "")
        cursor = end
    text.append(item.text[cursor:])
    return text
