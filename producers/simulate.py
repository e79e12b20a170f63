"""Seeded traffic shapes for the demo, the benchmarks and the end-to-end tests.

Every function is a pure function of its arguments: the same ``seed`` and ``start`` give identical
events, byte for byte. Each item says what the worker must do with it (``expect``), so a run can be
checked for conservation: every event sent, or dead-lettered with exactly that reason::

    start = datetime.now(UTC)
    spike = holiday_spike(2000, seed=7, start=start)          # ~1% the worker must dead-letter
    await publisher.publish_many(spike)                       # SimulatedEvent carries its send_at
    expected = Counter(item.expect for item in spike)         # {"sent": 1980, "Expired": 7, ...}

The ``data`` of each type has the shape of the shipped template's ``sample.json``
(``worker/templates/<type>/sample.json``); the sender aliases are ``orders``, ``returns``, ``care``
and ``permits``. Recipients live under reserved test domains.
"""

from __future__ import annotations

import base64
import json
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

from postbus.events import PROP_ATTEMPT, PROP_SCHEMA, SCHEMA, NotificationEvent, WireMessage
from postbus.producers import catalog
from postbus.producers.catalog import City
from postbus.reasons import DeadLetterReason

__all__ = [
    "EXPECT_SENT",
    "SENDER_ALIASES",
    "SimulatedEvent",
    "appointment_reminder",
    "bookings",
    "broken_bodies",
    "checkout_spike",
    "holiday_spike",
    "label_pdf",
    "order_confirmation",
    "permit_approved",
    "permits",
    "return_label",
]

EXPECT_SENT: Final = "sent"
#: The aliases valid events use; the demo configures exactly these.
SENDER_ALIASES: Final = ("orders", "returns", "care", "permits")
#: Neither a shipped template nor a configured alias: the worker must dead-letter these.
UNKNOWN_TYPE: Final = "loyalty.points-expiring"
UNKNOWN_SENDER: Final = "marketing"

