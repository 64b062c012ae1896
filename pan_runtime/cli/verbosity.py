"""``-v`` and ``-q`` before or after the command: ``pan -v node x.toml`` and ``pan node x.toml -v``
mean the same.

The flags after the command are added to every subcommand's parser under names of their own
(a subparser's defaults would otherwise overwrite what was given before the command); a
command with a ``-q``/``--quiet`` of its own (ping: only the summary; demo, bench: no
progress) keeps it, and any ``-q`` given sets it too, so ``pan -q ping`` is ``pan ping -q``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_verbosity", "verbosity"]


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand's parser (and those of its own subcommands) ``-v``/``--verbose`` and
    ``-q``/``--quiet`` where it has none."""
    for action in parser._actions:  # argparse keeps no public view of these
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                add_verbosity(child)
            return  # the flags go on the innermost parsers, after the last command word
    taken = parser._option_string_actions
    flags = [f for f in ("-v", "--verbose") if f not in taken]
    if flags:
        parser.add_argument(*flags, dest="sub_verbose", action="count", default=0, help="log more (repeat for debug)")
    flags = [f for f in ("-q", "--quiet") if f not in taken]
    if flags:
        parser.add_argument(*flags, dest="sub_quiet", action="count", default=0, help="less output: log errors only")


def verbosity(args: argparse.Namespace) -> int:
    """The net verbosity (``-v`` count minus ``-q`` count, wherever given); sets a command's
    own ``quiet`` when any ``-q`` was given."""
    quiet = getattr(args, "log_quiet", 0) + getattr(args, "sub_quiet", 0)
    own = getattr(args, "quiet", None)
    if own is True:
        quiet = max(quiet, 1)
    elif quiet and own is False:
        args.quiet = True
    return getattr(args, "verbose", 0) + getattr(args, "sub_verbose", 0) - quiet
