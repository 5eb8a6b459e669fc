from tests.functional.conftest import api  # noqa: F401  (the Api-on-SQLite fixture)
