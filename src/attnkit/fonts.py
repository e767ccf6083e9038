"""Fonts for matplotlib figures: a CJK-capable fallback when one is installed, and one clear warning when not.

matplotlib's default font (DejaVu Sans) has no Chinese, Japanese or Korean glyphs and draws boxes for them.
:func:`font_context` puts DejaVu Sans first (Latin text looks as before) and an installed CJK font after it, so
matplotlib falls back to it glyph by glyph. matplotlib caches its font list, so a font installed after that
cache was written (``apt-get install fonts-noto-cjk``) is found by scanning the system font folders and
registered for this process.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "CJK_FONTS",
    "INSTALL_HINT",
    "contains_cjk",
    "find_cjk_font",
    "font_context",
    "font_families",
    "quiet_matplotlib_logging",
]

logger = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "Noto Serif CJK SC",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Arial Unicode MS",
)
"""CJK-capable font families, most preferred first (sans-serif Simplified Chinese faces lead)."""

INSTALL_HINT = (
    "no CJK-capable font is installed, so Chinese/Japanese/Korean text in this figure is drawn as boxes; "
    "install one, e.g. Debian/Ubuntu `apt-get install fonts-noto-cjk` (or fonts-wqy-zenhei), Fedora "
    "`dnf install google-noto-sans-cjk-fonts`, or copy a Noto Sans CJK / Source Han Sans .otf into "
    "~/.local/share/fonts"
)

# Font files whose name says they cover CJK (searched when matplotlib's cached font list has none).
_CJK_FILE = re.compile(
    r"cjk|sourcehan|wqy|wenquanyi|droidsansfallback|uming|ukai|simhei|msyh|pingfang|hiragino|notosans(sc|tc)",
    re.IGNORECASE,
)

# Han (with extensions and compatibility ideographs), kana, Hangul, Bopomofo, CJK punctuation, full-width forms.
_CJK_CHAR = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)


def contains_cjk(text: str) -> bool:
    """Whether ``text`` has a character that needs a CJK font (Han, kana, Hangul, CJK punctuation...)."""
    return _CJK_CHAR.search(text) is not None


def quiet_matplotlib_logging() -> None:
    """Keep matplotlib's DEBUG records (one ``findfont`` line per font per lookup) out of ``-v`` logs."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def _installed_cjk() -> str | None:
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in available), None)


@functools.cache
def find_cjk_font() -> str | None:
    """The family name of an installed CJK-capable font (see :data:`CJK_FONTS`), or ``None``.

    Looked up once per process; font files installed after matplotlib built its font cache are registered.
    """
    quiet_matplotlib_logging()
    found = _installed_cjk()
    if found is not None:
        return found
    from matplotlib import font_manager

    for path in sorted(font_manager.findSystemFonts()):
        if _CJK_FILE.search(Path(path).name):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError) as err:  # an unreadable or unsupported font file
                logger.debug("could not load font %s: %s", path, err)
    return _installed_cjk()


@functools.cache
def _warn_no_cjk_font() -> None:
    logger.warning(INSTALL_HINT)


def font_families(texts: Iterable[str] = ()) -> list[str]:
    """``font.family`` for a figure: DejaVu Sans, then a CJK font when one is installed.

    When none is and one of ``texts`` has CJK characters, logs :data:`INSTALL_HINT` (once per process).
    """
    cjk = find_cjk_font()
    if cjk is None:
        if any(contains_cjk(text) for text in texts):
            _warn_no_cjk_font()
        return ["DejaVu Sans"]
    return ["DejaVu Sans", cjk]


@contextmanager
def font_context(texts: Iterable[str] = ()) -> Iterator[None]:
    """matplotlib settings for figures that may show ``texts``: :func:`font_families`, no TeX, and no
    per-glyph "missing glyph" warnings (a missing CJK font is reported once by :func:`font_families`)."""
    from matplotlib import rc_context

    quiet_matplotlib_logging()
    families = font_families(texts)
    with warnings.catch_warnings(), rc_context({"font.family": families, "text.usetex": False}):
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
        warnings.filterwarnings("ignore", message=r".*findfont.*")
        yield
