"""read_table: a CSV or TSV row with more fields than the header is refused, naming its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductaflow import ConfigError, read_table
from ductaflow.sources import instances_from_table

RAGGED = {
    # every row one field longer: pandas would take the first column as the index
    "every row longer": ("instance_name,drift\na,0.1,x\nb,0.2,y\n", 2, "'x' would belong to no column"),
    # one row longer, after a blank line and a quoted value spanning two lines
    "one row longer": ('instance_name,note\n\na,"two\nlines"\nb,x,y\n', 5, "'y' would belong to no column"),
    "trailing comma": ("instance_name,drift\na,0.1\nb,0.2,\n", 3, "ends with 1 ',' too many"),
}


@pytest.mark.parametrize(("text", "line", "says"), RAGGED.values(), ids=RAGGED.keys())
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_row_longer_than_the_header_is_refused_naming_its_line(
    project: Path, text: str, line: int, says: str, suffix: str
) -> None:
    """The message names the file, the line (1-based, as an editor shows it), both counts and the fix."""
    sep = "\t" if suffix == ".tsv" else ","
    path = project / f"scenarios{suffix}"
    path.write_text(text.replace(",", sep))
    with pytest.raises(ConfigError) as caught:
        read_table(path)
    message = str(caught.value)
    shown = path.name  # inside the working directory: shown relative to it
    assert f"table file {shown!r}: line {line} has 3 fields but the header has 2" in message
    assert says.replace("','", "tab" if sep == "\t" else "','") in message
    assert caught.value.line == line and caught.value.path == str(path)
    fix = "quote a value that holds a" if "belong" in says else "Delete it."
    assert fix in message


def test_a_shorter_row_reads_as_empty_last_cells_which_are_not_given(project: Path) -> None:
    """A row missing its last fields has them empty (the base config applies); one more is an error."""
    path = project / "scenarios.csv"
    path.write_text("instance_name,drift,noise\ncalm,0.1\nwild,0.2,3.0\nodd,0.3,1.0,9\n")
    with pytest.raises(ConfigError, match="line 4 has 4 fields but the header has 3"):
        read_table(path)
    path.write_text("instance_name,drift,noise\ncalm,0.1\nwild,0.2,3.0\n")
    table = read_table(path)
    named = dict(instances_from_table(table, base_config={"drift": 0.0, "noise": 1.0}))
    assert named == {"calm": {"drift": 0.1, "noise": 1.0}, "wild": {"drift": 0.2, "noise": 3.0}}
