"""The docs' and the README's examples are tests too (tests/docs_fences.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".md":
        return None
    relative = file_path.resolve().relative_to(ROOT)
    if relative == Path("README.md") or relative.parts[0] == "docs":
        from tests.docs_fences import MarkdownPage

        return MarkdownPage.from_parent(parent, path=file_path)
    return None
