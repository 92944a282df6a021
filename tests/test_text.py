"""Text as sequences: a user's labelled texts (`data=text`) and IMDB (`data=imdb`, TFDS' mock
data), tokenised by a vocabulary adapted on the training split only; the logged model takes raw
strings; bucketed batches hold the same examples; bad files refused before a run opens."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import child_env, make_cfg, runs_in
from test_predict import predict_conf

from pipeline.config import ConfigError, DataError, validate
from pipeline.data import make_datasets
from pipeline.data.text import OUT_OF_VOCABULARY, PADDING
from pipeline.inference import predict
from pipeline.training.run import run_training

POSITIVE, NEGATIVE = ["wonderful", "superb", "moving"], ["awful", "dull", "boring"]


def reviews(path, n: int = 160, seed: int = 0, label_values=("good", "bad")) -> pd.DataFrame:
    """Short reviews of 3-40 filler words with two sentiment words of their class mixed in."""
    rng = np.random.default_rng(seed)
    filler = [f"word{i}" for i in range(60)]
    rows = []
    for i in range(n):
        good = i % 2 == 0
        words = list(rng.choice(filler, int(rng.integers(3, 40))))
        words += list(rng.choice(POSITIVE if good else NEGATIVE, 2))
        rng.shuffle(words)
        rows.append({"review": " ".join(words).capitalize() + ".", "stars": label_values[i % 2]})
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def text_overrides(csv, *more: str) -> list[str]:
    return [
        "data=text",
        f"data.path={csv}",
        "data.text=review",
        "data.label=stars",
        "trainer=smoke",
        "model.units=8",
        "model.embedding_dim=8",
        *more,
    ]


def data_of(*overrides: str):
    conf = validate(make_cfg(*overrides))
    return make_datasets(conf.data, conf.seed)


def examples(pipeline) -> list[tuple[tuple[int, ...], int]]:
    """Every (token ids without padding, label) a pipeline yields, sorted."""
    out = []
    for x, y in pipeline:
        for ids, label in zip(np.asarray(x), np.asarray(y), strict=True):
            out.append((tuple(int(i) for i in ids[ids != PADDING]), int(label)))
    return sorted(out)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """One smoke run on a user's review CSV with string labels, in its own store."""
    tmp = tmp_path_factory.mktemp("text")
    csv = tmp / "reviews.csv"
    reviews(csv)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    result = run_training(make_cfg(*text_overrides(csv, f"tracking.uri={uri}")), tmp / "out")
    yield result, tmp
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_text_csv_run_logs_a_model_taking_raw_strings(text_run):
    result, _ = text_run
    client = mlflow.MlflowClient(result.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["data.classes"] == "bad,good"
    # 60 filler words, 6 sentiment words, a capital at the start: lowercased, all in training.
    assert int(tags["data.vocabulary_size"]) == 2 + 66
    assert float(tags["data.oov_rate"]) == 0.0
    assert 0.0 <= float(tags["data.padding_share_bucketed"]) < float(tags["data.padding_share"])
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"vocabulary.txt", "model.keras", "plots"} <= artifacts
    vocabulary = mlflow.artifacts.download_artifacts(
        f"runs:/{result.run_id}/vocabulary.txt", tracking_uri=result.uri
    )
    lines = open(vocabulary).read().split("\n")
    assert lines[:2] == ["", "[UNK]"] and "wonderful" in lines
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots
    mlflow.set_tracking_uri(result.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    answer = model.predict(["a wonderful film", "Awful, boring and DULL!"])
    assert list(answer.columns) == ["row", "label", "p_bad", "p_good"]
    assert set(answer["label"]) <= {"good", "bad"}
    np.testing.assert_allclose(answer[["p_bad", "p_good"]].sum(axis=1), 1.0, rtol=1e-5)
    # The same texts as a table's column, and as the run's own test predictions say.
    table = model.predict(pd.DataFrame({"review": ["a wonderful film", "Awful, boring and DULL!"]}))
    np.testing.assert_allclose(table["p_good"], answer["p_good"], rtol=1e-5)


@pytest.mark.slow
def test_logged_model_matches_the_runs_test_predictions(text_run):
    result, tmp = text_run
    mlflow.set_tracking_uri(result.uri)
    logged = pd.read_csv(
        mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/predictions/test.csv")
    )
    frame = pd.read_csv(tmp / "reviews.csv")
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    answer = model.predict(frame["review"].iloc[logged["row"]].tolist())
    np.testing.assert_allclose(answer["p_good"], logged["p_good"], atol=1e-5)
    assert list(logged["actual"]) == list(frame["stars"].iloc[logged["row"]])


@pytest.mark.slow
def test_predict_reads_texts_and_evaluates(text_run):
    result, tmp = text_run
    new = tmp / "new.csv"
    reviews(new, n=30, seed=7)
    done = predict(
        predict_conf(
            f"model=runs:/{result.run_id}/model",
            f"input={new}",
            f"output={tmp / 'answers.csv'}",
            "evaluate=true",
            f"tracking.uri={result.uri}",
        )
    )
    assert done.inputs == 30 and set(done.metrics) == {"accuracy", "f1_macro", "balanced_accuracy"}
    answers = pd.read_csv(tmp / "answers.csv")
    assert list(answers.columns[:3]) == ["row", "actual", "label"] and len(answers) == 30
    lines = tmp / "lines.txt"
    lines.write_text("a wonderful film\n\nboring\n")
    done = predict(
        predict_conf(
            f"model=runs:/{result.run_id}/model",
            f"input={lines}",
            f"output={tmp / 'lines.csv'}",
            f"tracking.uri={result.uri}",
        )
    )
    assert done.inputs == 2  # the blank line is not a text


def test_vocabulary_adapted_on_training_texts_only(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    reviews(train)
    frame = reviews(test, n=20, seed=3)
    frame.loc[0, "review"] = "zyzzyva " + frame.loc[0, "review"]  # a word only the test file has
    frame.to_csv(test, index=False)
    data = data_of(*text_overrides(train, f"data.test_path={test}"))
    assert "zyzzyva" not in data.vocabulary and "wonderful" in data.vocabulary
    x_test = data.arrays["test"][0]
    row = int(np.flatnonzero(data.test_ids == 0)[0])
    assert x_test[row, 0] == OUT_OF_VOCABULARY
    assert float(data.tags["data.oov_rate"]) > 0.0 == float(data.tags["data.oov_rate_train"])
    assert data.sizes["test"] == 20


def test_numeric_labels_and_rows_without_text(tmp_path):
    csv = tmp_path / "scores.csv"
    frame = reviews(csv, label_values=(1, 0))
    frame.loc[[3, 4], "review"] = ["", None]
    frame.to_csv(csv, index=False)
    data = data_of(*text_overrides(csv))
    assert data.class_names == ["0", "1"]
    assert data.tags["data.dropped_rows"] == "2" and sum(data.sizes.values()) == 158


def test_bucketed_and_unbucketed_pipelines_hold_the_same_examples(tmp_path):
    csv = tmp_path / "reviews.csv"
    reviews(csv)
    flat = data_of(*text_overrides(csv, "data.bucket_by_length=false"))
    bucketed = data_of(*text_overrides(csv, "data.bucket_by_length=true"))
    longest = int(flat.tags["data.length_max"])  # of the training texts: the padded length
    assert flat.spec.input_shape == (longest,) and bucketed.spec.input_shape == (None,)
    for split in ("train", "val", "test"):
        assert examples(getattr(flat, split)) == examples(getattr(bucketed, split))
    widths = {np.asarray(x).shape[1] for x, _ in bucketed.train}
    assert len(widths) > 1 and max(widths) == longest
    for x, _ in bucketed.train:  # padded at the end only: the cuDNN kernel's condition
        x = np.asarray(x)
        ends = (x != PADDING).sum(axis=1)
        assert all((row[:n] != PADDING).all() for row, n in zip(x, ends, strict=True))


def test_max_length_cuts_texts_at_the_end(tmp_path):
    csv = tmp_path / "reviews.csv"
    reviews(csv)
    data = data_of(*text_overrides(csv, "data.max_length=5", "data.bucket_by_length=false"))
    assert data.arrays["train"][0].shape[1] == 5 and data.serving["length"] == 5
    assert int(data.tags["data.truncated_texts"]) > 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.rename(columns={"review": "body"}), r"review not found.*data\.text"),
        (lambda f: f.assign(review=" "), r"no row with both a text"),
        (lambda f: f.assign(stars="good"), r"single class \('good'\)"),
    ],
    ids=["missing text column", "empty texts only", "one class"],
)
def test_bad_text_files_refused_before_a_run_opens(tmp_path, store, change, message):
    csv = tmp_path / "reviews.csv"
    change(reviews(csv)).to_csv(csv, index=False)
    with pytest.raises(DataError, match=message):
        run_training(make_cfg(*text_overrides(csv)), tmp_path / "out")
    assert runs_in(store) == []


