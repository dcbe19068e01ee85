"""User text shown as typed: run labels and plugin names in Markdown.

Streamlit renders ``st.markdown``, ``st.info``, ``st.caption``, progress texts and
the like as Markdown, so a label ``[x](http://evil)`` would be a live link and
``![i](http://evil/x.png)`` would load a remote image. :func:`plain` escapes it.
No Streamlit import here: the function is pure and tested directly.
"""

from __future__ import annotations

import re

#: Characters that start Markdown anywhere in a line: emphasis, code, links and
#: images (``[``, ``]``, ``(``, ``)``, ``!``), HTML and autolinks (``<``, ``&``,
#: ``:`` of ``http://``, ``.`` of ``www.``), tables, strikethrough, and Streamlit's
#: own ``:red[…]`` colours, ``:icons:`` and ``$…$`` maths. A backslash escapes each
#: (CommonMark escapes any ASCII punctuation).
_INLINE = re.compile(r"([\\`*_{}\[\]()<>!|~$:&.])")
#: Characters that start Markdown only at the start of a line (headings, lists,
#: quotes): escaped there, left alone inside ("K-FAC", "sgd #2").
_LINE_START = re.compile(r"^(\s*)([-+=#>])")


def plain(text: str) -> str:
    r"""``text`` as Markdown that renders exactly as ``text``, on one line.

    Example:
        >>> print(plain("[x](http://evil) *a*"))
        \[x\]\(http\://evil\) \*a\*
        >>> print(plain("# K-FAC #2"))
        \# K-FAC #2
    """
    one_line = " ".join(str(text).splitlines())
    return _LINE_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", one_line))
