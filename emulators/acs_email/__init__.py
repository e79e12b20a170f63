"""An HTTP server with the ACS Email data-plane API."""
