"""Tokens are text: hundreds of hostile token strings render verbatim and never run as code."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnscope

from .browser_helpers import head_labels, matrix_labels, random_attention, wait_drawn

pytestmark = pytest.mark.browser

HOSTILE = [
    "</script>", "</script><script>window.__pwned = 1</script>", "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 1">', "<svg onload=window.__pwned=1>", "<!--", "-->", "<![CDATA[", "]]>",
    "\"'><b>x</b>", "`", "${window.__pwned = 1}", "`${alert(1)}`", "{{constructor.constructor('alert(1)')()}}",
    "javascript:alert(1)", "<style>*{display:none}</style>", "&lt;&amp;", "\\", "\\u2028", "\u2028", "\u2029",
    "\u202e", "\u200f", "\u200b", "\U0001F600", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\x00", "\r\n",
    "\t", " ", "", "\u0120", "##", "</w>", "<0x0A>", "alert(1)//", "');alert(1);//", "\ufeff", "\ud7ff",
]

token = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=12),
    st.tuples(st.sampled_from(HOSTILE), st.text(max_size=4), st.sampled_from(HOSTILE)).map("".join),
)


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(tokens=st.lists(token, min_size=200, max_size=230))
def test_hostile_tokens_render_verbatim_and_run_nothing(browser, tmp_path_factory, tokens):
    n = len(tokens)
    trace = attnscope.Trace.from_arrays(random_attention(1, 2, n, seed=n), tokens,
                                        meta={"model": tokens[1] + "</title><script>window.__pwned=1</script>"})
    head_view = attnscope.head_view(trace, prettify=False)
    body = head_view.html().replace("</body>", attnscope.matrix_view(trace, prettify=False).fragment() + "</body>")
    path = tmp_path_factory.mktemp("hostile") / "tokens.html"
    path.write_text(body, encoding="utf-8")
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    wait_drawn(page)
    head, matrix = ".attnscope[data-view=head]", ".attnscope[data-view=matrix]"
    labels = {"left": head_labels(page, head, ".as-left .as-tok"),  # windows of the tokens: scroll through them
              "right": head_labels(page, head, ".as-right .as-tok", "title"),
              "rows": matrix_labels(page, matrix)[0], "cols": matrix_labels(page, matrix, "title")[1]}
    shown = page.evaluate("""() => ({
        pwned: typeof window.__pwned,
        title: document.title,
        views: document.querySelectorAll('.attnscope[data-state=drawn]').length,
        extra: document.querySelectorAll('.attnscope img, .attnscope svg, .attnscope b, .attnscope script').length,
    })""")
    context.close()
    assert dialogs == [] and shown["pwned"] == "undefined"
    assert shown["views"] == 2 and shown["extra"] == 0
    assert labels["left"] == labels["right"] == labels["rows"] == labels["cols"] == tokens
    assert shown["title"].endswith("head view · attnscope") and "</title>" in shown["title"]
