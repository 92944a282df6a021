"""Pictures: right numbers in the confusion matrix, PNGs that render headless, a text summary."""

from __future__ import annotations

import numpy as np
from conftest import model_cfg

from pipeline.data import DataSpec
from pipeline.models import build_model
from pipeline.tracking import pictures as plots

PNG = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig, path):
    fig.savefig(path)
    return path.read_bytes()


def test_confusion_matrix_counts(tmp_path):
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 2, 0])
    fig, counts = plots.confusion_matrix(y_true, y_pred, num_classes=3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert png_bytes(fig, tmp_path / "cm.png").startswith(PNG)


def test_learning_curves_one_panel_per_quantity(tmp_path):
    history = {
        "loss": [1.0, 0.5],
        "accuracy": [0.3, 0.6],
        "val_loss": [1.1, 0.7],
        "val_accuracy": [0.2, 0.5],
        "learning_rate": [1e-3, 1e-3],
    }
    fig = plots.learning_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["train", "val"]
    assert png_bytes(fig, tmp_path / "curves.png").startswith(PNG)


def test_predicted_vs_actual_in_original_units(tmp_path):
    y = np.linspace(-1, 1, 50).reshape(50, 1)
    fig = plots.predicted_vs_actual(y, y * 0.9, scaler={"mean": 100.0, "std": 10.0})
    actual = fig.axes[0].lines[0].get_ydata()
    assert actual.min() == 90.0 and actual.max() == 110.0
    assert png_bytes(fig, tmp_path / "pva.png").startswith(PNG)


def test_model_summary_names_layers_and_parameters():
    spec = DataSpec(input_shape=(8, 1), task="classification", output_size=3)
    model = build_model(model_cfg(cell="gru", units=4), spec)
    text = plots.model_summary(model)
    assert "gru_0" in text and "logits" in text and f"{model.count_params():,}" in text