_CITY_TOWN = catalog.CITIES[1]  # the permits office's city


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One generated event, when it should become visible, and what the worker must do with it."""

    event: NotificationEvent
    send_at: datetime | None = None
    #: ``"sent"``, or the dead-letter reason the worker must produce (``"Expired"``, ...).
    expect: str = EXPECT_SENT


# --- small helpers -------------------------------------------------------------------------------


def _token(rng: random.Random, bits: int = 64) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _code(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(count))


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _person(rng: random.Random) -> tuple[str, str]:
    """A display name and a matching mailbox under a reserved domain."""
    first, last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
    local = f"{_ascii(first)}.{_ascii(last)}"
    if rng.random() < 0.3:
        local += str(rng.randint(1, 99))
    return f"{first} {last}", f"{local}@{rng.choice(catalog.MAIL_DOMAINS)}"


def _recipient(name: str, mailbox: str) -> str:
    return f"{name} <{mailbox}>"


def _address_lines(rng: random.Random, city: City) -> list[str]:
    street = rng.choice(city.streets)
    number = rng.randint(1, 220)
    first = (
        f"{number} {street}"
        if city.country in {"United Kingdom", "Ireland", "United States"}
        else (f"{street} {number}")
    )
    return [first, city.line2.format(postcode=city.postcode, city=city.name)]


def _tz(city: City) -> timezone:
    sign = -1 if city.utc_offset.startswith("-") else 1
    hours, minutes = (int(part) for part in city.utc_offset[1:].split(":"))
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _local(moment: datetime, city: City) -> str:
    return moment.astimezone(_tz(city)).replace(microsecond=0).isoformat()


def _day(moment: datetime, days: int) -> str:
    return (moment.date() + timedelta(days=days)).isoformat()


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


# --- one event of each type ----------------------------------------------------------------------


def order_confirmation(rng: random.Random, *, start: datetime) -> NotificationEvent:
    """An ``order.confirmation`` from one of the shops, shaped like its template's sample.json."""
    shop, city = rng.choice(catalog.SHOPS), rng.choice(catalog.CITIES)
    name, mailbox = _person(rng)
    number = f"{shop.prefix}-{start.year}-{_digits(rng, 6)}"
    lines = [(p, rng.choice((1, 1, 1, 2, 3))) for p in rng.sample(catalog.PRODUCTS, rng.randint(1, 4))]
    items = [{"name": p.name, "sku": p.sku, "quantity": qty, "unit_price": p.price} for p, qty in lines]
    subtotal = _money(sum(p.price * qty for p, qty in lines))
    discount = _money(subtotal * 0.1) if rng.random() < 0.25 else 0.0
    shipping = 0.0 if subtotal >= 100 else 4.95
    taxable = subtotal - discount + shipping
    if city.tax_included:
        tax = _money(taxable * city.tax_rate / (1 + city.tax_rate))
        total = _money(taxable)
    else:
        tax = _money(taxable * city.tax_rate)
        total = _money(taxable + tax)
    placed = start - timedelta(seconds=rng.randint(5, 900))
    order: dict[str, Any] = {
        "number": number,
        "placed_at": _local(placed, city),
        "currency": city.currency,
        "items": items,
        "subtotal": subtotal,
        "shipping": shipping,
        "tax": tax,
        "tax_included": city.tax_included,
        "total": total,
        "estimated_delivery": _day(start, rng.randint(2, 6)),
        "url": f"{shop.url}/account/orders/{number}",
    }
    if discount:
        order["discount"] = discount
    data = {
        "brand": {"name": shop.name, "url": shop.url},
        "customer": {"name": name},
        "order": order,
        "shipping_address": {"name": name, "lines": _address_lines(rng, city), "country": city.country},
        "support_url": f"{shop.url}/help",
    }
    return NotificationEvent.model_validate(
        {
            "id": f"order-{_token(rng)}",
            "type": "order.confirmation",
            "tenant": shop.tenant,
            "to": [_recipient(name, mailbox)],
            "sender": "orders",
            "locale": city.locale,
            "data": data,
            "not_after": start + timedelta(days=3),
        }
    )


#: Sizes of a generated return-label PDF (bytes): most are a small page, one in four carries
#: scanned customs papers and is larger than a Standard Service Bus message (256 KB).
_LABEL_SIZES: Final = ((30_000, 120_000), (30_000, 120_000), (30_000, 120_000), (260_000, 600_000))


def label_pdf(seed: str, *, size: int) -> bytes:
    """A deterministic ``size``-byte PDF file (one page; the rest an incompressible image stream)."""
    rng = random.Random(f"label-pdf:{seed}")
    head = (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 288 432] >> endobj\n"
        b"4 0 obj << /Type /XObject /Subtype /Image /Filter /DCTDecode >> stream\n"
    )
    tail = b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return head + rng.randbytes(max(0, size - len(head) - len(tail))) + tail


