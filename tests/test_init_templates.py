"""`soberan init --lang X` writes a config in X's terms: its jurisdiction's public-domain license,
its own answer cue in the example benchmark prompt, its own code in the examples; never Korean
ones for a Thai or Arabic workspace."""

from __future__ import annotations

import pytest

from soberan.workspace import render_config


@pytest.mark.parametrize("lang,country,cue", [("th", "TH", "คำตอบ:"), ("ar", "SA", "الإجابة:"),
                                              ("id", "ID", "Jawaban:"), ("vi", "VN", "Đáp án:"),
                                              ("ko", "KR", "정답:")])
def test_init_writes_the_languages_own_examples(lang, country, cue):
    text = render_config("x", lang, country)
    assert f"LicenseRef-{country}-Public-Domain" in text
    assert f'\\n{cue}"' in text
    if lang != "ko":
        assert "KR" not in text and "정답" not in text and "{ ko =" not in text
    assert "CC-BY-NC" not in text  # no non-commercial license unless the lab adds it


def test_errors_print_their_square_brackets(tmp_path):
    """An error quoting `[[sources]]` or a list reaches the terminal whole, not eaten as markup."""
    from typer.testing import CliRunner

    from soberan.cli import app
    from soberan.workspace import init_workspace

    init_workspace(tmp_path / "ws", lang="th", jurisdiction="TH")
    res = CliRunner().invoke(app, ["collect", "-w", str(tmp_path / "ws")])
    assert res.exit_code == 2 and "no [[sources]] to collect" in res.output
