"""The docs: the configuration page matches `Settings`, and the front door stays small."""

from __future__ import annotations

from pathlib import Path

from recommender.settings import Settings
from streamrec import config_doc

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_page_is_generated_from_the_settings():
    assert config_doc.PAGE.read_text() == config_doc.render(), "stale: run `make docs`"


def test_every_setting_has_a_description_on_the_page():
    page = config_doc.render()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"`STREAMREC_{name.upper()}`" in page, name


def test_the_readme_fits_on_a_screen_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 12 * 1024
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, page.name
