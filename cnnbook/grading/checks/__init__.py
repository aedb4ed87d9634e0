"""Checks, one per chapter: cnnbook/grading/checks/chNN.py, or a package
chNN/ (a module per group of exercises) whose __init__ imports them all."""
