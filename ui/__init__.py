"""The app's presentation: what a person reads and sees, built as plain strings and HTML.

``app.py`` builds the Gradio Blocks and connects events; everything it shows is made here:
the verdict card and the API's verdict text (``verdict``), the evidence panel, the header and
model card (``model``), the batch table and thumbnails (``batch``), output files (``files``),
the page's texts and CSS (``page``) and the few component tweaks (``components``). Most of it is
plain functions of a ``detector.Report`` and tested without a server (tests/test_ui.py).

A checkout-level package beside ``app.py`` (the Space runs from a checkout that was never
installed); the library ``detector/`` never imports it.
"""
