"""Check modules, one per chapter: cnnbook/checks/chNN.py."""
