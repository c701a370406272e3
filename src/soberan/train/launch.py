"""Entry point for several processes: `torchrun ... -m soberan.train.launch -w WS [options]` or
`accelerate launch -m soberan.train.launch -w WS [options]` run `soberan train` in every process;
each takes its slice of every global batch, and only the first writes files and the ledger.

It runs the train stage's own command (`soberan.train.cli.train`), not the whole CLI: a stage
does not import the orchestration layer above it."""

import sys


def main() -> None:
    import typer

    from soberan.train.cli import train

    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command()(train)
    app(sys.argv[1:])


if __name__ == "__main__":
    main()