def test_text_config_errors(tmp_path):
    csv = tmp_path / "reviews.csv"
    reviews(csv)
    with pytest.raises(ConfigError, match=r"data\.standardize.*lower_and_strip_punctuation"):
        validate(make_cfg(*text_overrides(csv, "data.standardize=stem")))
    with pytest.raises(ConfigError, match=r"conv_filters.*for text"):
        from pipeline.models import build_model

        conf = validate(make_cfg(*text_overrides(csv, "model.conv_filters=[8]")))
        build_model(conf.model, make_datasets(conf.data, conf.seed).spec)


def test_text_model_masks_padding_and_keeps_cudnn(tmp_path):
    from pipeline.models import build_model
    from pipeline.models.introspection import cudnn_tags

    csv = tmp_path / "reviews.csv"
    reviews(csv)
    conf = validate(
        make_cfg(*text_overrides(csv, "model.bidirectional=true", "model.num_layers=2"))
    )
    data = make_datasets(conf.data, conf.seed)
    model = build_model(conf.model, data.spec)
    embedding = model.get_layer("embedding")
    assert embedding.mask_zero and embedding.input_dim == len(data.vocabulary)
    tags = cudnn_tags(model)
    assert len(tags) == 4 and set(tags.values()) == {"eligible"}, tags
    # Padding changes nothing: a text padded further gives the same outputs.
    x = data.arrays["test"][0][:4]
    wider = np.concatenate([x, np.zeros_like(x)], axis=1)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(wider)), atol=1e-5)


