"""`python -m rilke` runs the `rilke` command."""

from rilke.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
