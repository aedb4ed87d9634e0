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
    assert (
        "Its forward pass followed that ratio at eight of the twelve" in page
    )
    forward = _verdicts()[("inverted residual block", "Forward pass")]
    assert _followed(forward) == (8, 12)
    assert "at nine of the twelve, all but the smallest map" in page
    sentence = _verdicts()[("inverted residual block", "Training step")]
    slower = re.search(
        r"took longer than the basic block at (\d+) settings \((.*?)\)",
        sentence,
    )
    assert int(slower[1]) == 9
    assert "7×7" not in slower[2]


def _transfer(arm, n):
    from cnnbook import records

    return [
        r["test_accuracy"]
        for r in records.newest_group(
            records.load_all(
                lab="ch08-transfer",
                model=f"transfer_{arm}_n{n}",
                profile="cpu",
                device_kind="cpu",
            )
        )
    ]


def test_the_transfer_sentences_hold_for_the_stored_cpu_runs():
    page = " ".join(page_text(PAGE).split())
    assert "but on the test images it stayed at chance" in page
    scratch = _transfer("scratch", 10)
    # chance on 1,000 test images a class: 20%; "almost every image"
    assert len(scratch) == 3 and all(0.2 <= a < 0.201 for a in scratch)
    assert (
        "the lowest fine-tuned seed lies above the highest frozen one" in page
    )
    for n in (10, 100):
        assert min(_transfer("finetuned", n)) > max(_transfer("frozen", n))
        assert min(_transfer("frozen", n)) > max(_transfer("scratch", n))
    assert "classify about half the test images correctly" in page
    for n in (10, 100):
        assert 0.45 <= sum(_transfer("frozen", n)) / 3 <= 0.55
    assert "Ten times more labels changed little" in page
    for arm in ("frozen", "finetuned"):
        gap = sum(_transfer(arm, 100)) / 3 - sum(_transfer(arm, 10)) / 3
        assert abs(gap) < 0.05, arm
    assert "does best of the three" in page
    assert "a difference smaller than the spread of the seeds" in page
    kept, trainable = _transfer("finetuned", 10), _transfer("bn_training", 10)
    gap = abs(sum(kept) / 3 - sum(trainable) / 3)
    assert gap < min(max(kept) - min(kept), max(trainable) - min(trainable))
