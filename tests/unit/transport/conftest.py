from tests.functional.conftest import api  # noqa: F401  (same Api-on-SQLite fixture)
