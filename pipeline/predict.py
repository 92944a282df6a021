"""`python -m pipeline.predict`: see pipeline/cli/predict.py. `predict(conf)` lives in
pipeline/inference/predict.py."""

if __name__ == "__main__":
    from pipeline.cli.predict import run

    run()
