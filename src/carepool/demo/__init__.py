"""The demo: a generated county medical community that `carepool demo` builds and serves.

`generator.generate(seed)` writes the catalogue document (pure, deterministic);
`build.build_demo(db_url, seed)` puts it into a database with one user per role.
"""
