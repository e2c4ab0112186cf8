"""Bulk loading a new pgvector version: LlamaIndex's ``PGVectorStore`` whose ``add`` is
one binary ``COPY`` per batch.

``PGVectorStore.add`` makes one ORM object per node; SQLAlchemy's unit of work then
compiles an INSERT and pgvector renders each vector as text, 512 floats through
``str`` (profiled on 10,000 rows: 0.75 ms a row in pgvector's ``_to_db``, 0.4 ms in
the ORM and compiler). ``COPY ... FROM STDIN (FORMAT BINARY)`` with pgvector's own
psycopg dumper — pgvector-python's documented bulk-loading path — sends the float32s
as they are, and PostgreSQL parses nothing.

The rows are exactly those ``add`` would write (the table LlamaIndex creates, its
columns, ``metadata_`` from the same ``node_to_metadata_dict``, ``id`` from the table's
sequence), so the version is read by a plain ``PGVectorStore`` unchanged. Only
:func:`rag_core.stores.new_vector_store` makes this class: a version being built,
which no reader sees before the ``CURRENT`` switch, so a batch is its own transaction
and a failed load is dropped whole by ``publish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.postgres import PGVectorStore
from pgvector.psycopg import register_vector

COLUMNS = ("node_id", "text", "metadata_", "embedding")


class BulkPGVectorStore(PGVectorStore):
    """``PGVectorStore`` that writes each ``add`` batch with one binary COPY (its engine
    must use the psycopg 3 driver: ``postgresql+psycopg://``)."""

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        if self.use_halfvec:  # the dumper below writes `vector`; halfvec is never configured
            raise ValueError("bulk loading writes `vector` columns, not halfvec")
        self._initialize()  # LlamaIndex creates the schema and table, as for its own add
        table = self._table_class.__table__
        types = ["varchar", "text", "jsonb" if self.use_jsonb else "json", "vector"]
        with self.client.begin() as connection:  # the store's engine, once initialized
            raw: psycopg.Connection[Any] = connection.connection.driver_connection
            register_vector(raw)  # the `vector` type's binary dumper, for numpy arrays
            copy_sql = (f'COPY "{table.schema}"."{table.name}" ({", ".join(COLUMNS)}) '
                        "FROM STDIN (FORMAT BINARY)")
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.set_types(types)
                for node in nodes:
                    copy.write_row((
                        node.node_id,
                        node.get_content(metadata_mode=MetadataMode.NONE),
                        node_to_metadata_dict(node, remove_text=True,
                                              flat_metadata=self.flat_metadata),
                        np.asarray(node.get_embedding(), dtype=np.float32),
                    ))
        return [node.node_id for node in nodes]
