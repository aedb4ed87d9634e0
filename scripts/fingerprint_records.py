"""One-off (issue #24, item 3): give the book's run records written before
records carried a fingerprint the one their stored settings and commit
imply (``cnnbook.records.fingerprint_from_commit``), their other fields
untouched. A back-filled fingerprint is derived again (a record whose
commit was read when it was written, before commit c134082, gets code
null); one that ``fit`` wrote is left alone, and running it again changes
nothing.

    .venv/bin/python scripts/fingerprint_records.py [RESULTS_FOLDER]
"""

import sys

from cnnbook import records


def main(argv):
    root = argv[0] if argv else None
    for path in records.add_fingerprints(root):
        found = records.load(path)["fingerprint"]
        code = found["code"] or "unknown"
        print(f"{path}: settings {found['settings']}, code {code}")


if __name__ == "__main__":
    main(sys.argv[1:])
