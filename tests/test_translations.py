"""Every string of the admin has a French and a German translation, and the compiled catalogs
are the ones the .po files make.

The catalogs are extracted afresh from a copy of the sources (``makemessages``, as the README
says to run it), so a new untranslated string anywhere (a template, a ``gettext`` call) fails
here until it is translated: none may be missing, empty or fuzzy.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["fr", "de"]
# The same arguments as the README's "Translations" commands.
MAKEMESSAGES = [
    "makemessages",
    *[f"--locale={language}" for language in LANGUAGES],
    "--ignore=.venv",
    "--ignore=tests",
    "--ignore=bench",
    "--ignore=var",
    "--ignore=docs",
    "--no-location",
    "--no-obsolete",
]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources with its catalogs extracted again."""
    copy = tmp_path_factory.mktemp("sources") / "tree"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", "var", ".git", "node_modules", "__pycache__"),
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run(
        [sys.executable, "manage.py", *MAKEMESSAGES],
        cwd=copy,
        env=environment,
        check=True,
        capture_output=True,
    )
    return copy


def _msgattrib(catalog: Path, option: str) -> str:
    result = subprocess.run(
        ["msgattrib", option, "--no-obsolete", "--no-wrap", str(catalog)],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_string_has_a_translation_neither_empty_nor_fuzzy(extracted, language):
    catalog = extracted / "locale" / language / "LC_MESSAGES" / "django.po"

    untranslated = _msgattrib(catalog, "--untranslated")
    fuzzy = _msgattrib(catalog, "--only-fuzzy")
    statistics = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", os.devnull, str(catalog)],
        check=True,
        capture_output=True,
        text=True,
    ).stderr

    assert untranslated == "", f"untranslated in {language}:\n{untranslated}"
    assert fuzzy == "", f"fuzzy in {language}:\n{fuzzy}"
    assert "untranslated" not in statistics
    assert "fuzzy" not in statistics
    assert int(statistics.split()[0]) > 400  # the whole admin, not an empty catalog


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_committed_catalogs_are_up_to_date_with_the_sources(extracted, language):
    """What makemessages extracts now is what the repository's .po holds (run the README's
    commands after changing a string)."""
    fresh = extracted / "locale" / language / "LC_MESSAGES" / "django.po"
    committed = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"

    assert _msgids(fresh) == _msgids(committed)


def _msgids(catalog: Path) -> set[str]:
    listing = subprocess.run(
        ["msgattrib", "--no-obsolete", "--no-wrap", "--no-location", str(catalog)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line for line in listing.splitlines() if line.startswith(("msgid ", "msgid_plural "))}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_mo_files_hold_what_the_po_files_say(tmp_path, language):
    source = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    committed = ROOT / "locale" / language / "LC_MESSAGES" / "django.mo"
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(compiled), str(source)], check=True)

    with committed.open("rb") as ours, compiled.open("rb") as fresh:
        assert gettext.GNUTranslations(ours)._catalog == gettext.GNUTranslations(fresh)._catalog  # type: ignore[attr-defined]


def test_french_puts_a_no_break_space_before_two_part_punctuation_and_inside_guillemets():
    """A French line may not break between a word and its ``:``, ``;``, ``?``, ``!`` or
    guillemet: the space before them, and after ``«``, is a no-break one in every French
    message, never a plain one."""
    with (ROOT / "locale" / "fr" / "LC_MESSAGES" / "django.mo").open("rb") as catalog:
        messages = gettext.GNUTranslations(catalog)._catalog  # type: ignore[attr-defined]

    plain = sorted(
        text
        for key, text in messages.items()
        if key and re.search(r"\s[:;?!»](?=\s|$|<|»|\"|\.|,)|«\s", text.replace("\xa0", "_"))
    )

    assert plain == []
