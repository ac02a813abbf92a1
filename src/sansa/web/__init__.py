"""The ``sansa serve`` web app: label a folder in the browser (needs the ``web`` extra).

``create_app(predictor, folder)`` builds the FastAPI app; :mod:`sansa.web.service` holds the
model and the per-session references; the page is static files in ``static/``.
"""
