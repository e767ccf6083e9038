"""Training-curve and confusion-matrix figures (matplotlib, Agg backend: no display needed).

Both use :func:`attnkit.fonts.font_context`, so class names in Chinese (or any CJK script) are drawn with an
installed CJK font, and a missing one is reported in one warning instead of boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from attnkit.atomic import atomic_write
from attnkit.fonts import font_context, quiet_matplotlib_logging

quiet_matplotlib_logging()


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation accuracy per epoch."""
    with font_context():
        epochs = [h["epoch"] for h in history]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
        ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
        validated = [h for h in history if h.get("val_accuracy") is not None]
        ax_acc.plot(
            [h["epoch"] for h in validated],
            [h["val_accuracy"] for h in validated],
            marker="o",
            color="tab:green",
        )
        ax_acc.set(
            xlabel="epoch",
            ylabel="accuracy",
            title="Validation accuracy" if validated else "No validation split",
        )
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers
            if epochs:
                ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    """Row-normalized confusion matrix with counts in the cells; class names may be in any script."""
    shown = [label.replace("$", r"\$") for label in labels]  # no mathtext
    with font_context(labels):
        size = max(4.0, 0.45 * len(labels) + 2.5)
        fig, ax = plt.subplots(figsize=(size, size))
        rows = matrix.sum(axis=1, keepdims=True)
        normalized = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
        ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), shown, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), shown, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
        if len(labels) <= 25:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
