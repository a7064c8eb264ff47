"""Console entry point of ``resctrl-pipeline`` (also ``python -m resctrl_pipeline``).

Importing the command line takes a moment (click, pyarrow for some commands); a Ctrl-C
in that moment would print a KeyboardInterrupt traceback. Here it ends the command
with one line and exit code 130, as a shell expects after SIGINT; so does one while
a command runs (unless the command handles it, as ``demo`` does).
"""

from __future__ import annotations

import sys

__all__ = ["run"]


def run() -> None:
    """Run the ``resctrl-pipeline`` command line."""
    try:
        import click

        from resctrl_pipeline.cli import main

        try:
            # Not standalone: click would turn Ctrl-C into "Aborted!" and exit code 1.
            rv = main(standalone_mode=False)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.Abort:
            raise KeyboardInterrupt from None
        sys.exit(rv if isinstance(rv, int) else 0)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
