"""Idempotent POSTs, shared by every service.

A client (an activity, retried by Temporal) sends the same `Idempotency-Key`
with every attempt of one request. The first attempt's answer is stored with a
fingerprint of the request, in the same transaction as its effect; a repeat gets
that answer again and changes nothing, and a different request under a used key
is refused. Business refusals are answers too and are replayed (stored with
no effect: the effect's writes roll back); injected faults and unexpected
errors roll everything back, so a retry really runs again.

The key is written last, with its answer, in one statement: the effect runs
first, and if the key turns out to be taken (a repeat, or a twin that committed
while this one ran) the whole transaction rolls back and the stored answer is
replayed. The key decides, never the effect: whatever a repeat's effect did or
refused is thrown away. Retries are rare and the first attempt is the common
case, so it pays one statement for its key, not two (a claim up front and its
answer at the end): one PostgreSQL round trip less per write
(docs/performance.md, round 13). So an effect must be safe to run again and
roll back: no call out of the transaction, and no unique constraint that a
repeat would hit before its key (it would answer 500 where the key would have
replayed).

A request whose caller said how long it would wait (services.common.deadlines)
commits nothing once that time is up, not even its answer: the caller is gone,
and its retry runs the request again.

Keys belong to the caller that sent them: the store is keyed by (caller, key),
so no caller can claim a key ahead of another (say `ord_X:release_inventory`,
to turn the saga's compensation into a replay of its own answer) nor read the
answer stored under another's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    select,
)
from sqlalchemy.engine import Dialect

from contracts import errors
from ordersaga.runtime.http_guard import parsed_body
from services.common import deadlines
from services.common.auth import Caller
from services.common.db import NAMING_CONVENTION, PerDialect, SqlUnitOfWork
from services.common.domain import DomainError
from services.common.driver_sql import DriverConnection
from services.common.errors import ServiceError, domain_error_reply

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
VALID_KEY_PATTERN = r"^[\x21-\x7E]{1,255}$"
_VALID_KEY = re.compile(VALID_KEY_PATTERN)
# The codes any idempotent POST may answer with besides its own (for OpenAPI).
IDEMPOTENT_ERRORS = (
    errors.REQUEST_REJECTED,
    errors.IDEMPOTENCY_KEY_REUSED,
    errors.INJECTED_FAULT,
    errors.DEADLINE_EXCEEDED,
)

# Each service copies this table into its own metadata (Table.to_metadata);
# the statements below address it by name, which is the same in every database.
IDEMPOTENCY_KEYS = Table(
    "idempotency_keys",
    MetaData(naming_convention=NAMING_CONVENTION),
    Column("caller", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_fingerprint", String(64), nullable=False),
    # Written with the key, in one statement. Nullable because keys were once
    # claimed first and answered later, in the same transaction: no committed
    # row was ever left empty, and none is written empty now.
    Column("status_code", Integer, nullable=True),
    Column("response_body", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class JsonText(TypeDecorator[str]):
    """A JSON column written from text that is JSON already: the answer is
    rendered once, for the response and the store, where the JSON type would
    serialize it once more. Read back, it is JSON's value."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        # The text goes to the driver as it is: SQLite stores it as TEXT, and
        # asyncpg's json codec (set up by SQLAlchemy) encodes a str as UTF-8.
        return None


@dataclass(frozen=True)
class StoredResponse:
    request_fingerprint: str
    status_code: int | None
    body: Any


# Built once (services.common.db.PerDialect says why); `p_` names the bind
# parameters, which may not share a column's name in an INSERT.
_RECORD = PerDialect(
    lambda insert: (
        insert(IDEMPOTENCY_KEYS)
        .values(
            caller=bindparam("p_caller"),
            key=bindparam("p_key"),
            request_fingerprint=bindparam("p_fingerprint"),
            status_code=bindparam("p_status_code"),
            response_body=bindparam("p_body", type_=JsonText()),
            created_at=bindparam("p_created_at"),
        )
        .on_conflict_do_nothing(index_elements=[IDEMPOTENCY_KEYS.c.caller, IDEMPOTENCY_KEYS.c.key])
    )
)
_GET = select(
    IDEMPOTENCY_KEYS.c.request_fingerprint,
    IDEMPOTENCY_KEYS.c.status_code,
    IDEMPOTENCY_KEYS.c.response_body,
).where(
    IDEMPOTENCY_KEYS.c.caller == bindparam("p_caller"),
    IDEMPOTENCY_KEYS.c.key == bindparam("p_key"),
)


class IdempotencyStore:
    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection

    async def record(
        self, caller: str, key: str, request_fingerprint: str, status_code: int, body: bytes
    ) -> bool:
        """Store the key with its answer (`body`, rendered JSON); False when the
        key is taken already.

        On PostgreSQL the insert waits while a concurrent twin holds the key
        uncommitted, then does nothing if the twin committed: the twin's answer
        is visible to the next statement (READ COMMITTED). On SQLite writers are
        serialised already (BEGIN IMMEDIATE), so there is no such twin.
        """
        result = await self._connection.execute(
            _RECORD.on(self._connection),
            {
                "p_caller": caller,
                "p_key": key,
                "p_fingerprint": request_fingerprint,
                "p_status_code": status_code,
                "p_body": body.decode("utf-8"),
                "p_created_at": datetime.now(UTC),
            },
        )
        return result.rowcount == 1

    async def get(self, caller: str, key: str) -> StoredResponse | None:
        row = (
            await self._connection.execute(_GET, {"p_caller": caller, "p_key": key})
        ).one_or_none()
        if row is None:
            return None
        return StoredResponse(row.request_fingerprint, row.status_code, row.response_body)


