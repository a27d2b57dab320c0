"""Alembic migrations for every component, hand-written and portable (SQLite and PostgreSQL).

Run them with :func:`common.db.migrate`, or from a shell without any ``alembic.ini``::

    python -m common.migrations upgrade heads
    python -m common.migrations heads
    # a component's first revision starts its own branch off the foundation:
    python -m common.migrations revision -m "gateway users" --rev-id 0002_gateway_users \\
        --head 0001_foundation --splice --branch-label gateway
    # its next ones follow that branch:
    python -m common.migrations revision -m "…" --rev-id 0005_gateway_… --head gateway@head

(``--splice`` only because other branches may already grow from ``0001_foundation``.)

How to write one (see ``versions/0001_foundation.py``):

- One revision per component feature; the component's tables only, named
  ``<component>_…``. ``op.create_table`` by hand (no autogenerate); types from
  ``sqlalchemy`` that both backends have (``sa.Text``, ``sa.BigInteger``,
  ``sa.DateTime(timezone=True)``, ``sa.Boolean``, ``sa.JSON``), no dialect imports.
- Name every constraint with ``op.f(...)`` following ``common.db.NAMING_CONVENTION``
  (``pk_<table>``, ``ix_<table>_<column>``, ``uq_<table>_<column>``,
  ``fk_<table>_<column>_<referred table>``): SQLite's batch mode needs the names to
  alter or drop them later.
- Revision ids are at most 32 characters (``alembic_version.version_num``); use
  ``NNNN_<component>_<what>``. A component's first revision revises
  ``0001_foundation`` and may carry ``branch_labels = ("<component>",)``; several
  heads are fine, :func:`common.db.migrate` upgrades ``heads``.
- ``downgrade()`` must undo ``upgrade()``: the test suite runs base → heads → base → heads
  on both backends.
"""