def return_label(rng: random.Random, *, start: datetime, with_pdf: bool = False) -> NotificationEvent:
    """A ``return.label`` with a carrier, tracking link, returned items and the refund.

    ``with_pdf`` attaches the label as a PDF of realistic size (:data:`_LABEL_SIZES`); its bytes
    derive from the event id, so the event stream is the same with and without it.
    """
    shop, city = rng.choice(catalog.SHOPS), rng.choice(catalog.CITIES)
    name, mailbox = _person(rng)
    carrier = rng.choice(catalog.CARRIERS)
    tracking = f"JJD{_digits(rng, 15)}"
    rma = f"RMA-{_code(rng, 6)}"
    lines = [(p, rng.choice((1, 1, 2))) for p in rng.sample(catalog.PRODUCTS, rng.randint(1, 3))]
    items = [{"name": p.name, "sku": p.sku, "quantity": qty} for p, qty in lines]
    refund = _money(sum(p.price * qty for p, qty in lines))
    data = {
        "brand": {"name": shop.name, "url": shop.url},
        "customer": {"name": name},
        "order": {"number": f"{shop.prefix}-{start.year}-{_digits(rng, 6)}"},
        "rma": rma,
        "carrier": {
            "name": carrier,
            "tracking_number": tracking,
            "tracking_url": f"https://tracking.carrier.example/track?id={tracking}",
        },
        "label_url": f"{shop.url}/returns/{rma}/label.pdf",
        "items": items,
        "drop_off_deadline": _day(start, 14),
        "refund": {"amount": refund, "currency": city.currency},
        "support_url": f"{shop.url}/help/returns",
    }
    document: dict[str, Any] = {
        "id": f"return-{_token(rng)}",
        "type": "return.label",
        "tenant": shop.tenant,
        "to": [_recipient(name, mailbox)],
        "sender": "returns",
        "locale": city.locale,
        "data": data,
        "not_after": start + timedelta(days=7),
    }
    if with_pdf:
        sizes = random.Random(f"label-size:{document['id']}")
        size = sizes.randint(*sizes.choice(_LABEL_SIZES))
        pdf = label_pdf(document["id"], size=size)
        document["attachments"] = [
            {
                "name": f"{rma}.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode(),
            }
        ]
    return NotificationEvent.model_validate(document)


def appointment_reminder(rng: random.Random, *, start: datetime) -> NotificationEvent:
    """An ``appointment.reminder`` for a visit one to three days after ``start``."""
    clinic = rng.choice(catalog.CLINICS)
    name, mailbox = _person(rng)
    german = clinic.city.locale.startswith("de")
    service_en, service_de, minutes = rng.choice(catalog.CLINIC_SERVICES)
    service = service_de if german else service_en
    clinician_first, clinician_last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
    local_day = start.astimezone(_tz(clinic.city)).date() + timedelta(days=rng.randint(1, 3))
    hour, quarter = rng.randint(8, 17), rng.choice((0, 15, 30, 45))
    starts_at = datetime(
        local_day.year, local_day.month, local_day.day, hour, quarter, tzinfo=_tz(clinic.city)
    )
    reference = f"APT-{_digits(rng, 5)}"
    brand_url = "https://northwind-health.example"
    appointment: dict[str, Any] = {
        "reference": reference,
        "service": service,
        "starts_at": starts_at.isoformat(),
        "duration_minutes": minutes,
        "clinician": f"Dr. {clinician_first} {clinician_last}",
        "location": {
            "name": clinic.name,
            "lines": [
                clinic.street,
                clinic.city.line2.format(postcode=clinic.city.postcode, city=clinic.city.name),
            ],
            "phone": clinic.phone,
            "map_url": f"https://maps.northwind-health.example/{clinic.slug}",
        },
    }
    if rng.random() < 0.6:
        english, deutsch = rng.choice(catalog.CLINIC_INSTRUCTIONS)
        appointment["instructions"] = deutsch if german else english
    data = {
        "brand": {"name": "Northwind Health", "url": brand_url},
        "patient": {"name": name},
        "appointment": appointment,
        "reschedule_url": f"{brand_url}/appointments/{reference}/change",
    }
    return NotificationEvent.model_validate(
        {
            "id": f"appt-{_token(rng)}",
            "type": "appointment.reminder",
            "tenant": "northwind-health",
            "to": [_recipient(name, mailbox)],
            "sender": "care",
            "locale": clinic.city.locale,
            "data": data,
            "not_after": starts_at,
        }
    )


