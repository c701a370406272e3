import pytest

from soberan.config import ConfigError, load_config
from soberan.workspace import init_workspace, render_config


def test_init_writes_valid_commented_config(tmp_path):
    cfg = init_workspace(tmp_path / "w", lang="th", jurisdiction="th")
    text = cfg.read_text()
    assert text.startswith("#") and 'jurisdiction = "TH"' in text
    c = load_config(cfg)
    assert c.project.languages == ["th"] and c.policy.jurisdictions == ["TH"]


def test_demo_config_points_at_konlpy_corpus(tmp_path):
    c = load_config(init_workspace(tmp_path / "d", lang="ko", jurisdiction="KR", demo=True))
    assert c.sources[0].kind == "files"
    assert (c.resolve(c.sources[0].path) / "kolaw" / "constitution.txt").exists()


@pytest.mark.parametrize("bad, key, words", [
    ('[project]\nname="x"\njurisdiction="KR"\nlanguages=["ko"]\ncolour="red"\n', "project.colour", "unknown key"),
    ('[project]\nname="x"\njurisdiction="KR"\nlanguages="ko"\n', "project.languages", "list"),
    ('[project]\nname="x"\njurisdiction="KR"\nlanguages=["xx"]\n', "project.languages", "ISO 639"),
    ('[project]\nname="x"\njurisdiction="ZZ"\nlanguages=["ko"]\n', "project.jurisdiction", "ISO 3166"),
])
def test_config_errors_name_key_and_file(tmp_path, bad, key, words):
    p = tmp_path / "soberan.toml"
    p.write_text(bad + '[policy]\nlicenses=["CC0-1.0"]\njurisdictions=["KR"]\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and key in msg and words in msg


def test_unknown_license_is_an_error(tmp_path):
    p = tmp_path / "soberan.toml"
    p.write_text('[project]\nname="x"\njurisdiction="KR"\nlanguages=["ko"]\n'
                 '[policy]\nlicenses=["CC0-1.0","Made-Up-License"]\njurisdictions=["KR"]\n')
    with pytest.raises(ConfigError, match=r"policy\.licenses\.1.*Made-Up-License"):
        load_config(p)


def test_bad_toml_names_file(tmp_path):
    p = tmp_path / "soberan.toml"
    p.write_text("[project\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_render_rejects_bad_codes():
    with pytest.raises(ValueError):
        render_config("x", "klingon", "KR")
