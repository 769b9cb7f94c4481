"""The API description: ``GET /openapi.json`` (OpenAPI 3.1), ``GET /docs`` and ``docs/api.md``,
built from the routes' declarations (``api/described.py``) and the msgspec definitions the
service decodes and encodes with."""
