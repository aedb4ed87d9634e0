"""Sentences of chapter 8's page that compare stored measurements: each
is checked against the stored run it describes, so that a re-run that
contradicts it fails here and names the sentence to rewrite."""

import re

from conftest import page_text, stored_output

PAGE = "ch08-mobilenet.md"


def _verdicts():
    """The cost lab's printed verdicts: (pair, step) -> the sentence."""
    text = stored_output("ch08-separable-cost.ipynb")
    found = {}
    for match in re.finditer(
        r"(Forward pass|Training step), ([a-z ]+?) against ([a-z ]+?): "
        r"(.*?)(?:\n\n|\Z)",
        text,
        re.S,
    ):
        step, candidate = match.group(1), match.group(2)
        found[(candidate, step)] = match.group(4)
    return found


def _followed(sentence):
    match = re.search(r"at (\d+) of (\d+) settings", sentence)
    return int(match.group(1)), int(match.group(2))


def test_the_separable_forward_pass_followed_the_count_once():
    page = " ".join(page_text(PAGE).split())
    assert "at only one of the twelve settings" in page
    sentence = _verdicts()[("separable convolution", "Forward pass")]
    assert _followed(sentence) == (1, 12)
    low, high = re.search(
        r"it was ([\d.]+) to ([\d.]+) times the MAC ratio", sentence
    ).groups()
    assert "between 1.7 and 11 times" in page
    assert (float(low), round(float(high))) == (1.7, 11)
    nearer = int(re.search(r"and (\d+) of them lay nearer", sentence)[1])
    assert nearer > (12 - 1) / 2, "'at most of those' no longer holds"


def test_the_inverted_block_trained_slower_except_at_the_smallest_map():
    page = " ".join(page_text(PAGE).split())
    assert "at nine of the twelve settings, all but the smallest map" in page
    sentence = _verdicts()[("inverted residual block", "Training step")]
    slower = re.search(
        r"took longer than the basic block at (\d+) settings \((.*?)\)",
        sentence,
    )
    assert int(slower[1]) == 9
    assert "7×7" not in slower[2]
