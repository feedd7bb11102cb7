"""The managers' web page, served by the API's FastAPI app under ``/web``.

Server-rendered Jinja2 templates and one stylesheet, all served from this package (no CDN, no
front-end build). The page is a thin layer: it reads recommendations through the store
(:mod:`service.storage`), re-decides what-ifs through the decision kernel
(:mod:`service.api.whatif`), and writes decisions and verdicts through the same store calls and
authorisation rules as the API (:mod:`service.api.authority`). Sign-in takes an API key; the
session carries that key's role, scope and approval authority.
"""

from service.web.app import install

__all__ = ["install"]
