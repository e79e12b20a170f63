"""The attachment types ACS Email sends: anything else is refused at publish, not after a queue trip.

ACS publishes the list as file extensions with their MIME types; it refuses an email whose
attachment has another type (400), unless the request asks it to drop invalid attachments
silently, which Postbus never does. Comparison ignores case and parameters (``; charset=...``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ALLOWED_ATTACHMENT_TYPES", "allowed_attachment_type"]

#: MIME types ACS Email accepts for attachments (from its list of allowed extensions).
ALLOWED_ATTACHMENT_TYPES: Final = frozenset(
    {
        "application/epub+zip",
        "application/gzip",
        "application/json",
        "application/msword",
        "application/ogg",
        "application/onenote",
        "application/pdf",
        "application/rtf",
        "application/vnd.ms-excel",
        "application/vnd.ms-excel.sheet.binary.macroenabled.12",
        "application/vnd.ms-excel.sheet.macroenabled.12",
        "application/vnd.ms-fontobject",
        "application/vnd.ms-outlook",
        "application/vnd.ms-powerpoint",
        "application/vnd.ms-powerpoint.presentation.macroenabled.12",
        "application/vnd.ms-powerpoint.slideshow.macroenabled.12",
        "application/vnd.ms-publisher",
        "application/vnd.ms-word.document.macroenabled.12",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.visio",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/x-tar",
        "application/xml",
        "application/zip",
        "audio/aac",
        "audio/midi",
        "audio/mpeg",
        "audio/ogg",
        "audio/opus",
        "audio/wav",
        "audio/webm",
        "audio/x-ms-wma",
        "font/otf",
        "font/ttf",
        "font/woff",
        "font/woff2",
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/svg+xml",
        "image/tiff",
        "image/vnd.microsoft.icon",
        "image/webp",
        "text/calendar",
        "text/csv",
        "text/plain",
        "video/3gpp",
        "video/3gpp2",
        "video/mp4",
        "video/mpeg",
        "video/ogg",
        "video/webm",
        "video/x-ms-wmv",
        "video/x-msvideo",
    }
)


def allowed_attachment_type(content_type: str) -> bool:
    """Whether ACS sends an attachment of this MIME type (case and parameters ignored)."""
    return content_type.split(";", 1)[0].strip().lower() in ALLOWED_ATTACHMENT_TYPES
