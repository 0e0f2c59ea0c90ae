"""The reference portals' static files: what is served, what is not, and that the apps are self-contained."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.reference_portals import APPS, MEDIA_TYPES, ROOT, static_file

FILES = sorted(p for p in ROOT.rglob("*") if p.is_file())
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_the_apps_and_the_shared_files_are_served() -> None:
    assert static_file(APPS["admin"], "") == (ROOT / "admin" / "index.html").resolve()
    assert static_file(APPS["portal"], "") == (ROOT / "user" / "index.html").resolve()
    assert static_file(APPS["portal"], "common/sign_in.js") == (ROOT / "common" / "sign_in.js").resolve()
    assert static_file(APPS["admin"], "common/sign_in.js") == (ROOT / "common" / "sign_in.js").resolve()


@pytest.mark.parametrize("path", [
    "../reference_portals.py", "../../mfaplane_gateway/settings.py", "common/../../settings.py",
    "common/../admin/app.js", "/etc/passwd", "nothing.html", "common/", "users.js/..",
])
def test_nothing_outside_the_app_folders_or_of_another_type_is_served(path: str) -> None:
    with pytest.raises(Rejected) as refused:
        static_file(APPS["portal"], path)
    assert refused.value.kind == Refusal.NOT_FOUND


def test_every_file_is_of_a_served_type() -> None:
    assert FILES and all(p.suffix in MEDIA_TYPES for p in FILES), [p.name for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_is_fetched_from_the_internet(path: Path) -> None:
    text = path.read_text().replace(SVG_NAMESPACE, "")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{path.name} refers to another site"


def _served_as(path: Path) -> tuple[Path, str]:
    """The app folder a file is served for and its path there (shared files: under common/ of any app)."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "common":
        return APPS["portal"], relative.as_posix()
    return path.parent, relative.name


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix in (".js", ".html")], ids=lambda p: p.name)
def test_every_module_script_and_stylesheet_reference_resolves(path: Path) -> None:
    app, served = _served_as(path)
    references = re.findall(r"""(?:from|import)\s*["'](\.{1,2}/[^"']+)["']|(?:src|href)="([^"#:]+\.(?:js|css))\"""",
                            path.read_text())
    for reference in [a or b for a, b in references]:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(served), reference))
        static_file(app, target)  # raises when it would not be served