@pytest.mark.slow
def test_imdb_with_mock_data_through_the_command_line(tmp_path):
    """`python -m pipeline.train data=imdb trainer=smoke`, TFDS' mock data standing in."""
    code = (
        "import sys, tensorflow_datasets as tfds\n"
        "import pipeline.data.tfds_rows as rows\n"
        "rows._online = lambda *a, **k: True\n"
        "from pipeline.cli.train import main\n"
        "sys.argv = ['pipeline.train', *sys.argv[1:]]\n"
        "with tfds.testing.mock_data(num_examples=48):\n"
        "    main()\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["data=imdb", "trainer=smoke", "model.units=8", f"tracking.uri={uri}"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imdb_reviews: 38 train / 10 val / 48 test" in done.stdout
    (run,) = runs_in(uri)
    assert run.data.tags["data.classes"] == "neg,pos"
    assert int(run.data.tags["data.vocabulary_size"]) > 2
    mlflow.set_tracking_uri(uri)
    answer = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(["a fine film"])
    assert answer["label"][0] in {"neg", "pos"}


def test_imdb_offline_error_suggests_own_texts(tmp_path):
    with pytest.raises(DataError, match=r"`imdb_reviews`.*data_dir.*data=text"):
        data_of("data=imdb", f"data.data_dir={tmp_path}", "data.download=false")
