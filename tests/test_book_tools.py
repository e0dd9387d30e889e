"""The book's Sphinx extension that tidies notebook outputs (tools/nb_outputs.py)."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.utils import new_document

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import nb_outputs  # noqa: E402

VIEW = "application/vnd.jupyter.widget-view+json"


def test_machine_paths_are_shortened():
    text = ("/home/ana/.venv/lib/python3.11/site-packages/sklearn/linear_model/_logistic.py:470: "
            "ConvergenceWarning: lbfgs failed to converge\n"
            "/root/.pyenv/versions/3.11.7/lib/python3.11/warnings.py:12: UserWarning: x\n"
            "/tmp/ipykernel_4242/3018.py:3: UserWarning: from a cell\n"
            "C:\\Users\\ana\\venv\\Lib\\site-packages\\torch\\nn\\init.py:1: Warning\n"
            "/srv/book/vae_tutorial/training/train.py:10: Warning\n")
    got = nb_outputs.scrub_paths(text, roots=("/srv/book",))
    assert got.splitlines() == [
        "sklearn/linear_model/_logistic.py:470: ConvergenceWarning: lbfgs failed to converge",
        "python3.11/warnings.py:12: UserWarning: x",
        "<cell>:3: UserWarning: from a cell",
        "torch\\nn\\init.py:1: Warning",
        "vae_tutorial/training/train.py:10: Warning",
    ]
    assert nb_outputs.scrub_paths("loss 1.5 at 3 s, see /usr/share/datasets") == "loss 1.5 at 3 s, see /usr/share/datasets"


def _bundle(model_id, *extra):
    bundle = nodes.container(nb_element="mime_bundle")
    view = nodes.container(mime_type=VIEW)
    view += nodes.raw(text=f'<script type="{VIEW}">{json.dumps({"model_id": model_id})}</script>', format="html")
    bundle += view
    for mime in extra:
        c = nodes.container(mime_type=mime)
        c += nodes.literal_block(text="HBox(...)")
        bundle += c
    output = nodes.container(classes=["cell_output"])
    output += bundle
    return output


def test_hidden_and_missing_widgets_are_dropped_shown_ones_kept():
    state = {
        "bar": {"state": {"layout": "IPY_MODEL_hidden_layout"}},
        "hidden_layout": {"state": {"visibility": "hidden"}},
        "kept": {"state": {"layout": "IPY_MODEL_shown_layout"}},
        "shown_layout": {"state": {"visibility": None}},
        "explorer": {"state": {"layout": "IPY_MODEL_hidden_layout"}},
    }
    doc = new_document("test", get_default_settings())
    cell = nodes.container(classes=["cell"])
    for output in (_bundle("bar", "text/plain"), _bundle("kept"), _bundle("gone"),
                   _bundle("explorer", "text/html")):
        cell += output
    doc += cell
    dropped = nb_outputs._drop_hidden_widgets(SimpleNamespace(), doc, state)
    assert dropped == 2  # the hidden bar and the view of a model that is not in the state
    left = [b.children[0].astext() for b in doc.findall(lambda n: isinstance(n, nodes.Element) and n.get("nb_element") == "mime_bundle")]
    assert [json.loads(t.split(">")[1].split("<")[0])["model_id"] for t in left] == ["kept", "explorer"]
    assert len(cell.children) == 2  # their emptied output containers went too
