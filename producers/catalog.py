"""Built-in sample data for the traffic shapes: people, places, shops, products, clinics and permits.

Everything is fictitious. Email addresses use reserved test domains only (RFC 2606/6761:
``example.com``, ``example.net``, ``example.org`` and ``*.test``); web links use ``*.example``.
The tables are plain tuples so that a seeded ``random.Random`` picks the same rows on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CARRIERS",
    "CITIES",
    "CLINICS",
    "CLINIC_INSTRUCTIONS",
    "CLINIC_SERVICES",
    "FIRST_NAMES",
    "LAST_NAMES",
    "MAIL_DOMAINS",
    "PERMIT_CONDITIONS",
    "PERMIT_TYPES",
    "PRODUCTS",
    "SHOPS",
    "City",
    "Clinic",
    "Product",
    "Shop",
]

FIRST_NAMES: Final = (
    "Amara", "Mateo", "Sofia", "Liam", "Yuki", "Aarav", "Zoë", "José", "Ingrid", "Chidi",
    "Fatima", "Lukas", "Chloé", "Søren", "Mei", "Oluwaseun", "Ana", "Dmitri", "Priya", "Jamal",
    "Elif", "Mateus", "Niamh", "Hiroshi", "Leila", "Björn", "Camila", "Kwame", "Noor", "Tomasz",
    "Hana", "Rafael", "Aoife", "Arjun", "Émile", "Lucía", "Kofi", "Sanna", "Wei", "Isabela",
)  # fmt: skip

LAST_NAMES: Final = (
    "Okafor", "García", "Rossi", "Nakamura", "Müller", "Sharma", "Johansson", "Dubois", "Kowalski", "Mensah",
    "Haddad", "Novak", "O'Brien", "Nguyen", "Fernández", "Schmidt", "Tanaka", "Patel", "Andersen", "Costa",
    "Yılmaz", "Van der Berg", "Kim", "Ivanova", "Adeyemi", "Lefèvre", "Moreno", "Fischer", "Chen", "Silva",
)  # fmt: skip

#: Reserved for documentation and testing; mail to them goes nowhere.
MAIL_DOMAINS: Final = ("example.com", "example.net", "example.org", "mail.test", "inbox.test")


@dataclass(frozen=True, slots=True)
class City:
    """A city with how its addresses look, its currency, a locale and its UTC offset in winter."""

    name: str
    postcode: str
    country: str
    currency: str
    locale: str
    utc_offset: str
    streets: tuple[str, ...]
    #: ``{postcode}`` / ``{city}`` layout of the second address line.
    line2: str = "{postcode} {city}"
    tax_rate: float = 0.19
    tax_included: bool = True


_DE_STREETS: Final = ("Hauptstraße", "Lindenweg", "Bahnhofstraße", "Schillerstraße", "Gartenstraße")
_UK_STREETS: Final = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane")
_US_STREETS: Final = ("Pine Street", "Maple Avenue", "Oak Street", "Lakeview Drive", "Cedar Lane")

CITIES: Final = (
    City("Berlin", "10115", "Germany", "EUR", "de-DE", "+01:00", _DE_STREETS),
    City("Köln", "50667", "Germany", "EUR", "de-DE", "+01:00", _DE_STREETS),
    City("München", "80331", "Germany", "EUR", "de", "+01:00", _DE_STREETS),
    City("Wien", "1010", "Austria", "EUR", "de-AT", "+01:00", ("Mariahilfer Straße", "Kärntner Straße"), tax_rate=0.20),
    City("Zürich", "8001", "Switzerland", "CHF", "de-CH", "+01:00", ("Bahnhofstrasse", "Seefeldstrasse"), tax_rate=0.081),
    City("London", "EC1A 1BB", "United Kingdom", "GBP", "en-GB", "+00:00", _UK_STREETS, "{city} {postcode}", 0.20),
    City("Dublin", "D02 X285", "Ireland", "EUR", "en-IE", "+00:00", ("Grafton Street", "Baggot Street"), "{city} {postcode}", 0.23),
    City("Amsterdam", "1015 CJ", "Netherlands", "EUR", "en", "+01:00", ("Keizersgracht", "Prinsengracht"), tax_rate=0.21),
    City("Paris", "75002", "France", "EUR", "fr", "+01:00", ("Rue de la Paix", "Rue Montorgueil"), tax_rate=0.20),
    City("Madrid", "28013", "Spain", "EUR", "es", "+01:00", ("Calle Mayor", "Calle de Alcalá"), tax_rate=0.21),
    City("Seattle", "98101", "United States", "USD", "en-US", "-08:00", _US_STREETS, "{city}, WA {postcode}", 0.1025, False),
    City("Austin", "78701", "United States", "USD", "en-US", "-06:00", _US_STREETS, "{city}, TX {postcode}", 0.0825, False),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Shop:
    """A tenant that sells things: confirmations and return labels come from it."""

    tenant: str
    name: str
    url: str
    prefix: str


SHOPS: Final = (
    Shop("contoso", "Contoso Outfitters", "https://shop.contoso.example", "CO"),
    Shop("fabrikam-home", "Fabrikam Home", "https://home.fabrikam.example", "FH"),
    Shop("tailspin-toys", "Tailspin Toys", "https://www.tailspintoys.example", "TT"),
)


@dataclass(frozen=True, slots=True)
class Product:
    """A catalogue line: name, SKU and unit price in the shop's base currency."""

    name: str
    sku: str
    price: float


