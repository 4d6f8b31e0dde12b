"""Command-line entry point: ``python main.py {fit,validate,test} --config configs/<scenario>.yaml``."""

from lightning_fed.cli import main

if __name__ == "__main__":
    main()
