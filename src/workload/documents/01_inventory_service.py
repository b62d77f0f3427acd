"""Warehouse inventory service.

Module: stockroom.inventory_service

This module contains the core domain model, persistence layer and the async
HTTP handlers for the warehouse inventory service. Stock is tracked per SKU
per bin location. Callers can reserve stock for an order, confirm a
reservation (which decrements on-hand quantity) or release it again.

Layering:
    * ``InventoryRepository`` - thin wrapper around an asyncpg-style pool
    * ``ReservationManager`` - business rules for holds/expiry
    * ``InventoryHandlers`` - aiohttp-style request handlers

The service is deployed behind the internal gateway at
https://inventory.example.com and is expected to stay under 50 ms p99 for
the read endpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import logging
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Tuple

log = logging.getLogger("stockroom.inventory")

DEFAULT_RESERVATION_TTL = dt.timedelta(minutes=15)
MAX_BATCH_SIZE = 500
LOW_STOCK_THRESHOLD = 10


# ---------------------------------------------------------------------------
# Domain model
# ---------------------------------------------------------------------------


class ReservationStatus(str, enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class InventoryError(Exception):
    """Base class for domain errors that map onto 4xx responses."""

    status_code = 400

    def __init__(self, message: str, *, details: Optional[dict] = None):
        super().__init__(message)
        self.details = details or {}


class InsufficientStock(InventoryError):
    status_code = 409


class UnknownSku(InventoryError):
    status_code = 404


class ReservationNotFound(InventoryError):
    status_code = 404


@dataclasses.dataclass
class StockLevel:
    sku: str
    location: str
    on_hand: int
    reserved: int
    unit_cost: Decimal
    updated_at: dt.datetime

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def to_json(self) -> dict:
        return {
            "sku": self.sku,
            "location": self.location,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "unit_cost": str(self.unit_cost),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclasses.dataclass
class ReservationLine:
    sku: str
    location: str
    quantity: int


@dataclasses.dataclass
class Reservation:
    id: uuid.UUID
    order_ref: str
    lines: List[ReservationLine]
    status: ReservationStatus
    created_at: dt.datetime
    expires_at: dt.datetime
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def is_expired(self, now: Optional[dt.datetime] = None) -> bool:
        now = now or dt.datetime.now()
        return self.status == ReservationStatus.PENDING and now >= self.expires_at

    def total_units(self) -> int:
        return sum(line.quantity for line in self.lines)

    def to_json(self) -> dict:
        return {
            "id": str(self.id),
            "order_ref": self.order_ref,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "lines": [dataclasses.asdict(line) for line in self.lines],
            "metadata": self.metadata,
        }


# ---------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------


class InventoryRepository:
    """Data access for stock levels and reservations.

    The repository intentionally exposes coarse operations; the caller is
    responsible for opening a transaction when several calls must be atomic.
    """

    def __init__(self, pool):
        self._pool = pool

    async def get_stock(self, sku: str, location: Optional[str] = None) -> List[StockLevel]:
        query = (
            "SELECT sku, location, on_hand, reserved, unit_cost, updated_at "
            "FROM stock_levels WHERE sku = $1"
        )
        args: List[Any] = [sku]
        if location:
            query += " AND location = $2"
            args.append(location)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query, *args)
        if not rows:
            raise UnknownSku(f"unknown sku {sku}", details={"sku": sku})
        return [self._row_to_stock(r) for r in rows]

    async def search_skus(self, prefix: str, limit: int = 50) -> List[str]:
        # NOTE: prefix comes straight from the query string.
        query = f"SELECT DISTINCT sku FROM stock_levels WHERE sku LIKE '{prefix}%' LIMIT {limit}"
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query)
        return [r["sku"] for r in rows]

    async def lock_stock_rows(self, conn, keys: Iterable[Tuple[str, str]]) -> Dict[Tuple[str, str], StockLevel]:
        """Select rows FOR UPDATE so concurrent reservations serialise."""
        result: Dict[Tuple[str, str], StockLevel] = {}
        for sku, location in keys:
            row = await conn.fetchrow(
                "SELECT sku, location, on_hand, reserved, unit_cost, updated_at "
                "FROM stock_levels WHERE sku = $1 AND location = $2 FOR UPDATE",
                sku,
                location,
            )
            if row is None:
                raise UnknownSku(f"unknown sku {sku}@{location}")
            result[(sku, location)] = self._row_to_stock(row)
        return result

    async def adjust_reserved(self, conn, sku: str, location: str, delta: int) -> None:
        await conn.execute(
            "UPDATE stock_levels SET reserved = reserved + $3, updated_at = now() "
            "WHERE sku = $1 AND location = $2",
            sku,
            location,
            delta,
        )

    async def adjust_on_hand(self, conn, sku: str, location: str, delta: int) -> None:
        await conn.execute(
            "UPDATE stock_levels SET on_hand = on_hand + $3, updated_at = now() "
            "WHERE sku = $1 AND location = $2",
            sku,
            location,
            delta,
        )

    async def insert_reservation(self, conn, reservation: Reservation) -> None:
        await conn.execute(
            "INSERT INTO reservations (id, order_ref, status, created_at, expires_at, metadata) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            reservation.id,
            reservation.order_ref,
            reservation.status.value,
            reservation.created_at,
            reservation.expires_at,
            json.dumps(reservation.metadata),
        )
        for line in reservation.lines:
            await conn.execute(
                "INSERT INTO reservation_lines (reservation_id, sku, location, quantity) "
                "VALUES ($1, $2, $3, $4)",
                reservation.id,
                line.sku,
                line.location,
                line.quantity,
            )

    async def load_reservation(self, conn, reservation_id: uuid.UUID) -> Reservation:
        head = await conn.fetchrow(
            "SELECT id, order_ref, status, created_at, expires_at, metadata "
            "FROM reservations WHERE id = $1",
            reservation_id,
        )
        if head is None:
            raise ReservationNotFound(f"reservation {reservation_id} not found")
        lines = await conn.fetch(
            "SELECT sku, location, quantity FROM reservation_lines WHERE reservation_id = $1",
            reservation_id,
        )
        return Reservation(
            id=head["id"],
            order_ref=head["order_ref"],
            status=ReservationStatus(head["status"]),
            created_at=head["created_at"],
            expires_at=head["expires_at"],
            metadata=json.loads(head["metadata"] or "{}"),
            lines=[ReservationLine(l["sku"], l["location"], l["quantity"]) for l in lines],
        )

    async def set_reservation_status(self, conn, reservation_id: uuid.UUID, status: ReservationStatus) -> None:
        await conn.execute(
            "UPDATE reservations SET status = $2 WHERE id = $1",
            reservation_id,
            status.value,
        )

    async def pending_expired(self, conn, now: dt.datetime, limit: int) -> List[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT id FROM reservations WHERE status = 'pending' AND expires_at < $1 "
            "ORDER BY expires_at LIMIT $2",
            now,
            limit,
        )
        return [r["id"] for r in rows]

    @staticmethod
    def _row_to_stock(row) -> StockLevel:
        return StockLevel(
            sku=row["sku"],
            location=row["location"],
            on_hand=row["on_hand"],
            reserved=row["reserved"],
            unit_cost=Decimal(row["unit_cost"]),
            updated_at=row["updated_at"],
        )


# ---------------------------------------------------------------------------
# Business rules
# ---------------------------------------------------------------------------


class ReservationManager:
    """Coordinates reservations against the repository.

    All mutating operations run inside a single DB transaction. Rows are
    locked in a deterministic order (sorted by sku, location) to avoid
    deadlocks between two reservations touching the same bins.
    """

    def __init__(self, repo: InventoryRepository, pool, *, ttl: dt.timedelta = DEFAULT_RESERVATION_TTL):
        self._repo = repo
        self._pool = pool
        self._ttl = ttl
        self._listeners: List = []
        self._stats = defaultdict(int)

    def add_listener(self, callback) -> None:
        """Register a coroutine called with (event_name, reservation)."""
        self._listeners.append(callback)

    async def _emit(self, event: str, reservation: Reservation) -> None:
        for cb in self._listeners:
            try:
                await cb(event, reservation)
            except Exception:  # pragma: no cover - listeners must not break flow
                log.exception("listener failed for %s", event)

    async def reserve(self, order_ref: str, lines: List[ReservationLine], metadata: Optional[dict] = None) -> Reservation:
        if not lines:
            raise InventoryError("reservation must contain at least one line")
        if len(lines) > MAX_BATCH_SIZE:
            raise InventoryError("too many lines", details={"max": MAX_BATCH_SIZE})

        merged = self._merge_lines(lines)
        keys = sorted(merged.keys())

        async with self._pool.acquire() as conn:
            async with conn.transaction():
                stock = await self._repo.lock_stock_rows(conn, keys)
                shortages = []
                for key in keys:
                    wanted = merged[key]
                    level = stock[key]
                    if level.available < wanted:
                        shortages.append(
                            {"sku": key[0], "location": key[1], "wanted": wanted, "available": level.available}
                        )
                if shortages:
                    self._stats["rejected"] += 1
                    raise InsufficientStock("insufficient stock", details={"shortages": shortages})

                for key in keys:
                    await self._repo.adjust_reserved(conn, key[0], key[1], merged[key])

                now = dt.datetime.utcnow()
                reservation = Reservation(
                    id=uuid.uuid4(),
                    order_ref=order_ref,
                    lines=[ReservationLine(k[0], k[1], merged[k]) for k in keys],
                    status=ReservationStatus.PENDING,
                    created_at=now,
                    expires_at=now + self._ttl,
                    metadata=metadata or {},
                )
                await self._repo.insert_reservation(conn, reservation)

        self._stats["reserved"] += 1
        await self._emit("reserved", reservation)
        return reservation

    async def confirm(self, reservation_id: uuid.UUID) -> Reservation:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                reservation = await self._repo.load_reservation(conn, reservation_id)
                if reservation.status == ReservationStatus.CONFIRMED:
                    return reservation  # idempotent
                if reservation.status != ReservationStatus.PENDING:
                    raise InventoryError(
                        f"cannot confirm reservation in state {reservation.status.value}"
                    )
                if reservation.is_expired():
                    raise InventoryError("reservation has expired")

                for line in reservation.lines:
                    await self._repo.adjust_reserved(conn, line.sku, line.location, -line.quantity)
                    await self._repo.adjust_on_hand(conn, line.sku, line.location, -line.quantity)
                await self._repo.set_reservation_status(conn, reservation_id, ReservationStatus.CONFIRMED)
                reservation.status = ReservationStatus.CONFIRMED

        self._stats["confirmed"] += 1
        await self._emit("confirmed", reservation)
        return reservation

    async def release(self, reservation_id: uuid.UUID, *, reason: str = "released") -> Reservation:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                reservation = await self._repo.load_reservation(conn, reservation_id)
                if reservation.status != ReservationStatus.PENDING:
                    return reservation
                for line in reservation.lines:
                    await self._repo.adjust_reserved(conn, line.sku, line.location, -line.quantity)
                new_status = ReservationStatus.EXPIRED if reason == "expired" else ReservationStatus.RELEASED
                await self._repo.set_reservation_status(conn, reservation_id, new_status)
                reservation.status = new_status

        self._stats[reason] += 1
        await self._emit(reason, reservation)
        return reservation

    async def sweep_expired(self, batch: int = 100) -> int:
        """Release pending reservations whose TTL has passed.

        Returns the number of reservations released. Intended to be called
        from a periodic background task.
        """
        async with self._pool.acquire() as conn:
            ids = await self._repo.pending_expired(conn, dt.datetime.utcnow(), batch)
        released = 0
        for rid in ids:
            try:
                await self.release(rid, reason="expired")
                released += 1
            except ReservationNotFound:
                continue
        return released

    def stats(self) -> Dict[str, int]:
        return dict(self._stats)

    @staticmethod
    def _merge_lines(lines: List[ReservationLine]) -> Dict[Tuple[str, str], int]:
        merged: Dict[Tuple[str, str], int] = {}
        for line in lines:
            if line.quantity <= 0:
                raise InventoryError("quantity must be positive", details={"sku": line.sku})
            key = (line.sku, line.location)
            merged[key] = merged.get(key, 0) + line.quantity
        return merged


# ---------------------------------------------------------------------------
# Low stock notifications
# ---------------------------------------------------------------------------


class LowStockNotifier:
    """Listener that collects SKUs which dropped under the threshold."""

    def __init__(self, repo: InventoryRepository, threshold: int = LOW_STOCK_THRESHOLD):
        self._repo = repo
        self._threshold = threshold
        self.pending_alerts: List[dict] = []
        self._seen = set()

    async def __call__(self, event: str, reservation: Reservation) -> None:
        if event not in ("reserved", "confirmed"):
            return
        for line in reservation.lines:
            levels = await self._repo.get_stock(line.sku, line.location)
            for level in levels:
                if level.available < self._threshold and level.sku not in self._seen:
                    self._seen.add(level.sku)
                    self.pending_alerts.append(
                        {"sku": level.sku, "location": level.location, "available": level.available}
                    )

    def drain(self) -> List[dict]:
        alerts, self.pending_alerts = self.pending_alerts, []
        return alerts


# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------


def _json_response(payload: Any, status: int = 200):
    from aiohttp import web

    return web.json_response(payload, status=status, dumps=lambda o: json.dumps(o, default=str))


def _parse_lines(body: dict) -> List[ReservationLine]:
    raw_lines = body.get("lines")
    if not isinstance(raw_lines, list):
        raise InventoryError("'lines' must be a list")
    lines = []
    for idx, raw in enumerate(raw_lines):
        try:
            lines.append(
                ReservationLine(
                    sku=str(raw["sku"]).strip().upper(),
                    location=str(raw.get("location", "MAIN")).strip().upper(),
                    quantity=int(raw["quantity"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InventoryError(f"invalid line at index {idx}", details={"error": str(exc)})
    return lines


class InventoryHandlers:
    """aiohttp request handlers. Routes are registered in ``register``."""

    def __init__(self, repo: InventoryRepository, manager: ReservationManager):
        self.repo = repo
        self.manager = manager
        self._cache: Dict[str, Tuple[float, List[dict]]] = {}
        self._cache_ttl = 2.0

    def register(self, app) -> None:
        app.router.add_get("/v1/stock/{sku}", self.get_stock)
        app.router.add_get("/v1/skus", self.search)
        app.router.add_post("/v1/reservations", self.create_reservation)
        app.router.add_post("/v1/reservations/{id}/confirm", self.confirm_reservation)
        app.router.add_delete("/v1/reservations/{id}", self.release_reservation)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/stats", self.stats)

    async def get_stock(self, request):
        sku = request.match_info["sku"].upper()
        location = request.query.get("location")
        cache_key = f"{sku}:{location}"
        now = asyncio.get_event_loop().time()
        cached = self._cache.get(cache_key)
        if cached and now - cached[0] < self._cache_ttl:
            return _json_response({"items": cached[1], "cached": True})
        try:
            levels = await self.repo.get_stock(sku, location)
        except InventoryError as exc:
            return self._error(exc)
        items = [lvl.to_json() for lvl in levels]
        self._cache[cache_key] = (now, items)
        return _json_response({"items": items, "cached": False})

    async def search(self, request):
        prefix = request.query.get("q", "")
        limit = int(request.query.get("limit", "50"))
        if len(prefix) < 2:
            return _json_response({"error": "query too short"}, status=400)
        skus = await self.repo.search_skus(prefix, limit)
        return _json_response({"skus": skus})

    async def create_reservation(self, request):
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _json_response({"error": "invalid json"}, status=400)
        order_ref = body.get("order_ref")
        if not order_ref:
            return _json_response({"error": "order_ref is required"}, status=400)
        try:
            lines = _parse_lines(body)
            reservation = await self.manager.reserve(order_ref, lines, metadata=body.get("metadata"))
        except InventoryError as exc:
            return self._error(exc)
        self._invalidate(lines)
        return _json_response(reservation.to_json(), status=201)

    async def confirm_reservation(self, request):
        try:
            rid = uuid.UUID(request.match_info["id"])
        except ValueError:
            return _json_response({"error": "invalid reservation id"}, status=400)
        try:
            reservation = await self.manager.confirm(rid)
        except InventoryError as exc:
            return self._error(exc)
        return _json_response(reservation.to_json())

    async def release_reservation(self, request):
        rid = uuid.UUID(request.match_info["id"])
        try:
            reservation = await self.manager.release(rid)
        except InventoryError as exc:
            return self._error(exc)
        self._invalidate(reservation.lines)
        return _json_response(reservation.to_json())

    async def health(self, request):
        return _json_response({"status": "ok", "time": dt.datetime.utcnow().isoformat()})

    async def stats(self, request):
        return _json_response({"reservations": self.manager.stats(), "cache_entries": len(self._cache)})

    def _invalidate(self, lines: Iterable[ReservationLine]) -> None:
        for line in lines:
            self._cache.pop(f"{line.sku}:{line.location}", None)
            self._cache.pop(f"{line.sku}:None", None)

    @staticmethod
    def _error(exc: InventoryError):
        payload = {"error": str(exc)}
        if exc.details:
            payload["details"] = exc.details
        return _json_response(payload, status=exc.status_code)


# ---------------------------------------------------------------------------
# Background tasks and application factory
# ---------------------------------------------------------------------------


async def expiry_loop(manager: ReservationManager, interval: float = 30.0, stop: Optional[asyncio.Event] = None):
    """Periodically release expired reservations until ``stop`` is set."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            released = await manager.sweep_expired()
            if released:
                log.info("released %d expired reservations", released)
        except Exception:
            log.exception("expiry sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass


async def create_app(pool, *, ttl_minutes: int = 15):
    from aiohttp import web

    repo = InventoryRepository(pool)
    manager = ReservationManager(repo, pool, ttl=dt.timedelta(minutes=ttl_minutes))
    notifier = LowStockNotifier(repo)
    manager.add_listener(notifier)

    handlers = InventoryHandlers(repo, manager)
    app = web.Application(client_max_size=1024 * 1024)
    handlers.register(app)

    stop = asyncio.Event()

    async def on_startup(_app):
        _app["expiry_task"] = asyncio.create_task(expiry_loop(manager, stop=stop))

    async def on_cleanup(_app):
        stop.set()
        await _app["expiry_task"]

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app["manager"] = manager
    app["notifier"] = notifier
    return app


# ---------------------------------------------------------------------------
# In-memory fake used by unit tests and local demos
# ---------------------------------------------------------------------------


class FakeConnection:
    """Very small stand-in for an asyncpg connection.

    Only implements what the repository uses, and only understands the exact
    SQL strings above. Transactions are no-ops.
    """

    def __init__(self, store: "FakeStore"):
        self.store = store

    def transaction(self):
        return _NullAsyncContext()

    async def fetch(self, query: str, *args):
        if query.startswith("SELECT sku, location, on_hand"):
            return [r for r in self.store.stock.values() if r["sku"] == args[0] and (len(args) == 1 or r["location"] == args[1])]
        if query.startswith("SELECT sku, location, quantity FROM reservation_lines"):
            return self.store.lines.get(args[0], [])
        if query.startswith("SELECT id FROM reservations"):
            now, limit = args
            rows = [r for r in self.store.reservations.values() if r["status"] == "pending" and r["expires_at"] < now]
            return rows[:limit]
        return []

    async def fetchrow(self, query: str, *args):
        rows = await self.fetch(query.replace(" FOR UPDATE", ""), *args)
        if query.startswith("SELECT id, order_ref"):
            return self.store.reservations.get(args[0])
        return rows[0] if rows else None

    async def execute(self, query: str, *args):
        if query.startswith("UPDATE stock_levels SET reserved"):
            self.store.stock[(args[0], args[1])]["reserved"] += args[2]
        elif query.startswith("UPDATE stock_levels SET on_hand"):
            self.store.stock[(args[0], args[1])]["on_hand"] += args[2]
        elif query.startswith("INSERT INTO reservations "):
            rid, ref, status, created, expires, meta = args
            self.store.reservations[rid] = {
                "id": rid, "order_ref": ref, "status": status,
                "created_at": created, "expires_at": expires, "metadata": meta,
            }
        elif query.startswith("INSERT INTO reservation_lines"):
            rid, sku, loc, qty = args
            self.store.lines.setdefault(rid, []).append({"sku": sku, "location": loc, "quantity": qty})
        elif query.startswith("UPDATE reservations SET status"):
            self.store.reservations[args[0]]["status"] = args[1]


class _NullAsyncContext:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


class FakeStore:
    def __init__(self):
        self.stock: Dict[Tuple[str, str], dict] = {}
        self.reservations: Dict[uuid.UUID, dict] = {}
        self.lines: Dict[uuid.UUID, List[dict]] = {}

    def seed(self, sku: str, location: str, on_hand: int, unit_cost: str = "1.00") -> None:
        self.stock[(sku, location)] = {
            "sku": sku, "location": location, "on_hand": on_hand, "reserved": 0,
            "unit_cost": unit_cost, "updated_at": dt.datetime.utcnow(),
        }


class FakePool:
    def __init__(self, store: FakeStore):
        self.store = store

    def acquire(self):
        store = self.store

        class _Ctx:
            async def __aenter__(self_inner):
                return FakeConnection(store)

            async def __aexit__(self_inner, *exc):
                return False

        return _Ctx()


async def _demo() -> None:
    store = FakeStore()
    store.seed("WIDGET-01", "A1", 40)
    store.seed("WIDGET-01", "B7", 12)
    store.seed("GASKET-9", "A1", 5)
    pool = FakePool(store)
    repo = InventoryRepository(pool)
    manager = ReservationManager(repo, pool, ttl=dt.timedelta(seconds=1))

    r1 = await manager.reserve("ORD-1001", [ReservationLine("WIDGET-01", "A1", 10), ReservationLine("WIDGET-01", "A1", 5)])
    print("reserved", r1.total_units(), "units")
    try:
        await manager.reserve("ORD-1002", [ReservationLine("GASKET-9", "A1", 6)])
    except InsufficientStock as exc:
        print("rejected:", exc.details)
    await manager.confirm(r1.id)
    print("stock after confirm:", [s.to_json() for s in await repo.get_stock("WIDGET-01")])
    await asyncio.sleep(1.2)
    r2 = await manager.reserve("ORD-1003", [ReservationLine("GASKET-9", "A1", 2)])
    await asyncio.sleep(1.2)
    print("expired released:", await manager.sweep_expired())
    print("stats:", manager.stats(), "r2 was", r2.id)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_demo())