def permit_approved(rng: random.Random, *, start: datetime) -> NotificationEvent:
    """A ``permit.approved`` decision from the City of Fabrikam building permits office."""
    name, mailbox = _person(rng)
    officer = f"{rng.choice(catalog.FIRST_NAMES)} {rng.choice(catalog.LAST_NAMES)}"
    number = f"BP-{start.year}-{_digits(rng, 5)}"
    valid_from = start.date() + timedelta(days=rng.randint(3, 10))
    valid_until = date(valid_from.year + 1, valid_from.month, min(valid_from.day, 28)) - timedelta(days=1)
    brand_url = "https://permits.fabrikam.example"
    locale = rng.choice(("de-DE", "de-DE", "en"))
    pick = 1 if locale.startswith("de") else 0
    data = {
        "brand": {"name": "City of Fabrikam – Building Permits Office", "url": brand_url},
        "applicant": {"name": name},
        "permit": {
            "number": number,
            "type": rng.choice(catalog.PERMIT_TYPES)[pick],
            "application_reference": f"APP-{start.year}-{_digits(rng, 5)}",
            "approved_at": start.date().isoformat(),
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
            "site_address": {"lines": _address_lines(rng, _CITY_TOWN)},
            "conditions": [pair[pick] for pair in rng.sample(catalog.PERMIT_CONDITIONS, rng.randint(1, 3))],
            "document_url": f"{brand_url}/permits/{number}/decision.pdf",
        },
        "case_officer": {
            "name": officer,
            "email": "permits@fabrikam.example",
            "phone": f"+49 221 5550 {_digits(rng, 4)}",
        },
    }
    return NotificationEvent.model_validate(
        {
            "id": f"permit-{_token(rng)}",
            "type": "permit.approved",
            "tenant": "city-of-fabrikam",
            "to": [_recipient(name, mailbox)],
            "sender": "permits",
            "locale": locale,
            "data": data,
        }
    )


# --- traffic shapes ------------------------------------------------------------------------------


def _aware(start: datetime) -> datetime:
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware (e.g. datetime.now(UTC)), got {start.isoformat()}")
    return start


def _send_at(rng: random.Random, start: datetime, lead_seconds: float) -> datetime:
    # A little spread so scheduled messages do not all fall due in the same millisecond.
    return start + timedelta(seconds=lead_seconds + rng.uniform(0, 1))


def checkout_spike(n: int, *, seed: int, start: datetime) -> list[SimulatedEvent]:
    """``n`` events of a checkout rush: about 80% order confirmations, 20% return labels."""
    _aware(start)
    rng = random.Random(f"checkout:{seed}")
    return [
        SimulatedEvent((order_confirmation if rng.random() < 0.8 else return_label)(rng, start=start))
        for _ in range(n)
    ]


def bookings(n: int, *, seed: int, start: datetime, lead_seconds: float = 5.0) -> list[SimulatedEvent]:
    """``n`` appointment reminders, each scheduled ``lead_seconds`` (plus up to 1 s) after ``start``."""
    _aware(start)
    rng = random.Random(f"bookings:{seed}")
    return [
        SimulatedEvent(appointment_reminder(rng, start=start), send_at=_send_at(rng, start, lead_seconds))
        for _ in range(n)
    ]


def permits(n: int, *, seed: int, start: datetime) -> list[SimulatedEvent]:
    """``n`` building-permit approvals."""
    _aware(start)
    rng = random.Random(f"permits:{seed}")
    return [SimulatedEvent(permit_approved(rng, start=start)) for _ in range(n)]


def _unknown_template(event: NotificationEvent, start: datetime) -> NotificationEvent:
    return event.model_copy(update={"type": UNKNOWN_TYPE})


def _unknown_sender(event: NotificationEvent, start: datetime) -> NotificationEvent:
    return event.model_copy(update={"sender": UNKNOWN_SENDER})


def _expired(event: NotificationEvent, start: datetime) -> NotificationEvent:
    return event.model_copy(update={"not_after": start - timedelta(hours=1)})


#: Dead-letter reason -> how to spoil a valid event so the worker must produce it.
_SPOILERS: Final[dict[DeadLetterReason, Callable[[NotificationEvent, datetime], NotificationEvent]]] = {
    DeadLetterReason.UNKNOWN_TEMPLATE: _unknown_template,
    DeadLetterReason.SENDER_NOT_ALLOWED: _unknown_sender,
    DeadLetterReason.EXPIRED: _expired,
}

