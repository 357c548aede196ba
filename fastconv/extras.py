"""Install advice for the optional packages (tqdm, Pillow, safetensors: the ``train`` extra).

fastconv is not on a package index: from a checkout it is installed with ``pip install -e
'.[train]'`` in the checkout's root, so the advice names that directory when fastconv runs from
one (a ``pyproject.toml`` for fastconv next to the package), and the missing package itself
otherwise (an installed fastconv may have come from a wheel file, not an index).
"""

from __future__ import annotations

import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_root() -> str | None:
    """The source checkout fastconv is imported from, or None for an installed package."""
    try:
        with open(os.path.join(_ROOT, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    return _ROOT if 'name = "fastconv"' in text else None


def install_hint(package: str, extra: str = "train") -> str:
    """The pip command that installs ``package`` (part of ``extra``) where this fastconv lives."""
    root = checkout_root()
    if root is None:
        return f"pip install {package}"
    here = os.path.abspath(os.getcwd()) == root
    return f"pip install -e '.[{extra}]'" + ("" if here else f" in {root}")
