"""`python -m soberan.serve -w WORKSPACE ...`: the `soberan serve` command alone, for a serving
container or host that needs only the serving half of soberan."""

import typer

from soberan.serve.cli import serve

if __name__ == "__main__":
    typer.run(serve)
