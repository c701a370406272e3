"""Entry point for several processes: `torchrun ... -m soberan.train.launch -w WS [options]` or
`accelerate launch -m soberan.train.launch -w WS [options]` run `soberan train` in every process;
each takes its slice of every global batch, and only the first writes files and the ledger."""

import sys


def main() -> None:
    from soberan.cli import app

    app(["train", *sys.argv[1:]])


if __name__ == "__main__":
    main()
