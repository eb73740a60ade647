"""The README stays true: the two commands first, and every catalogued topic listed."""
from pathlib import Path

from shared.messaging.topics import CATALOGUE

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_shows_the_two_commands():
    assert "make run" in README and "make test" in README
    assert README.index("make run") < README.index("## How it is built")


def test_readme_lists_every_topic_of_the_catalogue():
    missing = [name for name in CATALOGUE if f"`{name}`" not in README]
    assert missing == []
