"""The instance's HTML page: the page nbconvert's HTML exporter gives, attribute for attribute.

ductaflow's exporter caches what a sweep repeats and adds ``alt`` and
``tabindex`` by a scan of the tags instead of a parse of the page; parsed,
its page must be the one nbconvert's own exporter serialises, for every
corpus notebook and for an executed flow with the outputs that matter
(figures, images in HTML with and without ``alt``, scripts and comments
holding tags, divs with nbconvert's class names).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from jinja2 import DictLoader
from nbconvert import HTMLExporter

import ductaflow
from ductaflow.htmlpage import NO_ALT, PageExporter, accessible
from ductaflow.notebook import _TEMPLATE

TRICKY = '''\
# %% tags=["parameters"]
config = {}

# %% [markdown]
# A *markdown* cell with an image: ![a dot](data:image/png;base64,iVBORw0KGgo=)

# %%
from IPython.display import HTML, SVG, Markdown, display
import matplotlib.pyplot as plt

display(HTML("""<img src="data:image/png;base64,iVBORw0KGgo="><IMG SRC='x.png' ALT='named'>
<div class="jp-OutputArea-output" tabindex="5">user div</div><div class='other jp-Cell-inputWrapper'>x</div>
<script>var s = "<img src='q.png'>"; var t = '<div class="jp-OutputArea-output">';</script>
<!-- <img src="commented.png"> --><br><img src="self-closing.png"/><p title="a > b">gt</p>"""))
display(Markdown("![md image](data:image/png;base64,iVBORw0KGgo=)"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4"/></svg>'))
plt.plot([config.get("n", 1), 2, 3])
print("text with <img src=x> and <div class='jp-OutputArea-output'> in it")
'''


def nbconvert_page(nb: nbformat.NotebookNode) -> str:
    """The page nbconvert's own HTML exporter renders with ductaflow's template."""
    loader = DictLoader({"ductaflow-offline.html.j2": _TEMPLATE})
    exporter = HTMLExporter(extra_loaders=[loader], template_file="ductaflow-offline.html.j2")
    return exporter.from_notebook_node(nb)[0]


def same_page(page: str, reference: str) -> bool:
    return str(BeautifulSoup(page, features="html.parser")) == reference


@pytest.fixture(scope="module")
def exporter() -> PageExporter:
    """One exporter for the module, so its caches carry over from notebook to notebook as in a sweep."""
    loader = DictLoader({"ductaflow-offline.html.j2": _TEMPLATE})
    return PageExporter(extra_loaders=[loader], template_file="ductaflow-offline.html.j2")


@pytest.mark.filterwarnings("ignore:Your element with mimetype:UserWarning")  # an output with no data
def test_every_corpus_notebook_gives_nbconvert_s_page(corpus: Path, exporter: PageExporter) -> None:
    notebooks = sorted(corpus.rglob("*.ipynb"))
    assert len(notebooks) >= 10
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert same_page(exporter.from_notebook_node(nb)[0], nbconvert_page(nb)), path
        # Twice: the second render comes from the caches.
        assert same_page(exporter.from_notebook_node(nb)[0], nbconvert_page(nb)), path


def test_an_executed_flow_s_page_is_nbconvert_s(project: Path, exporter: PageExporter) -> None:
    (project / "tricky.py").write_text(TRICKY)
    pages = {}
    for n in (1, 2):  # two instances of one flow: the second page from a warm exporter
        run = ductaflow.run_step_flow("tricky.py", "tricky", f"n={n}", {"n": n}, engine="fork")
        assert run.status == "success", run.record.get("error")
        assert run.html is not None
        nb = nbformat.read(run.notebook, as_version=4)
        pages[n] = run.html.read_text(encoding="utf-8")
        assert same_page(pages[n], nbconvert_page(nb))
        assert same_page(exporter.from_notebook_node(nb)[0], nbconvert_page(nb))
    soup = BeautifulSoup(pages[2], features="html.parser")
    assert soup.select("img[src='self-closing.png']")[0]["alt"] == NO_ALT
    assert soup.select("img[src='x.png']")[0]["alt"] == "named"
    assert soup.select("img[src$='base64,iVBORw0KGgo=']")  # the markdown and HTML images
    assert all(img.has_attr("alt") for img in soup.select("img"))
    assert [div["tabindex"] for div in soup.select("div.jp-OutputArea-output") if div.text == "user div"] == [
        "0"
    ]
    assert "var s = \"<img src='q.png'>\"" in pages[2]  # a script is left as it is
    assert '<!-- <img src="commented.png"> -->' in pages[2]
    assert "data:image/png;base64," in pages[2]  # the figure


def test_tags_in_text_and_odd_attributes() -> None:
    """What a parse of the page would do to tags written in unusual ways."""
    for html in (
        '<div class="jp-Cell-inputWrapper jp-mod-x" id=a>',
        "<div class=jp-OutputArea-output>",
        '<div data-x="<img>" class="jp-OutputArea-output" TABINDEX=7>',
        "<img src=a.png alt>",
        "<img src='b.png' data-alt='no'>",
        "<style>div > img { border: 0 }</style><textarea><img src=t></textarea>",
        '<div class="not-jp-OutputArea-output">',
    ):
        reference = str(BeautifulSoup(html, features="html.parser"))
        soup = BeautifulSoup(reference, features="html.parser")
        for image in soup.select("img:not([alt])"):
            image.attrs["alt"] = NO_ALT
        for div in soup.select("div.jp-Cell-inputWrapper, div.jp-OutputArea-output"):
            div.attrs["tabindex"] = "0"
        assert same_page(accessible(html), str(soup)), html