def request_fingerprint(
    method: str, path: str, body: bytes, *, parse: Callable[[bytes], Any] = json.loads
) -> str:
    """sha256 of the method, path and canonical JSON body (`parse` reads it:
    `json.loads`, or what returns the same value more cheaply).

    Canonical: key order and whitespace do not make a different request, and
    an empty body is the same request as `{}` (for the body-less actions).
    Total: any bytes get a fingerprint. The HTTP guard lets no lone surrogate
    or over-deep body through, but this does not rely on it: surrogatepass
    encodes a lone surrogate (and is byte-for-byte UTF-8 for every other text,
    so fingerprints stored before stay the same), and what does not parse is
    fingerprinted as its bytes.
    """
    try:
        canonical = json.dumps(
            parse(body) if body.strip() else {},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (ValueError, RecursionError):
        canonical = body.hex()
    request = f"{method.upper()}\n{path}\n{canonical}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(request).hexdigest()


U = TypeVar("U", bound=SqlUnitOfWork)


@dataclass(frozen=True)
class IdempotentRequest:
    caller: str
    key: str
    fingerprint: str
    # time.monotonic() when the caller stops waiting (None: it did not say).
    deadline: float | None = None

    async def run(
        self,
        uow: U,
        effect: Callable[[U], Awaitable[object]],
        *,
        present: type[BaseModel],
        status_code: int,
    ) -> Response:
        """Run `effect` and store its answer with it, or answer from the store.

        `effect` gets the unit of work in a write transaction and returns a
        domain object; `present` turns it into the response body. The key is
        written last (the module says why): when it is taken, the effect rolls
        back and the stored answer is replayed.

        A domain refusal rolls back that transaction, and with it whatever the
        effect had done so far (a reservation's first lines, say); the refusal
        is then stored under the key in a transaction of its own, which does
        nothing else. A savepoint around the effect would keep both in one
        transaction, at two more statements on every request that succeeds.
        """
        deadlines.check(self.deadline)
        async with uow.writing() as tx:
            try:
                result = await effect(tx)
            except DomainError as refusal:
                refused = refusal
            else:
                # The bytes JSONResponse would render of its model_dump(mode="json").
                body = present.model_validate(result).model_dump_json().encode("utf-8")
                return await self._answer(tx, status_code, body)
        # A repeat's refusal is thrown away here too: if the key is taken, the
        # insert below does nothing and the stored answer is replayed.
        status, reply = domain_error_reply(refused)
        async with uow.writing() as tx:
            return await self._answer(tx, status, bytes(JSONResponse(reply).body))

    async def _answer(self, tx: SqlUnitOfWork, status: int, body: bytes) -> Response:
        """Store the answer (rendered JSON) under the key and commit; or, when
        the key is taken, leave the transaction to roll back and replay what
        the key holds."""
        store = IdempotencyStore(tx.connection)
        if not await store.record(self.caller, self.key, self.fingerprint, status, body):
            return self._replay(await store.get(self.caller, self.key))
        # Last thing before the commit: waiting for a lock or the write
        # lock counts too. Raising here rolls back the effect and the key.
        deadlines.check(self.deadline)
        await tx.commit()
        return Response(body, status_code=status, media_type=JSONResponse.media_type)

    def _replay(self, stored: StoredResponse | None) -> Response:
        if stored is None or stored.status_code is None:
            # Neither happens (keys are never deleted, and are written with
            # their answer); if one did, a retry is safe and runs the request.
            raise ServiceError(
                errors.SERVICE_UNAVAILABLE, "a request with this Idempotency-Key was in flight"
            )
        if stored.request_fingerprint != self.fingerprint:
            raise ServiceError(
                errors.IDEMPOTENCY_KEY_REUSED,
                f"this {HEADER} was already used for a different request "
                "(another method, path or body); use a new key for a new request",
            )
        return JSONResponse(
            stored.body, status_code=stored.status_code, headers={REPLAYED_HEADER: "true"}
        )


# The header as a route declares it. Optional in the code so that a missing or
# malformed key gets this module's 400 and its message rather than a generic 422
# (document_idempotency_key says in OpenAPI that it is required).
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="1-255 visible ASCII characters, the same for every retry of a request",
    ),
]


async def idempotent_request(
    request: Request, caller: Caller, key: str | None
) -> IdempotentRequest:
    """The request's key, checked, and its fingerprint (the body read once more)."""
    if key is None:
        raise ServiceError(errors.REQUEST_REJECTED, f"the {HEADER} header is required")
    if not _VALID_KEY.fullmatch(key):
        raise ServiceError(
            errors.REQUEST_REJECTED,
            f"the {HEADER} header must be 1-255 visible ASCII characters",
        )
    body = await request.body()
    return IdempotentRequest(
        caller.value,
        key,
        # The HTTP guard parsed the body already (http_guard.parsed_body).
        request_fingerprint(
            request.method, request.url.path, body, parse=partial(parsed_body, request.scope)
        ),
        deadlines.deadline_of(request),
    )


def document_idempotency_key(app: FastAPI) -> None:
    """Say in the app's OpenAPI document that the key is required, and its rule.

    The parameter is optional in the code so that a missing or malformed key
    gets this module's 400 and its message rather than a generic 422.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    for parameter in operation.get("parameters", []):
                        if parameter.get("in") == "header" and parameter.get("name") == HEADER:
                            parameter["required"] = True
                            parameter["schema"] = {
                                "type": "string",
                                "pattern": VALID_KEY_PATTERN,
                                "minLength": 1,
                                "maxLength": 255,
                            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
