"""What the three domain services share: the app factory, database engine and
unit of work, idempotency store, health, metrics, fault injection, admin auth and
the error model. Nothing here knows about a particular domain."""
