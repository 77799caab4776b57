"""Every ``egotune`` help page is plain text: no reStructuredText markup from the docstrings."""

from __future__ import annotations

import argparse
import re

import pytest

from tuner.cli import build_parser


def help_pages(parser: argparse.ArgumentParser, prog: str = "egotune") -> dict[str, str]:
    """The help of ``parser`` and of every subcommand below it, by command line."""
    pages = {prog: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                pages.update(help_pages(sub, f"{prog} {name}"))
    return pages


PAGES = help_pages(build_parser())


def test_every_command_has_a_help_page():
    assert {"egotune submit", "egotune replay", "egotune bench", "egotune results top"} <= set(
        PAGES
    )


@pytest.mark.parametrize("command", sorted(PAGES))
def test_help_shows_no_markup(command: str):
    page = PAGES[command]
    assert "``" not in page, page
    assert not re.search(r":(mod|func|class|meth|attr):`", page), page
