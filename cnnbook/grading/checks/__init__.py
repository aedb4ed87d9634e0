"""Check modules, one per chapter: cnnbook/grading/checks/chNN.py."""
