"""Measurement, kept apart from the product: every benchmark and evaluation command's logic lives here.

Each module prints or returns JSON-ready dicts (and Markdown tables where a
table is the result); the ``affective-memory`` CLI only parses arguments and
calls them. Nothing in the product imports from here.
"""