#: Shares of the valid part of the holiday spike.
_MIX: Final = (("order", 0.55), ("return", 0.15), ("booking", 0.20), ("permit", 0.10))


def holiday_spike(
    n: int,
    *,
    seed: int,
    start: datetime,
    invalid_ratio: float = 0.01,
    lead_seconds: float = 5.0,
    label_pdfs: bool = False,
) -> list[SimulatedEvent]:
    """The demo's spike: orders, returns, scheduled reminders and permits, shuffled, with
    ``round(n * invalid_ratio)`` events the worker must dead-letter (unknown template, unknown
    sender alias, already expired; in turn). The spoiled events are revalidated copies, so they
    pass the producer's checks and only the worker can refuse them. ``label_pdfs`` attaches a
    PDF to every return label (some larger than a Service Bus message: the claim check).
    """
    if not 0 <= invalid_ratio <= 1:
        raise ValueError(f"invalid_ratio must be between 0 and 1, got {invalid_ratio}")
    _aware(start)
    rng = random.Random(f"holiday:{seed}")
    makers = {
        "order": order_confirmation,
        "return": return_label,
        "booking": appointment_reminder,
        "permit": permit_approved,
    }
    kinds = [name for name, _ in _MIX]
    weights = [share for _, share in _MIX]
    items: list[SimulatedEvent] = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        event = (
            return_label(rng, start=start, with_pdf=True)
            if kind == "return" and label_pdfs
            else (makers[kind](rng, start=start))
        )
        send_at = _send_at(rng, start, lead_seconds) if kind == "booking" else None
        items.append(SimulatedEvent(event, send_at))
    invalid = round(n * invalid_ratio)
    reasons = list(_SPOILERS)
    for number, index in enumerate(sorted(rng.sample(range(n), invalid))):
        reason = reasons[number % len(reasons)]
        spoiled = _SPOILERS[reason](items[index].event, start)
        # Re-validate: model_copy skips validation, and the producer must accept what we publish.
        event = NotificationEvent.model_validate_json(spoiled.to_json())
        items[index] = SimulatedEvent(event, items[index].send_at, expect=reason.value)
    return items


def broken_bodies(n: int, *, seed: int) -> list[WireMessage]:
    """``n`` queue messages the worker must dead-letter as ``InvalidEvent``; built without the model."""
    rng = random.Random(f"broken:{seed}")
    good: dict[str, Any] = {
        "schema": SCHEMA,
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Broken Body <broken@example.com>"],
        "sender": "orders",
        "locale": "en",
        "data": {},
    }
    shapes: list[Callable[[str], tuple[bytes, str]]] = [
        lambda i: (json.dumps({**good, "id": i}).encode()[:-7], "truncated JSON"),
        lambda i: (b"\xff\xfe not utf-8 \x00", "not UTF-8"),
        lambda i: (json.dumps([good]).encode(), "a JSON array"),
        lambda i: (json.dumps({**good, "id": i, "to": ["not-an-address"]}).encode(), "bad address"),
        lambda i: (json.dumps({k: v for k, v in {**good, "id": i}.items() if k != "to"}).encode(), "no to"),
        lambda i: (json.dumps({**good, "id": i, "priority": "high"}).encode(), "unknown field"),
        lambda i: (
            json.dumps({**good, "id": i, "schema": "postbus.notification/99"}).encode(),
            "wrong schema",
        ),
        lambda i: (json.dumps({**good, "id": i, "not_after": "tomorrow"}).encode(), "bad not_after"),
    ]
    messages: list[WireMessage] = []
    for number in range(n):
        message_id = f"broken-{_token(rng)}"
        body, _why = shapes[number % len(shapes)](message_id)
        messages.append(
            WireMessage(
                body=body,
                message_id=message_id,
                subject="order.confirmation",
                application_properties={PROP_SCHEMA: SCHEMA, PROP_ATTEMPT: 0},
            )
        )
    return messages
