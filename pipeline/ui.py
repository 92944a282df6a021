"""`python -m pipeline.ui`: see pipeline/cli/ui.py."""

if __name__ == "__main__":
    import sys

    from pipeline.cli.ui import main

    sys.exit(main())
