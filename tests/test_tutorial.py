"""The tutorial notebook (docs/tutorial.ipynb) runs from top to bottom, so that it never
goes stale: executed as a reader would (a Jupyter kernel, nbclient), with its parameters
cell set to one epoch on a small real dataset."""

import nbclient
import nbformat

from regjax.presets import NOTEBOOK, TECHNIQUES
from tests.helpers import ROOT


def outputs(cell) -> tuple[str, set[str]]:
    """A code cell's printed text and the kinds of what it displayed."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    shown = {kind for o in cell.outputs if o.output_type in ("display_data", "execute_result")
             for kind in o.data}
    return text, shown


# Slow (about a minute on two cores): a kernel of its own, which compiles every technique's
# program once; it runs beside the rest of the suite on the other worker.
def test_the_tutorial_runs_and_shows_every_technique(tiny_idx_dir, tmp_path):
    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source = f"EPOCHS = 1\nSEEDS = 2\nDATA_DIR = {str(tiny_idx_dir)!r}"
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    printed = "".join(outputs(c)[0] for c in code)
    for technique in TECHNIQUES:  # Part 1 one cell each, Parts 2 and 3 in a loop each
        assert f"{technique}: test accuracy " in printed, technique
    plotted = [c for c in code if "regjax.plot(" in c.source or ".plot()[" in c.source]
    assert len(plotted) == len(NOTEBOOK) + 2  # every Part 1 technique, the comparison twice
    for cell in plotted:  # a figure shown inline (a PNG), not an object's repr
        assert "image/png" in outputs(cell)[1], cell.source
    table = next(c for c in code if c.source.rstrip().endswith("results.table()"))
    shown = "".join(str(o.data.get("text/plain", "")) for o in table.outputs
                    if o.output_type == "execute_result")
    for technique in ("baseline", "l2", "dropout", "batchnorm"):
        assert technique in shown
