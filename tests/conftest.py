"""Root fixtures. Each domain's shared fixtures live in tests/fixtures/<domain>.py and are loaded here,
so a new domain adds a file instead of editing this one."""
from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)