PRODUCTS: Final = (
    Product("Merino crew-neck sweater, navy, M", "MER-CRW-NVY-M", 89.00),
    Product("Wool-blend beanie, grey", "BEA-WB-GRY", 19.95),
    Product("Trail socks, 3-pack, 42–44", "SOC-TR-3P-42", 14.50),
    Product("Down jacket, forest green, L", "DJK-FGR-L", 229.00),
    Product("Cashmere scarf, camel", "SCF-CSH-CML", 79.00),
    Product("Leather gloves, black, 8", "GLV-LTH-BLK-8", 49.90),
    Product("Linen duvet cover, 135×200", "LIN-DUV-135", 119.00),
    Product("Cast-iron casserole, 24 cm", "CI-CAS-24", 149.00),
    Product("Scented candle, winter spice", "CDL-WSP", 24.50),
    Product("Wooden train set, 42 pieces", "WTS-42", 64.99),
    Product("Puzzle, 1000 pieces, northern lights", "PZ-1000-NL", 21.99),
    Product("Stainless water bottle, 750 ml", "BTL-SS-750", 29.00),
    Product("Espresso cups, set of 4", "ESP-CUP-4", 34.00),
    Product("Board game, family edition", "BG-FAM", 39.95),
)

CARRIERS: Final = ("DHL", "UPS", "DPD", "PostNL", "Royal Mail", "GLS")


@dataclass(frozen=True, slots=True)
class Clinic:
    """A place where appointments happen."""

    name: str
    street: str
    city: City
    phone: str
    slug: str


CLINICS: Final = (
    Clinic("Northwind Health Mitte", "Invalidenstraße 44", CITIES[0], "+49 30 5550 1234", "mitte"),
    Clinic("Northwind Health Ehrenfeld", "Venloer Straße 210", CITIES[1], "+49 221 5550 8800", "ehrenfeld"),
    Clinic("Northwind Health Clerkenwell", "12 St John Street", CITIES[5], "+44 20 7946 0321", "clerkenwell"),
    Clinic("Northwind Health Capitol Hill", "1500 Broadway", CITIES[10], "+1 206 555 0148", "capitol-hill"),
)

#: (English, German, minutes)
CLINIC_SERVICES: Final = (
    ("Dental check-up and cleaning", "Zahnärztliche Kontrolle mit Zahnreinigung", 45),
    ("Annual physical examination", "Jährliche Vorsorgeuntersuchung", 30),
    ("Flu vaccination", "Grippeschutzimpfung", 15),
    ("Physiotherapy session", "Physiotherapie", 50),
    ("Eye examination", "Augenuntersuchung", 30),
    ("Dermatology consultation", "Hautärztliche Sprechstunde", 20),
    ("Blood test", "Blutabnahme", 15),
)

#: (English, German)
CLINIC_INSTRUCTIONS: Final = (
    (
        "Please arrive ten minutes early and bring your insurance card.",
        "Bitte kommen Sie zehn Minuten früher und bringen Sie Ihre Versichertenkarte mit.",
    ),
    (
        "Please do not eat or drink for two hours before your appointment.",
        "Bitte essen und trinken Sie zwei Stunden vor dem Termin nichts.",
    ),
    (
        "Bring a list of the medicines you currently take.",
        "Bringen Sie eine Liste Ihrer aktuellen Medikamente mit.",
    ),
)

#: (English, German)
PERMIT_TYPES: Final = (
    ("Residential renovation", "Sanierung eines Wohngebäudes"),
    ("Roof extension", "Dachausbau"),
    ("Garden shed", "Gartenhaus"),
    ("Solar panel installation", "Photovoltaikanlage"),
    ("Change of use", "Nutzungsänderung"),
    ("Demolition of outbuilding", "Abriss eines Nebengebäudes"),
    ("Balcony construction", "Balkonanbau"),
)

#: (English, German)
PERMIT_CONDITIONS: Final = (
    (
        "Construction work is permitted on weekdays between 07:00 and 19:00 only.",
        "Bauarbeiten sind nur werktags zwischen 07:00 und 19:00 Uhr zulässig.",
    ),
    (
        "The permit must be displayed visibly at the site for the whole duration of the works.",
        "Die Genehmigung ist während der gesamten Bauzeit sichtbar an der Baustelle auszuhängen.",
    ),
    (
        "The structural engineer's sign-off must be submitted before the roof work begins.",
        "Der Standsicherheitsnachweis ist vor Beginn der Dacharbeiten vorzulegen.",
    ),
    (
        "Neighbours must be informed in writing at least seven days before work starts.",
        "Die Nachbarn sind mindestens sieben Tage vor Baubeginn schriftlich zu informieren.",
    ),
    (
        "Trees on the site boundary must be protected during the works.",
        "Bäume an der Grundstücksgrenze sind während der Arbeiten zu schützen.",
    ),
    (
        "Skips on the public road need a separate street-use licence.",
        "Container auf öffentlichem Straßenland benötigen eine gesonderte Sondernutzungserlaubnis.",
    ),
)
