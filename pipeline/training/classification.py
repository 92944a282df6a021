"""Classification scores Keras' compiled metrics lack: macro-F1 and balanced accuracy, which
weigh every class the same, so a rare class a model never predicts shows (accuracy hides it)."""

from __future__ import annotations

from pipeline.tracking.pictures import predict_with_targets


def class_scores(model, data, pipelines: dict) -> dict[str, float]:
    """`{split}_f1_macro` and `{split}_balanced_accuracy` for each split's pipeline as evaluated
    (its targets read from it: batches bucketed by length come in another order than the
    split's arrays)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, f1_score

    scores = {}
    for split, pipeline in pipelines.items():
        outputs, true = predict_with_targets(model, pipeline)
        predicted = outputs.argmax(axis=-1)
        labels = list(range(data.spec.output_size))
        scores[f"{split}_f1_macro"] = float(
            f1_score(true, predicted, labels=labels, average="macro", zero_division=0)
        )
        with warnings.catch_warnings():  # a class absent from a limited split is not news
            warnings.simplefilter("ignore", UserWarning)
            scores[f"{split}_balanced_accuracy"] = float(balanced_accuracy_score(true, predicted))
    return scores
