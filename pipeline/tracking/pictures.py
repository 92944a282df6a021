"""Pictures of a run: learning curves, confusion matrix or predicted vs actual, model summary.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so they render without a
display and leave the global backend of whoever imported us alone. 80 dpi and matplotlib's
default margins (no tight/constrained layout pass) keep drawing them cheap: they are drawn on
every run, sweep trials included.
"""

from __future__ import annotations

import numpy as np


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def learning_curves(history: dict[str, list[float]]):
    """Loss and each metric per epoch, train against validation, one panel per quantity."""
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig = _figure(4.0 * max(len(names), 1), 3.5)
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="val")
        ax.set(title=name, xlabel="epoch")
        ax.legend()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, names=None):
    """Counts of true class (rows) against predicted class (columns), labelled with the class
    names where the data has them."""
    counts = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(counts, (y_true.astype(int).ravel(), y_pred.astype(int).ravel()), 1)
    fig = _figure(5.5, 5.0)
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = np.arange(num_classes)
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title="test split")
    if names and num_classes <= 20:
        ax.set_xticklabels([str(n)[:12] for n in names], rotation=45, ha="right")
        ax.set_yticklabels([str(n)[:12] for n in names])
    if num_classes <= 20:  # beyond that the numbers overlap
        for (i, j), n in np.ndenumerate(counts):
            color = "white" if n > counts.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", color=color, fontsize=8)
    return fig, counts


def original_units(values, scaler: dict) -> np.ndarray:
    """Scaled target values back in the series' units: unscaled, then exp if `data.transform=log`."""
    out = np.asarray(values, dtype=np.float64) * scaler.get("std", 1.0) + scaler.get("mean", 0.0)
    return np.exp(out) if scaler.get("log") else out


def predicted_vs_actual(
    y_true: np.ndarray, y_pred: np.ndarray, scaler: dict | None = None, times=None
):
    """Forecasts against targets over the test split (in original units when scaled), over the
    dates of the targets when the series has them (`times`)."""
    if scaler:
        y_true, y_pred = original_units(y_true, scaler), original_units(y_pred, scaler)
    # First predicted value of each window: consecutive windows then read as one series.
    true_first = y_true.reshape(len(y_true), -1)[:, 0]
    pred_first = y_pred.reshape(len(y_pred), -1)[:, 0]
    fig = _figure(10.0, 4.0)
    series, scatter = fig.subplots(1, 2, width_ratios=[2, 1])
    x = np.arange(len(true_first)) if times is None else np.asarray(times)[: len(true_first)]
    series.plot(x, true_first, label="actual")
    series.plot(x, pred_first, label="predicted")
    series.set(title="test split", xlabel="window" if times is None else "date")
    if times is not None:
        fig.autofmt_xdate()
    series.legend()
    scatter.scatter(y_true.ravel(), y_pred.ravel(), s=6, alpha=0.5)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    scatter.plot([low, high], [low, high], color="gray", linestyle="--")
    scatter.set(xlabel="actual", ylabel="predicted", title="every predicted value")
    return fig


def model_summary(model) -> str:
    """Keras' layer table as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def forward(model, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The model's outputs on an array, in its order: eager calls on large chunks (see
    predict_with_targets for why not `model.predict`)."""
    out = [model(x[i : i + chunk], training=False) for i in range(0, len(x), chunk)]
    return np.concatenate([np.asarray(o, dtype=np.float32) for o in out])


def predict(model, dataset, chunk: int = 4096) -> np.ndarray:
    """The model's outputs on every batch of `dataset`, in the pipeline's order."""
    return predict_with_targets(model, dataset, chunk)[0]


def predict_with_targets(model, dataset, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(the model's outputs, the targets) over every batch of `dataset`, in the pipeline's
    order, computed eagerly in large chunks. Targets come from the pipeline, not the split's
    arrays: batches bucketed by length (`data.bucket_by_length`) come in another order.

    `model.predict` would trace a third tf.function after fit's train and test ones: about 2 s
    per run on CPU, more than the forward pass itself, and paid again by every sweep trial.
    Batches of different lengths (buckets) run together by length, one chunk per length.
    """
    batches = [(np.asarray(x), np.asarray(y)) for x, y in dataset]
    outputs: list = [None] * len(batches)
    for shape in {x.shape[1:] for x, _ in batches}:
        same = [i for i, (x, _) in enumerate(batches) if x.shape[1:] == shape]
        inputs = np.concatenate([batches[i][0] for i in same])
        out = forward(model, inputs, chunk)
        cuts = np.cumsum([len(batches[i][0]) for i in same])[:-1]
        for i, part in zip(same, np.split(out, cuts), strict=True):
            outputs[i] = part
    return np.concatenate(outputs), np.concatenate([y for _, y in batches])


def draw(
    history: dict,
    y_true,
    y_pred,
    task: str,
    num_classes: int,
    scaler=None,
    class_names=None,
    times=None,
) -> dict:
    """Every picture of a run, by name: learning curves, then the confusion matrix (classes
    predicted, for classification) or predicted against actual values (regression)."""
    figures = {"learning_curves": learning_curves(history)}
    if task == "classification":
        figures["confusion_matrix"], _ = confusion_matrix(y_true, y_pred, num_classes, class_names)
    else:
        figures["predicted_vs_actual"] = predicted_vs_actual(y_true, y_pred, scaler, times)
    return figures


def log_pictures(model, history: dict, test_ds, data) -> list[str]:
    """Log the model summary and every picture of the run to the active run; returns the
    artifact paths.

    `test_ds` is the test pipeline as evaluated (possibly limited to its first batches); the
    targets are read from it with the predictions, in one pass.
    """
    import mlflow

    spec = data.spec
    y_pred, y_true = predict_with_targets(model, test_ds)
    if spec.task == "classification":
        y_pred = y_pred.argmax(axis=-1)
    mlflow.log_text(model_summary(model), "model_summary.txt")
    figures = draw(
        history,
        y_true,
        y_pred,
        spec.task,
        spec.output_size,
        data.scaler,
        data.class_names,
        data.test_times,
    )
    for name, fig in figures.items():
        mlflow.log_figure(fig, f"plots/{name}.png")
    return ["model_summary.txt", *(f"plots/{name}.png" for name in figures)]
